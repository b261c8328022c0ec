"""Stage layer_shapes: the report's table of each ResNet-18 block's output size (hooks on the real model)."""
import argparse

from _common import run_stage

from dlreport.fileio import atomic_file
from dlreport.params import load_params
from dlreport.reporting import layer_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/layer_shapes.csv")
    args = parser.parse_args()
    params = load_params(args.params, "resnet.stem", "resnet.input_size")
    stem, size = params["resnet.stem"], params["resnet.input_size"]
    table = layer_table(stem, size)
    with atomic_file(args.out) as handle:
        table.to_csv(handle, index=False)
    print(f"ResNet-18 ({stem} stem), {size}x{size} input:")
    print(table.to_string(index=False))


if __name__ == "__main__":
    run_stage(main)
