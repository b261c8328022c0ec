"""Progress of the long steps, on stderr: a tqdm bar on a terminal, occasional plain lines elsewhere.

`dvc queue logs`, CI logs and files get no wall of carriage returns: where stderr is not a
terminal a step prints one line at every tenth of its work (none for a step with nothing to do).
The training loops keep their own main.py-style lines and add an ETA at each epoch end
(``eta_line``), from the mean time of the epochs this process trained.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

Item = TypeVar("Item")
STEPS = 10  # plain lines per step (one per tenth)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts work done out of ``total``; shows a bar (terminal) or prints a line per tenth."""

    def __init__(self, total: int, what: str, unit: str = "", stream=None):
        self.total, self.what, self.unit = total, what, unit
        self.stream = stream or sys.stderr
        self.done, self.start, self.shown = 0, time.perf_counter(), 0
        self.bar = None
        if total > 0 and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=f" {unit}" if unit else "it", file=self.stream,
                            dynamic_ncols=True)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        if self.total <= 0:
            return
        tenth = min(STEPS, self.done * STEPS // self.total)
        if tenth > self.shown:
            self.shown = tenth
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"{self.what}: {self.done:,}/{self.total:,}{' ' + self.unit if self.unit else ''} "
                  f"({100 * self.done // self.total}%, {duration(elapsed)}"
                  + (f", ETA {duration(eta)})" if self.done < self.total else ")"), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress(items: Iterable[Item], what: str, unit: str = "", total: int | None = None) -> Iterator[Item]:
    """``items``, counted as they are taken (``total`` where ``items`` has no len)."""
    counter = Progress(len(items) if total is None else total, what, unit)
    try:
        for item in items:
            yield item
            counter.update()
    finally:
        counter.close()


def eta_line(epoch: int, epochs: int, seconds: list[float]) -> str:
    """After ``epoch`` of ``epochs``: how long it took and, from the mean of ``seconds`` (the epochs
    this process trained), when the rest will be done."""
    left = epochs - epoch
    mean = sum(seconds) / len(seconds)
    return (f"epoch {epoch}/{epochs} took {duration(seconds[-1])}"
            + (f"; ETA {duration(mean * left)} ({left} epoch{'s' if left != 1 else ''} left at "
               f"{mean:.1f} s per epoch)" if left > 0 else ""))
