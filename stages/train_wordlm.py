"""Stage train_wordlm@<name>: train one word-level language model (wordlm.models.<name>).

Prints the PyTorch example's log lines; writes runs/wordlm/<name>/ (model.pt: best-validation
state dict + config + vocabulary, load with torch.load(..., weights_only=True); dvclive/) and
metrics/train_wordlm_<name>.json.
"""
import argparse

from _common import run_stage

from dlreport.params import load_params
from dlreport.wordlm.train import train_wordlm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a key of wordlm.models")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--corpus", default="datasets/corpus")
    parser.add_argument("--out", help="run folder (default runs/wordlm/<model>)")
    parser.add_argument("--summary", help="metrics file (default metrics/train_wordlm_<model>.json)")
    args = parser.parse_args()
    params = load_params(args.params, "wordlm.train", f"wordlm.models.{args.model}")
    train_wordlm(params["wordlm.train"], args.model, params[f"wordlm.models.{args.model}"], args.corpus,
                 args.out or f"runs/wordlm/{args.model}", args.summary or f"metrics/train_wordlm_{args.model}.json")


if __name__ == "__main__":
    run_stage(main)
