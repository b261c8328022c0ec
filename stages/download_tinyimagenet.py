"""Stage download_tinyimagenet: the Tiny-ImageNet tree, generated (source: sample) or downloaded."""
import argparse

from _common import run_stage  # noqa: E402  (stages/ is on sys.path when run as a script)

from dlreport.params import load_params
from dlreport.tinyimagenet import prepare_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="datasets/tiny-imagenet-200",
                        help="the extracted tiny-imagenet-200 folder to create")
    args = parser.parse_args()
    cfg = load_params(args.params, "tinyimagenet")["tinyimagenet"]
    root = prepare_source(cfg, args.out)
    print(f"Tiny-ImageNet ready in {root} (source: {cfg.source})")


if __name__ == "__main__":
    run_stage(main)
