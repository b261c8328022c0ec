"""Stage compare_devices: seconds per epoch, images/s, speedup over the CPU run and scaling
efficiency per GPU for the train_resnet variants that trained (reports/device_comparison.csv);
the speedups and efficiencies are the metrics (metrics/device_comparison.json)."""
import argparse

from _common import run_stage

from dlreport.evaluation import load_summaries
from dlreport.fileio import atomic_file, write_json
from dlreport.reporting import compare_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summaries", nargs="+", required=True)
    parser.add_argument("--metrics", default="metrics/device_comparison.json")
    parser.add_argument("--table", default="reports/device_comparison.csv")
    args = parser.parse_args()
    summaries = load_summaries(args.summaries)
    metrics, table = compare_devices(summaries)
    write_json(args.metrics, metrics)
    with atomic_file(args.table) as handle:
        table.to_csv(handle, index=False)
    print(table.to_string(index=False))
    for name, summary in summaries.items():
        if summary.get("status") != "trained":
            print(f"{name}: {summary.get('status', 'missing')}")


if __name__ == "__main__":
    run_stage(main)
