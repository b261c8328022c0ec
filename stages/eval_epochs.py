"""Stage eval_epochs: evaluate epoch checkpoints of one train_resnet run on the validation set
(loss, Acc@1, Acc@5 and each image's top-5), as the report did for epochs 7 and 18."""
import argparse
from pathlib import Path

from _common import run_stage

from dlreport.evaluation import eval_epochs, load_summaries
from dlreport.fileio import write_json
from dlreport.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="datasets/tinyimagenet-prepared")
    parser.add_argument("--runs", default="runs/resnet", help="folder of the train_resnet run folders")
    parser.add_argument("--summaries", nargs="+", required=True, help="metrics/train_resnet_<variant>.json files")
    parser.add_argument("--out", default="runs/eval", help="per-epoch predictions and accuracy table")
    parser.add_argument("--metrics", default="metrics/eval.json")
    args = parser.parse_args()
    metrics = eval_epochs(load_params(args.params, "eval")["eval"], Path(args.prepared), Path(args.runs),
                          load_summaries(args.summaries), Path(args.out))
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main)
