"""benchmarks/gpu_check.py in its CPU mode: the same steps, on the real stage scripts, as on a GPU,
so the check cannot rot between the days a GPU is lent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, env

CHECK = REPO / "benchmarks" / "gpu_check.py"


def run_check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "check.json"
    result = subprocess.run([sys.executable, str(CHECK), "--device", "cpu", "--out", str(out),
                             "--work", str(tmp_path / "work"), *args], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=900)
    return result, json.loads(out.read_text())


def test_cpu_mode_passes_every_step(tmp_path: Path):
    result, report = run_check(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and report["passed"], output
    steps = report["steps"]
    assert {name: s["status"] for name, s in steps.items()} == {
        "environment": "passed", "dataset": "passed", "host_syncs": "skipped", "train_64": "passed",
        "checkpoint_cpu": "passed", "train_224": "passed", "reference_64": "passed", "two_processes": "passed",
        "compile_64": "skipped"}, output
    for name in ("train_64", "train_224", "two_processes"):
        run = steps[name]
        assert run["images_per_second"] > 0 and 0 <= run["data_wait_fraction"] < 1
        assert run["projected_20_epochs_s"] >= sum(run["epoch_seconds"]) > 0
    assert steps["two_processes"]["backend"] == "auto" and max(steps["two_processes"]["relative_loss_difference"]) < 0.01
    assert steps["checkpoint_cpu"]["acc1_cpu"] == steps["checkpoint_cpu"]["acc1_training"]
    assert steps["reference_64"]["ratio"] > 0
    assert set(report["goals"]) == {"projected_20_epochs_224_s", "projected_20_epochs_64_s", "ratio_to_reference_64",
                                    "data_wait_fraction_64"}
    assert "| train_resnet 224px |" in report["table_markdown"] and "ImageNet example's recipe" in report["table_markdown"]
    assert "PASSED" in result.stdout


def test_a_run_out_of_time_still_reports(tmp_path: Path):
    result, report = run_check(tmp_path, "--budget", "0.5")
    assert result.returncode == 1 and not report["passed"]
    assert report["steps"]["environment"]["status"] == "passed"
    assert report["steps"]["dataset"]["status"] == "not run" and "--budget" in report["steps"]["dataset"]["why"]
    assert report["steps"]["train_64"]["why"] == "needs dataset, which did not pass"
