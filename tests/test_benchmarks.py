"""benchmarks/ and dlreport.perf: the benchmarks run (at the smallest sizes; their figures are
measured by hand, never timed here) and print what the speed table needs: the CPU, the
matrix-multiply peak, the fraction of it, the profile, the projection and the per-layer table."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
from torch import nn

from conftest import REPO, run
from dlreport import perf
from dlreport.models import build_resnet18


def test_counted_flops_of_a_linear_layer_and_its_backward():
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    assert perf.counted_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 8 * 64 * 32  # forward + two grads


def test_conv_layers_groups_resnet18_shapes_at_64px():
    layers = perf.conv_layers(build_resnet18(), torch.zeros(2, 3, 64, 64))
    assert sum(len(layer["layers"]) for layer in layers) == 20  # every convolution of ResNet-18
    by_name = {layer["layers"][0]: layer for layer in layers}
    assert by_name["layer4.0.conv2"]["input"] == (2, 512, 2, 2) and len(by_name["layer4.0.conv2"]["layers"]) == 3
    times = perf.time_conv_passes(by_name["layer4.0.conv2"], None, repeats=1)
    assert times["output"] == (2, 2) and times["flops"] == 2 * 2 * 4 * 512 * 512 * 9
    assert all(len(times[p]) == 2 and min(times[p]) > 0 for p in ("forward", "input grad", "weight grad"))


def test_matmul_peak_and_cpu_label():
    peak, kernel = perf.matmul_peak(torch.float32, sizes=(256, 512), convolutions=((8, 32, 8),), min_flop=1e8)
    assert peak > 1e8 and kernel in ("torch.mm 256x256", "torch.mm 512x512", "3x3 convolution 32->32 at 8x8, batch 8")
    only_mm, kernel = perf.matmul_peak(torch.float32, sizes=(256,), convolutions=(), min_flop=1e8)
    assert only_mm > 1e8 and kernel == "torch.mm 256x256"
    assert "threads" in perf.cpu_label() and "torch capability" in perf.cpu_label()


def test_bench_resnet_input_prints_the_fraction_of_peak(reproduced: Path):
    out = run([sys.executable, str(REPO / "benchmarks/bench_resnet_input.py"), "--batch-size", "16", "--steps", "1",
               "--rounds", "1", "--workers", "0", "--layers", "--ablation"], cwd=reproduced).stdout
    # the ablation's steps, each a variant timed beside the reference; ours last, as the stage runs
    assert re.search(r"^  \+ channels_last +[\d.]+ +[\d.]+x$", out, re.M), out
    assert re.search(r"^ours \(train_resnet\): \+ freed memory kept for the next step, \w+ +[\d.]+ +[\d.]+x$", out, re.M), out
    assert re.search(r"^round 1: +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+  img/s  peak [\d.]+ TFLOP/s$", out, re.M), out
    assert re.search(r"matrix-multiply peak, (bf16|fp32): [\d.]+ TFLOP/s, median of the rounds", out), out
    assert re.search(r"= [\d.]+% of the peak", out), out
    assert "the report's 20 real epochs at these speeds" in out and "aten::" in out  # projection, profile
    assert "layer4.0.conv2 x3" in out and "could reach at most" in out, out


def test_bench_resnet_input_says_what_to_run_first(tmp_path: Path):
    result = run([sys.executable, str(REPO / "benchmarks/bench_resnet_input.py")], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: datasets/tiny-imagenet-200/train not found; run `dvc repro relabel_val` first (or pass --data/--prepared)"]


def test_bench_wordlm_compares_every_model_with_the_example(tmp_path: Path):
    out = run([sys.executable, str(REPO / "benchmarks/bench_wordlm.py"), "--batches", "2", "--repeats", "1",
               "--threads", "1"], cwd=tmp_path).stdout
    for name in ("lstm", "transformer", "gcnn"):
        assert re.search(rf"^{name} \(\w+\): example loop .* ratio [\d.]+ .* of the peak$", out, re.M), out
