"""Copy a finished run's report, claims ledger and metrics into docs/results/<name>/, with what it
ran on: the params it changed against the project's params.yaml, the CPU, the epochs completed.

    python tools/record_result.py /path/to/scratch/project docs/results/tinyimagenet-real-cpu \
        --note "wall time, what was interrupted, ..."

The run itself stays where it ran (its checkpoints are hundreds of MB); what is copied is the
text and figures a reader needs to check the README's quotes of it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlreport.params import read_params  # noqa: E402  (the stages' reader: YAML as DVC reads it)
from dlreport.recipe import portable_source  # noqa: E402
from dlreport.report import flatten  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the project folder the run ran in")
    parser.add_argument("out", type=Path, help="e.g. docs/results/tinyimagenet-real-cpu")
    parser.add_argument("--note", default="", help="anything the files do not say (wall time, interruptions)")
    args = parser.parse_args()
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "metrics").mkdir(parents=True)
    shutil.copytree(args.run / "reports" / "report", out / "report")
    for name in ("claims.md", "claims.json"):
        shutil.copy2(args.run / "reports" / name, out / name)
    # the words generated and the context probe's findings and claims (a few kB), where the run has them
    for rel in ("generated.txt", "context_probe/findings.md", "context_probe/claims.json"):
        if (args.run / "reports" / rel).is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.run / "reports" / rel, out / rel)
    # the ResNet-18 run's per-epoch curves (DVCLive's TSVs: a few hundred bytes each)
    shutil.copytree(args.run / "runs" / "resnet" / "cpu" / "dvclive" / "plots" / "metrics", out / "curves")
    for path in sorted((args.run / "metrics").rglob("*.json")):
        target = out / "metrics" / path.relative_to(args.run / "metrics")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    ran, committed = flatten(read_params(args.run / "params.yaml")), flatten(read_params(ROOT / "params.yaml"))
    changed = {k: ran.get(k) for k in sorted(set(ran) | set(committed)) if ran.get(k) != committed.get(k)}
    if "tinyimagenet.source" in changed:  # ../shared/..., not this machine's path
        changed["tinyimagenet.source"] = portable_source(changed["tinyimagenet.source"], args.run)
    summary = json.loads((args.run / "metrics" / "train_resnet_cpu.json").read_text())
    run = {"params_changed": changed, "cpu": summary.get("device"), "precision": summary.get("precision"),
           "epochs_completed": summary.get("epochs"), "note": args.note}
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print(f"recorded {args.run} in {out}: {json.dumps(run)}")


if __name__ == "__main__":
    main()
