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


# oneDNN's direct convolutions are matrix products too (an implicit GEMM), and on some CPUs faster
# than torch.mm: on an AMD EPYC with AVX-512 BF16, 3x3 convolutions at ResNet-18's shapes ran
# 0.97-0.98 bf16 TFLOP/s against torch.mm's best of 0.77-0.86, and on an Intel Xeon with AMX
# layer1's and layer2's at 132-137% of torch.mm's best. The peak is the best of both, so a
# fraction of it is never flattered by a slow reference kernel.
PEAK_CONVOLUTIONS = ((256, 64, 16), (256, 128, 8), (256, 256, 4))  # (batch, channels, side): 3x3, stride 1


def matmul_peak(dtype: torch.dtype, sizes=(1024, 2048, 4096), convolutions=PEAK_CONVOLUTIONS,
                min_flop: float = 2e10) -> tuple[float, str]:
    """The machine's own matrix-multiply peak in ``dtype`` on torch's current threads: the best
    FLOP/s over square torch.mm products of ``sizes`` and oneDNN's 3x3 ``convolutions`` (channels_last),
    each timed over at least ``min_flop`` FLOPs. Returns (FLOP/s, what reached it)."""
    candidates = []
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        candidates.append((lambda a=a, b=b: torch.mm(a, b), 2 * n ** 3, f"torch.mm {n}x{n}"))
    for batch, channels, side in convolutions:
        x = torch.randn(batch, channels, side, side).to(dtype).to(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3).to(dtype).to(memory_format=torch.channels_last)
        candidates.append((lambda x=x, w=w: F.conv2d(x, w, padding=1), 2 * batch * side * side * channels * channels * 9,
                           f"3x3 convolution {channels}->{channels} at {side}x{side}, batch {batch}"))
    best = (0.0, "")
    for fn, flop, what in candidates:
        reps = max(1, round(min_flop / flop))
        seconds = best_seconds(lambda: [fn() for _ in range(reps)], repeats=3, warmup=1)
        best = max(best, (flop * reps / seconds, what))
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
