"""What a run shows and records: main.py's meters and the per-epoch DVCLive + TensorBoard logs.

A GPU runs ahead of the host only if the host never waits for it, so the meters here never read
a device value per step: loss and top-k counts are summed on the device and step times are CUDA
events, all read when a log line is printed (every print_freq steps) or the epoch ends.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from dlreport.fileio import atomic_dir

EPOCH_METRICS = ("train/loss", "train/acc1", "train/acc5", "val/loss", "val/acc1", "val/acc5",
                 "lr", "epoch_seconds", "images_per_second", "data_wait_fraction")


class AverageMeter:
    def __init__(self, fmt: str = ":.3f"):
        self.fmt, self.val, self.sum, self.count = fmt, 0.0, 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.val, self.sum, self.count = val, self.sum + val * n, self.count + n

    @property
    def avg(self) -> float:
        return self.sum / max(1, self.count)

    def __str__(self) -> str:
        return ("{val" + self.fmt + "} ({avg" + self.fmt + "})").format(val=self.val, avg=self.avg)


class DeviceMeters:
    """AverageMeters whose per-batch values stay on the device until read.

    ``update(values, n)`` takes a 1-d tensor (one value per meter) and the batch size (a host
    int); ``read()`` copies the last values and the sums to the host in one transfer."""

    def __init__(self, fmts: list[str], device: torch.device):
        self.fmts = fmts
        self.last = torch.zeros(len(fmts), dtype=torch.float64, device=device)
        self.sums = torch.zeros(len(fmts), dtype=torch.float64, device=device)
        self.count = 0

    def update(self, values: torch.Tensor, n: int) -> None:
        self.last = values.detach().to(torch.float64)
        self.sums += self.last * n
        self.count += n

    def read(self) -> list[AverageMeter]:
        values = torch.cat([self.last, self.sums]).tolist()
        meters = []
        for i, fmt in enumerate(self.fmts):
            meter = AverageMeter(fmt)
            meter.val, meter.sum, meter.count = values[i], values[len(self.fmts) + i], self.count
            meters.append(meter)
        return meters


class StepTimer:
    """main.py's Time and Data meters, from marks that do not make the host wait for the device.

    On a CPU a mark is the host clock. On a GPU it is a CUDA event recorded in the stream, so the
    times are the device's own: how long each step took there, and how long the device spent
    between finishing one step and having the next batch ready (the data wait)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.batch_time, self.data_time = AverageMeter(), AverageMeter()
        self.data_seconds = 0.0
        self.pending: list[tuple] = []
        self.end = self.ready = self._mark()

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _seconds(self, start, stop) -> float:
        return start.elapsed_time(stop) / 1000 if self.cuda else stop - start

    def data_ready(self) -> None:
        self.ready = self._mark()

    def step_done(self) -> None:
        stop = self._mark()
        self.pending.append((self.end, self.ready, stop))
        self.end = self.ready = stop

    def read(self) -> None:
        """Bring the meters up to date (on a GPU this waits for the steps marked so far)."""
        if self.cuda and self.pending:
            self.pending[-1][2].synchronize()  # the last mark done: all earlier ones are too
        for start, ready, stop in self.pending:
            data = self._seconds(start, ready)
            self.data_time.update(data)
            self.data_seconds += data
            self.batch_time.update(self._seconds(start, stop))
        self.pending.clear()


class RunLogger:
    """Per-epoch scalars to DVCLive (``<run>/dvclive``) and TensorBoard (``<run>/tensorboard``).

    Both logs are rebuilt in fresh folders from the run's stored metrics history every time a run
    starts or resumes, so they hold exactly one row per completed epoch however the previous run
    ended, and no file a previous run wrote (which DVC's cache may share by a link) is appended to.
    """

    def __init__(self, run_dir: Path, history: list[dict], say=print):
        for name in ("dvclive", "tensorboard"):
            shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
        # Both are optional here: a bare machine (the GPU check's) may hold torch but not
        # requirements.txt. Training, checkpoints and the summary need neither.
        try:
            from dvclive import Live
        except ImportError:
            self.live = None
            say(f"=> dvclive is not installed: no DVCLive logs in {Path(run_dir) / 'dvclive'} "
                f"(pip install -r requirements.txt for dvc plots)")
        else:
            self.live = Live(str(Path(run_dir) / "dvclive"), dvcyaml=False, save_dvc_exp=False, report=None)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.tb = None
            say("=> tensorboard is not installed: no TensorBoard logs (pip install -r requirements.txt)")
        else:
            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        for metrics in history:
            self.log(metrics)

    def log(self, metrics: dict) -> None:
        epoch = int(metrics["epoch"])
        if self.tb:
            for name in EPOCH_METRICS:
                self.tb.add_scalar(name, metrics[name], epoch)
            self.tb.flush()
        if self.live:
            self.live.step = epoch
            for name in EPOCH_METRICS:
                self.live.log_metric(name, metrics[name])
            self.live.log_metric("epoch", epoch, plot=False)
            self.live.make_summary()

    def close(self) -> None:
        if self.live:
            self.live.end()
        if self.tb:
            self.tb.close()


def write_empty_curves(run_dir: Path) -> None:
    """A skipped variant's DVCLive curves: the files a trained run writes, headers only.

    dvc.yaml overlays every variant's curves in one plot; with no rows for a skipped variant,
    `dvc plots show` draws no line for it instead of warning that it failed to load some plots.
    (A later training run rebuilds the logs from its checkpoints.)
    """
    with atomic_dir(run_dir / "dvclive") as live:
        for name in EPOCH_METRICS:
            path = live / "plots" / "metrics" / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"step\t{name.rsplit('/', 1)[-1]}\n")
