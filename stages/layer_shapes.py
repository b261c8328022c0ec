"""Stage layer_shapes: the report's table of each ResNet-18 block's output size for a 64x64 input
(hooks on the real model, with resnet.stem); with resnet.input_size other than 64, a second column
gives the sizes at the size the network trains at (224: main.py's)."""
import argparse

from _common import run_stage

from dlreport.fileio import atomic_file
from dlreport.params import load_params
from dlreport.reporting import layer_table

REPORT_TABLE_INPUT = 64  # the report tabulated the block sizes for one 64x64 image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/layer_shapes.csv")
    args = parser.parse_args()
    params = load_params(args.params, "resnet.stem", "resnet.input_size")
    stem, size = params["resnet.stem"], params["resnet.input_size"]
    table = layer_table(stem, REPORT_TABLE_INPUT)
    if size != REPORT_TABLE_INPUT:
        table[f"output_at_{size}"] = layer_table(stem, size)["output"]
    with atomic_file(args.out) as handle:
        table.to_csv(handle, index=False)
    print(f"ResNet-18 ({stem} stem), {REPORT_TABLE_INPUT}x{REPORT_TABLE_INPUT} input"
          + (f" (and {size}x{size}, output_at_{size})" if size != REPORT_TABLE_INPUT else "") + ":")
    print(table.to_string(index=False))


if __name__ == "__main__":
    run_stage(main)
