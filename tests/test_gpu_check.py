"""benchmarks/gpu_check.py in its CPU mode: the same steps, on the real stage scripts, as on a GPU,
so the check cannot rot between the days a GPU is lent - and its own machinery (budget, caps,
stopping what a step started) on real processes."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED_DATA, env, needs_shared
from dlreport.params import read_params

CHECK = REPO / "benchmarks" / "gpu_check.py"
PAYLOAD = REPO / "tools" / "gpu_payload.py"
ORDER = ["environment", "real_data", "recipe_224", "dataset", "train_64", "train_224", "reference_64", "checkpoint_cpu",
         "host_syncs", "two_processes", "compile_64", "deterministic_64"]
ARCHIVE_STEPS = ("real_data", "recipe_224")   # skipped without --archive
RUNS = ("train_64", "train_224", "two_processes", "deterministic_64")
REAL_ARCHIVE = SHARED_DATA / "tiny-imagenet-200.zip"
REAL_ARCHIVE_MD5 = "5cac8f5f2794de738ffdaaeb12735df9"


# --------------------------------------------------------------------------------------
# The lent GPU machine's Python packages, here
# --------------------------------------------------------------------------------------
# Its image (/work/.library/device/KINDS.md: torch 2.11, torchvision, numpy, pandas, PyYAML, Pillow,
# matplotlib, tensorboard, ...) has no DVC, DVCLive, ruamel.yaml or pydantic. A sitecustomize.py on
# PYTHONPATH puts an import blocker first on sys.meta_path in every Python process started with
# lent_image_env - and so in every process those start (the check's children, stage scripts,
# torchrun's workers) - so an import of one of those packages fails here as it would there,
# instead of on a GPU lent for minutes. ABSENT: top-level import names (dvc's own dvc_data,
# dvc_objects, ... too).
ABSENT = ("dvc", "dvclive", "ruamel", "pydantic", "pydantic_core")
ABSENT_PREFIXES = ("dvc_",)

SITECUSTOMIZE = f'''"""Written by tests/test_gpu_check.py: the lent GPU machine's image lacks these packages."""
import sys

ABSENT = {ABSENT!r}
ABSENT_PREFIXES = {ABSENT_PREFIXES!r}


class LentImageBlocker:
    """Refuses, as the lent machine's image would, to import a package it does not hold."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ABSENT or top.startswith(ABSENT_PREFIXES):
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent from the lent GPU machine's image: "
                                      f"tests/test_gpu_check.py)", name=name)
        return None


sys.meta_path.insert(0, LentImageBlocker)
'''


def lent_image_env(tmp_path: Path) -> dict:
    """conftest.env() with the blocker: for subprocesses that must run on the image's packages alone."""
    folder = tmp_path / "lent_image"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    environment = {**env(), "PYTHONPATH": str(folder)}
    # The blocker must hold in a fresh interpreter, or the tests using it would prove nothing.
    probe = subprocess.run([sys.executable, "-c", "import yaml\ntry:\n import ruamel.yaml\nexcept ImportError:\n"
                            " print('blocked')"], env=environment, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "blocked", probe.stdout + probe.stderr
    return environment


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


def test_cpu_mode_passes_every_step(tmp_path: Path):
    # With the lent machine's packages alone: no dvc, dvclive, ruamel.yaml or pydantic.
    result, report = run_check(tmp_path, "--budget", "1200", environment=lent_image_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and report["passed"] and report["complete"], output
    steps = report["steps"]
    # Most important figures first: the report's recipe on the real archive (given one), one
    # process at 64 and 224px, the reference, then the rest.
    assert list(steps) == ORDER
    assert {name: s["status"] for name, s in steps.items()} == {
        **{name: "passed" for name in ORDER}, "host_syncs": "skipped", "compile_64": "skipped",
        **{name: "skipped" for name in ARCHIVE_STEPS}}, output
    assert all(steps[name]["cause"] == "no --archive" for name in ARCHIVE_STEPS)
    assert steps["compile_64"]["cuda_graphs"] == "not applicable (CPU mode)"
    # Every figure carries what it was measured with; this image has none of these, and nothing needed them.
    assert steps["environment"]["dvclive"].startswith("absent")
    assert [steps["environment"][m] for m in ("dvc", "ruamel.yaml", "pydantic")] == ["absent"] * 3
    assert steps["environment"]["params_reader"].startswith("PyYAML")
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
    assert report["skipped_for_budget"] == [n for n in ORDER if n not in ("environment", "host_syncs", "compile_64",
                                                                          *ARCHIVE_STEPS)]
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
        "environment": "passed", "real_data": "skipped", "recipe_224": "skipped", "dataset": "passed",
        "train_64": "passed", "train_224": "skipped",
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


# --------------------------------------------------------------------------------------
# The report's recipe on the real archive, and the archive's way to a lent machine
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_archive(tmp_path_factory) -> Path:
    """A zip in the real archive's layout - generated images, 16 classes of one train and one
    validation image each: every code path of the real one, trained at 224px in seconds here."""
    from dlreport.tinyimagenet import generate_sample

    base = tmp_path_factory.mktemp("archive")
    root = generate_sample(base / "tiny-imagenet-200", seed=0, train_per_class=1, val_per_class=1, test_images=0,
                           grayscale_fraction=0.1, noise=0.3)
    keep = sorted((root / "wnids.txt").read_text().split())[:16]
    (root / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in keep))
    for folder in (root / "train").iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder)
    annotations = [line for line in (root / "val" / "val_annotations.txt").read_text().splitlines()
                   if line.split("\t")[1] in keep]
    (root / "val" / "val_annotations.txt").write_text("".join(f"{line}\n" for line in annotations))
    kept = {line.split("\t")[0] for line in annotations}
    for image in (root / "val" / "images").iterdir():
        if image.name not in kept:
            image.unlink()
    return Path(shutil.make_archive(str(base / "tiny-imagenet-200"), "zip", base, "tiny-imagenet-200"))


def payload(*args: str, tool: Path = PAYLOAD, python: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(python or [sys.executable]), str(tool), *args], cwd=tool.parent.parent, env=env(),
                          capture_output=True, text=True, timeout=600)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def rejoin_on_a_bare_machine(parts: Path, machine: Path) -> Path:
    """What the device calls do: the tool in a tree of its own, each part arriving in a call of its
    own and checked there by a Python without site-packages (stdlib alone), then the join."""
    (machine / "tools").mkdir(parents=True)
    shutil.copy(PAYLOAD, machine / "tools")
    arrived = machine / ".gpu_payload"
    arrived.mkdir()
    manifest = json.loads((parts / "manifest.json").read_text())
    bare = [sys.executable, "-S", "-I"]
    for k, part in enumerate(manifest["parts"], 1):
        shutil.copy(parts / "manifest.json", arrived)
        shutil.copy(parts / part["name"], arrived)
        received = payload("receive", str(k), tool=machine / "tools" / "gpu_payload.py", python=bare)
        assert received.returncode == 0 and f"part {k} of {len(manifest['parts'])} whole" in received.stdout, received
    joined = payload("assemble", tool=machine / "tools" / "gpu_payload.py", python=bare)
    assert joined.returncode == 0 and f"md5 {manifest['md5']}" in joined.stdout, joined
    return arrived / manifest["archive"]


def test_the_archive_travels_in_parts_and_rejoins_whole(tmp_path: Path, sample_archive: Path):
    built = payload("--dir", str(tmp_path / "parts"), "build", "--archive", str(sample_archive), "--parts", "3",
                    "--md5", md5(sample_archive))
    assert built.returncode == 0, built
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert manifest["md5"] == md5(sample_archive) and len(manifest["parts"]) == 3
    assert sum(p["bytes"] for p in manifest["parts"]) == sample_archive.stat().st_size
    # The reference digests are relabel_val's arrays, decoded here.
    assert manifest["reference"]["train"]["shape"] == [16, 3, 64, 64]
    joined = rejoin_on_a_bare_machine(tmp_path / "parts", tmp_path / "machine")
    assert joined.read_bytes() == sample_archive.read_bytes()
    # A part damaged on the way is refused (and removed, so that only it is sent again); the join
    # then names what is missing.
    machine = tmp_path / "machine"
    damaged = machine / ".gpu_payload" / manifest["parts"][1]["name"]
    damaged.write_bytes(b"x" + damaged.read_bytes()[1:])
    tool = machine / "tools" / "gpu_payload.py"
    refused = payload("receive", "2", tool=tool)
    assert refused.returncode and "send part 2 again" in refused.stderr and not damaged.exists(), refused
    missing = payload("assemble", tool=tool)
    assert missing.returncode and "part(s) 2 of 3 are not here" in missing.stderr, missing
    # The device calls: each carries the manifest and its part; only the first and last run the check.
    calls = [json.loads(line) for line in payload("--dir", str(tmp_path / "parts"), "plan").stdout.splitlines()
             if line.startswith("{")]
    assert [c["carry"] for c in calls] == [[".gpu_payload/manifest.json", f".gpu_payload/{p['name']}"]
                                           for p in manifest["parts"]]
    assert "--only environment" in calls[0]["command"] and "--only real_data,recipe_224" in calls[-1]["command"]
    assert all(c["timeout_s"] <= 600 for c in calls)


@needs_shared(REAL_ARCHIVE)
def test_the_real_archive_fits_the_calls_in_four_parts(tmp_path: Path):
    built = payload("--dir", str(tmp_path / "parts"), "build", "--archive", str(REAL_ARCHIVE), "--md5",
                    REAL_ARCHIVE_MD5, "--reference", "none")
    assert built.returncode == 0, built
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert len(manifest["parts"]) == 4, built.stdout  # 242 MB beside this working tree, 64 MiB a call
    assert built.stdout.count("(fits)") == 4, built.stdout
    joined = rejoin_on_a_bare_machine(tmp_path / "parts", tmp_path / "machine")
    assert joined.stat().st_size == REAL_ARCHIVE.stat().st_size


def test_the_reports_recipe_runs_with_the_lent_images_packages(tmp_path: Path, sample_archive: Path):
    """real_data and recipe_224 as the last device call runs them, on the generated archive, with
    the image's packages alone; the time runs out after epoch 2 of 3 (--stop-after), so the run is
    cut to 2 epochs, evaluated and diffed on them, and packed."""
    built = payload("--dir", str(tmp_path / "parts"), "build", "--archive", str(sample_archive))
    assert built.returncode == 0, built
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    result, report = run_check(tmp_path, "--archive", str(sample_archive), "--manifest",
                               str(tmp_path / "parts" / "manifest.json"), "--only", "real_data,recipe_224",
                               "--recipe-epochs", "3", "--stop-after", "2", "--results", "results",
                               environment=lent_image_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and report["passed"], output
    steps = report["steps"]
    assert [n for n, s in steps.items() if s["status"] == "passed"] == ["real_data", "recipe_224"], output
    real = steps["real_data"]
    assert real["archive_md5"] == manifest["md5"] and real["train_images"] == real["val_images"] == 16
    assert real["decoded_as_where_built"] is True  # the same pixels as relabel_val's here
    recipe = steps["recipe_224"]
    assert (recipe["epochs_planned"], recipe["epochs_trained"], recipe["stopped_for_time"]) == (3, 2, True)
    assert recipe["evaluated_epochs"] == [1, 2] and recipe["diff"]["epoch_a"] == 1 and recipe["diff"]["epoch_b"] == 2
    assert "=> epoch 2/3 took" in result.stdout  # the epochs as they end, in the check's own output
    # The results: small files at their project paths, no checkpoint.
    with tarfile.open(tmp_path / "results" / "recipe_224.tar.gz") as tar:
        names = set(tar.getnames())
        read = lambda name: tar.extractfile(name).read().decode()  # noqa: E731
        curves = "runs/resnet/cpu/dvclive/plots/metrics"
        assert {"metrics/train_resnet_cpu.json", "metrics/eval.json", "metrics/diff_predictions.json",
                "runs/eval/predictions_epoch_01.csv", "runs/eval/predictions_epoch_02.csv",
                "reports/diff_predictions/summary.json", f"{curves}/val/acc1.tsv", f"{curves}/train/loss.tsv",
                "gpu_run/params.yaml", "gpu_run/run.json", "gpu_run/logs/recipe_224_train.log"} <= names, names
        assert not [n for n in names if n.endswith(".pt")]
        summary = json.loads(read("metrics/train_resnet_cpu.json"))
        assert summary["status"] == "trained" and summary["epochs"] == 2
        # The recipe block the pipeline's training summary carries (dlreport/recipe.py): 224px as
        # main.py, the run cut to its 2 epochs, the archive by its md5.
        assert summary["recipe"]["input_size"] == 224 and summary["recipe"]["epochs"] == 2
        assert summary["recipe"]["eval_transform"] == "Resize(256) + CenterCrop(224)"
        assert summary["recipe"]["data"]["md5"] == manifest["md5"]
        assert summary["recipe"]["data"]["train_images"] == summary["recipe"]["data"]["val_images"] == 16
        assert read(f"{curves}/val/acc1.tsv").splitlines()[0] == "step\tacc1"
        assert [line.split("\t")[0] for line in read(f"{curves}/val/acc1.tsv").splitlines()[1:]] == ["1", "2"]
        evaluated = json.loads(read("metrics/eval.json"))
        assert (evaluated["first"]["epoch"], evaluated["last"]["epoch"]) == (1, 2)
        assert json.loads(read("reports/diff_predictions/summary.json"))["images"] == 16
        ran_params = yaml.safe_load(read("gpu_run/params.yaml"))
        ran = ran_params["resnet"]
        assert ran_params["tinyimagenet"]["source"] == sample_archive.as_uri()  # the ledger: real images, not generated
        assert ran_params["tinyimagenet"]["md5"] == manifest["md5"]
        assert "all 2 epochs already trained" in read("gpu_run/logs/recipe_224_finish.log")
    # The report's recipe: 224px; everything else as params.yaml (keep_epochs: every epoch, which
    # changes which weights are kept, not the weights; epochs: those trained).
    committed = read_params(REPO / "params.yaml")["resnet"]
    assert ran == {**committed, "input_size": 224, "epochs": 2, "keep_epochs": "all"}


def load_check():
    return sys.modules.get("gpu_check") or load_check_module()


def test_params_yaml_reads_the_same_with_pyyaml():
    """On the lent machine the check reads params.yaml with PyYAML (its image has no ruamel.yaml):
    for the committed file the two must agree (YAML 1.1 and 1.2 differ on yes/no, 1e-4, 010...)."""
    assert load_check().read_params_pyyaml(REPO / "params.yaml") == read_params(REPO / "params.yaml")


def test_the_epoch_budget_stops_where_the_next_epoch_would_not_fit():
    now = [0.0]
    budget = load_check().EpochBudget(deadline=100.0, clock=lambda: now[0], say=lambda line: None)
    ended = []
    for epoch, at in enumerate((30.0, 50.0, 70.0, 88.0), 1):  # the first epoch counts the start-up
        now[0] = at
        assert not budget("Epoch: [1][1/1]\tTime ...")
        ended.append(budget(f"=> epoch {epoch}/20 took {at:.0f} s; ETA ..."))
    # after epoch 3 (at 70 s, 20 s an epoch): 70 + 1.05 * 20 + 1 = 92 <= 100, go on; after 4 (at
    # 88 s, 18 s): 88 + 19.9 > 100, stop
    assert ended == [False, False, False, True] and budget.stopped_after == 4
    last = load_check().EpochBudget(deadline=0.0, clock=lambda: 1.0, say=lambda line: None)
    assert not last("=> epoch 20/20 took 1 s")  # the run's own end: nothing to stop
    assert [load_check().evaluated_epochs(n) for n in (20, 18, 17, 7, 2, 1)] == [
        [7, 18], [7, 18], [7, 17], [1, 7], [1, 2], [1]]


def test_curves_are_written_as_dvclive_writes_them(tmp_path: Path):
    """recipe_224 writes the per-epoch curves itself (the lent machine has no dvclive): the same
    files, byte for byte, as dlreport.runlog's RunLogger has DVCLive write."""
    pytest.importorskip("dvclive")
    from dlreport.runlog import EPOCH_METRICS, RunLogger

    history = [{"epoch": e, **{name: 1.0 / (e + i) for i, name in enumerate(EPOCH_METRICS)}, "lr": 0.1}
               for e in (1, 2, 3)]
    RunLogger(tmp_path / "dvclive_run", history, say=lambda line: None).close()
    load_check().write_curves(tmp_path / "ours", history)
    for name in EPOCH_METRICS:
        path = Path("dvclive") / "plots" / "metrics" / f"{name}.tsv"
        assert (tmp_path / "ours" / path).read_bytes() == (tmp_path / "dvclive_run" / path).read_bytes(), name
