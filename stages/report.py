"""Stage report: the course report regenerated from the pipeline's outputs, written to
reports/report/ (report.md and the PNG figures it shows). Sections whose inputs are absent
say "Not available" and name the missing file."""
import argparse
from pathlib import Path

from _common import run_stage

from dlreport.params import load_params
from dlreport.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=".", help="the project folder whose outputs are reported")
    parser.add_argument("--out", default="reports/report")
    args = parser.parse_args()
    params = load_params(Path(args.root) / "params.yaml")  # the report shows every section
    result = build_report(args.root, args.out, params.raw)  # shown key by key, and compared with the committed file
    unavailable = [line.split("\n")[0] for line in result["text"].split("\n## ")[1:]
                   if "Not available" in line]
    print(f"report: {args.out}/report.md with {len(result['figures'])} figure(s): {', '.join(result['figures'])}")
    for heading in unavailable:
        print(f"  section '{heading}': some inputs not available")


if __name__ == "__main__":
    run_stage(main)
