"""Processes and devices: the process group torchrun set up, each process's device, the precision
it computes in, and what hardware that is (for the run summary).

One process per GPU is the normal case (NCCL). Several processes may share one GPU - the GPU check
does this to exercise the multi-process path on a one-GPU machine - but NCCL refuses two ranks on
one device, so ``resnet.launch.backend: gloo`` (gloo reduces CUDA tensors through host memory:
slow, but the same code path) is the override.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dlreport.errors import PipelineError

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None   # None: a single process, no process group

    @property
    def main(self) -> bool:
        return self.rank == 0


def usable_cores() -> int:
    """The cores this process may run on (taskset, cgroup cpusets), not all the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def keep_freed_memory(keep: bool = True) -> bool:
    """Make glibc's malloc keep the memory a training step frees for the next step, instead of
    handing each large block back to the kernel (mmap/munmap) and faulting in fresh zeroed pages
    when it is asked again. A bf16 ResNet-18 step of 256 at 64px frees and re-asks ~200 MB this
    way: on the 2-core AMX Xeon it took 45,000 page faults a step, and this cuts them to ~2,000
    ([speed](docs/speed.md)). Allocation only: the numbers computed are the same.
    ``keep=False`` puts glibc's default settings back (the benchmarks' reference runs with them).
    Returns whether it applied (False off glibc)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library this process runs on
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # <malloc.h>
    settings = ({M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2 ** 31 - 1, M_TOP_PAD: 64 << 20} if keep else
                {M_MMAP_MAX: 65536, M_TRIM_THRESHOLD: 128 << 10, M_TOP_PAD: 128 << 10})
    return all([mallopt(option, value) for option, value in settings.items()])


def choose_backend(requested: str, use_cuda: bool) -> str:
    """The process group's backend for ``resnet.launch.backend`` (auto, nccl or gloo: params.py)."""
    if requested == "auto":
        return "nccl" if use_cuda else "gloo"
    if requested == "nccl" and not use_cuda:
        raise PipelineError("resnet.launch.backend=nccl needs GPUs; CPU processes use gloo (or auto).")
    return requested


def init_distributed(use_cuda: bool, backend: str = "auto") -> Dist:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if use_cuda:
        # More processes than GPUs on a node share them round-robin (see the module docstring).
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        keep_freed_memory()
        # Share the cores between the processes on this node instead of oversubscribing them.
        torch.set_num_threads(max(1, usable_cores() // local_world))
    chosen = None
    if world > 1:
        chosen = choose_backend(backend, use_cuda)
        if not dist.is_initialized():
            dist.init_process_group(chosen, device_id=device if chosen == "nccl" else None)
    return Dist(rank, world, local_rank, device, chosen)


def all_reduce_sum(values: torch.Tensor, ctx: Dist) -> list[float]:
    """Sum ``values`` over all processes and read them on the host (the one sync it costs)."""
    values = values.detach().to(torch.float64)
    if ctx.world > 1:
        # NCCL reduces on the device; gloo is given host tensors (its CPU path is the robust one).
        values = values.to(ctx.device) if ctx.backend == "nccl" else values.cpu()
        dist.all_reduce(values)
    return values.tolist()


def gpus_used(ctx: Dist) -> int:
    """Distinct GPUs the run used (processes sharing a GPU count it once)."""
    if ctx.device.type != "cuda":
        return 0
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    nodes = max(1, ctx.world // local_world)
    return min(local_world, torch.cuda.device_count()) * nodes


def configure_kernels(deterministic: bool, use_cuda: bool) -> None:
    """Which kernels this process may pick: the fastest (cuDNN times its algorithms once, for the
    fixed shapes of training) or, with ``resnet.deterministic``, only deterministic ones.

    On the CPU every kernel of the loop is deterministic already (a rerun gives bit-identical
    weights). On GPUs the fastest choice is not: cuDNN's benchmark may pick other algorithms on
    another run, and some of them (and cuBLAS with several workspaces) accumulate in a varying
    order. Deterministic mode turns off the benchmark, makes cuDNN choose deterministic
    algorithms, gives cuBLAS a fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS starts:
    call this before the first GPU operation) and makes torch raise on any op that has no
    deterministic implementation. benchmarks/gpu_check.py measures its cost."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # benchmark: fixed shapes, so cuDNN times its algorithms once and keeps the fastest
    torch.backends.cudnn.benchmark = use_cuda and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # (setting it imports Inductor's config)
        torch.use_deterministic_algorithms(deterministic)


# --------------------------------------------------------------------------------------
# Precision and hardware
# --------------------------------------------------------------------------------------
def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware runs it fast (CUDA, or CPUs with native bf16); else fp32 (None)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On CPUs without native bf16 (AVX2 only) autocast is ~10x slower than fp32 (measured: 7 vs
    # 86 img/s for this ResNet-18 at 64px on a 2-core AVX2 EPYC), so use it only where supported.
    return torch.bfloat16 if cpu_has_native_bf16() else None


def precision_name(amp: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def gpu_names() -> list[str]:
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def hardware(device: torch.device, amp: torch.dtype | None) -> dict:
    """What a run's numbers depend on beyond its params: the precision actually used and the
    CPU's instruction set (oneDNN picks its kernels by it, so fp32 results differ in the last
    bits across CPUs, and bf16 is fast only with native support)."""
    return {"device": device_name(device), "precision": precision_name(amp),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": cpu_has_native_bf16()}
