"""The GPU half's prepared check: train_resnet on a GPU, in one command, the day a GPU is lent.

The steps, in the order they run - the figures that matter most first, so that a short lending
still gives them:

  environment     torch, CUDA, cuDNN, NCCL, driver, GPU and CPU facts; the versions are recorded
                  with every later step's figures (the lent machine's image is not requirements.txt:
                  it held torch 2.11.0 and no dvc, dvclive, ruamel.yaml or pydantic)
  real_data       (--archive) the real Tiny-ImageNet zip through the pipeline's data stages
                  (download_tinyimagenet from a file:// source, md5-checked against --manifest's;
                  relabel_val), and whether the decoded arrays equal those decoded where
                  tools/gpu_payload.py built the archive's parts
  recipe_224      (--archive) the report's recipe - input_size 224, the rest as params.yaml's resnet
                  section (20 epochs, SGD lr 0.1, batch 256) - through train_resnet, for as many
                  epochs as fit in its time (--train-budget; a run stopped early is cut to the epochs
                  it trained, which the constant schedule makes an N-epoch run); eval_epochs on
                  epochs 7 and 18 and diff_predictions on them; the small outputs (summary, curves
                  in DVCLive's layout, eval.json, predictions, the diff's summary) in
                  --results/recipe_224.tar.gz at their project paths
  dataset         a dataset shaped like Tiny-ImageNet - 200 classes, 100,000 train / 10,000 val
                  64x64 images (--device cpu: 200 / 100) - in relabel_val's output format,
                  generated on the spot (a pattern per class plus noise; no download)
  train_64        stages/train_resnet.py - the code dvc repro runs, with params.yaml's recipe
                  (print_freq too: every log line makes the host wait for the GPU) but lr 0.01 - for
                  3 epochs at 64px: images/s, seconds per epoch, data-wait share, peak GPU memory and
                  the projected time of the report's 20 epochs (first epoch + 19 later ones)
  train_224       the same at 224px, 2 epochs
  reference_64    our step against the PyTorch ImageNet example's recipe (ImageFolder + PIL in
                  DataLoader workers on all cores, fp32 NCHW) on the same device, in alternating
                  rounds with benchmarks/bench_resnet_input.py's harness: the ratio
  checkpoint_cpu  stages/eval_epochs.py with the GPU hidden evaluates train_64's last checkpoint: its
                  Acc@1 must be the one training measured; and a process with the GPU hidden must
                  load it with a plain torch.load(path, weights_only=True), as a CPU-only user would
  host_syncs      (GPU) CUDA's sync debug mode counts the synchronising calls of a 3-step and a
                  6-step epoch of the real loop: equal counts, so no step makes the host wait
  two_processes   torchrun, 2 processes, as many epochs as train_64 (a schedule other than constant
                  depends on the total): the per-epoch train loss must match train_64's within 1%,
                  the tolerance of the CPU test. NCCL is probed first (on a one-GPU machine both
                  processes share it, and NCCL may refuse two ranks on one device: then gloo); a
                  refusal is recorded with the lines that say why (the CPU mode probes with the GPU
                  hidden, where NCCL must refuse)
  compile_64      (GPU) resnet.compile: reduce-overhead, 2 epochs: the compile warm-up, the later
                  epochs' images/s against train_64's, and whether CUDA graphs were recorded or
                  skipped (Inductor only logs a skip and trains on without them: TORCH_LOGS=cudagraphs)
  deterministic_64  resnet.deterministic: true, twice, 2 epochs each: the two runs must end with
                  identical losses and weights; their images/s against train_64's is the cost

Time: each step has a cap (it is stopped after that long) and a minimum (the time it needs): it
starts only with its minimum left of --budget (450 s), otherwise it is skipped - not failed - and so
are the steps that need it. Every step runs in processes of its own - the stage scripts, torchrun,
or this script on one step (--child: the in-process steps too, so that their caps hold and this
process never holds the GPU) - and a step past its cap is stopped: SIGTERM to its process group
(torchrun shuts its workers down), then, 10 s later, SIGKILL to every process it started, found by
an environment marker wherever it went (torchrun starts each worker in a session of its own, so
killing torchrun alone leaves them running on the GPU). The JSON (--out) is rewritten after every
step, so a run stopped at its limit still reports what finished.

On the lent H200 (its python3 holds torch; the repo's working tree is the current folder):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json

(it stops itself within --budget, so a time limit of 9 minutes on the command leaves room for the
start-up and the report). The report's recipe on the real archive takes its own device calls: the
archive's parts, then --only real_data,recipe_224 (tools/gpu_payload.py plan prints them; docs/gpu-check.md).
The suite runs the CPU mode:

    python benchmarks/gpu_check.py --device cpu --out /tmp/gpu_check.json

The lent machine's packages: where ruamel.yaml is absent, params files are read with PyYAML (see
read_params_pyyaml), and every stage script runs through this file's --stage, so that its reads go
the same way; nothing on the path needs dvc, dvclive or pydantic (without pydantic, dlreport.params
builds the params' objects from the values as written: the sections' own checks and those across
sections run, types and ranges are left to the suite). The suite runs the CPU mode
with those four made unimportable (tests/test_gpu_check.py).

Exit status: 0 if every step passed, apart from those this mode or --skip leaves out; 1 if a step
failed; 3 if none failed but some were skipped for lack of --budget (a second try: --skip the steps
that passed - checkpoint_cpu, two_processes, compile_64 and deterministic_64 need train_64 - or a
larger --budget). The issue's goals - 20 epochs at 224px within 6 minutes and at 64px within 90 s,
2x the example's recipe, data wait under 5% at 64px - are measured and reported (goals in the
JSON), not part of the exit status.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.metadata
import importlib.util
import itertools
import multiprocessing
import os
import platform
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]  # also when imported (the tests)

from dlreport import params as params_library  # noqa: E402


def read_params_pyyaml(path: str | Path = "params.yaml") -> dict:
    """A params file read by PyYAML. The lent machine's image has PyYAML but not ruamel.yaml, with
    which dlreport.params reads params files as DVC does (YAML 1.2). The files this check reads are
    the project's params.yaml - tests/test_gpu_check.py holds both readers to the same values for
    it - and the params files the check itself writes with yaml.safe_dump, which PyYAML reads back
    exactly."""
    return yaml.safe_load(Path(path).read_text()) or {}


def use_pyyaml_where_ruamel_is_absent() -> bool:
    """Where ruamel.yaml cannot be imported (the lent machine), the library's params reader becomes
    PyYAML's, in this process and so in every process the check starts (they run this file: the
    steps' children, the stage scripts through --stage, torchrun's workers). Before the imports
    below: benchmarks/bench_resnet_input.py reads params.yaml when it is imported."""
    try:
        importlib.import_module("ruamel.yaml")
    except ImportError:
        params_library.read_params = read_params_pyyaml
        return True
    return False


PARAMS_READER = "PyYAML (no ruamel.yaml here)" if use_pyyaml_where_ruamel_is_absent() else "ruamel.yaml, as DVC"

import bench_resnet_input as bench  # noqa: E402  (this folder)
from dlreport import checkpoints, training  # noqa: E402
from dlreport.devices import Dist, autocast_dtype, configure_kernels, cpu_name  # noqa: E402
from dlreport.fileio import atomic_dir, read_json, write_json  # noqa: E402
from dlreport.models import build_resnet18  # noqa: E402
from dlreport.params import parse, read_params, validate  # noqa: E402  (read_params: PyYAML's where ruamel is absent)
from dlreport.runlog import EPOCH_METRICS  # noqa: E402
from dlreport.tinyimagenet import COLUMNS  # noqa: E402


def _load_tool(name: str):
    """tools/<name>.py as a module (tools/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


payload = _load_tool("gpu_payload")  # the real archive's parts and manifest (stdlib and numpy)

# Sizes per mode. The CPU mode keeps the suite's run near a few minutes on 2 cores: one training
# image per class (and 16 at 224px, 12x the work per image) exercises every step, both resolutions
# and both process counts, as the GPU mode does; only the sizes differ.
SIZES = {
    "cuda": {"train": 100_000, "val": 10_000, "small": None, "batch": 256, "eval_batch": 500, "epochs": 3,
             "epochs_224": 2, "epochs_other": 2, "jpegs": 10_000, "ref_batch": 256, "rounds": 5, "steps": 20},
    "cpu": {"train": 200, "val": 100, "small": (16, 8), "batch": 64, "eval_batch": 100, "epochs": 2,
            "epochs_224": 1, "epochs_other": 2, "jpegs": 200, "ref_batch": 32, "rounds": 2, "steps": 1},
}
# params.yaml's recipe (print_freq, precision, batch size: what dvc repro runs), but lr 0.01 as the
# CPU DDP test uses (speed does not depend on it; one and two processes stay within that test's 1%
# loss tolerance at this lr), every epoch's weights kept (checkpoint_cpu reads one), and the
# default kernels: compile_64 and deterministic_64 time the others against these.
RECIPE = {"lr": 0.01, "keep_epochs": "all", "compile": False, "deterministic": False}
LOSS_TOLERANCE = 0.01        # relative, per epoch: tests/test_training.py's DDP tolerance
ACC1_TOLERANCE = {"cuda": 0.5, "cpu": 0.0}   # percentage points: GPU bf16 kernels vs the CPU's
GOALS = {"projected_20_epochs_224_s": 360, "projected_20_epochs_64_s": 90, "ratio_to_reference_64": 2.0,
         "data_wait_fraction_64": 0.05}
REPORT_EPOCHS = 20
GRACE_S = 10                 # after SIGTERM, before SIGKILL (torchrun itself waits 30 s for its workers)
MARKER = "GPU_CHECK_RUN"     # in the environment of every process a step starts (inherited by all of theirs)


class CheckFailed(Exception):
    """A step's check did not hold; ``details`` (what was measured) go into its record."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


class Interrupted(BaseException):
    """SIGTERM to the check itself (a time limit on the command): stop the running step, save."""


def require(condition: bool, message: str, **details) -> None:
    if not condition:
        raise CheckFailed(message, **details)


# --------------------------------------------------------------------------------------
# Processes: every step's work runs in processes of its own, stopped whole at its cap
# --------------------------------------------------------------------------------------
_tags = itertools.count()


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process; None if it is gone or a zombie (which holds no memory)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ... starttime is the 20th
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[19]))


def processes_of(tag: str, root: int | None = None) -> dict[int, int]:
    """pid -> start time of every live process of one run: those whose environment holds the run's
    marker (inherited by everything it starts, in whatever session, and kept when a parent dies)
    and those descending from ``root``."""
    stats = {int(name): s for name in os.listdir("/proc") if name.isdigit() and (s := _stat(int(name)))}
    needle = f"{MARKER}={tag}".encode()
    found = {}
    for pid, (_, started) in stats.items():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found[pid] = started
        except OSError:  # gone meanwhile, or not ours
            pass
    children = defaultdict(list)
    for pid, (parent, _) in stats.items():
        children[parent].append(pid)
    stack = [root] if root in stats else []
    while stack:
        pid = stack.pop()
        found[pid] = stats[pid][1]
        stack += children[pid]
    found.pop(os.getpid(), None)
    return found


def _alive(processes: dict[int, int]) -> dict[int, int]:
    """Those still running (the same process: a reused pid has another start time)."""
    return {pid: started for pid, started in processes.items() if (_stat(pid) or (0, None))[1] == started}


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(process: subprocess.Popen | None, tag: str, grace: float = GRACE_S) -> str:
    """Stop a run: SIGTERM to its process group (torchrun then stops its workers), then after
    ``grace`` seconds SIGKILL to every process of the run that is left. Says what it took."""
    root = process.pid if process else None
    known = processes_of(tag, root)
    if process:
        _signal(process.pid, signal.SIGTERM, group=True)
    else:  # strays of a run that ended: nothing to pass SIGTERM on for them
        for pid in known:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process:
            process.poll()  # reap it: a zombie is gone
        known.update(processes_of(tag, root))
        known = _alive(known)
        if not known:
            if process:
                process.wait(timeout=10)
            return "they ended on SIGTERM"
        time.sleep(0.2)
    killed = len(known)
    deadline = time.monotonic() + 10
    while known and time.monotonic() < deadline:  # (a process may still start others: repeat)
        if process:
            _signal(process.pid, signal.SIGKILL, group=True)
        for pid in known:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.2)
        if process:
            process.poll()
        known = _alive({**known, **processes_of(tag, root)})
    if process:
        process.wait(timeout=10)
    left = f"; still running: pids {sorted(known)}" if known else "; none is left"
    return f"{killed} process(es) still running {grace:.0f} s after SIGTERM were killed (SIGKILL){left}"


class StepStopped(CheckFailed):
    pass


def _wait_watching(process: subprocess.Popen, log_path: Path, timeout: float,
                   until: Callable[[str], bool]) -> int | None:
    """Wait for ``process`` as Popen.wait(timeout) does, passing each line of its log to ``until``
    as it is written: None as soon as ``until`` returns true for one (the process still running)."""
    deadline, partial = time.monotonic() + timeout, ""
    with open(log_path, errors="replace") as log:
        while True:
            try:
                status = process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                status = None
            *lines, partial = (partial + log.read()).split("\n")
            asked = [until(line) for line in lines]  # (every line, in order: ``until`` may keep count)
            if status is not None:
                return status
            if any(asked):
                return None
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(process.args, timeout)


def run_logged(command: list[str], log_path: Path, timeout: float, env: dict | None = None,
               grace: float = GRACE_S,
               until: Callable[[str], bool] | None = None) -> tuple[int | None, str, str | None]:
    """Run ``command`` in a session of its own, its output to ``log_path``, for at most ``timeout``
    seconds: (exit status, output, what was done about processes that outlived it, if any).
    Past the timeout it is stopped whole (see stop) and StepStopped raised. With ``until``, each
    line of output is passed to it as it comes, and the first for which it returns true stops the
    run whole there: the exit status is then None."""
    tag = f"{os.getpid()}-{next(_tags)}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    note = None
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), MARKER: tag})
        try:
            status = (process.wait(timeout=timeout) if until is None else
                      _wait_watching(process, log_path, timeout, until))
        except subprocess.TimeoutExpired:
            how = stop(process, tag, grace)
            raise StepStopped(f"still running after {timeout:.0f} s; stopped: {how}") from None
        except BaseException:  # Interrupted, KeyboardInterrupt: leave nothing running
            stop(process, tag, grace)
            raise
        if status is None:
            note = f"stopped when asked: {stop(process, tag, grace)}"
    strays = processes_of(tag)
    if strays:
        note = f"{len(strays)} process(es) outlived it: {stop(None, tag, grace)}"
    return status, log_path.read_text(errors="replace"), note


# --------------------------------------------------------------------------------------
# Running steps
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable            # fn(check, timeout) -> dict of results; raises CheckFailed
    cap: float              # seconds: stopped after this long
    minimum: float          # seconds of --budget it must have left to start
    needs: tuple = ()
    child: bool = False     # fn runs in this process: run it in a child (this script --child NAME)
    gpu_only: str | None = None      # why the CPU mode leaves it out
    cpu_record: dict | None = None   # what the CPU mode records for it instead
    always: bool = False    # runs (under its cap) however little of the --budget is left
    archive: bool = False   # needs the real archive (--archive): skipped without it


def software_versions() -> dict:
    """What every figure was measured with (import-level facts; the environment step adds the GPU's)."""
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda}


class Check:
    def __init__(self, args):
        self.args, self.mode, self.out, self.budget = args, args.device, Path(args.out), args.budget
        # Absolute: every step's child process runs in the repository, not in the caller's folder.
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check-")).resolve()
        self.size = SIZES[self.mode]
        self.variant = "gpu1" if self.mode == "cuda" else "cpu"
        self.start = time.monotonic()
        self.versions = software_versions()
        self.report = {"check": "benchmarks/gpu_check.py", "mode": self.mode, "budget_s": self.budget,
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
        self.results: dict[str, dict] = {}
        self.notes: list[str] = []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def not_ready(self, spec: Step) -> dict | None:
        """The record of a step whose needs did not pass: not run (one failed) or skipped (one was)."""
        steps = self.report["steps"]
        unmet = [n for n in spec.needs if steps[n]["status"] != "passed"]
        failed = [n for n in unmet if steps[n]["status"] in ("failed", "not run")]
        if failed:
            return {"status": "not run", "why": f"needs {', '.join(failed)}, which did not pass"}
        if unmet:
            causes = [steps[n]["cause"] for n in unmet]
            return {"status": "skipped", "cause": "budget" if "budget" in causes else causes[0],
                    "why": f"needs {', '.join(unmet)}, which was skipped"}
        return None

    def step(self, spec: Step, *, cap: float, minimum: float, skip: tuple[str, str] | None) -> None:
        if skip:  # (cause, why): not part of this mode, --skip/--only, or no --archive; does not count
            cause, why = skip
            record = {"status": "skipped", "cause": cause, "why": why,
                      **(spec.cpu_record if cause == "mode" and spec.cpu_record else {})}
        elif (blocked := self.not_ready(spec)) is not None:
            record = blocked
        elif not spec.always and self.left() < minimum:
            record = {"status": "skipped", "cause": "budget",
                      "why": f"not enough of the --budget left ({max(0, self.left()):.0f} s; it needs {minimum:.0f} s)"}
        else:
            timeout = cap if spec.always else min(cap, self.left())
            print(f"\n== {spec.name} (at most {timeout:.0f} s)", flush=True)
            tic = time.monotonic()
            self.notes = []
            try:
                result = self.in_child(spec.name, timeout) if spec.child else spec.fn(self, timeout)
                record = {"status": "passed", **result}
                self.results[spec.name] = result
            except CheckFailed as error:
                record = {"status": "failed", "why": str(error), **error.details}
            except Interrupted:
                self.report["steps"][spec.name] = {"status": "failed", "why": "the check was stopped (SIGTERM) "
                                                   "during this step; its processes were stopped",
                                                   "seconds": round(time.monotonic() - tic, 1)}
                raise
            except Exception as error:  # a check must report, not crash: the next steps still run
                record = {"status": "failed", "why": f"{type(error).__name__}: {error}",
                          "traceback": traceback.format_exc().splitlines()[-8:]}
            record["seconds"] = round(time.monotonic() - tic, 1)
            if self.notes:
                record["stray_processes"] = self.notes
            record["versions"] = dict(self.versions)  # with every figure: what it was measured with
        self.report["steps"][spec.name] = record
        print(f"== {spec.name}: {record['status']}" + (f" ({record['why']})" if "why" in record else "")
              + (f" in {record['seconds']} s" if "seconds" in record else ""), flush=True)
        self.save()

    def save(self) -> None:
        self.report["elapsed_s"] = round(time.monotonic() - self.start, 1)
        write_json(self.out, self.report)

    def run(self, name: str, command: list[str], timeout: float, env: dict | None = None,
            until: Callable[[str], bool] | None = None) -> str:
        """A subprocess, stopped whole at ``timeout`` (or where ``until`` says: see run_logged); its
        output in the work folder's logs/<name>.log."""
        status, text, note = run_logged(command, self.log(name), timeout, env, until=until)
        if note and status is not None:
            self.notes.append(f"{name}: {note}")
        shown = [line for line in text.splitlines() if line.startswith(("=>", " * ", "error"))]
        print("\n".join(f"   {line}" for line in shown[-6:]), flush=True)
        require(status == 0 or (status is None and until is not None),
                f"{' '.join(command[-12:])} exited with status {status}; its output ended: "
                + " | ".join(text.strip().splitlines()[-25:]))
        return text

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def in_child(self, name: str, timeout: float) -> dict:
        """Run step ``name``'s function in a child process (this script, --child), under its cap."""
        outcome_path = self.work / "steps" / f"{name}.json"
        outcome_path.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--device", self.mode, "--work", str(self.work),
                   "--child", name, "--out", str(outcome_path), "--budget", str(timeout)]
        if self.args.stall:
            command += ["--stall", self.args.stall]
        self.run(name, command, timeout)
        outcome = read_json(outcome_path)
        if "failed" in outcome:
            raise CheckFailed(outcome["failed"], **outcome.get("details", {}))
        return outcome["result"]


def child_main(args) -> None:
    """One step's function in this process (--child): its outcome as JSON in --out."""
    check = Check(args)
    spec = STEP_BY_NAME[args.child]
    if args.stall == spec.name:
        stall(check)
    try:
        outcome = {"result": spec.fn(check, args.budget)}
    except CheckFailed as error:
        outcome = {"failed": str(error), "details": error.details}
    except Exception as error:
        outcome = {"failed": f"{type(error).__name__}: {error}",
                   "details": {"traceback": traceback.format_exc().splitlines()[-8:]}}
    write_json(args.out, outcome)


def stall(check: Check) -> None:
    """--stall STEP, for the tests: the step hangs, as a stalled DataLoader would, ignoring SIGTERM,
    and leaves a process in a session of its own that ignores it too - what its cap must clean up."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True)
    (check.work / "stalled.pids").write_text(f"{os.getpid()} {stray.pid}\n")
    time.sleep(3600)


def stage_command(script: str, *args) -> list[str]:
    """How the check runs stages/<script> - the code dvc repro runs: through this file's --stage,
    so that its params are read with the reader this process uses (see read_params_pyyaml)."""
    return [sys.executable, str(Path(__file__).resolve()), "--stage", script, *map(str, args)]


def stage_main(script: str, argv: list[str]) -> None:
    """--stage SCRIPT ARGS...: stages/SCRIPT as `python stages/SCRIPT ARGS...` runs it, in this
    process, whose params reader is PyYAML's where ruamel.yaml is absent (this file's import)."""
    path = REPO / "stages" / script
    sys.path.insert(0, str(path.parent))  # as for a script: its folder first (stages/_common.py)
    sys.argv = [str(path), *argv]
    runpy.run_path(str(path), run_name="__main__")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def write_prepared(out: Path, train: int, val: int, seed: int = 0) -> Path:
    """relabel_val's output (classes.csv, train.csv, val.csv, *_images.npy) for a synthetic set:
    each class a random 8x8 colour pattern scaled to 64x64, each image that pattern plus noise.

    60% of the training labels are random: an easy synthetic set would drive the training loss
    towards 0 within an epoch, where a 1% relative tolerance means nothing; with this floor it
    stays near real Tiny-ImageNet's early losses (about 4), as in the CPU test's comparison.
    Validation labels are all true."""
    rng = np.random.default_rng(seed)
    wnids = np.array([f"n{9_000_000 + i:08d}" for i in range(200)])
    names = np.array([f"pattern {i}" for i in range(200)])
    patterns = rng.integers(0, 160, (200, 3, 8, 8), dtype=np.uint8).repeat(8, 2).repeat(8, 3)
    with atomic_dir(out) as tmp:
        pd.DataFrame({"class_index": range(200), "wnid": wnids, "name": names}).to_csv(tmp / "classes.csv", index=False)
        for split, n in (("train", train), ("val", val)):
            shown = rng.permutation(np.arange(n) % 200)
            images = np.lib.format.open_memmap(tmp / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                               shape=(n, 3, 64, 64))
            for s in range(0, n, 10_000):
                chunk = shown[s:s + 10_000]
                images[s:s + len(chunk)] = patterns[chunk] + rng.integers(0, 96, (len(chunk), 3, 64, 64), dtype=np.uint8)
            images.flush()
            del images
            noisy = rng.random(n) < (0.6 if split == "train" else 0.0)
            labels = np.where(noisy, rng.integers(0, 200, n), shown)
            paths = ([f"train/{wnids[k]}/images/{wnids[k]}_{i}.JPEG" for i, k in enumerate(labels)] if split == "train"
                     else [f"val/images/val_{i}.JPEG" for i in range(n)])
            table = pd.DataFrame({"path": paths, "wnid": wnids[labels], "class_index": labels.astype(np.int16),
                                  "name": names[labels], "x0": 0, "y0": 0, "x1": 63, "y1": 63})
            table[COLUMNS].to_csv(tmp / f"{split}.csv", index=False)
        write_json(tmp / "summary.json", {"classes": 200, "train_images": train, "val_images": val})
    return out


def _write_jpegs(job: tuple[Path, Path, int, int]) -> None:
    from PIL import Image

    prepared, root, lo, hi = job
    images = np.load(prepared / "train_images.npy", mmap_mode="r")
    paths = pd.read_csv(prepared / "train.csv").path
    for i in range(lo, hi):
        path = root / paths[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0))).save(path, "JPEG", quality=90)


def write_jpegs(prepared: Path, root: Path, count: int) -> Path:
    """The first ``count`` training images as JPEG files in the official train/<wnid>/images layout."""
    chunks = [(prepared, root, lo, min(count, lo + 500)) for lo in range(0, count, 500)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_write_jpegs, chunks)
    return root


# --------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------
def _version(module: str, distribution: str) -> str:
    """The version of what ``import module`` finds (as the stages import it), or "absent"."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return "absent"
    try:
        return getattr(found, "__version__", None) or importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def environment(check: Check, _timeout) -> dict:
    info = {**software_versions(), "cpu": cpu_name(), "cpu_cores": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for module, distribution in (("numpy", "numpy"), ("pandas", "pandas"), ("yaml", "PyYAML"), ("PIL", "Pillow"),
                                 ("tensorboard", "tensorboard"), ("dvclive", "dvclive"), ("dvc", "dvc"),
                                 ("ruamel.yaml", "ruamel.yaml"), ("pydantic", "pydantic")):
        info[module] = _version(module, distribution)
    if info["dvclive"] == "absent":
        info["dvclive"] = ("absent: runs write no DVCLive logs (checkpoints, summaries and TensorBoard logs as usual; "
                           "recipe_224 writes its curves in DVCLive's layout itself)")
    info["params_reader"] = PARAMS_READER
    if check.mode == "cuda":
        require(torch.cuda.is_available(), "torch sees no CUDA GPU; run with --device cpu on a CPU-only host")
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpus=torch.cuda.device_count(), gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                    bf16=torch.cuda.is_bf16_supported())
        try:  # facts only: none of them may stop the check
            version = torch.cuda.nccl.version()  # a tuple; an int in older torch
            info["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        except Exception as error:
            info["nccl"] = f"unknown ({type(error).__name__})"
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception as error:
            info["driver"] = f"unknown ({type(error).__name__})"
    print("   " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    return info


def dataset(check: Check, _timeout) -> dict:
    size = check.size
    write_prepared(check.work / "prepared", size["train"], size["val"])
    if size["small"]:  # the CPU mode's 224px run: a handful of images (224px is 12x the work of 64px)
        write_prepared(check.work / "prepared_small", *size["small"])
    gb = sum(p.stat().st_size for p in (check.work / "prepared").glob("*.npy")) / 1e9
    return {"train_images": size["train"], "val_images": size["val"], "image_bytes_gb": round(gb, 2)}


def host_syncs(check: Check, _timeout) -> dict:
    """The loop's synchronising calls, counted by CUDA's sync debug mode, for 3 and for 6 steps."""
    device = torch.device("cuda", 0)
    configure_kernels(False, use_cuda=True)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (192, 3, 64, 64), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 200, (192,), device=device)
    recipe = parse("resnet", {**base_params(check)["resnet"], "batch_size": 32, "print_freq": 1000})
    model = training.to_training_device(build_resnet18(), device)
    step_fn = training.TrainStep.for_recipe(model, recipe, 6, autocast_dtype("auto", device))

    def syncs(n: int) -> int:
        data = training.Data(images[:n], labels[:n], images[:32], labels[:32])
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                training.train_one_epoch(step_fn, data, 1, recipe, Dist(device=device), lambda line: None)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(96)  # warm-up: cuDNN's autotuning and the allocator's first blocks
    three, six = syncs(96), syncs(192)
    require(three > 0, "sync debug mode saw no synchronising call at all, not even the epoch's end")
    require(three == six, f"a 6-step epoch synchronises {six} times, a 3-step one {three}: something syncs per step")
    return {"synchronising_calls_3_steps": three, "synchronising_calls_6_steps": six}


def base_params(check: Check) -> dict:
    params = read_params(REPO / "params.yaml")
    params["devices"] = 1 if check.mode == "cuda" else 0
    params["resnet"].update(RECIPE, epochs=check.size["epochs"], batch_size=check.size["batch"],
                            eval_batch_size=check.size["eval_batch"])
    params["eval"]["epochs"] = "all"  # the params are checked as a whole: no epoch beyond training
    return params


def train_run(check: Check, name: str, timeout: float, *, prepared: Path, procs: int = 1,
              backend: str = "auto", env: dict | None = None, **recipe) -> dict:
    """One training run through stages/train_resnet.py (under torchrun for several processes)."""
    folder = check.work / name
    params = base_params(check)
    params["resnet"].update(recipe)
    params["resnet"]["launch"]["backend"] = backend
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_dir, summary_path = folder / "runs" / check.variant, folder / "metrics" / f"train_resnet_{check.variant}.json"
    stage = stage_command("train_resnet.py", "--variant", check.variant, "--params", folder / "params.yaml",
                          "--prepared", prepared, "--out", run_dir, "--summary", summary_path)
    if procs > 1:  # torchrun starts this file's --stage in each worker
        stage = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *stage[1:]]
    log = check.run(name, stage, timeout, env)
    summary = read_json(summary_path)
    resnet = params["resnet"]
    epochs = resnet["epochs"]
    require(summary["status"] == "trained" and summary["epochs"] == epochs, f"summary: {summary}")
    require(f"on {procs} process(es)" in log and f"Epoch: [{epochs}][" in log and " * Acc@1" in log,
            "the log lacks main.py's lines")
    require(("deterministic kernels" in log) == resnet["deterministic"],
            f"resnet.deterministic is {resnet['deterministic']}, but the run's log says otherwise")
    history = checkpoints.load_checkpoint(checkpoints.resume_path(run_dir))["history"]
    require(checkpoints.saved_epochs(run_dir) == list(range(1, epochs + 1)), "an epoch checkpoint is missing")
    seconds = [h["epoch_seconds"] for h in history]
    steady = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
    return {
        "run_dir": str(run_dir), "summary": str(summary_path), "epochs": epochs, "processes": procs,
        "batch_size": resnet["batch_size"], "print_freq": resnet["print_freq"], "compile": resnet["compile"],
        "deterministic": resnet["deterministic"],
        "train_loss": [h["train/loss"] for h in history], "val_acc1": [h["val/acc1"] for h in history],
        "epoch_seconds": [round(s, 2) for s in seconds],
        "images_per_second": summary["images_per_second"], "seconds_per_epoch": summary["seconds_per_epoch"],
        "data_wait_fraction": summary["data_wait_fraction"], "peak_gpu_memory_gb": summary.get("peak_gpu_memory_gb"),
        "precision": summary["precision"], "device": summary["device"],
        f"projected_{REPORT_EPOCHS}_epochs_s": round(seconds[0] + (REPORT_EPOCHS - 1) * steady, 1),
    }


def train_64(check: Check, timeout) -> dict:
    result = train_run(check, "train_64", timeout, prepared=check.work / "prepared")
    require(result["train_loss"][-1] < result["train_loss"][0], f"the train loss did not fall: {result['train_loss']}",
            **result)
    return result


def train_224(check: Check, timeout) -> dict:
    small = check.size["small"]
    prepared = check.work / ("prepared_small" if small else "prepared")
    sizes = {"batch_size": 8, "eval_batch_size": 8} if small else {}
    return train_run(check, "train_224", timeout, prepared=prepared, input_size=224,
                     epochs=check.size["epochs_224"], **sizes)


def reference_64(check: Check, _timeout) -> dict:
    device = torch.device(check.mode, 0) if check.mode == "cuda" else torch.device("cpu")
    size, workers = check.size, os.cpu_count()
    root = write_jpegs(check.work / "prepared", check.work / "jpeg", size["jpegs"])
    torch.backends.cudnn.benchmark = True  # the example sets it
    amp = autocast_dtype("auto", device)
    variants = [
        bench.Variant(f"reference: ImageFolder + PIL in {workers} workers, fp32 NCHW", build_resnet18(),
                      bench.reference_batches(root, size["ref_batch"], workers), device=device),
        bench.Variant(f"ours: uint8 in device memory, batched crop/flip, channels_last, {str(amp or torch.float32)[6:]}",
                      training.to_training_device(build_resnet18(), device),
                      bench.decoded_batches(check.work / "prepared", size["ref_batch"], device), amp, device),
    ]
    try:
        rows = bench.compare(variants, size["rounds"], size["steps"], log=lambda line: print("   " + line, flush=True))
    finally:
        for variant in variants:
            variant.batches.close()  # stops the reference's DataLoader workers
    require(all(r["images_per_second"] > 0 for r in rows), f"no images/s: {rows}")
    return {"batch_size": size["ref_batch"], "rounds": size["rounds"], "steps_per_round": size["steps"],
            "reference_images_per_second": rows[0]["images_per_second"],
            "ours_images_per_second": rows[1]["images_per_second"], "ratio": rows[1]["ratio"],
            "variants": [r["variant"] for r in rows]}


# A CPU-only user's load: no map_location, the GPU hidden (CUDA tensors in the file would raise).
PLAIN_LOAD = ("import sys, torch; state = torch.load(sys.argv[1], weights_only=True); "
              "print('tensor devices:', ','.join(sorted({t.device.type for t in state['model'].values()})))")


def checkpoint_cpu(check: Check, timeout) -> dict:
    trained = check.results["train_64"]
    epoch = trained["epochs"]
    path = checkpoints.checkpoint_path(Path(trained["run_dir"]), epoch)
    hidden = {"CUDA_VISIBLE_DEVICES": ""}
    start = time.monotonic()
    loaded = check.run("checkpoint_plain_load", [sys.executable, "-c", PLAIN_LOAD, str(path)], timeout, env=hidden)
    require("tensor devices: cpu\n" in loaded, f"{path}: a plain torch.load with the GPU hidden gave {loaded.strip()!r}")
    params = base_params(check)
    params["eval"] = {"run": check.variant, "epochs": [epoch], "batch_size": check.size["eval_batch"]}
    folder = check.work / "checkpoint_cpu"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    check.run("checkpoint_cpu", stage_command("eval_epochs.py", "--params", folder / "params.yaml", "--prepared",
                                              check.work / "prepared", "--runs", Path(trained["run_dir"]).parent,
                                              "--summaries", trained["summary"], "--out", folder / "eval",
                                              "--metrics", folder / "eval.json"),
              timeout - (time.monotonic() - start), env=hidden)
    on_cpu = read_json(folder / "eval.json")["last"]["acc1"]
    in_training = checkpoints.load_checkpoint(path)["metrics"]["val/acc1"]
    difference = on_cpu - in_training
    result = {"epoch": epoch, "plain_load_with_gpu_hidden": "cpu tensors", "acc1_cpu": on_cpu,
              "acc1_training": in_training, "difference": difference, "tolerance_points": ACC1_TOLERANCE[check.mode]}
    require(abs(difference) <= ACC1_TOLERANCE[check.mode],
            f"Acc@1 {on_cpu:.2f} on the CPU, {in_training:.2f} when trained (tolerance {ACC1_TOLERANCE[check.mode]})",
            **result)
    return result


def failure_reason(log: str) -> str:
    """The lines of a failed run's output that say why: NCCL's own warnings (NCCL_DEBUG=WARN), the
    line after NCCL's "Last error:", and the exceptions the workers raised - not torchrun's summary."""
    lines = [line.strip() for line in log.splitlines()]
    found = []
    for i, line in enumerate(lines):
        line = re.sub(r"^\[rank\d+\]:\s*", "", line)  # torchrun may prefix workers' lines
        if "NCCL WARN" in line:
            found.append(line[line.index("NCCL WARN"):])
        elif line.endswith("Last error:") and i + 1 < len(lines):
            found.append(re.sub(r"^\[rank\d+\]:\s*", "", lines[i + 1]))
        elif re.match(r"[\w.]*(Error|Exception)\b", line) and "ChildFailedError" not in line:
            found.append(line)
    return " | ".join(dict.fromkeys(found))[:800]


def nccl_probe(check: Check, timeout) -> tuple[str, str]:
    """NCCL with two ranks on this machine's GPU(s): (backend to use, what happened)."""
    env = {"NCCL_DEBUG": "WARN"}
    if check.mode == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # as on a host without GPUs, on any host: NCCL must refuse
    try:
        check.run("nccl_probe", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 str(Path(__file__).resolve()), "--nccl-probe"], min(timeout, 90), env=env)
        return "nccl", "NCCL all_reduce with 2 ranks worked"
    except CheckFailed as error:
        log = check.log("nccl_probe")
        reason = (failure_reason(log.read_text(errors="replace")) if log.exists() else "") or str(error)[-300:]
        return "gloo", f"NCCL refused 2 ranks here: {reason}"


def two_processes(check: Check, timeout) -> dict:
    start = time.monotonic()
    probed, probe = nccl_probe(check, timeout / 3)
    print(f"   {probe}", flush=True)
    backend = probed if check.mode == "cuda" else "auto"  # (the CPU mode's processes use gloo in any case)
    # As many epochs as train_64: the learning rate of a schedule other than constant depends on the total.
    result = train_run(check, "two_processes", timeout - (time.monotonic() - start),
                       prepared=check.work / "prepared", procs=2, backend=backend)
    one = check.results["train_64"]["train_loss"]
    require(len(one) == len(result["train_loss"]), f"runs of different lengths: {len(one)} and {result['epochs']} epochs")
    relative = [abs(a - b) / b for a, b in zip(result["train_loss"], one)]
    result.update(backend=backend, nccl_probe=probe, one_process_train_loss=one, relative_loss_difference=relative,
                  tolerance=LOSS_TOLERANCE)
    require(max(relative) < LOSS_TOLERANCE, f"2 processes' train loss {result['train_loss']} vs 1 process' {one}",
            **result)
    return result


def cuda_graph_use(log: str) -> dict:
    """Whether Inductor recorded CUDA graphs - reduce-overhead's point - from its cudagraphs log
    (TORCH_LOGS=cudagraphs): torch/_inductor/cudagraph_trees.py logs "Recording ..." for the graphs
    it records, and "skipping cudagraphs due to <reason>" for those it runs without (it only logs
    that, and trains on)."""
    lines = log.splitlines()
    recorded = [line for line in lines if "cudagraph_trees" in line and "Recording" in line]
    skips = list(dict.fromkeys(line[line.index("skipping cudagraphs"):].strip()[:300]
                               for line in lines if "skipping cudagraphs" in line))
    used = ("yes" if recorded and not skips else "partly: some graphs were skipped" if recorded else "no")
    return {"cuda_graphs": used, "cuda_graph_recordings": len(recorded), "cuda_graph_skips": skips[:10]}


def compile_64(check: Check, timeout) -> dict:
    result = train_run(check, "compile_64", timeout, prepared=check.work / "prepared", compile="reduce-overhead",
                       epochs=check.size["epochs_other"], env={"TORCH_LOGS": "cudagraphs"})
    eager = check.results["train_64"]
    seconds = result["epoch_seconds"]
    result.update(cuda_graph_use(check.log("compile_64").read_text(errors="replace")),
                  compile_warmup_s=round(seconds[0] - float(np.mean(seconds[1:])), 1),
                  speedup_over_eager=result["images_per_second"] / eager["images_per_second"])
    require(result["cuda_graph_recordings"] > 0, "resnet.compile: reduce-overhead trained without CUDA graphs"
            + (f" ({'; '.join(result['cuda_graph_skips'])})" if result["cuda_graph_skips"] else ""), **result)
    return result


def deterministic_64(check: Check, timeout) -> dict:
    start, epochs = time.monotonic(), check.size["epochs_other"]
    runs = []
    for name in ("deterministic_64", "deterministic_64_again"):
        left = timeout / 2 if not runs else timeout - (time.monotonic() - start)
        runs.append(train_run(check, name, left, prepared=check.work / "prepared", deterministic=True, epochs=epochs))
    first, second = runs
    weights = [checkpoints.load_checkpoint(checkpoints.checkpoint_path(Path(r["run_dir"]), epochs))["model"]
               for r in runs]
    differing = [name for name in weights[0] if not torch.equal(weights[0][name], weights[1][name])]
    default = check.results["train_64"]
    result = {**first, "second_run_train_loss": second["train_loss"], "second_run_val_acc1": second["val_acc1"],
              "tensors_differing": len(differing), "default_images_per_second": default["images_per_second"],
              "speed_ratio_to_default": first["images_per_second"] / default["images_per_second"]}
    require(first["train_loss"] == second["train_loss"] and first["val_acc1"] == second["val_acc1"] and not differing,
            f"two deterministic runs differ: train loss {first['train_loss']} vs {second['train_loss']}, "
            f"{len(differing)} of {len(weights[0])} weight tensors", **result)
    return result


# --------------------------------------------------------------------------------------
# The report's recipe on the real archive (--archive)
# --------------------------------------------------------------------------------------
REPORT_EPOCHS_COMPARED = (7, 18)   # the report's eval_epochs / diff_predictions pair
RESERVE_S = 50                     # of recipe_224's time, kept for cutting, evaluating, diffing, packing
                                   # (on a GPU about 25 s: three stage runs' start-up, 2 x 10,000 images)


def archive_source(check: Check) -> dict:
    """tinyimagenet.source and .md5 of the real archive: its file:// URL, and the md5 the manifest
    gives (None without one: not checked)."""
    manifest = payload.read_manifest(check.args.manifest) if check.args.manifest else {}
    return {"source": Path(check.args.archive).resolve().as_uri(), "md5": manifest.get("md5")}


def real_data(check: Check, timeout) -> dict:
    """The archive through the pipeline's own data stages: download_tinyimagenet (a file:// source:
    copied, md5-checked against the manifest's when given, its members' CRCs tested, extracted) and
    relabel_val (tables, the images decoded into uint8 arrays); the arrays' digests against the ones
    the manifest records from relabel_val run where the parts were built: the same pixels or not."""
    start = time.monotonic()
    archive = Path(check.args.archive).resolve()
    manifest = payload.read_manifest(check.args.manifest) if check.args.manifest else {}
    folder = check.work / "real"
    folder.mkdir(parents=True, exist_ok=True)
    params = read_params(REPO / "params.yaml")
    params["tinyimagenet"].update(archive_source(check))
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tree, prepared = folder / "tiny-imagenet-200", folder / "prepared"
    check.run("real_data_download", stage_command("download_tinyimagenet.py", "--params", folder / "params.yaml",
                                                  "--out", tree), timeout)
    check.run("real_data_relabel", stage_command("relabel_val.py", "--data", tree, "--out", prepared,
                                                 "--metrics", folder / "dataset.json"),
              timeout - (time.monotonic() - start))
    digests = {split: payload.array_digest(prepared / f"{split}_images.npy") for split in ("train", "val")}
    reference = manifest.get("reference")
    same = None if not reference else all(digests[k] == reference[k] for k in digests)
    return {"archive": str(archive), "archive_md5": manifest.get("md5") or "not checked (no --manifest)",
            **read_json(folder / "dataset.json"), "tree": str(tree), "prepared": str(prepared),
            "decoded_digests": digests, "pillow": _version("PIL", "Pillow"),
            "decoded_as_where_built": same if reference else "not known (no reference digests in --manifest)",
            "reference_pillow": (reference or {}).get("pillow")}


def evaluated_epochs(trained: int) -> list[int]:
    """The report's epochs 7 and 18 where both were trained; else 7 (1 in a run of 7 or fewer) and
    the last (the claims ledger then says which pair it compared, and marks the report's as not
    measured)."""
    a, b = REPORT_EPOCHS_COMPARED
    if trained >= b:
        return [a, b]
    return sorted({a if trained > a else 1, trained})


def recipe_params(check: Check, epochs: int) -> dict:
    """params.yaml with the report's recipe: resnet.input_size 224 (main.py's RandomResizedCrop(224)
    + flip to train, Resize(256) + CenterCrop(224) to evaluate), the rest of the resnet section as
    params.yaml has it; eval and diff as the pipeline runs them, on this run's variant and epochs.
    Checked as the stages will check it, before anything runs."""
    params = read_params(REPO / "params.yaml")
    params["devices"] = 1 if check.mode == "cuda" else 0
    params["tinyimagenet"].update(archive_source(check))  # what the claims ledger asks: real images or generated
    # Every epoch's weights kept: a run stopped for time is cut to the epochs it trained, whose last
    # must be there (keep_epochs changes which weights are kept, not what they are).
    params["resnet"].update(input_size=224, epochs=epochs, keep_epochs="all")
    params["eval"].update(run=check.variant, epochs=evaluated_epochs(epochs))
    params["diff"].update(a=None, b=None)
    validate(params, ["devices", "tinyimagenet", "resnet", "resnet_runs", "eval", "diff"])
    return params


class EpochBudget:
    """Watches a training run's output for the line it prints when an epoch is saved ("=> epoch N/T
    took ...", dlreport/progress.py's eta_line): true - stop here - where the next epoch would not
    end before ``deadline`` (time.monotonic()), by the last epoch's time plus 5% and a second (the
    first epoch's time counts the run's start-up: an over-estimate). ``stop_after`` (tests): the
    time runs out after that epoch."""
    LINE = re.compile(r"^=> epoch (\d+)/(\d+) took ")

    def __init__(self, deadline: float, stop_after: int | None = None, clock: Callable[[], float] = time.monotonic,
                 say: Callable[[str], None] = lambda line: print(f"   {line}", flush=True)):
        self.deadline, self.stop_after, self.clock, self.say = deadline, stop_after, clock, say
        self.last_end = clock()
        self.epochs_seen = 0
        self.stopped_after: int | None = None

    def __call__(self, line: str) -> bool:
        match = self.LINE.match(line)
        if not match:
            return False
        self.say(line)
        epoch, total = int(match[1]), int(match[2])
        now = self.clock()
        took, self.last_end, self.epochs_seen = now - self.last_end, now, epoch
        if epoch >= total:
            return False
        if (self.stop_after is not None and epoch >= self.stop_after) or now + 1.05 * took + 1 > self.deadline:
            self.stopped_after = epoch
            return True
        return False


def write_curves(run_dir: Path, history: list[dict]) -> None:
    """The per-epoch curves in DVCLive's layout - <run>/dvclive/plots/metrics/<name>.tsv, a step and
    a value per row, as dlreport.runlog's RunLogger has DVCLive write them - from the run's history:
    the lent machine has no dvclive, and the claims ledger and dvc plots read these files."""
    for name in EPOCH_METRICS:
        path = Path(run_dir) / "dvclive" / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator=os.linesep)
            writer.writerow(["step", name.rsplit("/", 1)[-1]])
            writer.writerows([int(h["epoch"]), h[name]] for h in history)


RESULT_FILES = ("metrics/*.json", "runs/resnet/*/status.json", "runs/resnet/*/dvclive/plots/metrics/**/*.tsv",
                "runs/eval/*.csv", "reports/diff_predictions/*")


def pack_results(check: Check, folder: Path, record: dict) -> Path:
    """recipe_224.tar.gz: the run's small outputs at their paths in a project (metrics/, runs/, reports/:
    unpacked into a copy of the project, the claims and report stages read them), and gpu_run/ with
    the params it ran, this step's record and the logs of its stage runs. No checkpoints."""
    out = Path(check.args.results or check.work).resolve() / "recipe_224.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(folder / "gpu_run" / "run.json", record)
    with tarfile.open(out, "w:gz") as tar:
        for pattern in RESULT_FILES:
            for path in sorted(folder.glob(pattern)):
                if path.is_file():
                    tar.add(path, str(path.relative_to(folder)))
        for path in [folder / "params.yaml", folder / "gpu_run" / "run.json",
                     *sorted((check.work / "logs").glob("real_data_*.log")),
                     *sorted((check.work / "logs").glob("recipe_224_*.log"))]:
            if path.is_file():
                tar.add(path, f"gpu_run/{'logs/' if path.suffix == '.log' else ''}{path.name}")
    return out


def recipe_224(check: Check, timeout) -> dict:
    """The report's recipe (input_size 224, the rest as params.yaml: 20 epochs, SGD lr 0.1, batch
    256) on the real archive, through the stages dvc repro runs: train_resnet for as many epochs as
    fit before the time left less RESERVE_S (or --train-budget) runs out; then, where it stopped
    early, train_resnet again with resnet.epochs the epochs trained (under the constant schedule the
    first N epochs of a longer run are an N-epoch run: the stage finds them trained and writes the
    run's summary); eval_epochs on epochs 7 and 18 (or the pair that was trained) and
    diff_predictions on them. What the claims ledger and tools/record_result.py read is packed into
    recipe_224.tar.gz in --results."""
    start = time.monotonic()
    left = lambda: timeout - (time.monotonic() - start)  # noqa: E731
    real = check.results["real_data"]
    prepared, tree = real["prepared"], real["tree"]
    folder = check.work / "recipe_224"   # laid out as a project: params.yaml, metrics/, runs/, reports/
    variant = check.variant
    run_dir = folder / "runs" / "resnet" / variant
    summary_path = folder / "metrics" / f"train_resnet_{variant}.json"
    planned = check.args.recipe_epochs or read_params(REPO / "params.yaml")["resnet"]["epochs"]
    training_s = timeout - RESERVE_S if check.args.train_budget is None else min(check.args.train_budget,
                                                                                  timeout - RESERVE_S)
    record: dict = {"epochs_planned": planned, "train_budget_s": round(training_s, 1)}
    train = stage_command("train_resnet.py", "--variant", variant, "--params", folder / "params.yaml",
                          "--prepared", prepared, "--out", run_dir, "--summary", summary_path)

    def use(epochs: int) -> dict:
        params = recipe_params(check, epochs)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return params

    try:
        recipe = parse("resnet", use(planned)["resnet"])
        require(recipe.schedule in checkpoints.TOTAL_FREE_SCHEDULES,
                f"resnet.schedule = {recipe.schedule}: a run stopped for time is an N-epoch run only under "
                f"{' or '.join(checkpoints.TOTAL_FREE_SCHEDULES)} (the report's lr was constant)")
        budget = EpochBudget(start + training_s, stop_after=check.args.stop_after)
        check.run("recipe_224_train", train, left(), until=budget)
        state = checkpoints.load_checkpoint(checkpoints.resume_path(run_dir))
        trained, history = state["epoch"], state["history"]
        del state
        record.update(epochs_trained=trained, stopped_for_time=trained < planned)
        if trained < planned:
            use(trained)
            check.run("recipe_224_finish", train, left())
        summary = read_json(summary_path)
        require(summary.get("status") == "trained" and summary.get("epochs") == trained,
                f"{summary_path.name} after {trained} epochs: {summary}")
        write_curves(run_dir, history)
        epochs = evaluated_epochs(trained)
        record.update(evaluated_epochs=epochs, summary=summary,
                      epoch_seconds=[round(h["epoch_seconds"], 2) for h in history],
                      val_acc1=[round(h["val/acc1"], 2) for h in history],
                      val_acc5=[round(h["val/acc5"], 2) for h in history],
                      train_loss=[h["train/loss"] for h in history])
        seconds = record["epoch_seconds"]
        steady = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
        record[f"projected_{REPORT_EPOCHS}_epochs_s"] = round(seconds[0] + (REPORT_EPOCHS - 1) * steady, 1)
        check.run("recipe_224_eval", stage_command(
            "eval_epochs.py", "--params", folder / "params.yaml", "--prepared", prepared, "--runs", run_dir.parent,
            "--summaries", summary_path, "--out", folder / "runs" / "eval",
            "--metrics", folder / "metrics" / "eval.json"),
            left())
        evaluated = read_json(folder / "metrics" / "eval.json")
        record["eval"] = {str(r["epoch"]): {k: r[k] for k in ("acc1", "acc5", "loss")}
                          for r in (evaluated["first"], evaluated["last"])}
        if len(epochs) == 2:
            check.run("recipe_224_diff", stage_command(
                "diff_predictions.py", "--params", folder / "params.yaml", "--predictions", folder / "runs" / "eval",
                "--prepared", prepared, "--data", tree, "--out", folder / "reports" / "diff_predictions",
                "--metrics", folder / "metrics" / "diff_predictions.json"), left())
            record["diff"] = read_json(folder / "reports" / "diff_predictions" / "summary.json")
        else:
            record["diff"] = f"not run: one epoch trained ({trained}), nothing to compare it with"
        return record
    finally:
        try:
            record["results"] = str(pack_results(check, folder, record))
        except Exception as error:  # the packing must not hide what failed before it
            record["results"] = f"not packed: {type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------
# The step table: in the order they run, most important figures first
# --------------------------------------------------------------------------------------
GPU_ONLY_SYNCS = "CUDA's sync debug mode needs a GPU (tests/test_training.py counts host reads on the CPU)"
GPU_ONLY_COMPILE = "torch.compile takes minutes to warm up on a few CPU cores; it is timed on the GPU"
NO_ARCHIVE = ("no --archive: the real Tiny-ImageNet archive (on a lent machine: joined from the parts "
              "tools/gpu_payload.py builds)")
STEPS = [
    # name, function, cap (s), minimum to start (s): sized for one H200
    Step("environment", environment, 60, 0, child=True, always=True),  # the facts every figure is recorded with
    Step("real_data", real_data, 240, 30, archive=True),
    Step("recipe_224", recipe_224, 600, 120, ("real_data",), archive=True),
    Step("dataset", dataset, 120, 20, child=True),
    Step("train_64", train_64, 150, 45, ("dataset",)),
    Step("train_224", train_224, 150, 90, ("dataset",)),
    Step("reference_64", reference_64, 90, 40, ("dataset",), child=True),
    Step("checkpoint_cpu", checkpoint_cpu, 90, 30, ("train_64",)),
    Step("host_syncs", host_syncs, 60, 20, child=True, gpu_only=GPU_ONLY_SYNCS),
    Step("two_processes", two_processes, 200, 75, ("train_64",)),
    Step("compile_64", compile_64, 240, 150, ("train_64",), gpu_only=GPU_ONLY_COMPILE,
         cpu_record={"cuda_graphs": "not applicable (CPU mode)"}),
    Step("deterministic_64", deterministic_64, 150, 60, ("train_64",)),
]
STEP_BY_NAME = {spec.name: spec for spec in STEPS}


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------
def goals_and_table(check: Check) -> None:
    r = check.results
    measured = {
        # the report's recipe on the real archive where it ran, else the generated set's 2 epochs
        "projected_20_epochs_224_s": (r.get("recipe_224") or r.get("train_224", {})).get("projected_20_epochs_s"),
        "projected_20_epochs_64_s": r.get("train_64", {}).get("projected_20_epochs_s"),
        "ratio_to_reference_64": r.get("reference_64", {}).get("ratio"),
        "data_wait_fraction_64": r.get("train_64", {}).get("data_wait_fraction"),
    }
    check.report["goals"] = {
        name: {"goal": goal, "measured": measured[name],
               "met": None if measured[name] is None else
               (measured[name] >= goal if name.startswith("ratio") else measured[name] <= goal)}
        for name, goal in GOALS.items()}
    rows = []
    labels = (("train_64", "64px"), ("train_224", "224px"), ("two_processes", "64px, 2 processes"),
              ("compile_64", "64px, compiled (reduce-overhead)"), ("deterministic_64", "64px, deterministic"))
    for name, label in labels:
        if name in r:
            x = r[name]
            memory = f"{x['peak_gpu_memory_gb']:.1f}" if x.get("peak_gpu_memory_gb") is not None else "-"
            rows.append(f"| train_resnet {label} | {x['images_per_second']:,.0f} | {x['seconds_per_epoch']:.1f} | "
                        f"{100 * x['data_wait_fraction']:.1f}% | {memory} | {x['projected_20_epochs_s']:.0f} s |")
    if "recipe_224" in r:
        x = r["recipe_224"]
        summary = x["summary"]
        memory = f"{summary['peak_gpu_memory_gb']:.1f}" if summary.get("peak_gpu_memory_gb") is not None else "-"
        rows.insert(0, f"| the report's recipe, 224px, real data ({x['epochs_trained']} of {x['epochs_planned']} "
                       f"epochs) "
                       f"| {summary['images_per_second']:,.0f} | {summary['seconds_per_epoch']:.1f} | "
                       f"{100 * summary['data_wait_fraction']:.1f}% | {memory} | {x['projected_20_epochs_s']:.0f} s |")
    table = ["| what | images/s | s/epoch | data wait | peak GPU GB | 20 epochs (projected) |",
             "| --- | --- | --- | --- | --- | --- |", *rows]
    if "reference_64" in r:
        x = r["reference_64"]
        table.append(f"| ImageNet example's recipe, 64px step | {x['reference_images_per_second']:,.0f} | | | | "
                     f"ours {x['ratio']:.2f}x |")
    v = check.versions
    on = v.get("gpu") or r.get("environment", {}).get("cpu", "?")
    table.append(f"\n{on}; torch {v['torch']}, CUDA {v['cuda']}, cuDNN {v.get('cudnn', '-')}, "
                 f"driver {v.get('driver', '-')}, Python {v['python']}; print_freq "
                 f"{r.get('train_64', {}).get('print_freq', '-')} as in params.yaml")
    check.report["table_markdown"] = "\n".join(table)
    print("\n" + check.report["table_markdown"], flush=True)


def nccl_probe_rank() -> None:
    """One rank of the NCCL probe (started by torchrun): an all_reduce over NCCL, on this rank's GPU."""
    import torch.distributed as dist

    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device if device.type == "cuda" else None)
    total = torch.ones(1, device=device)
    dist.all_reduce(total)
    assert total.item() == dist.get_world_size(), total
    dist.destroy_process_group()


def seconds_by_step(text: str) -> dict[str, float]:
    """"train_64=200,compile_64=300" -> {"train_64": 200.0, "compile_64": 300.0}"""
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: expected STEP=SECONDS[,STEP=SECONDS...]")
    return {name: float(seconds) for name, seconds in pairs}


def _interrupted(signum, frame):
    raise Interrupted()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON report, rewritten after every step")
    parser.add_argument("--budget", type=float, default=450, help="seconds for the whole check")
    parser.add_argument("--work", help="working folder (kept); default a temporary one, removed at the end")
    parser.add_argument("--skip", type=lambda text: text.split(","), default=[],
                        help="steps not to run, comma-separated (e.g. a re-run of the rest: --skip train_224,reference_64)")
    parser.add_argument("--only", type=lambda text: text.split(","), default=[],
                        help="the steps to run, comma-separated; the others are skipped "
                             "(e.g. --only real_data,recipe_224)")
    parser.add_argument("--archive", help="the real Tiny-ImageNet zip: real_data and recipe_224 run on it")
    parser.add_argument("--manifest", help="tools/gpu_payload.py's manifest of the archive: its md5 is checked, "
                                           "and the decoded arrays compared with those decoded where it was built")
    parser.add_argument("--results", help="folder for recipe_224.tar.gz (default: the work folder)")
    parser.add_argument("--recipe-epochs", type=int, help="recipe_224's epochs (default: params.yaml's resnet.epochs)")
    parser.add_argument("--train-budget", type=float,
                        help="recipe_224: seconds of training at most (default: its time left less %d s); it stops "
                             "after the last epoch that fits and records how many ran" % RESERVE_S)
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: recipe_224's time runs out here
    parser.add_argument("--cap", type=seconds_by_step, default={},
                        help="other caps, e.g. --cap compile_64=300 (seconds after which a step is stopped)")
    parser.add_argument("--minimum", type=seconds_by_step, default={},
                        help="other minimums, e.g. --minimum compile_64=100 (seconds of --budget a step needs to start)")
    parser.add_argument("--stall", help=argparse.SUPPRESS)      # tests: this (child) step hangs
    parser.add_argument("--child", help=argparse.SUPPRESS)      # run one step's function here
    parser.add_argument("--nccl-probe", action="store_true", help=argparse.SUPPRESS)
    if sys.argv[1:2] == ["--stage"]:  # a stage script, with everything after its name its own
        return stage_main(sys.argv[2], sys.argv[3:])
    args = parser.parse_args()
    if args.nccl_probe:
        return nccl_probe_rank()
    if args.child:
        return child_main(args)
    for option in ("skip", "only", "cap", "minimum"):
        unknown = set(getattr(args, option)) - set(STEP_BY_NAME)
        if unknown:
            parser.error(f"--{option}: no step {', '.join(sorted(unknown))}")
    check = Check(args)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        for spec in STEPS:
            skip = (("--skip", "--skip") if spec.name in args.skip else
                    ("--skip", "not in --only") if args.only and spec.name not in args.only else
                    ("mode", spec.gpu_only) if check.mode == "cpu" and spec.gpu_only else
                    ("no --archive", NO_ARCHIVE) if spec.archive and not args.archive else None)
            check.step(spec, cap=args.cap.get(spec.name, spec.cap), minimum=args.minimum.get(spec.name, spec.minimum),
                       skip=skip)
            if spec.name == "environment" and "environment" in check.results:
                env = check.results["environment"]
                check.versions.update({k: env[k] for k in ("cudnn", "nccl", "driver", "gpu") if k in env},
                                      dvclive=env["dvclive"].split(":")[0])
                print("   " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
        goals_and_table(check)
    except Interrupted:
        check.report["interrupted"] = "SIGTERM: the check stopped its running step and ended"
    finally:
        records = check.report["steps"].values()
        check.report["passed"] = (len(check.report["steps"]) == len(STEPS) and "interrupted" not in check.report
                                  and all(s["status"] in ("passed", "skipped") for s in records))
        check.report["skipped_for_budget"] = [n for n, s in check.report["steps"].items() if s.get("cause") == "budget"]
        check.report["complete"] = check.report["passed"] and not check.report["skipped_for_budget"]
        check.save()
        if not args.work:
            shutil.rmtree(check.work, ignore_errors=True)
    verdict = ("PASSED" if check.report["complete"] else
               "PASSED, INCOMPLETE (steps skipped for lack of --budget)" if check.report["passed"] else "FAILED")
    print(f"\n{verdict}: " + ", ".join(f"{n} {s['status']}" for n, s in check.report["steps"].items())
          + f"; {check.report['elapsed_s']} s; report in {check.out}", flush=True)
    sys.exit(0 if check.report["complete"] else 3 if check.report["passed"] else 1)


if __name__ == "__main__":
    main()
