"""dlreport/progress.py: a tqdm bar on a terminal, a plain line per tenth elsewhere, epoch ETAs."""
from __future__ import annotations

import io

from dlreport.progress import Progress, duration, eta_line, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_log_gets_ten_lines():
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        counter = Progress(25, "decoding", "images", stream=stream)
        for _ in range(25):
            counter.update()
        counter.close()
    assert "\r" in terminal.getvalue() and "25/25" in terminal.getvalue()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 10
    assert lines[0].startswith("decoding: 3/25 images (12%, 0 s, ETA ") and lines[-1] == "decoding: 25/25 images (100%, 0 s)"


def test_nothing_to_do_prints_nothing(capsys):
    assert list(progress([], "generating text", "words")) == []
    assert capsys.readouterr().err == ""


def test_durations_and_the_epoch_eta():
    assert [duration(s) for s in (0.4, 42, 185, 7620)] == ["0 s", "42 s", "3 min 05 s", "2 h 07 min"]
    assert eta_line(3, 20, [40.0, 42.0, 41.0]) == "epoch 3/20 took 41 s; ETA 11 min 37 s (17 epochs left at 41.0 s per epoch)"
    assert eta_line(20, 20, [41.0]) == "epoch 20/20 took 41 s"
