"""GPU leases between real processes on a simulated host (DLREPORT_GPU_COUNT): distinct GPUs for
runs started together, a kill -9 frees its lease for a waiting run, CUDA_VISIBLE_DEVICES is
respected, and the stage waits for, takes and names its lease."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, STAGES, deep_update, env, read_params
from dlreport import gpulease
from dlreport.errors import PipelineError

# One run: lease N GPUs (polling fast), say which, and hold them until killed or told to stop.
HOLDER = f"""
import os, sys, time
sys.path.insert(0, {str(REPO)!r})
from dlreport.gpulease import leased_gpus
with leased_gpus(int(sys.argv[1]), poll_seconds=0.05) as lease:
    print("leased", os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.02)
"""


def lease_env(tmp_path: Path, count: int, visible: str | None = None) -> dict:
    e = env()
    e[gpulease.COUNT_VARIABLE] = str(count)
    e["XDG_RUNTIME_DIR"] = str(tmp_path)  # this test's own lock files
    e.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        e["CUDA_VISIBLE_DEVICES"] = visible
    return e


def start(tmp_path: Path, gpus: int, environment: dict) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(gpus), str(tmp_path / "stop")], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return read_lines(process)


def read_lines(process: subprocess.Popen) -> subprocess.Popen:
    """The process, its output lines queued as they come (so a test can wait for one with a limit)."""
    process.lines = queue.Queue()
    process.reader = threading.Thread(target=lambda: [process.lines.put(line) for line in process.stdout],
                                      daemon=True)
    process.reader.start()
    return process


def rest_of_output(process: subprocess.Popen, timeout: float = 120) -> str:
    process.wait(timeout=timeout)
    process.reader.join(timeout=timeout)
    return "".join(process.lines.get() for _ in range(process.lines.qsize()))


def first_line(process: subprocess.Popen, timeout: float = 30) -> str:
    """The process's next line of output (a line within ``timeout`` seconds, or the test fails)."""
    try:
        line = process.lines.get(timeout=timeout)
    except queue.Empty:
        line = ""
    assert line, f"no line within {timeout} s (exit status {process.poll()})"
    return line.strip()


def leased(line: str) -> list[str]:
    assert line.startswith("leased "), line
    return line.split()[1].split(",")


def test_competing_runs_get_distinct_gpus_and_a_killed_one_frees_its_lease(tmp_path: Path):
    environment = lease_env(tmp_path, 8)
    holders = [start(tmp_path, 2, environment) for _ in range(4)]
    try:
        held = [leased(first_line(p)) for p in holders]
        assert sorted(g for gpus in held for g in gpus) == [str(i) for i in range(8)], held
        waiting = start(tmp_path, 1, environment)
        assert first_line(waiting) == "waiting for 1 free GPU: 8 leased by 4 runs"
        time.sleep(0.3)
        assert waiting.poll() is None  # still waiting: every GPU is leased
        holders[1].send_signal(signal.SIGKILL)  # no cleanup runs; the kernel drops its locks
        holders[1].wait()
        assert first_line(waiting) == f"=> leased GPU(s) {held[1][0]}"
        assert leased(first_line(waiting)) == [held[1][0]]
        holders.append(waiting)
    finally:
        (tmp_path / "stop").touch()
        for p in holders:
            p.wait(timeout=30)


def test_a_lease_is_taken_among_cuda_visible_devices(tmp_path: Path):
    environment = lease_env(tmp_path, 8, visible="3,5")
    first, second = start(tmp_path, 1, environment), start(tmp_path, 1, environment)
    try:
        assert sorted(leased(first_line(first)) + leased(first_line(second))) == ["3", "5"]
    finally:
        (tmp_path / "stop").touch()
        first.wait(timeout=30), second.wait(timeout=30)


def test_more_gpus_than_visible_is_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(PipelineError, match=r"a run needs 3 GPU\(s\) but CUDA_VISIBLE_DEVICES='0,1' names 2; lower"):
        gpulease.try_lease(3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv(gpulease.COUNT_VARIABLE, "eight")
    with pytest.raises(PipelineError, match="DLREPORT_GPU_COUNT='eight' in the environment is not a number"):
        gpulease.try_lease(1)


def test_the_stage_waits_for_a_free_gpu_and_names_its_lease(tmp_path: Path):
    """train_resnet@gpu1 on a simulated 1-GPU host whose GPU another run holds: it says it waits,
    takes the GPU when that run is killed, and says which it leased (then, on a host without CUDA,
    stops with the stage's error)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(deep_update(read_params(REPO / "params.yaml"), {"devices": 1})))
    environment = lease_env(tmp_path, 1)
    holder = start(tmp_path, 1, environment)
    assert leased(first_line(holder)) == ["0"]
    stage = read_lines(subprocess.Popen([sys.executable, str(STAGES / "train_resnet.py"), "--variant", "gpu1",
                                         "--prepared", "absent"], cwd=root, env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        assert first_line(stage, timeout=120) == "waiting for 1 free GPU: 1 leased by 1 run"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        rest = rest_of_output(stage)
    finally:
        stage.kill()
    assert "=> train_resnet@gpu1 leased GPU(s) 0 (CUDA_VISIBLE_DEVICES)" in rest, rest
    assert stage.returncode == 1 and "Traceback" not in rest, rest
