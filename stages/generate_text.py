"""Stage generate_text: write reports/generated.txt (20 words a line) from the model named by
generate.model, with generate.words, generate.temperature, generate.seed and generate.prompt."""
import argparse
import json

from _common import run_stage

from dlreport.params import load_params
from dlreport.wordlm.generate import generate_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--runs", default="runs/wordlm")
    parser.add_argument("--out", default="reports/generated.txt")
    args = parser.parse_args()
    gen = load_params(args.params, "generate")["generate"]
    words = generate_text(gen, args.runs, args.out)
    start = f"the prompt {json.dumps(gen.prompt)}" if gen.prompt is not None else "a random first word"
    print(f"| Generated {len(words)} words with {gen.model} from {start} -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
