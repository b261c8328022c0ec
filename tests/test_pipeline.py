"""End to end: the ResNet half of the pipeline in a real temp git+DVC repository."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from conftest import ran, run


def mtimes(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def read(project: Path, path: str):
    return json.loads((project / path).read_text())


def test_outputs_of_the_resnet_half(reproduced: Path):
    p = reproduced
    assert read(p, "metrics/dataset.json") == {"classes": 200, "train_images": 400, "val_images": 200}
    cpu = read(p, "metrics/train_resnet_cpu.json")
    assert cpu["status"] == "trained" and cpu["epochs"] == 2
    for variant in ("gpu1", "gpu8"):
        skipped = read(p, f"metrics/train_resnet_{variant}.json")
        assert skipped["status"] == "skipped" and "devices=0" in skipped["reason"]
    assert sorted(x.name for x in (p / "runs/resnet/cpu/checkpoints").iterdir()) == ["epoch_01.pt", "epoch_02.pt", "resume.pt"]
    comparison = read(p, "metrics/device_comparison.json")
    assert comparison["cpu"]["speedup_over_cpu"] == 1.0 and comparison["gpu8"]["status"] == "skipped"
    assert list(pd.read_csv(p / "reports/device_comparison.csv").variant) == ["cpu"]
    shapes = pd.read_csv(p / "reports/layer_shapes.csv")
    assert list(shapes.output)[1:] == ["16x16x64", "16x16x64", "8x8x128", "4x4x256", "2x2x512", "1x1x512", "200"]


def test_eval_and_diff_agree(reproduced: Path):
    p = reproduced
    ev, diff = read(p, "metrics/eval.json"), read(p, "metrics/diff_predictions.json")
    assert ev["run"] == "cpu" and ev["first"]["epoch"] == 1 and ev["last"]["epoch"] == 2
    assert (diff["epoch_a"], diff["epoch_b"]) == (1, 2)
    # The accuracy change measured by eval_epochs is what the diff's counts imply.
    assert math.isclose(ev["change"]["acc1"], diff["acc1_change"], abs_tol=1e-9)
    for epoch in (1, 2):
        table = pd.read_csv(p / f"runs/eval/predictions_epoch_{epoch:02d}.csv")
        assert len(table) == 200
        assert math.isclose(100 * (table.top1_index == table.true_index).mean(), ev["epochs"][str(epoch)]["acc1"])
    listed = (p / "reports/diff_predictions/diff_predictions.txt").read_text().splitlines()[1:]
    assert len(listed) == diff["differing"]
    counts = sum(diff[k] for k in ("both_right", "only_a_right", "only_b_right", "both_wrong_same",
                                   "both_wrong_different"))
    assert counts == diff["images"] == 200
    from PIL import Image

    assert Image.open(p / "reports/diff_predictions/diff_grid.png").size[0] > 100


def test_dvc_metrics_and_plots_show(reproduced: Path):
    shown = run(["dvc", "metrics", "show", "--json"], cwd=reproduced).stdout
    data = json.loads(shown)
    files = next(iter(data.values()))["data"]
    assert "metrics/eval.json" in files and "metrics/train_resnet_cpu.json" in files
    run(["dvc", "plots", "show", "-o", "dvc_plots"], cwd=reproduced)
    html = (reproduced / "dvc_plots" / "index.html").read_text()
    assert "diff_grid.png" in html and "ResNet-18 validation Acc@1" in html


def test_devices_param_leaves_the_cpu_variant_alone(reproduced: Path):
    p = reproduced
    status = run(["dvc", "status", "train_resnet@cpu"], cwd=p).stdout
    assert "up to date" in status
    before = mtimes(p / "runs/resnet/cpu")
    result = run(["dvc", "exp", "run", "-S", "devices=1", "compare_devices"], cwd=p, check=False)
    output = result.stdout + result.stderr
    # On this CPU-only host devices=1 is impossible: a clear error before any training...
    assert result.returncode != 0 and "devices=1 in params.yaml, but this host has 0 CUDA GPU(s)" in output
    # ...raised by a GPU variant (DVC picks either first), while the CPU variant is not re-run.
    try:
        assert ran(output, "train_resnet@gpu1") or ran(output, "train_resnet@gpu8"), output
        assert not ran(output, "train_resnet@cpu") and mtimes(p / "runs/resnet/cpu") == before, output
    finally:
        run(["git", "checkout", "params.yaml"], cwd=p)


def test_metrics_diff_between_epochs_without_retraining(reproduced: Path):
    """The README's workflow: one experiment per epoch, then dvc metrics diff / dvc exp diff."""
    p = reproduced
    before = mtimes(p / "runs/resnet/cpu")
    for name, epoch in (("epoch1", 1), ("epoch2", 2)):
        out = run(["dvc", "exp", "run", "-n", name, "-S", f"eval.epochs=[{epoch}]"], cwd=p).stdout
        assert ran(out, "eval_epochs") and not ran(out, "train_resnet@cpu"), out
    assert mtimes(p / "runs/resnet/cpu") == before
    diff = json.loads(run(["dvc", "metrics", "diff", "epoch1", "epoch2", "--all", "--json"], cwd=p).stdout)
    change = diff["metrics/eval.json"]["last.acc1"]
    full = read(p, "metrics/eval.json")  # workspace: the epoch2 experiment
    assert change["new"] == full["last"]["acc1"]
    assert math.isclose(change["new"] - change["old"], change.get("diff", 0.0), abs_tol=1e-9)
    assert diff["metrics/eval.json"]["last.epoch"] == {"old": 1, "new": 2, "diff": 1}
    exp_diff = run(["dvc", "exp", "diff", "epoch1", "epoch2", "--all"], cwd=p)
    assert "last.acc1" in exp_diff.stdout and "eval.epochs" in exp_diff.stdout
    assert "failed to load" not in exp_diff.stdout + exp_diff.stderr
