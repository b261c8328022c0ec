"""Stage train_resnet@<run>: train ResNet-18 on Tiny-ImageNet for one hardware variant.

As a stage (``python stages/train_resnet.py --variant gpu8``) it checks the variant against the
``devices`` param and the GPUs present, records "skipped" when the experiment may not use
enough GPUs, and otherwise launches torchrun with one process per GPU (or per CPU process).
Launched by torchrun itself (LOCAL_RANK is set), it is one training process; users can start
it that way too, e.g. across nodes:

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 \\
        stages/train_resnet.py --variant gpu8
"""
import argparse
import os

from _common import run_stage

from dlreport.params import load_params
from dlreport.launch import launch_or_skip, train_worker, variant_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, help="a key of resnet_runs (torchrun would take --run for its --run-path)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="datasets/tinyimagenet-prepared")
    parser.add_argument("--out", help="run folder (default runs/resnet/<run>)")
    parser.add_argument("--summary", help="metrics file (default metrics/train_resnet_<run>.json)")
    args = parser.parse_args()
    params = load_params(args.params, "resnet", "resnet_runs", "devices", "tinyimagenet")
    recipe, variant = params["resnet"], variant_of(params["resnet_runs"], args.variant)
    out = args.out or f"runs/resnet/{args.variant}"
    summary = args.summary or f"metrics/train_resnet_{args.variant}.json"
    if "LOCAL_RANK" in os.environ:  # started by torchrun: be one training process
        train_worker(recipe, args.variant, variant, params["tinyimagenet"], args.prepared, out, summary)
    else:
        launch_or_skip(recipe, args.variant, variant, params["devices"], params["tinyimagenet"], args.prepared, out,
                       summary, args.params, __file__)


if __name__ == "__main__":
    run_stage(main)
