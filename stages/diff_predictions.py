"""Stage diff_predictions: the validation images two epochs judge differently, with counts,
McNemar's exact test and a captioned image grid."""
import argparse
from pathlib import Path

from _common import run_stage

from dlreport.evaluation import diff_metrics, diff_predictions
from dlreport.fileio import write_json
from dlreport.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--predictions", default="runs/eval")
    parser.add_argument("--prepared", default="datasets/tinyimagenet-prepared")
    parser.add_argument("--data", default="datasets/tiny-imagenet-200", help="for the image grid")
    parser.add_argument("--out", default="reports/diff_predictions")
    parser.add_argument("--metrics", default="metrics/diff_predictions.json")
    args = parser.parse_args()
    counts = diff_predictions(load_params(args.params, "diff")["diff"], Path(args.predictions), Path(args.prepared),
                              Path(args.data), Path(args.out))
    write_json(args.metrics, diff_metrics(counts))
    print(f"epoch {counts['epoch_a']} vs {counts['epoch_b']}: {counts['differing']} of {counts['images']} "
          f"images differ; only A right {counts['only_a_right']}, only B right {counts['only_b_right']}, "
          f"McNemar p = {counts['mcnemar_p']:.3g}")


if __name__ == "__main__":
    run_stage(main)
