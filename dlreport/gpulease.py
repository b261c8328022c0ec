"""GPU leases: a run that needs N GPUs takes N free GPUs of the host for as long as it runs.

`dvc queue start -j 8` starts up to eight queued experiments at once, and each would otherwise
put its workers on GPUs 0..N-1. A lease is one ``fcntl.flock`` lock per GPU, on a file in a
per-user runtime folder (``$XDG_RUNTIME_DIR/dlreport-gpus``, else ``/tmp/dlreport-gpus-<uid>``).
The kernel holds the lock for the open file, so it is released when the holding process ends,
however it ends (kill -9 included): a lease can never be left behind. While too few GPUs are free
the run prints one line saying so and polls until enough are.

Which GPUs: those ``CUDA_VISIBLE_DEVICES`` names when it is set (a lease is taken among them, and
its lock is that physical GPU's, so runs given different sets still coordinate), else
``0..count-1`` with count from ``torch.cuda.device_count()`` - or from ``DLREPORT_GPU_COUNT``,
which stands in for the host's GPUs (tests use it to lease on a CPU-only host).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import re
import time
from pathlib import Path
from typing import Iterator

from dlreport.errors import PipelineError

COUNT_VARIABLE = "DLREPORT_GPU_COUNT"


def lease_folder() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime) / "dlreport-gpus"
    return Path("/tmp") / f"dlreport-gpus-{os.getuid()}"


def host_gpu_count() -> int:
    """The host's GPUs: ``DLREPORT_GPU_COUNT`` if set, else what torch sees."""
    value = os.environ.get(COUNT_VARIABLE)
    if value is not None:
        if not value.strip().isdigit():
            raise PipelineError(f"{COUNT_VARIABLE}={value!r} in the environment is not a number of GPUs; "
                                f"set it to a whole number (e.g. {COUNT_VARIABLE}=8) or unset it.")
        return int(value)
    import torch  # only here: the lease itself needs no torch

    return torch.cuda.device_count()


def candidate_gpus() -> list[str]:
    """The GPUs a lease may take, as CUDA_VISIBLE_DEVICES would name them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [name.strip() for name in visible.split(",") if name.strip()]
        # CUDA ignores the list from the first invalid entry on ("-1" is the usual "no GPU").
        valid = []
        for name in names:
            if name.startswith("-"):
                break
            valid.append(name)
        return valid
    return [str(i) for i in range(host_gpu_count())]


def _lock_file(folder: Path, gpu: str) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"


class Lease:
    """The GPUs held (``gpus``) and the open lock files that hold them."""

    def __init__(self, gpus: list[str], handles: list[int]):
        self.gpus, self.handles = gpus, handles

    @property
    def visible_devices(self) -> str:
        return ",".join(self.gpus)

    def release(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(OSError):
                os.close(handle)
        self.handles = []


def _try_lock(path: Path) -> int | None:
    """The open, locked file, or None if another process holds it."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(handle)
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return handle


def _holder(path: Path) -> str:
    """Who holds a lock: the pid its holder wrote (best effort: only for the waiting line)."""
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def try_lease(count: int, folder: Path | None = None) -> tuple[Lease | None, list[str]]:
    """Take ``count`` free GPUs now, or none (a partial lease is given back at once, so two runs
    that each wait for more can never hold half of what the other needs). Returns the lease, or
    None and the holders of the GPUs that were not free."""
    folder = folder or lease_folder()
    gpus = candidate_gpus()
    if count > len(gpus):
        where = (f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} names {len(gpus)}"
                 if "CUDA_VISIBLE_DEVICES" in os.environ else f"this host has {len(gpus)}")
        raise PipelineError(f"a run needs {count} GPU(s) but {where}; lower the variant's gpus in params.yaml "
                            f"(resnet_runs.<variant>.gpus) or run it on a host with {count} GPUs.")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    taken, handles, holders = [], [], []
    for gpu in gpus:
        if len(taken) == count:
            break
        path = _lock_file(folder, gpu)
        handle = _try_lock(path)
        if handle is None:
            holders.append(_holder(path))
            continue
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        taken.append(gpu)
        handles.append(handle)
    lease = Lease(taken, handles)
    if len(taken) < count:
        lease.release()
        return None, holders
    return lease, holders


def waiting_line(count: int, holders: list[str]) -> str:
    runs = len(set(holders))
    return (f"waiting for {count} free GPU{'s' if count != 1 else ''}: {len(holders)} leased by "
            f"{runs} run{'s' if runs != 1 else ''}")


def acquire(count: int, poll_seconds: float = 2.0, log=print, folder: Path | None = None) -> Lease:
    """Wait until ``count`` GPUs are free, and lease them (a line whenever what it waits for changes)."""
    said = None
    while True:
        lease, holders = try_lease(count, folder)
        if lease is not None:
            if said is not None:
                log(f"=> leased GPU(s) {lease.visible_devices}")
            return lease
        line = waiting_line(count, holders)
        if line != said:
            log(line)
            said = line
        # jittered, so that two runs that collided on a partial lease do not collide again
        time.sleep(poll_seconds * random.uniform(0.5, 1.5))


@contextlib.contextmanager
def leased_gpus(count: int, poll_seconds: float = 2.0, log=print) -> Iterator[Lease]:
    """Hold ``count`` GPUs for the block, with CUDA_VISIBLE_DEVICES naming them (and restored after)."""
    lease = acquire(count, poll_seconds, log)
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = lease.visible_devices
    try:
        yield lease
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
        lease.release()
