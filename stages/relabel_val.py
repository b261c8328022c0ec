"""Stage relabel_val: validated train/val tables (path, wnid, class index, name, box) and the
images decoded once into uint8 arrays for training."""
import argparse

from _common import run_stage

from dlreport.fileio import write_json
from dlreport.tinyimagenet import relabel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="datasets/tiny-imagenet-200")
    parser.add_argument("--out", default="datasets/tinyimagenet-prepared")
    parser.add_argument("--metrics", default="metrics/dataset.json")
    args = parser.parse_args()
    summary = relabel(args.data, args.out)
    write_json(args.metrics, summary)
    print(f"relabelled: {summary}")


if __name__ == "__main__":
    run_stage(main)
