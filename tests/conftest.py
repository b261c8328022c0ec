"""Shared test helpers: real temp git+DVC repositories, real stage runs, the shared real data."""
from __future__ import annotations

import contextlib
import copy
import io
import os
import runpy
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_ZIP = SHARED_DATA / "tiny-imagenet-200-mini.zip"
TINY_ZIP_MD5 = "ff9e50b4c7834bb4d617a867ac582879"
WIKITEXT_SAMPLE = SHARED_DATA / "wikitext-2-sample"
STAGES = REPO / "stages"

# What a pipeline run needs (used where the project is not a git checkout).
PROJECT_FILES = ["dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".gitignore", ".dvc/config",
                 ".dvc/.gitignore", "stages", "dlreport"]

sys.path.insert(0, str(REPO))

from dlreport.params import read_params  # noqa: E402  (params.yaml as DVC reads it)


def run_stage_in_process(script_and_args: list[str]) -> tuple[int, str]:
    """Run a stage entry point as `python stages/<script> ...` would, in this process (the
    interpreter and torch start once for the whole table); returns (exit status, stderr)."""
    script, *args = script_and_args
    err = io.StringIO()
    argv = sys.argv
    sys.argv = [str(STAGES / script), *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(STAGES / script), run_name="__main__")
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    except Exception:  # escaped run_stage: as a subprocess this would be a traceback
        status, err = "exception", io.StringIO(traceback.format_exc())
    finally:
        sys.argv = argv
    return status, err.getvalue()


def needs_shared(path: Path):
    """Skip (with the reason) a test whose real data in ../shared/data is absent."""
    return pytest.mark.skipif(not path.exists(), reason=f"real test data {path} is absent "
                              f"(it lives in ../shared/data beside the checkout)")


def env() -> dict:
    """The environment for subprocesses: this interpreter's bin (dvc, python) first on PATH."""
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e["PYTHONPATH"] = ""
    e["DVC_NO_ANALYTICS"] = "1"
    e.setdefault("GIT_AUTHOR_NAME", "test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.com")
    e.setdefault("GIT_COMMITTER_NAME", "test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.com")
    return e


def run(args: list[str] | str, cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True,
                            shell=isinstance(args, str), timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_stage(script: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, str(Path(cwd) / "stages" / script), *args], cwd=cwd, check=check)


def deep_update(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


# Small enough for a test to train in seconds, big enough for every stage to have work.
TINY_PARAMS = {
    "tinyimagenet": {"sample": {"train_per_class": 2, "val_per_class": 1, "test_images": 4}},
    "resnet": {"epochs": 2, "batch_size": 64, "eval_batch_size": 200, "print_freq": 100},
    "eval": {"epochs": [1, 2]},
}


def write_params(repo: Path, overrides: dict) -> dict:
    params = read_params(REPO / "params.yaml")
    params = deep_update(params, overrides)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def update_params(repo: Path, overrides: dict) -> dict:
    """Change the params of the project at ``repo`` (its own params.yaml, not the repository's)."""
    params = deep_update(read_params(repo / "params.yaml"), overrides)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def tracked_files() -> list[str]:
    """What a fresh clone of the project holds: the files git tracks, as they are in the working
    tree, plus new files not yet added (so work in progress is tested as it will be committed) -
    but not an untracked dvc.lock (the workspace's own run wrote it; a clone has none).
    Outside a git checkout: PROJECT_FILES."""
    def ls_files(*options: str) -> list[str] | None:
        listed = subprocess.run(["git", "ls-files", "-z", *options], cwd=REPO, capture_output=True, text=True)
        return None if listed.returncode else [n for n in listed.stdout.split("\0") if n and (REPO / n).exists()]

    tracked, new = ls_files("--cached"), ls_files("--others", "--exclude-standard")
    if tracked is None or new is None:
        return PROJECT_FILES
    return tracked + [name for name in new if name != "dvc.lock"]


def make_project(dest: Path, overrides: dict | None = None, git: bool = True) -> Path:
    """A fresh clone of the project in ``dest`` (a new git+DVC repository), params overridden."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in tracked_files():
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if overrides is not None:
        write_params(dest, overrides)
    if git:
        run(["git", "init", "-q", "-b", "main"], cwd=dest)
        run(["git", "add", "-A"], cwd=dest)
        run(["git", "commit", "-q", "-m", "project"], cwd=dest)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git+DVC copy of the project with tiny params."""
    return make_project(tmp_path / "project", TINY_PARAMS)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A prepared (relabelled, decoded) sample dataset: 1 train and 1 val image per class."""
    from dlreport import tinyimagenet

    base = tmp_path_factory.mktemp("tiny")
    root = tinyimagenet.generate_sample(base / "tiny-imagenet-200", seed=0, train_per_class=1,
                                        val_per_class=1, test_images=2, grayscale_fraction=0.02, noise=0.3)
    tinyimagenet.relabel(root, base / "prepared")
    return base / "prepared"


def ran(output: str, stage: str) -> bool:
    return f"Running stage '{stage}'" in output


def produced(output: str, stage: str) -> bool:
    """The stage ran, or DVC's run-cache restored its outputs for these exact deps and params
    (projects that share a DVC cache may have run it already)."""
    return ran(output, stage) or f"Stage '{stage}' is cached" in output


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> Path:
    """A fresh clone with tiny params where `dvc repro` ran: first the data stages alone, then the
    whole pipeline (an untargeted repro, as a user's first one); committed with its dvc.lock.

    Shared by most end-to-end tests (the expensive run happens once in each pytest-xdist worker);
    `repro_log` is what DVC printed. Tests that run experiments in it leave their results in the
    workspace; HEAD stays the reproduced commit.
    """
    project = make_project(tmp_path_factory.mktemp("e2e") / "project", TINY_PARAMS)
    first = run(["dvc", "repro", "relabel_val"], cwd=project).stdout
    assert ran(first, "download_tinyimagenet") and ran(first, "relabel_val")
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {"download_tinyimagenet", "relabel_val"} <= set(lock["stages"])
    assert lock["stages"]["download_tinyimagenet"]["params"]["params.yaml"]["tinyimagenet"]["source"] == "sample"
    again = run(["dvc", "repro", "relabel_val"], cwd=project).stdout
    assert "Running stage" not in again, again
    out = run(["dvc", "repro"], cwd=project).stdout
    for stage in ("train_resnet@cpu", "eval_epochs", "diff_predictions", "train_wordlm@gcnn", "context_probe", "report"):
        assert ran(out, stage), (stage, out)
    (project.parent / "repro.log").write_text(first + out)
    assert run(["git", "status", "--porcelain", "data.dvc"], cwd=project).stdout == "", "data.dvc is left alone"
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "reproduced"], cwd=project)
    return project


def restore_committed(project: Path) -> None:
    """Put a project that a test changed back to its committed run: files git tracks, then the
    outputs DVC cached, as links again (DVC copies a persistent output's links before re-running it)."""
    run("git checkout -- . && dvc checkout --force --relink", cwd=project)


@pytest.fixture(scope="session")
def repro_log(reproduced: Path) -> str:
    """What `dvc repro` printed while making the reproduced project."""
    return (reproduced.parent / "repro.log").read_text()


# Word-level language models: a tiny corpus and tiny models, seconds per stage.
TINY_PARAMS["wordlm"] = {
    "sample": {"train_words": 3000, "valid_words": 800, "test_words": 800, "topics": 4},
    "train": {"epochs": 2, "batch_size": 10, "bptt": 10, "log_interval": 5, "eval_batch_size": 5,
              "eval_context": 10, "eval_stride": 5, "threads": 1},
    "models": {
        "lstm": {"type": "LSTM", "emsize": 16, "nhid": 16, "nlayers": 1, "dropout": 0.0, "tied": False,
                 "lr": 20, "optimizer": "sgd"},
        "transformer": {"type": "Transformer", "emsize": 16, "nhid": 16, "nlayers": 1, "nhead": 2,
                        "dropout": 0.0, "tied": False, "lr": 5, "optimizer": "sgd"},
        "gcnn": {"type": "GCNN", "emsize": 16, "nhid": 16, "kernel_size": 3, "dilations": [1, 2],
                 "dropout": 0.0, "tied": False, "lr": 2, "optimizer": "sgd"},
        # the long-context variants: trained on 16 tokens (the CNN: receptive field 15)
        "lstm_long": {"type": "LSTM", "emsize": 16, "nhid": 16, "nlayers": 1, "dropout": 0.0, "tied": False,
                      "lr": 20, "optimizer": "sgd", "bptt": 16, "batch_size": 5},
        "transformer_long": {"type": "Transformer", "emsize": 16, "nhid": 16, "nlayers": 1, "nhead": 2,
                             "dropout": 0.0, "tied": False, "lr": 5, "optimizer": "sgd", "bptt": 16, "batch_size": 5,
                             "eval_context": 16, "eval_stride": 8},
        "gcnn_long": {"type": "GCNN", "emsize": 16, "nhid": 16, "kernel_size": 3, "dilations": [1, 2, 4],
                      "dropout": 0.0, "tied": False, "lr": 2, "optimizer": "sgd", "bptt": 16, "batch_size": 5,
                      "eval_context": 16, "eval_stride": 8},
    },
}
TINY_PARAMS["generate"] = {"words": 50}
TINY_PARAMS["context_probe"] = {"targets": 60, "max_context": 16, "reference_context": 10, "distances": [1, 2, 5, 10],
                                 "bootstrap": 200, "threads": 1}
# The context probe's plot template (log-scale x, interval bands) lives in .dvc/plots.
PROJECT_FILES.append(".dvc/plots")
# The page `dvc plots show` fills (.dvc/config plots.html_template), with the Vega libraries inlined.
PROJECT_FILES.append("tools/plots_page/page.html")


def clone_reproduced(reproduced: Path, dest: Path) -> Path:
    """A git clone of the reproduced project's HEAD that shares its DVC cache (and so its run-cache),
    every output checked out."""
    run(["git", "clone", "-q", str(reproduced), str(dest)], cwd=dest.parent)
    run(["dvc", "cache", "dir", "--local", str(reproduced / ".dvc" / "cache")], cwd=dest)
    run(["dvc", "checkout"], cwd=dest)
    return dest


@pytest.fixture(scope="session")
def reported(reproduced: Path, tmp_path_factory) -> Path:
    """A clone of the reproduced project at its committed state (whatever experiments other tests
    left in the shared workspace), sharing its DVC cache: every output of the pipeline, report
    included, untouched by other tests. Shared by test_report.py and test_plots_page.py."""
    project = clone_reproduced(reproduced, tmp_path_factory.mktemp("report") / "project")
    out = run(["dvc", "repro", "report"], cwd=project).stdout
    assert "Running stage" not in out, out  # the clone is the committed, complete run
    return project


@pytest.fixture
def one_thread():
    """Run a test with torch on one thread (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
# The cost measurement: three short lengths, one timing each (the exponents are tested apart).
TINY_PARAMS["lm_cost"] = {"lengths": [16, 32, 64], "repeats": 1}
TINY_PARAMS["claims"] = {"bootstrap": 200}


def pytest_configure(config: pytest.Config) -> None:
    """The suite runs on every core (pytest.ini: pytest-xdist, a worker a core; each worker builds
    its own session fixtures, `reproduced` included). Each worker, and every process its tests
    start, keeps to its own cores: torch sizes its thread pools to them
    (dlreport.devices.usable_cores), so two workers never run four spinning threads on two cores."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... (absent without xdist)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0))
    if worker and 1 < workers <= len(cores):
        own = cores[int(worker.removeprefix("gw"))::workers]
        os.sched_setaffinity(0, own)
        import torch

        torch.set_num_threads(len(own))
