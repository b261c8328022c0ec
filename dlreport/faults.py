"""Faults a long run meets - a full disk, a stop signal - turned into one clear line, losing nothing.

* **Writes** (``writing``): an OSError of a full disk, a quota, a read-only or unwritable folder
  becomes a ``DiskError`` naming the file, what it was writing and its size, the space free
  there and what to do. torch.save reports a full disk as a RuntimeError whose context is the
  OSError; that is unwrapped too. The atomic writers (``fileio``, ``checkpoints.save_atomic``)
  remove their temporary before the error leaves them, so what was written before stays whole.
* **Stop signals** (``handle_stop_signals``): SIGINT (Ctrl-C, ``dvc queue kill``) and SIGTERM (a
  batch scheduler's preemption) raise ``Stopped`` in the main thread, which unwinds through the
  same cleanup as an error; the stage exits 130 or 143 with one line. Until a stage's main
  function runs (while Python imports torch) nothing has been written, so a signal then just
  ends the process with that line.
* **Before a long stage** (``ensure_space``): what it will write against the space free.

A training loop adds where it was (``Fault.add``): "during epoch 6 of 20; epochs 1-5 are saved".
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Iterator

from dlreport.errors import PipelineError

# What each errno means to the user, and what to do about it.
_NO_ROOM = "free space there (or move the project, or its DVC cache, to a bigger disk) and re-run"
_NO_WRITE = "make the folder writable (or run in a writable copy of the project) and re-run"
DISK_ERRORS = {
    errno.ENOSPC: ("no space left on the device", _NO_ROOM),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within the quota (or ask for a larger one) and re-run"),
    errno.EFBIG: ("the file is larger than the file system allows", "move the project to another disk and re-run"),
    errno.EROFS: ("the file system is read-only", _NO_WRITE),
    errno.EACCES: ("permission denied", _NO_WRITE),
    errno.EPERM: ("operation not permitted", _NO_WRITE),
}
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as a shell reports it


def size_text(size: float) -> str:
    """``512 B``, ``38 kB``, ``67 MB``, ``1.20 GB`` (decimal units, as df -H shows)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}" if unit == "GB" else f"{size / scale:.0f} {unit}"
    return f"{size:.0f} B"


def free_bytes(path: str | os.PathLike) -> int | None:
    """The space free to this user on the file system that holds ``path`` (or would hold it)."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(folder).free
            return None
    return None


class Fault(PipelineError):
    """A fault with a place in the run; ``add`` appends where the run was when it happened."""

    def add(self, where: str) -> Fault:
        self.args = (f"{self.args[0]} ({where})" if self.args else where,)
        return self


class DiskError(Fault):
    """A write failed for lack of space or permission."""


class DamagedCheckpoint(Fault):
    """A checkpoint that cannot be loaded (its line says how to get it back)."""


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: no ``except Exception``
    swallows it, and every ``finally`` and atomic writer cleans up on the way out)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.where = ""
        self.said = False  # the line is said already (by the rank-0 worker of a torchrun launch)

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(self.signum, 128 + self.signum)

    def add(self, where: str) -> Stopped:
        self.where = where
        return self

    def line(self, stage: str) -> str:
        return (f"error: {stage} interrupted by {signal.Signals(self.signum).name}"
                + (f" {self.where}" if self.where else "; nothing it wrote is half-done; re-run it to redo it"))


def disk_error(error: BaseException, path: str | os.PathLike | None = None, what: str = "",
               size: int | None = None) -> DiskError | None:
    """The DiskError for ``error`` (an OSError, or torch's RuntimeError around one) while writing
    ``path``; None when it is not a disk or permission fault."""
    cause = error
    while cause is not None and not isinstance(cause, OSError):
        # (a context the code dropped on purpose, `raise ... from None`, is not the cause)
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    if cause is None or cause.errno not in DISK_ERRORS:
        return None
    reason, fix = DISK_ERRORS[cause.errno]
    where = Path(cause.filename or path or os.getcwd())
    free = free_bytes(where)
    verb = "cannot open" if cause.errno in (errno.EACCES, errno.EPERM) else "cannot write"
    wrote = f"{verb} {what}" if what else verb
    if size:
        wrote += f" ({size_text(size)})"
    room = f"; {size_text(free)} free there" if free is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return DiskError(f"{where}: {wrote}: {reason}{room}. {fix[0].upper()}{fix[1:]}; what earlier runs finished is "
                     f"kept, and no temporary file is left")


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "", size: int | None = None) -> Iterator[None]:
    """Turn a disk or permission fault inside the block into a DiskError about ``path``."""
    try:
        yield
    except PipelineError:  # (a DiskError already, or an error of the stage's own, which says what it is)
        raise
    except (OSError, RuntimeError) as error:
        fault = disk_error(error, path, what, size)
        if fault is None:
            raise
        raise fault from None


def where_stopped(epoch: int, saved: int, epochs: int, folder: str | os.PathLike, run: str = "") -> str:
    """Where a training run was when a fault or signal stopped it, for ``Fault.add`` and ``Stopped.add``:
    "during epoch 6 of 20[ of <run>]; epochs 1-5 are saved in <folder>; re-run to resume from epoch 6"."""
    epoch = max(epoch, saved + 1)  # (stopped between an epoch's end and the next one's start: that next one)
    if saved >= epochs:
        return f"{run and run + ' '}after its last epoch; all {epochs} epochs are saved in {folder}; re-run to finish"
    if not saved:
        return f"during epoch {epoch} of {epochs}{run and ' of ' + run}; no epoch is saved yet; re-run to start again"
    kept = f"epochs 1-{saved} are saved" if saved > 1 else "epoch 1 is saved"
    return f"during epoch {epoch} of {epochs}{run and ' of ' + run}; {kept} in {folder}; re-run to resume from epoch {saved + 1}"


def ensure_space(folder: str | os.PathLike, need: int, what: str,
                 fix: str = "free space (or move the project to a bigger disk) and re-run") -> None:
    """Stop before a long stage starts when ``folder``'s file system has less free than ``need``."""
    free = free_bytes(folder)
    if free is not None and free < need:
        raise DiskError(f"{folder}: {what} needs about {size_text(need)}, but only {size_text(free)} are free "
                        f"there; {fix}. Nothing was written")


# --------------------------------------------------------------------------------------
# Stop signals
# --------------------------------------------------------------------------------------
def _exit_at_once(signum, frame) -> None:
    """Before the stage's work starts: nothing to clean up, so end with the line now."""
    stopped = Stopped(signum)
    print(stopped.line(stage_name()), file=sys.stderr, flush=True)
    os._exit(stopped.exit_status)


def _raise_stopped(signum, frame) -> None:
    # A second signal during the cleanup the first one started is ignored: the cleanup removes
    # temporaries and must finish (kill -9 still ends everything; the next run removes leftovers).
    for each in EXIT_STATUS:
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


def handle_stop_signals(started: bool) -> dict:
    """``started`` False: a signal ends the process at once (nothing written yet); True: it raises
    Stopped where the main thread is, to unwind through the cleanup. Returns the handlers before."""
    return {signum: signal.signal(signum, _raise_stopped if started else _exit_at_once) for signum in EXIT_STATUS}


def restore_signals(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def stage_name() -> str:
    """The stage as DVC names it (DVC_STAGE, set by dvc repro), else the script's name."""
    return os.environ.get("DVC_STAGE") or Path(sys.argv[0]).stem
