"""Faults a long run meets, made real: a full file system (a small tmpfs this test mounts), stop
signals sent to real stage processes, damaged checkpoint files. Each ends with one `error:` line
and no traceback, leaves no temporary file, keeps what was written before, and a re-run after the
fix ends where an uninterrupted run does.

Mounting needs root (CI runs as root); elsewhere the disk tests skip and say so."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, deep_update, env, read_params, run_stage_in_process
from dlreport import checkpoints

BASE = read_params(REPO / "params.yaml")
TINY_RECIPE = {"epochs": 2, "batch_size": 64, "eval_batch_size": 100, "print_freq": 100, "precision": "fp32"}
EPOCH_1_DONE = "=> epoch 1/2 took "


# ---------------------------------------------------------------------------------------------
# helpers: a small disk, a stage process, what a fault must leave

@contextlib.contextmanager
def small_disk(path: Path, megabytes: int):
    """A tmpfs of ``megabytes`` mounted at ``path`` for the block (a real file system that fills up)."""
    if os.geteuid() != 0:
        pytest.skip("a full file system is made by mounting a small tmpfs, which needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resize(disk: Path, megabytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={megabytes}m", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the file system is full (what another job filling the disk does)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for block in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    assert shutil.disk_usage(disk).free < (1 << 20), shutil.disk_usage(disk)
    return filler


def params_file(folder: Path, **overrides) -> Path:
    path = folder / "params.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(deep_update(BASE, {"resnet": dict(TINY_RECIPE), **overrides})))
    return path


def train_args(params: Path, prepared: Path, out: Path) -> list[str]:
    return [sys.executable, str(REPO / "stages" / "train_resnet.py"), "--variant", "cpu", "--params", str(params),
            "--prepared", str(prepared), "--out", str(out), "--summary", str(out.parent / f"{out.name}.json")]


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_process_outlives_its_test():
    """A test that fails half-way leaves no paused or running stage behind."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start(command: list[str], cwd: Path, stderr: Path) -> subprocess.Popen:
    """A stage process in its own process group (as a shell's foreground job is)."""
    process = subprocess.Popen(command, cwd=cwd, env={**env(), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=open(stderr, "w"), text=True, start_new_session=True)
    STARTED.append(process)
    return process


def wait_for(process: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """Read the process's stdout until a line holds ``text``."""
    seen, deadline = [], time.time() + timeout
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
        assert time.time() < deadline, "".join(seen)
    raise AssertionError(f"the process ended before printing {text!r}:\n{''.join(seen)}")


def finish(process: subprocess.Popen, stderr: Path) -> tuple[int, str]:
    process.stdout.read()
    return process.wait(timeout=300), stderr.read_text()


def the_one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if ".tmp" in p.name]


def weights(run_dir: Path, epoch: int) -> dict:
    return checkpoints.load_checkpoint(checkpoints.checkpoint_path(run_dir, epoch))["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that hold ``text`` (no worker may outlive its stage)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and proc.name != str(os.getpid()):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if text in cmdline and "State:\tZ" not in (proc / "status").read_text():
                    found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def uninterrupted(tiny_prepared: Path, tmp_path_factory) -> Path:
    """The 2-epoch run every interrupted one must end equal to."""
    base = tmp_path_factory.mktemp("uninterrupted")
    out = base / "run"
    result = subprocess.run(train_args(params_file(base), tiny_prepared, out), cwd=REPO, env=env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


# ---------------------------------------------------------------------------------------------
# a full disk

def test_a_run_on_a_too_small_disk_stops_before_training_and_runs_once_there_is_room(
        uninterrupted: Path, tiny_prepared: Path, tmp_path: Path):
    """The checkpoints of 2 epochs do not fit in 60 MB: one line with the figures, nothing written;
    with room, the same command trains to the uninterrupted run's weights."""
    params = params_file(tmp_path)
    with small_disk(tmp_path / "disk", 60) as disk:
        out = disk / "run"
        result = subprocess.run(train_args(params, tiny_prepared, out), cwd=REPO, env=env(), capture_output=True,
                                text=True, timeout=600)
        line = the_one_error_line(result.stderr)
        assert result.returncode == 1
        assert line.startswith(f"error: {out}: training epochs 1-2 (2 kept checkpoint(s) of 45 MB and a resume state "
                               f"of 90 MB) needs about 181 MB, but only 63 MB are free there"), line
        assert "keep fewer epochs' weights" in line and "Nothing was written" in line
        assert not (out / "checkpoints").exists() and not temporaries(disk)
        resize(disk, 300)
        result = subprocess.run(train_args(params, tiny_prepared, out), cwd=REPO, env=env(), capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        assert same_weights(weights(out, 2), weights(uninterrupted, 2))


@pytest.mark.parametrize("procs", [1, 2])
def test_a_disk_that_fills_during_a_run(procs, uninterrupted: Path, tiny_prepared: Path, tmp_path: Path):
    """Another job fills the disk during epoch 2 (the run is paused with SIGSTOP while it does, so
    the moment is exact): saving epoch 2 fails with one line naming the file, its size and the
    space; epoch 1 stays whole; with room again the run resumes to the uninterrupted weights.
    Under torchrun (2 processes) the stage's line says torchrun failed, after rank 0's reason;
    neither torchrun's traceback nor the other rank's complaint is shown."""
    params = params_file(tmp_path, resnet_runs={"cpu": {"procs": procs}})
    with small_disk(tmp_path / "disk", 300) as disk:
        out = disk / "run"
        process = start(train_args(params, tiny_prepared, out), REPO, tmp_path / "stderr")
        wait_for(process, EPOCH_1_DONE)
        os.killpg(process.pid, signal.SIGSTOP)
        filler = fill(disk)
        os.killpg(process.pid, signal.SIGCONT)
        status, stderr = finish(process, tmp_path / "stderr")
        line = the_one_error_line(stderr)
        assert status == 1
        reason = [line] if procs == 1 else [row for row in stderr.splitlines() if row.startswith("worker: ")]
        assert len(reason) == 1, stderr
        assert reason[0].split(": ", 1)[1].startswith(
            f"{checkpoints.checkpoint_path(out, 2)}: cannot write the weights of epoch 2 (45 MB): no space left on the "
            f"device; "), stderr
        assert " free there. Free space there" in reason[0]
        assert reason[0].endswith(f"(during epoch 2 of 2; epoch 1 is saved in {out}/checkpoints; re-run to resume "
                                  f"from epoch 2)"), reason[0]
        if procs == 2:
            assert line.startswith("error: torchrun for train_resnet@cpu exited with status 1"), line
        assert not temporaries(disk)
        assert checkpoints.saved_epochs(out) == [1]
        assert same_weights(weights(out, 1), weights(uninterrupted, 1)) or procs == 2
        assert checkpoints.load_checkpoint(checkpoints.resume_path(out))["epoch"] == 1
        filler.unlink()
        result = subprocess.run(train_args(params, tiny_prepared, out), cwd=REPO, env=env(), capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0 and "=> resuming" in result.stdout, result.stdout + result.stderr
        if procs == 1:
            assert same_weights(weights(out, 2), weights(uninterrupted, 2))


def test_decoding_images_onto_a_too_small_disk(tmp_path: Path, monkeypatch):
    """relabel_val counts what its arrays will take before decoding anything."""
    from dlreport import tinyimagenet

    tree = tinyimagenet.generate_sample(tmp_path / "tiny-imagenet-200", seed=0, train_per_class=1, val_per_class=1,
                                        test_images=2, grayscale_fraction=0.0, noise=0.3)
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    with small_disk(tmp_path / "disk", 2) as disk:
        status, stderr = run_stage_in_process(["relabel_val.py", "--data", str(tree), "--out", str(disk / "prepared"),
                                               "--metrics", str(disk / "dataset.json")])
        line = the_one_error_line(stderr)
        assert status == 1 and line == (f"error: {disk}: decoding 400 images (64x64 RGB, uint8) needs about 5 MB, but "
                                        f"only 2 MB are free there; free space (or move the project to a bigger "
                                        f"disk) and re-run. Nothing was written"), line
        assert list(disk.iterdir()) == []


def outputs_of(project: Path, stage: dict) -> dict[str, str]:
    """md5 of every file a stage's outputs hold (from its dvc.lock entry)."""
    digests = {}
    for out in stage.get("outs", []):
        path = project / out["path"]
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digests[str(file.relative_to(project))] = hashlib.md5(file.read_bytes()).hexdigest()
    return digests


def test_every_stage_on_a_full_disk_says_so_in_one_line_and_keeps_its_outputs(reproduced: Path, tmp_path: Path,
                                                                              monkeypatch):
    """The reproduced project copied onto a tmpfs that is then filled: each stage's command (as
    dvc.lock records it; run in this process, as `python stages/...` would run it) fails at its first
    write - or, where it checks the space it needs first (relabel_val), before it - with one line
    naming the output and the space free, leaves no temporary and its earlier outputs byte for
    byte; once there is room, each runs again."""
    lock = yaml.safe_load((reproduced / "dvc.lock").read_text())["stages"]
    commands = {name: shlex.split(stage["cmd"])[1:] for name, stage in lock.items()}  # (without "python")
    assert all(command[0].startswith("stages/") for command in commands.values()), commands
    size = sum(f.stat().st_size for f in reproduced.rglob("*") if f.is_file() and ".dvc/cache" not in str(f)
               and ".git/" not in str(f))
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    with small_disk(tmp_path / "disk", size // 2**20 + 64) as disk:
        project = disk / "project"
        shutil.copytree(reproduced, project, symlinks=True,
                        ignore=lambda folder, names: [n for n in names if n in ("cache", ".git")
                                                      and Path(folder).name in (".dvc", "project")])
        monkeypatch.chdir(project)
        before = {name: outputs_of(project, stage) for name, stage in lock.items()}
        filler = fill(disk)
        failures = {}
        for name, command in commands.items():
            monkeypatch.setenv("DVC_STAGE", name)
            status, stderr = run_stage_in_process([command[0].removeprefix("stages/"), *command[1:]])
            errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
            named = (project / errors[0].removeprefix("error: ").split(": ")[0]).resolve() if errors else disk
            if not (status == 1 and len(errors) == 1 and "Traceback" not in stderr
                    and ("no space left on the device" in errors[0] or "are free there" in errors[0])
                    and named.is_relative_to(project)
                    and named != project):
                failures[name] = f"exit {status}: {stderr[-600:]}"
            elif outputs_of(project, lock[name]) != before[name]:
                failures[name] = "its outputs changed"
            elif temporaries(project):
                failures[name] = f"temporaries left: {temporaries(project)}"
        assert not failures, failures
        filler.unlink()
        monkeypatch.delenv("DVC_STAGE")
        for name, command in commands.items():
            status, stderr = run_stage_in_process([command[0].removeprefix("stages/"), *command[1:]])
            assert status == 0, (name, stderr[-2000:])


# ---------------------------------------------------------------------------------------------
# stop signals

@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_during_training(signum, status, uninterrupted: Path, tiny_prepared: Path, tmp_path: Path):
    """SIGTERM (a batch scheduler's preemption) or SIGINT (Ctrl-C or `dvc queue kill`, sent to the process
    group as a terminal does) in epoch 2: one line saying where, exit 128 + the signal, no
    temporary; the re-run resumes to the uninterrupted weights."""
    params, out = params_file(tmp_path), tmp_path / "run"
    process = start(train_args(params, tiny_prepared, out), REPO, tmp_path / "stderr")
    wait_for(process, EPOCH_1_DONE)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    code, stderr = finish(process, tmp_path / "stderr")
    line = the_one_error_line(stderr)
    assert code == status
    assert line == (f"error: train_resnet interrupted by {signal.Signals(signum).name} during epoch 2 of 2; epoch 1 "
                    f"is saved in {out}/checkpoints; re-run to resume from epoch 2"), line
    assert not temporaries(out) and checkpoints.saved_epochs(out) == [1]
    result = subprocess.run(train_args(params, tiny_prepared, out), cwd=REPO, env=env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0 and "=> resuming" in result.stdout, result.stderr
    assert same_weights(weights(out, 2), weights(uninterrupted, 2))


def test_ctrl_c_stops_every_torchrun_worker(tiny_prepared: Path, tmp_path: Path):
    """Two gloo processes under torchrun; Ctrl-C at the terminal (SIGINT to the stage's process
    group): the stage stops torchrun and both workers, says one line, exits 130, and no process
    of the run outlives it. The re-run resumes from epoch 2."""
    params = params_file(tmp_path, resnet_runs={"cpu": {"procs": 2}})
    out = tmp_path / "ddp-run"
    process = start(train_args(params, tiny_prepared, out), REPO, tmp_path / "stderr")
    wait_for(process, EPOCH_1_DONE)
    os.killpg(process.pid, signal.SIGINT)
    code, stderr = finish(process, tmp_path / "stderr")
    assert code == 130, stderr
    line = the_one_error_line(stderr)
    assert line.startswith("error: train_resnet interrupted by SIGINT during epoch 2 of 2; epoch 1 is saved"), line
    assert processes_mentioning(str(out)) == []
    assert not temporaries(out)
    result = subprocess.run(train_args(params, tiny_prepared, out), cwd=REPO, env=env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0 and "=> resuming" in result.stdout, result.stderr
    assert checkpoints.saved_epochs(out) == [1, 2]


def test_a_stop_signal_while_a_language_model_trains(reproduced: Path, tmp_path: Path):
    """train_wordlm trains in a temporary folder that replaces its run folder at the end, and keeps
    its state after each epoch beside it: SIGTERM in epoch 2 leaves the previous model whole and no
    temporary, and says epoch 1 is saved; the re-run resumes from there to the uninterrupted
    weights and the same DVCLive logs (all but the speed), and removes the saved state."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(deep_update(
        read_params(reproduced / "params.yaml"), {"wordlm": {"train": {"epochs": 6}}})))
    command = [sys.executable, str(REPO / "stages" / "train_wordlm.py"), "--model", "lstm", "--corpus",
               str(reproduced / "datasets" / "corpus"), "--out", "run", "--summary", "summary.json"]
    first = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    model, logs = tmp_path / "run" / "model.pt", tmp_path / "run" / "dvclive" / "plots" / "metrics"
    uninterrupted, digest = torch.load(model, weights_only=True)["state_dict"], hashlib.md5(model.read_bytes()).digest()
    curves = {p.relative_to(logs): p.read_text() for p in logs.rglob("*.tsv") if p.stem != "tokens_per_s"}
    process = start(command, tmp_path, tmp_path / "stderr")
    wait_for(process, "| epoch   2 |")
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process, tmp_path / "stderr")
    assert code == 143 and the_one_error_line(stderr) == (
        "error: train_wordlm interrupted by SIGTERM during epoch 2 of 6 of model lstm; epoch 1 is saved in "
        ".run-progress; re-run to resume from epoch 2"), stderr
    assert hashlib.md5(model.read_bytes()).digest() == digest and not temporaries(tmp_path)
    again = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "| resuming from epoch 1 (.run-progress/resume.pt)" in again.stdout, again.stderr
    assert "| epoch   1 |" not in again.stdout
    assert same_weights(torch.load(model, weights_only=True)["state_dict"], uninterrupted)
    assert {p.relative_to(logs): p.read_text() for p in logs.rglob("*.tsv") if p.stem != "tokens_per_s"} == curves
    assert not (tmp_path / ".run-progress").exists()


def strace_works() -> bool:
    with contextlib.suppress(OSError):
        return subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"], capture_output=True).returncode == 0
    return False


def test_every_stage_stopped_as_it_commits_an_output(reproduced: Path, tmp_path: Path):
    """A stop signal aimed at the worst moment: strace makes each stage's first rename (an atomic
    writer putting a finished output in place) fail with EINTR and delivers SIGTERM or SIGINT
    (alternately, stage by stage) right there. Each stage says one line, exits 143 or 130, leaves
    its earlier outputs byte for byte and no temporary (that every stage then runs again is the
    full-disk test's last step)."""
    if not strace_works():
        pytest.skip("strace is absent or may not trace here (it aims the signal at the commit)")
    lock = yaml.safe_load((reproduced / "dvc.lock").read_text())["stages"]
    project = tmp_path / "project"
    shutil.copytree(reproduced, project, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if n in ("cache", ".git")
                                                  and Path(folder).name in (".dvc", "project")])
    failures = {}
    for number, (name, stage) in enumerate(lock.items()):
        signum = (signal.SIGTERM, signal.SIGINT)[number % 2]
        before = outputs_of(project, stage)
        renames = "rename,renameat,renameat2"
        command = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={renames}", "-e",
                   f"inject={renames}:error=EINTR:signal={signum.name}:when=1", sys.executable,
                   *shlex.split(stage["cmd"])[1:]]
        result = subprocess.run(command, cwd=project, env={**env(), "DVC_STAGE": name}, capture_output=True, text=True,
                                timeout=600)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        expected = f"error: {name} interrupted by {signum.name}"
        if not (result.returncode == 128 + signum and len(errors) == 1 and errors[0].startswith(expected)
                and "Traceback" not in result.stderr):
            failures[name] = f"exit {result.returncode}: {result.stderr[-600:]}"
        elif outputs_of(project, stage) != before:
            failures[name] = "its outputs changed"
        elif temporaries(project):
            failures[name] = f"temporaries left: {temporaries(project)}"
    assert not failures, failures


def test_a_signal_while_the_stage_starts(tmp_path: Path):
    """A SIGTERM in the first second (Python still importing torch): one line, exit 143."""
    process = start([sys.executable, str(REPO / "stages" / "layer_shapes.py"), "--out", str(tmp_path / "t.csv")],
                    REPO, tmp_path / "stderr")
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process, tmp_path / "stderr")
    assert code == 143 and the_one_error_line(stderr).startswith("error: layer_shapes interrupted by SIGTERM"), stderr
    assert not (tmp_path / "t.csv").exists() and not temporaries(tmp_path)


# ---------------------------------------------------------------------------------------------
# damaged checkpoints

def damage(kind: str, good: Path, path: Path) -> None:
    data = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "another program's":
        torch.save(torch.nn.Linear(2, 2), path)
    elif kind == "another project's weights":
        torch.save({"weight": torch.ones(2)}, path)
    elif kind == "a newer format":
        with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as target:
            for item in source.infolist():
                content = source.read(item.filename)
                target.writestr(item, b"99\n" if item.filename.endswith("/version") else content)


@pytest.mark.parametrize("kind,why", [
    ("empty", "the file is empty"),
    ("random bytes", "not a PyTorch checkpoint at all"),
    ("truncated", "truncated or damaged: its zip directory is missing"),
    ("another program's", "it holds a Python object of type torch.nn.modules.linear.Linear, which this project "
                            "never saves"),
    ("another project's weights", "a PyTorch file, but not one this project writes: it has no 'epoch'"),
    ("a newer format", "written by a newer PyTorch, format version 99"),
])
def test_a_damaged_checkpoint_gets_one_safe_line(kind, why, uninterrupted: Path, tiny_prepared: Path, tmp_path: Path,
                                                 monkeypatch):
    """Resuming from a damaged resume.pt: one line naming it, what is wrong and how to recover -
    never torch's advice to load it with weights_only=False (which would run its code)."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    damage(kind, checkpoints.resume_path(uninterrupted), checkpoints.resume_path(out))
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    status, stderr = run_stage_in_process(train_args(params_file(tmp_path), tiny_prepared, out)[1:])
    line = the_one_error_line(stderr)
    assert status == 1
    assert line.startswith(f"error: {checkpoints.resume_path(out)}: not a readable checkpoint ({why}"), line
    assert line.endswith("Restore the last committed one with `dvc checkout train_resnet@run`, or delete it and "
                         "re-run `dvc repro train_resnet@run`."), line
    assert "weights_only" not in stderr
