"""Judge a recorded result (docs/results/<name>/) again with today's claims rules, without
retraining and without the run's other outputs: each claim keeps the figures and what its rule
gave as recorded; a claim about the report's training runs whose run was not the report's recipe
becomes "not comparable" (dlreport.claims.regate).

    python tools/rejudge_result.py docs/results/tinyimagenet-real-cpu

A summary recorded before runs recorded their recipe gets it here, from the params the run used
(the project's params.yaml with the run's params_changed applied: run.json says so); a data
source recorded as this machine's path is made relative to the project. claims.md, claims.json,
metrics/claims.json and the verdict sentence of report/report.md are rewritten.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlreport.claims import Ledger, RunFacts, as_records, regate, render, verdict_counts  # noqa: E402
from dlreport.fileio import write_json  # noqa: E402
from dlreport.params import load_params, read_params  # noqa: E402
from dlreport.recipe import data_record, portable_source, resnet_recipe  # noqa: E402
from dlreport.report import Inputs, Report  # noqa: E402

VERDICT_LINE = "**Was the report right?**"


def params_of(run: dict, scratch: Path):
    """The params the run used, validated: the project's params.yaml with its recorded changes."""
    params = read_params(ROOT / "params.yaml")
    for dotted, value in run.get("params_changed", {}).items():
        if dotted == "tinyimagenet.source" and value != "sample" and "://" not in value:
            value = (ROOT / value).resolve().as_uri()  # recorded relative to the project
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = scratch / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return load_params(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="e.g. docs/results/tinyimagenet-real-cpu")
    args = parser.parse_args()
    result = args.result
    run = json.loads((result / "run.json").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        params = params_of(run, Path(scratch))
    source = run.get("params_changed", {}).get("tinyimagenet.source")
    if source:  # as the project would write it: ../shared/..., not this machine's path
        run["params_changed"]["tinyimagenet.source"] = portable_source(source, ROOT)
    notes = []
    for variant in params["resnet_runs"]:
        path = result / "metrics" / f"train_resnet_{variant}.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        if summary.get("status") == "trained" and "recipe" not in summary:
            counts = json.loads((result / "metrics" / "dataset.json").read_text())
            data = data_record(params["tinyimagenet"].source, params["tinyimagenet"].md5, counts["train_images"],
                               counts["val_images"], ROOT)
            summary["recipe"] = resnet_recipe(params["resnet"], data)
            write_json(path, summary)
            notes.append(f"metrics/train_resnet_{variant}.json: recipe added when judged again, from the params "
                         f"the run used")
    facts = RunFacts(input_size=params["resnet"].input_size, stem=params["resnet"].stem,
                     epochs=params["resnet"].epochs, variants=list(params["resnet_runs"]),
                     lm_models=list(params["wordlm"].models), bootstrap=params["claims"].bootstrap,
                     seed=params["claims"].seed)
    ledger = Ledger(Inputs(result), facts)
    claims = regate(json.loads((result / "claims.json").read_text()), ledger)
    today = datetime.date.today().isoformat()
    about = (f"{ledger.about()} Judged again on {today} with the like-with-like rules "
             f"(`tools/rejudge_result.py`): the figures are those recorded; no run was repeated.")
    (result / "claims.md").write_text(render(claims, facts, about))
    write_json(result / "claims.json", as_records(claims))
    counts = verdict_counts(claims)
    write_json(result / "metrics" / "claims.json", counts)
    report = result / "report" / "report.md"
    if report.exists():
        line = Report(Inputs(result), {}, result / "report").claims()[0]
        text = report.read_text().splitlines()
        report.write_text("\n".join(line if t.startswith(VERDICT_LINE) else t for t in text) + "\n")
    run["rejudged"] = {"date": today, "notes": notes, **counts}
    write_json(result / "run.json", run)
    print(f"{result}: {counts}")


if __name__ == "__main__":
    main()
