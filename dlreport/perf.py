"""Measuring the machine for the benchmarks: which CPU it is, its matrix-multiply peak, the FLOPs
of a training step, where a step's time goes, and each convolution's speed in its own kernels.

A speed figure means little without the hardware beside it, and a ratio to another recipe says
nothing about how much faster the hardware could go; these put both next to every figure.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlreport.devices import cpu_has_native_bf16, cpu_name

# The CPU flags that decide which kernels oneDNN runs (and so the speed and the last bits).
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_label() -> str:
    """The CPU as every speed figure names it: model, core count, kernel flags, torch's capability."""
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    present = [flag for flag in KERNEL_FLAGS if flag in flags] or ["flags unknown"]
    return (f"{cpu_name()}, {torch.get_num_threads()} threads; {' '.join(present)}; "
            f"torch capability {torch.backends.cpu.get_cpu_capability()}, native bf16 {cpu_has_native_bf16()}")


def best_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """The fastest of ``repeats`` timed calls (after ``warmup`` untimed ones): the least-disturbed one."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype, sizes=(1024, 2048, 4096), min_flop: float = 2e10) -> tuple[float, int]:
    """The machine's own matrix-multiply peak in ``dtype`` on torch's current threads: the best
    FLOP/s over square products of ``sizes`` (each timed over at least ``min_flop`` FLOPs).
    Returns (FLOP/s, the size that reached it)."""
    best = (0.0, 0)
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        reps = max(1, round(min_flop / (2 * n ** 3)))
        seconds = best_seconds(lambda: [torch.mm(a, b) for _ in range(reps)], repeats=3, warmup=1)
        best = max(best, (2 * n ** 3 * reps / seconds, n))
    return best


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward included), counted per operator by
    torch's FlopCounterMode: convolutions and matrix products, the work a matrix unit does."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def profile_table(fn: Callable[[], object], calls: int = 2, rows: int = 10) -> str:
    """torch.profiler's per-operator table over ``calls`` calls of ``fn``, the ``rows`` operators
    with the most self time first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def conv_layers(model: nn.Module, sample: torch.Tensor) -> list[dict]:
    """Each convolution of ``model`` with the input shape it sees for ``sample`` (one forward with
    hooks), grouped: one entry per distinct (shape, stride, padding) with how many layers share it."""
    seen: dict[tuple, dict] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            def hook(module, inputs, _output, name=name):
                key = (tuple(inputs[0].shape), tuple(module.weight.shape), module.stride, module.padding)
                entry = seen.setdefault(key, {"layers": [], "input": key[0], "weight": key[1],
                                              "stride": module.stride, "padding": module.padding})
                entry["layers"].append(name)
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in hooks:
            handle.remove()
    return list(seen.values())


def time_conv_passes(layer: dict, dtype: torch.dtype | None, repeats: int = 5) -> dict:
    """One convolution shape's forward, input-gradient and weight-gradient times, each by oneDNN
    (aten's kernels) and by the GEMM formulation of ``models.GemmConv2d``, and its FLOPs per pass."""
    from dlreport.models import conv_forward_gemm, conv_input_grad_gemm, conv_weight_grad_gemm

    dtype = dtype or torch.float32
    x = torch.randn(layer["input"]).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(layer["weight"]).to(dtype).contiguous(memory_format=torch.channels_last)
    stride, padding = layer["stride"], layer["padding"]
    out = F.conv2d(x, w, None, stride, padding)
    grad = torch.randn_like(out)

    def backward(mask):
        return torch.ops.aten.convolution_backward(grad, x, w, None, stride, padding, (1, 1), False, (0, 0), 1, mask)

    passes = {
        "forward": (lambda: F.conv2d(x, w, None, stride, padding), lambda: conv_forward_gemm(x, w, stride, padding)),
        "input grad": (lambda: backward((True, False, False)),
                       lambda: conv_input_grad_gemm(grad, x.shape, w, stride, padding)),
        "weight grad": (lambda: backward((False, True, False)),
                        lambda: conv_weight_grad_gemm(grad, x, w.shape, stride, padding)),
    }
    flops = 2 * out.numel() * w[0].numel()
    return {"flops": flops, "output": tuple(out.shape[-2:]),
            **{name: (best_seconds(onednn, repeats), best_seconds(gemm, repeats))
               for name, (onednn, gemm) in passes.items()}}
