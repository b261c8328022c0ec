"""benchmarks/gpu_check.py in its CPU mode: the same steps, on the real stage scripts, as on a GPU,
so the check cannot rot between the days a GPU is lent - and its own machinery (budget, caps,
stopping what a step started) on real processes."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, env

CHECK = REPO / "benchmarks" / "gpu_check.py"
ORDER = ["environment", "dataset", "train_64", "train_224", "reference_64", "checkpoint_cpu", "host_syncs",
         "two_processes", "compile_64", "deterministic_64"]
RUNS = ("train_64", "train_224", "two_processes", "deterministic_64")


def run_check(tmp_path: Path, *args: str, environment: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "check.json"
    result = subprocess.run([sys.executable, str(CHECK), "--device", "cpu", "--out", str(out),
                             "--work", "work", *args], cwd=tmp_path, env=environment or env(),
                            capture_output=True, text=True, timeout=1500)
    return result, json.loads(out.read_text())


def gone(pid: int) -> bool:
    """Not running (a zombie waiting for its reaper holds nothing: count it as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def without_dvclive(tmp_path: Path) -> dict:
    """The lent machine's image: torch, but no dvclive (an import of it fails, as there)."""
    shim = tmp_path / "no_dvclive" / "dvclive"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'dvclive'\", name='dvclive')\n")
    return {**env(), "PYTHONPATH": str(shim.parent)}


def test_cpu_mode_passes_every_step(tmp_path: Path):
    result, report = run_check(tmp_path, "--budget", "1200", environment=without_dvclive(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and report["passed"] and report["complete"], output
    steps = report["steps"]
    # Most important figures first: one process at 64 and 224px, the reference, then the rest.
    assert list(steps) == ORDER
    assert {name: s["status"] for name, s in steps.items()} == {
        **{name: "passed" for name in ORDER}, "host_syncs": "skipped", "compile_64": "skipped"}, output
    assert steps["compile_64"]["cuda_graphs"] == "not applicable (CPU mode)"
    # Every figure carries what it was measured with; this image has no dvclive, and nothing needed it.
    assert steps["environment"]["dvclive"].startswith("absent")
    for name in ORDER:
        if steps[name]["status"] == "passed" and name != "environment":
            assert steps[name]["versions"]["torch"] == steps["environment"]["torch"]
            assert steps[name]["versions"]["dvclive"] == "absent"
    run_dir = Path(steps["train_64"]["run_dir"])
    assert not (run_dir / "dvclive").exists() and any((run_dir / "tensorboard").iterdir())
    # What dvc repro runs: params.yaml's print_freq (every log line waits for a GPU).
    print_freq = yaml.safe_load((REPO / "params.yaml").read_text())["resnet"]["print_freq"]
    for name in RUNS:
        run = steps[name]
        assert run["print_freq"] == print_freq
        assert run["images_per_second"] > 0 and 0 <= run["data_wait_fraction"] < 1
        assert run["projected_20_epochs_s"] >= sum(run["epoch_seconds"]) > 0
    # Two processes against one: runs of the same length, every epoch compared.
    two = steps["two_processes"]
    assert two["epochs"] == steps["train_64"]["epochs"] and two["one_process_train_loss"] == steps["train_64"]["train_loss"]
    assert two["backend"] == "auto" and max(two["relative_loss_difference"]) < 0.01
    # NCCL refused (the GPU hidden): the record keeps the workers' reason, not torchrun's summary of it.
    probe = two["nccl_probe"]
    assert "ProcessGroupNCCL" in probe and "no GPUs found" in probe, probe
    assert "ChildFailedError" not in probe and "To enable traceback" not in probe, probe
    checkpoint = steps["checkpoint_cpu"]
    assert checkpoint["plain_load_with_gpu_hidden"] == "cpu tensors"
    assert checkpoint["acc1_cpu"] == checkpoint["acc1_training"]
    assert steps["reference_64"]["ratio"] > 0
    deterministic = steps["deterministic_64"]
    assert deterministic["deterministic"] and deterministic["tensors_differing"] == 0
    assert deterministic["train_loss"] == deterministic["second_run_train_loss"]
    # On the CPU every kernel is deterministic already: the same numbers as the default kernels.
    assert deterministic["train_loss"] == steps["train_64"]["train_loss"][:deterministic["epochs"]]
    assert deterministic["speed_ratio_to_default"] > 0
    assert set(report["goals"]) == {"projected_20_epochs_224_s", "projected_20_epochs_64_s", "ratio_to_reference_64",
                                    "data_wait_fraction_64"}
    table = report["table_markdown"]
    assert "| train_resnet 224px |" in table and "ImageNet example's recipe" in table
    assert f"torch {steps['environment']['torch']}" in table and f"print_freq {print_freq}" in table
    assert "PASSED: " in result.stdout


def test_a_run_out_of_time_skips_rather_than_fails(tmp_path: Path):
    result, report = run_check(tmp_path, "--budget", "0.5")
    steps = report["steps"]
    assert result.returncode == 3 and report["passed"] and not report["complete"], result.stdout + result.stderr
    assert steps["environment"]["status"] == "passed"  # the facts are always recorded
    assert steps["dataset"] == {"status": "skipped", "cause": "budget", "why": steps["dataset"]["why"]}
    assert "not enough of the --budget left" in steps["dataset"]["why"]
    assert steps["train_64"] == {"status": "skipped", "cause": "budget", "why": "needs dataset, which was skipped"}
    assert steps["deterministic_64"]["why"] == "needs train_64, which was skipped"
    assert report["skipped_for_budget"] == [n for n in ORDER if n not in ("environment", "host_syncs", "compile_64")]
    assert "INCOMPLETE" in result.stdout


def test_a_step_that_cannot_start_is_skipped_and_the_rest_go_on(tmp_path: Path):
    # A simulated shortfall: train_224 and two_processes need more than the whole budget. They are
    # skipped, not failed, and the steps around them still run.
    result, report = run_check(tmp_path, "--minimum", "train_224=5000,two_processes=5000",
                               "--skip", "reference_64,checkpoint_cpu,deterministic_64")
    steps = report["steps"]
    assert result.returncode == 3 and report["passed"] and not report["complete"], result.stdout + result.stderr
    assert list(steps) == ORDER
    assert {name: s["status"] for name, s in steps.items()} == {
        "environment": "passed", "dataset": "passed", "train_64": "passed", "train_224": "skipped",
        "reference_64": "skipped", "checkpoint_cpu": "skipped", "host_syncs": "skipped", "two_processes": "skipped",
        "compile_64": "skipped", "deterministic_64": "skipped"}
    assert report["skipped_for_budget"] == ["train_224", "two_processes"]
    assert "it needs 5000 s" in steps["train_224"]["why"] and steps["reference_64"]["cause"] == "--skip"


def test_a_stalled_step_is_stopped_at_its_cap(tmp_path: Path):
    """An in-process step that hangs (as a DataLoader can) and ignores SIGTERM, with a process it
    started in a session of its own: the cap holds, nothing is left running, the check reports."""
    tic = time.monotonic()
    result, report = run_check(tmp_path, "--stall", "dataset", "--cap", "dataset=8")
    steps = report["steps"]
    assert result.returncode == 1 and not report["passed"], result.stdout + result.stderr
    assert steps["dataset"]["status"] == "failed" and steps["dataset"]["seconds"] < 8 + 10 + 10
    assert "still running after 8 s; stopped" in steps["dataset"]["why"], steps["dataset"]
    assert "none is left" in steps["dataset"]["why"]
    assert steps["train_64"] == {"status": "not run", "why": "needs dataset, which did not pass"}
    pids = [int(p) for p in (tmp_path / "work" / "stalled.pids").read_text().split()]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)
    assert time.monotonic() - tic < 200


WORKER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # deaf to torchrun's shutdown, and to its death
signal.signal(signal.SIGHUP, signal.SIG_IGN)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()} {os.getsid(0)} {os.getsid(os.getppid())}")
time.sleep(3600)
"""


def load_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", CHECK)
    module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # (its dataclasses look it up)
    spec.loader.exec_module(module)
    return module


def test_a_timed_out_torchrun_leaves_no_worker(tmp_path: Path):
    """torchrun starts each worker in a session of its own: killing torchrun's process group leaves
    the workers running (on the GPU, through every later step). The check's stop finds them."""
    gpu_check = load_check_module()
    (tmp_path / "worker.py").write_text(WORKER)
    started = tmp_path / "worker.pid"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               str(tmp_path / "worker.py"), str(started)]
    with pytest.raises(gpu_check.StepStopped) as stopped:
        gpu_check.run_logged(command, tmp_path / "torchrun.log", timeout=15, grace=3)
    assert started.exists(), (tmp_path / "torchrun.log").read_text()
    pid, session, torchrun_session = map(int, started.read_text().split())
    assert session != torchrun_session  # the worker did live in a session of its own
    assert gone(pid), f"worker {pid} outlived the timeout"
    assert "killed (SIGKILL); none is left" in str(stopped.value)
    mine = f"{gpu_check.MARKER}={os.getpid()}-".encode()  # this test's runs (other checks may be running)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and not gone(int(p)) and mine in environ(p)]


def environ(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""
