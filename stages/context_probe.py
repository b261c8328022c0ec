"""Stage context_probe: how much context each trained language model uses, inside the context it
was trained on (truncated and perturbed context, effective context, the gain beyond 35 tokens,
95% bootstrap intervals; Khandelwal et al. 2018). Writes metrics/context_probe/<model>.json
(headline figures, a row per model in `dvc metrics show`) and reports/context_probe/
(summary.json; perplexity.csv, perplexity_extrapolation.csv, shuffle_increase.csv,
random_increase.csv: curves with interval bounds; targets.json; findings.md)."""
import argparse

from _common import run_stage

from dlreport.params import load_params
from dlreport.wordlm.probe import context_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--runs", default="runs/wordlm")
    parser.add_argument("--corpus", default="datasets/corpus")
    parser.add_argument("--out", default="reports/context_probe")
    parser.add_argument("--metrics", default="metrics/context_probe", help="folder: one <model>.json each")
    args = parser.parse_args()
    params = load_params(args.params, "context_probe")
    cfg = params["context_probe"]
    models = cfg.models or list(params.raw["wordlm"]["models"])  # (the models are checked by train_wordlm)
    context_probe(cfg, args.runs, models, args.corpus, args.out, args.metrics)


if __name__ == "__main__":
    run_stage(main)
