"""Stage claims: the claims ledger - every claim of the course report with the report's figure,
ours, the rule that decides and a verdict (supported, contradicted, not comparable or not
measurable in this run, and why). Writes reports/claims.md (and reports/claims.json, the same rows) and
metrics/claims.json (how many claims got each verdict)."""
import argparse

from _common import run_stage

from dlreport.claims import RunFacts, as_records, build_ledger, render, verdict_counts
from dlreport.devices import cpu_name
from dlreport.fileio import atomic_file, write_json
from dlreport.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/claims.md")
    parser.add_argument("--records", default="reports/claims.json")
    parser.add_argument("--metrics", default="metrics/claims.json")
    args = parser.parse_args()
    params = load_params(args.params, "claims", "resnet.input_size", "resnet.stem", "resnet.epochs", "resnet_runs",
                         "wordlm.models")
    cfg = params["claims"]
    facts = RunFacts(input_size=params["resnet.input_size"], stem=params["resnet.stem"],
                     epochs=params["resnet.epochs"], variants=list(params["resnet_runs"]),
                     lm_models=list(params["wordlm.models"]), bootstrap=cfg.bootstrap, seed=cfg.seed)
    claims, _, about = build_ledger(".", facts)
    with atomic_file(args.out) as handle:
        handle.write(render(claims, facts, f"{about} Ledger written on {cpu_name()}."))
    write_json(args.records, as_records(claims))
    counts = verdict_counts(claims)
    write_json(args.metrics, counts)
    for c in claims:
        print(f"{c.id:5s} {c.verdict:15s} {c.statement}" + (f" ({c.reason})" if c.reason else ""))
    print(f"claims: {counts['supported']} supported, {counts['contradicted']} contradicted, "
          f"{counts['not_comparable']} not comparable, {counts['not_measurable']} not measurable "
          f"(of {counts['claims']}) -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
