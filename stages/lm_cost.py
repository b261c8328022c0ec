"""Stage lm_cost: how the cost of the Transformer and the gated CNN grows with the sequence
length (the report's claim C13: quadratic for attention, linear for a CNN). Times a forward pass
and a training step and counts their peak memory at each of `lm_cost.lengths` (batch 1, untrained
weights of each `wordlm.models` entry named), fits each model's exponent over the lengths where
attention dominates, and writes reports/lm_cost/ (cost.csv, cost.png, summary.json) and
metrics/lm_cost/<model>.json (the exponents)."""
import argparse
import time

import pandas as pd
from _common import run_stage

from dlreport.devices import cpu_name
from dlreport.fileio import atomic_dir, write_json
from dlreport.params import load_params
from dlreport.wordlm.cost import COLUMNS, CostSettings, cost_figure, exponents, measure_models
from dlreport.wordlm.models import build_model
from dlreport.wordlm.train import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/lm_cost")
    parser.add_argument("--metrics", default="metrics/lm_cost", help="folder: one <model>.json each")
    args = parser.parse_args()
    params = load_params(args.params, "lm_cost", "wordlm.models")
    cfg, entries = params["lm_cost"], params["wordlm.models"]
    set_threads(cfg.threads)
    settings = CostSettings(lengths=sorted(cfg.lengths), repeats=cfg.repeats, seed=cfg.seed, ntoken=cfg.ntoken)
    models = {name: build_model(entries[name], settings.ntoken) for name in cfg.models}
    quadratic = next(name for name in cfg.models if entries[name].type == "Transformer")
    start = time.time()
    rows = measure_models(models, settings)
    fits = exponents(rows, quadratic)
    with atomic_dir(args.out) as tmp:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp / "cost.csv", index=False)
        cost_figure(rows, fits, tmp / "cost.png")
        write_json(tmp / "summary.json", {"cpu": cpu_name(), "threads": cfg.threads, "batch": 1,
                                          "quadratic_model": quadratic,
                                          "types": {name: entries[name].type for name in models},
                                          "fits": fits})
    with atomic_dir(args.metrics) as tmp:
        for name in models:
            write_json(tmp / f"{name}.json", {f"{measure}_exponent": fit["exponents"][name]
                                              for measure, fit in fits.items()})
    for measure, fit in fits.items():
        print(f"| lm cost | {measure:15s} | fitted on lengths {fit['fit_lengths']} "
              f"(attention dominates: {fit['attention_dominates']}) | exponents "
              + ", ".join(f"{m} {e:.2f}" for m, e in fit["exponents"].items()))
    print(f"| lm cost | {len(rows)} measurements in {time.time() - start:.1f} s on {cpu_name()}")


if __name__ == "__main__":
    run_stage(main)
