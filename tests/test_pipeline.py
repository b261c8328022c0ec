"""End to end: the ResNet half of the pipeline in a real temp git+DVC repository."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import torch

from conftest import ran, restore_committed, run
from dlreport.evaluation import diff_metrics


def mtimes(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def read(project: Path, path: str):
    return json.loads((project / path).read_text())


def curve_files(project: Path, variant: str) -> dict[str, str]:
    curves = project / f"runs/resnet/{variant}/dvclive/plots/metrics"
    return {str(f.relative_to(curves)): f.read_text() for f in curves.rglob("*.tsv")}


def test_outputs_of_the_resnet_half(reproduced: Path):
    p = reproduced
    assert read(p, "metrics/dataset.json") == {"classes": 200, "train_images": 400, "val_images": 200}
    cpu = read(p, "metrics/train_resnet_cpu.json")
    assert cpu["status"] == "trained" and cpu["epochs"] == 2 and "val/acc1.tsv" in curve_files(p, "cpu")
    for variant in ("gpu1", "gpu8"):
        skipped = read(p, f"metrics/train_resnet_{variant}.json")
        assert skipped == {"status": "skipped", "gpus": int(variant[3:])}
        assert "devices=0" in read(p, f"runs/resnet/{variant}/status.json")["reason"]
        # Its curves are the files DVCLive wrote for the trained variant, headers only: in `dvc
        # plots show` no line for it, and no "failed to load" warning.
        assert curve_files(p, variant) == {name: text.splitlines(keepends=True)[0]
                                           for name, text in curve_files(p, "cpu").items()}
    assert sorted(x.name for x in (p / "runs/resnet/cpu/checkpoints").iterdir()) == ["epoch_01.pt", "epoch_02.pt", "resume.pt"]
    assert read(p, "metrics/device_comparison.json") == {"speedup_over_cpu": {"gpu1": None, "gpu8": None},
                                                         "scaling_efficiency": {"gpu8": None}}
    table = pd.read_csv(p / "reports/device_comparison.csv")
    assert list(table.variant) == ["cpu"] and list(table.speedup_over_cpu) == [1.0]
    shapes = pd.read_csv(p / "reports/layer_shapes.csv")
    assert list(shapes.output)[1:] == ["16x16x64", "16x16x64", "8x8x128", "4x4x256", "2x2x512", "1x1x512", "200"]


def test_eval_and_diff_agree(reproduced: Path):
    p = reproduced
    ev, diff = read(p, "metrics/eval.json"), read(p, "reports/diff_predictions/summary.json")
    assert read(p, "metrics/diff_predictions.json") == diff_metrics(diff)
    assert ev["run"] == "cpu" and ev["first"]["epoch"] == 1 and ev["last"]["epoch"] == 2
    by_epoch = pd.read_csv(p / "runs/eval/accuracy_by_epoch.csv").set_index("epoch")
    assert (diff["epoch_a"], diff["epoch_b"]) == (1, 2)
    # The accuracy change measured by eval_epochs is what the diff's counts imply.
    assert math.isclose(ev["change"]["acc1"], diff["acc1_change"], abs_tol=1e-9)
    for epoch in (1, 2):
        table = pd.read_csv(p / f"runs/eval/predictions_epoch_{epoch:02d}.csv")
        assert len(table) == 200
        assert math.isclose(100 * (table.top1_index == table.true_index).mean(), by_epoch.acc1[epoch])
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
    present = torch.cuda.device_count()  # 0 here; on a GPU host, one more than it has is as impossible
    result = run(["dvc", "exp", "run", "-S", f"devices={present + 1}", "compare_devices"], cwd=p, check=False)
    output = result.stdout + result.stderr
    # More GPUs than the host has: a clear error before any training...
    impossible = f"devices={present + 1} in params.yaml, but this host has {present} CUDA GPU(s)"
    assert result.returncode != 0 and impossible in output
    # ...raised by a GPU variant (DVC picks either first), while the CPU variant is not re-run.
    try:
        assert ran(output, "train_resnet@gpu1") or ran(output, "train_resnet@gpu8"), output
        assert not ran(output, "train_resnet@cpu") and mtimes(p / "runs/resnet/cpu") == before, output
    finally:
        restore_committed(p)


def test_metrics_diff_between_epochs_without_retraining(reproduced: Path):
    """docs/evaluation.md's workflow: one experiment per epoch, then dvc metrics diff / dvc exp diff."""
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
    # docs/evaluation.md's way back to the default epochs: DVC's run-cache restores them, nothing re-runs.
    out = run("git checkout params.yaml && dvc repro", cwd=p).stdout
    assert "Running stage" not in out and "is cached" in out, out
    restore_committed(p)


def corrupted_cache_files(project: Path) -> list[str]:
    """Cache files whose content no longer matches their md5 name (a link written through)."""
    import hashlib

    bad = []
    for path in (project / ".dvc" / "cache" / "files" / "md5").rglob("*"):
        if path.is_file() and not path.name.endswith(".dir"):
            if hashlib.md5(path.read_bytes()).hexdigest() != path.parent.name + path.name:
                bad.append(str(path))
    return bad


def test_outputs_are_links_to_the_cache_and_checkout_apply_resume_work(reproduced: Path):
    """.dvc/config links outputs to the cache (no second copy of the checkpoints). With links:
    dvc checkout restores, a re-run reads linked checkpoints, a killed experiment resumes, dvc exp
    apply switches runs - and the cache stays intact (no linked file is ever written in place)."""
    import os
    import signal
    import subprocess
    import time

    from conftest import env

    p = reproduced
    checkpoints = p / "runs/resnet/cpu/checkpoints"
    first = checkpoints / "epoch_01.pt"
    assert first.stat().st_nlink == 2 or first.is_symlink(), "a link to the cache, not a copy"
    try:
        first.unlink()
        run(["dvc", "checkout", "train_resnet@cpu"], cwd=p)
        assert first.exists() and first.stat().st_nlink == 2

        # A code change re-runs the stage: it reads the linked checkpoints and rebuilds its logs.
        with open(p / "stages/train_resnet.py", "a") as handle:
            handle.write("# changed\n")
        out = run(["dvc", "repro", "train_resnet@cpu"], cwd=p).stdout
        assert ran(out, "train_resnet@cpu") and "already trained" in out, out
        assert not corrupted_cache_files(p)
        # DVC unprotects (copies) a persistent output's linked files before re-running its stage;
        # --relink turns the copies back into links (docs/working-with-dvc.md says so).
        run(["dvc", "checkout", "--relink", "train_resnet@cpu"], cwd=p)
        assert first.stat().st_nlink == 2

        # An experiment killed (kill -9, the whole process group) after its first epoch...
        command = ["dvc", "exp", "run", "-n", "seed1", "-S", "resnet.seed=1", "train_resnet@cpu"]
        started = subprocess.Popen(command, cwd=p, env=env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        progress = p / "runs/resnet/.cpu-progress"
        deadline = time.time() + 300
        while not (progress / "resume.pt").exists():  # the new run's epoch 1 is saved
            assert started.poll() is None and time.time() < deadline, "the experiment ended before epoch 1"
            time.sleep(0.05)
        os.killpg(started.pid, signal.SIGKILL)
        started.wait()
        # ...resumes from that epoch when run again, although `dvc exp run` first restores the
        # committed checkpoints: the interrupted run's come back from the progress folder.
        out = run(command, cwd=p).stdout
        assert "=> recovered" in out and "=> resuming" in out and "Epoch: [1]" not in out, out
        assert not progress.exists() and not corrupted_cache_files(p)
        seed1 = json.loads((p / "metrics/train_resnet_cpu.json").read_text())
        assert seed1["epochs"] == 2
        # docs/working-with-dvc.md's `dvc exp save` with targets (without data.dvc's archive, untargeted fails).
        run(["dvc", "exp", "save", "-n", "saved", "train_resnet@cpu"], cwd=p)
        assert "saved" in run(["dvc", "exp", "list", "--name-only"], cwd=p).stdout

        # Back to the committed run, then the experiment's run again.
        restore_committed(p)
        assert json.loads((p / "metrics/train_resnet_cpu.json").read_text()) != seed1
        run(["dvc", "exp", "apply", "seed1"], cwd=p)
        assert json.loads((p / "metrics/train_resnet_cpu.json").read_text()) == seed1
        assert "changed" not in run(["dvc", "status", "train_resnet@cpu"], cwd=p).stdout
        assert not corrupted_cache_files(p)
    finally:
        restore_committed(p)
    assert run(["dvc", "status", "train_resnet@cpu"], cwd=p).stdout.strip().endswith("up to date.")
