"""train_resnet: schedules, the step, checkpoints and resume of real runs, torchrun/DDP, logs, skip rule."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, deep_update, env
from dlreport import checkpoints, evaluation, launch, training
from dlreport.devices import Dist, configure_kernels
from dlreport.errors import PipelineError
from dlreport.models import build_resnet18
from dlreport.params import parse, read_params
from dlreport.reporting import layer_table
from dlreport.runlog import EPOCH_METRICS
from dlreport.tinyimagenet import load_split_tensors

BASE = read_params(REPO / "params.yaml")
RECIPE = parse("resnet", BASE["resnet"])  # params.yaml's, typed as train_resnet gets it
# lr 0.01: small enough that BatchNorm's per-process statistics do not send DDP and single-process
# runs onto visibly different trajectories within two epochs.
TINY_RECIPE = {"epochs": 2, "batch_size": 64, "eval_batch_size": 100, "print_freq": 100, "precision": "fp32",
               "lr": 0.01}


def params_file(tmp_path: Path, **recipe) -> Path:
    params = deep_update(BASE, {"resnet": {**TINY_RECIPE, **recipe}, "eval": {"epochs": "all"}})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def train_command(params: Path, prepared: Path, out: Path, nproc: int | None = None, extra=()) -> list[str]:
    script = str(REPO / "stages" / "train_resnet.py")
    args = [script, "--variant", "cpu", "--params", str(params), "--prepared", str(prepared),
            "--out", str(out), "--summary", str(out.parent / f"{out.name}.json")]
    if nproc is None:
        return [sys.executable, *args]
    torchrun = [sys.executable, "-m", "torch.distributed.run", *extra]
    return [*torchrun, f"--nproc_per_node={nproc}", *args] if extra else \
        [*torchrun, "--standalone", f"--nproc_per_node={nproc}", *args]


def run_ok(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def final_weights(run_dir: Path, epoch: int) -> dict:
    return checkpoints.load_checkpoint(checkpoints.checkpoint_path(run_dir, epoch))["model"]


# ---------------------------------------------------------------------------- the recipe
@pytest.mark.parametrize("schedule,expected", [
    ("constant", [1, 1, 1, 1]),
    ("step", [1, 1, 0.1, 0.1]),
    ("cosine", [1, 0.5 * (1 + np.cos(np.pi * 1 / 4)), 0.5, 0.5 * (1 + np.cos(np.pi * 3 / 4))]),
])
def test_lr_schedules(schedule, expected):
    recipe = replace(RECIPE, epochs=4, schedule=schedule, step_size=2, gamma=0.1, warmup_epochs=0)
    got = [training.lr_factor(recipe, epoch * 10, 10) for epoch in range(4)]
    assert np.allclose(got, expected)
    warm = replace(recipe, warmup_epochs=1)
    assert np.allclose([training.lr_factor(warm, s, 10) for s in (0, 4, 9)], [0.1, 0.5, 1.0])


def test_layer_table_reproduces_the_report():
    table = layer_table("torchvision", 64)
    assert list(table.output) == ["32x32x64", "16x16x64", "16x16x64", "8x8x128", "4x4x256",
                                  "2x2x512", "1x1x512", "200"]
    assert list(layer_table("cifar", 64).output)[1:3] == ["64x64x64", "64x64x64"]
    assert build_resnet18().fc.in_features == 512 and build_resnet18().fc.out_features == 200


# ---------------------------------------------------------------------------- skip rule
def test_gpu_variants_skip_without_devices_and_fail_beyond_present(tmp_path: Path):
    runs = parse("resnet_runs", BASE["resnet_runs"])
    assert launch.skip_reason(runs["cpu"], 0) is None
    reason = launch.skip_reason(runs["gpu8"], 0)
    assert "needs 8 GPU(s)" in reason and "devices=0" in reason and "-S devices=8" in reason
    present = torch.cuda.device_count()
    with pytest.raises(PipelineError, match=f"devices={present + 1} .* {present} CUDA GPU"):
        launch.skip_reason(runs["gpu1"], present + 1)
    with pytest.raises(PipelineError, match="not a key of resnet_runs"):
        launch.variant_of(runs, "tpu")
    out, summary = tmp_path / "gpu8", tmp_path / "gpu8.json"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results stay")
    launch.launch_or_skip(RECIPE, "gpu8", runs["gpu8"], 0, None, "unused", str(out), str(summary), "params.yaml", "unused")
    assert yaml.safe_load(summary.read_text()) == {"status": "skipped", "gpus": 8}
    assert yaml.safe_load((out / "status.json").read_text()) == {"status": "skipped", "reason": reason}
    assert (out / "keep.txt").read_text() == "earlier results stay"


# ---------------------------------------------------------------------------- no host reads per step
HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


def test_training_steps_never_read_the_device(monkeypatch, one_thread):
    """On a GPU every read of a device value makes the host wait for it. Count the reads (the
    Tensor methods that copy a value to Python) in a real epoch of 3 and of 6 steps: the same
    number, so they happen at log lines and the epoch's end only. Control: logging every step
    reads per step, and the count sees it."""
    reads = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads.append(1)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (48,))
    recipe = replace(RECIPE, batch_size=8, input_size=32, lr=0.01)
    model = training.to_training_device(build_resnet18(10), torch.device("cpu"))
    step_fn = training.TrainStep.for_recipe(model, recipe, steps_per_epoch=6, amp=None)

    def host_reads(n: int, print_freq: int = 100) -> int:
        lines, before = [], len(reads)
        data = training.Data(images[:n], labels[:n], images[:8], labels[:8])
        training.train_one_epoch(step_fn, data, 1, replace(recipe, print_freq=print_freq), Dist(), lines.append)
        assert len(lines) == (2 if print_freq > n else n // 8) and lines[-1].startswith(f"Epoch: [1][{n // 8}/{n // 8}]")
        return len(reads) - before

    assert host_reads(24) == host_reads(48) > 0
    assert host_reads(48, print_freq=1) > host_reads(24, print_freq=1)


# ---------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def reference_run(tiny_prepared: Path, tmp_path_factory) -> Path:
    """One uninterrupted 2-epoch single-process run, through the stage script."""
    base = tmp_path_factory.mktemp("reference")
    params = params_file(base)
    out = base / "run"
    log = run_ok(train_command(params, tiny_prepared, out), cwd=REPO)
    assert "Epoch: [1][4/4]" in log and "Test: [2/2]" in log and " * Acc@1 " in log
    assert "=> epoch 1/2 took " in log and "; ETA " in log and "(1 epoch left at " in log and "=> epoch 2/2 took " in log
    return out


def test_checkpoints_are_complete_and_load_as_data(reference_run: Path):
    assert checkpoints.saved_epochs(reference_run) == [1, 2]
    epoch = checkpoints.load_checkpoint(checkpoints.checkpoint_path(reference_run, 2))
    assert set(epoch) == {"epoch", "model", "recipe", "metrics", "num_classes", "world_size"}
    assert epoch["epoch"] == 2 and epoch["metrics"]["epoch"] == 2
    assert not any(k.startswith("module.") for k in epoch["model"])
    assert all(t.dtype == torch.float32 for t in epoch["model"].values() if t.is_floating_point())
    model = build_resnet18()
    model.load_state_dict(epoch["model"])  # loads into a plain (non-DDP) model
    resume = checkpoints.load_checkpoint(checkpoints.resume_path(reference_run))
    assert {"optimizer", "scheduler", "scaler", "rng", "history"} <= set(resume) and resume["epoch"] == 2
    assert [h["epoch"] for h in resume["history"]] == [1, 2] and resume["history"][1] == epoch["metrics"]
    assert all(torch.equal(resume["model"][k], epoch["model"][k]) for k in epoch["model"])
    # Momentum doubles the full state; an epoch file is the weights alone.
    sizes = {p.name: p.stat().st_size for p in (reference_run / "checkpoints").iterdir()}
    assert sizes["epoch_01.pt"] < 0.55 * sizes["resume.pt"], sizes
    assert sorted(sizes) == ["epoch_01.pt", "epoch_02.pt", "resume.pt"], "no temporary files left"


def test_old_format_checkpoints_still_evaluate(reference_run: Path, tiny_prepared: Path, tmp_path: Path):
    """Before resume.pt, every epoch file held the full training state; eval_epochs reads those too."""
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoints.resume_path(reference_run), checkpoints.checkpoint_path(old, 2))
    _, images, labels = load_split_tensors(tiny_prepared, "val")
    results = [evaluation.evaluate_epoch(run, 2, images, labels, batch_size=100, device=torch.device("cpu"),
                                         log=lambda *a: None) for run in (reference_run, old)]
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert results[0][0]["acc1"] == pytest.approx(
        checkpoints.load_checkpoint(checkpoints.checkpoint_path(reference_run, 2))["metrics"]["val/acc1"])


def test_dvclive_and_tensorboard_logs_read_back(reference_run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tsv = pd.read_csv(reference_run / "dvclive" / "plots" / "metrics" / "val" / "acc1.tsv", sep="\t")
    assert list(tsv.step) == [1, 2]
    acc = EventAccumulator(str(reference_run / "tensorboard"))
    acc.Reload()
    tb = [e.value for e in acc.Scalars("val/acc1")]
    assert [e.step for e in acc.Scalars("val/acc1")] == [1, 2]
    ckpt = [checkpoints.load_checkpoint(checkpoints.checkpoint_path(reference_run, e))["metrics"]["val/acc1"]
            for e in (1, 2)]
    assert np.allclose(tsv.acc1, ckpt) and np.allclose(tb, ckpt, atol=1e-4)
    for name in EPOCH_METRICS:
        assert len(acc.Scalars(name)) == 2
    summary = yaml.safe_load((reference_run.parent / "run.json").read_text())
    assert summary["status"] == "trained" and summary["epochs"] == 2
    assert summary["images_per_second"] > 0 and 0 <= summary["data_wait_fraction"] < 1


def link_into_cache(run_dir: Path, cache: Path) -> dict[Path, str]:
    """Hard-link every file of the run folder into ``cache``, as DVC's cache does; their hashes."""
    hashes = {}
    for path in run_dir.rglob("*"):
        if path.is_file():
            link = cache / path.relative_to(run_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, link)
            hashes[link] = hashlib.sha256(link.read_bytes()).hexdigest()
    return hashes


def assert_unchanged(hashes: dict[Path, str]) -> None:
    changed = [str(p) for p, h in hashes.items() if hashlib.sha256(p.read_bytes()).hexdigest() != h]
    assert not changed, f"files modified in place (a hard-linked cache copy would change): {changed}"


def test_killed_run_resumes_to_the_same_weights(reference_run: Path, tiny_prepared: Path, tmp_path: Path):
    """kill -9 after epoch 1, resume: bit-identical weights. Then the state a kill between an
    epoch's two writes leaves (epoch_02.pt new, resume.pt still at epoch 1): epoch 2 is trained
    again, to the same weights. Resuming never modifies a file of the run folder in place."""
    params = params_file(tmp_path)
    out = tmp_path / "run"
    process = subprocess.Popen(train_command(params, tiny_prepared, out), cwd=REPO, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoints.resume_path(out).exists():
        assert process.poll() is None and time.time() < deadline, "training ended before epoch 1 was saved"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    at_epoch_1 = shutil.copy(checkpoints.resume_path(out), tmp_path / "resume_at_epoch_1.pt")
    assert checkpoints.load_checkpoint(at_epoch_1)["epoch"] == 1, "killed too late to test resuming"
    cached = link_into_cache(out, tmp_path / "cache1")
    log = run_ok(train_command(params, tiny_prepared, out), cwd=REPO)
    assert "=> resuming" in log and "Epoch: [1]" not in log
    resumed, reference = final_weights(out, 2), final_weights(reference_run, 2)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    tsv = pd.read_csv(out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert list(tsv.step) == [1, 2], "one log row per epoch however the run was interrupted"
    assert_unchanged(cached)

    shutil.copy(at_epoch_1, tmp_path / "copy.pt")
    os.replace(tmp_path / "copy.pt", checkpoints.resume_path(out))
    cached = link_into_cache(out, tmp_path / "cache2")
    log = run_ok(train_command(params, tiny_prepared, out), cwd=REPO)
    assert "resuming" in log and "from epoch 1" in log and "Epoch: [2]" in log and "Epoch: [1]" not in log
    resumed = final_weights(out, 2)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert checkpoints.load_checkpoint(checkpoints.resume_path(out))["epoch"] == 2
    assert_unchanged(cached)


def test_an_older_checkpoint_restores_the_state_but_not_how_the_step_runs():
    """A checkpoint saved before the optimizer step was fused (its groups say fused None) gives
    back its momentum buffers and learning rate, and the step stays fused."""
    recipe = parse("resnet", {**read_params(REPO / "params.yaml")["resnet"], "epochs": 2})
    older_model, model = build_resnet18(), build_resnet18()
    older = training.TrainStep.for_recipe(older_model, recipe, 4, None)
    for group in older.optimizer.param_groups:
        group.update(fused=None, lr=0.05)
    for parameter in older_model.parameters():
        older.optimizer.state[parameter]["momentum_buffer"] = torch.full_like(parameter, 0.5)
    current = training.TrainStep.for_recipe(model, recipe, 4, None)
    current.load_optimizer_state(older.optimizer.state_dict())
    group = current.optimizer.param_groups[0]
    assert group["fused"] is True and group["lr"] == 0.05
    buffer = current.optimizer.state[next(model.parameters())]["momentum_buffer"]
    assert torch.equal(buffer, torch.full_like(buffer, 0.5))


def test_checkpoints_of_other_params_are_not_resumed(reference_run: Path, tiny_prepared: Path, tmp_path: Path):
    out = tmp_path / "run"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    params = params_file(tmp_path, lr=0.05)
    log = run_ok(train_command(params, tiny_prepared, out), cwd=REPO)
    assert "made with other params (lr: 0.01 -> 0.05)" in log and "=> resuming" not in log
    stale = list(tmp_path.glob(".run-stale-*"))
    assert len(stale) == 1 and len(list(stale[0].glob("*.pt"))) == 3, "old checkpoints are kept"
    assert checkpoints.load_checkpoint(checkpoints.checkpoint_path(out, 2))["recipe"]["lr"] == 0.05


def test_finished_run_is_not_retrained(reference_run: Path, tiny_prepared: Path, tmp_path: Path):
    """A finished run is not trained again, also when resnet.keep_epochs changes: weights it no
    longer keeps are removed, the rest stay as they are."""
    out = tmp_path / "run"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    before = checkpoints.checkpoint_path(out, 2).stat().st_mtime_ns
    log = run_ok(train_command(params_file(tmp_path), tiny_prepared, out), cwd=REPO)
    assert "all 2 epochs already trained" in log and "Epoch: [" not in log
    assert checkpoints.checkpoint_path(out, 2).stat().st_mtime_ns == before
    assert len(pd.read_csv(out / "dvclive" / "plots" / "metrics" / "val" / "acc1.tsv", sep="\t")) == 2
    log = run_ok(train_command(params_file(tmp_path, keep_epochs=[]), tiny_prepared, out), cwd=REPO)
    assert "removed the weights of epoch(s) 1" in log and "all 2 epochs already trained" in log
    assert checkpoints.saved_epochs(out) == [2] and checkpoints.checkpoint_path(out, 2).stat().st_mtime_ns == before
    assert len(pd.read_csv(out / "dvclive" / "plots" / "metrics" / "val" / "acc1.tsv", sep="\t")) == 2


def test_raising_epochs_continues_to_the_weights_of_a_longer_run(reference_run: Path, tiny_prepared: Path,
                                                                 tmp_path: Path):
    """The 2-epoch reference run continued to 3 epochs trains epoch 3 only, and ends with weights
    bit-identical to a 3-epoch run from scratch (constant schedule); a cosine schedule, which
    depends on the total, trains afresh and says why."""
    out = tmp_path / "continued"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    log = run_ok(train_command(params_file(tmp_path, epochs=3), tiny_prepared, out), cwd=REPO)
    assert "continuing" in log and "resume.pt of a 2-epoch run" in log and "to 3 epochs" in log
    assert "Epoch: [1]" not in log and "Epoch: [3]" in log
    scratch = tmp_path / "scratch"
    run_ok(train_command(params_file(tmp_path, epochs=3), tiny_prepared, scratch), cwd=REPO)
    continued, reference = final_weights(out, 3), final_weights(scratch, 3)
    assert all(torch.equal(continued[k], reference[k]) for k in reference)
    assert len(pd.read_csv(out / "dvclive" / "plots" / "metrics" / "val" / "acc1.tsv", sep="\t")) == 3
    cosine = tmp_path / "cosine"
    run_ok(train_command(params_file(tmp_path, schedule="cosine"), tiny_prepared, cosine), cwd=REPO)
    log = run_ok(train_command(params_file(tmp_path, schedule="cosine", epochs=3), tiny_prepared, cosine), cwd=REPO)
    assert "the cosine schedule depends on the total number of epochs" in log and "Epoch: [1]" in log


def test_lowering_epochs_cuts_a_finished_run_without_training(reference_run: Path, tiny_prepared: Path,
                                                               tmp_path: Path):
    """The 2-epoch reference run re-run with epochs 1 (constant schedule): no training step, epoch
    1's weights are the run's last checkpoint, and its curves and summary hold epoch 1 only."""
    out = tmp_path / "cut"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    log = run_ok(train_command(params_file(tmp_path, epochs=1), tiny_prepared, out), cwd=REPO)
    assert "cut the finished 2-epoch run to resnet.epochs = 1 without training" in log and "Epoch: [" not in log
    assert checkpoints.saved_epochs(out) == [1]
    cut, reference = final_weights(out, 1), final_weights(reference_run, 1)
    assert all(torch.equal(cut[k], reference[k]) for k in reference)
    assert checkpoints.load_checkpoint(checkpoints.resume_path(out))["epoch"] == 1
    assert list(pd.read_csv(out / "dvclive" / "plots" / "metrics" / "val" / "acc1.tsv", sep="\t").step) == [1]
    summary = yaml.safe_load((tmp_path / "cut.json").read_text())
    assert summary["epochs"] == 1 and summary["val_acc1"] == checkpoints.load_checkpoint(
        checkpoints.checkpoint_path(reference_run, 1))["metrics"]["val/acc1"]


def test_deterministic_kernels_are_a_switch_not_a_recipe(reference_run: Path, tiny_prepared: Path, tmp_path: Path):
    """resnet.deterministic picks which kernels compute the recipe (deterministic ones only, cuDNN
    without its benchmark, a fixed cuBLAS workspace), not the recipe: a run made without it resumes
    with it, and the training process says it runs them."""
    had_workspace = "CUBLAS_WORKSPACE_CONFIG" in os.environ
    try:
        configure_kernels(True, use_cuda=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        configure_kernels(False, use_cuda=True)
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
        assert torch.backends.cudnn.benchmark
    finally:
        configure_kernels(False, use_cuda=False)
        if not had_workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    out = tmp_path / "run"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    log = run_ok(train_command(params_file(tmp_path, deterministic=True), tiny_prepared, out), cwd=REPO)
    assert "all 2 epochs already trained" in log and "deterministic kernels" in log, log


# ---------------------------------------------------------------------------- torchrun / DDP
def weight_update(run_dir: Path, epoch: int, seed: int = 0) -> torch.Tensor:
    """All floating-point weights' change from their seeded initialisation, as one vector."""
    torch.manual_seed(seed)
    init = build_resnet18().state_dict()
    weights = final_weights(run_dir, epoch)
    return torch.cat([(weights[k].float() - init[k].float()).flatten()
                      for k in init if weights[k].dtype.is_floating_point])


def test_two_gloo_processes_follow_the_single_process_trajectory(reference_run: Path, tiny_prepared: Path,
                                                                 tmp_path: Path):
    """torchrun, 2 processes, global batch 64 split 32+32, against 1 process with batch 64.

    Both see the same images in the same global batches; only BatchNorm statistics differ
    (per-process halves), so the trajectories agree closely but not bit for bit.
    Stated tolerance: after 2 epochs the weight updates differ by < 30% (relative L2; measured
    about 20%) and per-epoch train losses by < 1%. The control, one process with global batch 32,
    must land outside that tolerance (measured about 50%), so the test can tell a wrong batch split.
    """
    out = tmp_path / "ddp"
    log = run_ok(train_command(params_file(tmp_path), tiny_prepared, out, nproc=2), cwd=REPO)
    assert "on 2 process(es)" in log
    ours, ref = weight_update(out, 2), weight_update(reference_run, 2)
    (tmp_path / "control").mkdir()
    control_run = tmp_path / "control" / "run"
    run_ok(train_command(params_file(tmp_path / "control", batch_size=32), tiny_prepared, control_run), cwd=REPO)
    distance = float((ours - ref).norm() / ref.norm())
    control = float((weight_update(control_run, 2) - ref).norm() / ref.norm())
    assert distance < 0.3 < control, (distance, control)
    for epoch in (1, 2):
        a = checkpoints.load_checkpoint(checkpoints.checkpoint_path(out, epoch))["metrics"]["train/loss"]
        b = checkpoints.load_checkpoint(checkpoints.checkpoint_path(reference_run, epoch))["metrics"]["train/loss"]
        assert abs(a - b) / b < 0.01, (epoch, a, b)


def test_process_shards_make_up_the_global_batch():
    """DistributedSampler shards, cut into per-process batches, are the single-process batches."""
    from torch.utils.data import DistributedSampler

    n, batch, world = 200, 64, 2
    single = list(DistributedSampler(range(n), num_replicas=1, rank=0, seed=0))
    shards = [list(DistributedSampler(range(n), num_replicas=world, rank=r, seed=0)) for r in range(world)]
    for step in range(n // batch):
        per = batch // world
        union = sorted(sum((s[step * per:(step + 1) * per] for s in shards), []))
        assert union == sorted(single[step * batch:(step + 1) * batch])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_loopback(tiny_prepared: Path, tmp_path: Path):
    """torchrun's multi-node launch: two 'nodes' of one process each, c10d rendezvous on 127.0.0.1."""
    params = params_file(tmp_path, epochs=1)
    out = tmp_path / "multinode"
    port = free_port()
    extra = ["--nnodes=2", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=test"]
    nodes = [subprocess.Popen(train_command(params, tiny_prepared, out, nproc=1, extra=extra), cwd=REPO,
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), "\n".join(logs)
    assert sum("on 2 process(es)" in log for log in logs) == 1, "exactly one rank 0 logs"
    state = checkpoints.load_checkpoint(checkpoints.checkpoint_path(out, 1))
    assert state["world_size"] == 2


def test_indivisible_global_batch_is_a_clear_error(tiny_prepared: Path, tmp_path: Path):
    params = params_file(tmp_path, batch_size=63)
    result = subprocess.run(train_command(params, tiny_prepared, tmp_path / "x", nproc=2), cwd=REPO, env=env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "batch_size=63 does not split evenly over 2 processes" in result.stdout + result.stderr
    assert not checkpoints.saved_epochs(tmp_path / "x")


def test_recipe_errors_name_the_param():
    recipe = RECIPE
    training.check_recipe(recipe, 1)
    with pytest.raises(PipelineError, match="resnet.batch_size=256 does not split evenly over 3 processes"):
        training.check_recipe(recipe, 3)
    # (the type and range of every value are params errors: tests/test_params.py)
    from dlreport.devices import choose_backend

    assert choose_backend("auto", True) == "nccl" and choose_backend("auto", False) == "gloo"
    assert choose_backend("gloo", True) == "gloo"
    with pytest.raises(PipelineError, match="resnet.launch.backend=nccl needs GPUs"):
        choose_backend("nccl", False)
