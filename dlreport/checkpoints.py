"""Checkpoints of a training run, and resuming from them.

``checkpoints/epoch_NN.pt`` holds what evaluating epoch NN needs: the unwrapped fp32 weights, that
epoch's metrics, the recipe, the number of classes and of processes. It is written for the epochs
``resnet.keep_epochs`` names (``all`` by default, as the report kept them; the last epoch always).
``checkpoints/resume.pt`` holds the full state after the newest finished epoch - weights,
optimizer, scheduler, scaler, RNG states, and every epoch's metrics, from which the logs are rebuilt.

Every file is written whole under a temporary name and renamed into place, never modified: a
checkpoint is complete or absent, and a file that DVC's cache shares by a link is never changed.
After each epoch the epoch file is written first, then resume.pt, so a kill at any instant leaves
resume.pt at the previous epoch (that epoch is trained again and its file replaced) or at this one.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dlreport.faults import DamagedCheckpoint, writing

if TYPE_CHECKING:  # annotations only: the GPU check (benchmarks/gpu_check.py) runs without pydantic
    from dlreport.params import ResnetParams

# Recipe keys that change the trained weights: a checkpoint resumes only if these match.
# (keep_epochs is not one: it changes which weights are kept, not what they are. Nor is deterministic:
# like the device, it changes which kernels compute the same recipe; a run may resume with either.)
RESULT_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "input_size", "stem",
               "schedule", "warmup_epochs", "step_size", "gamma", "label_smoothing", "seed",
               "precision", "sync_bn")


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:02d}.pt"


def resume_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "resume.pt"


def training_stage(run_dir: Path) -> str:
    """The stage that writes a run folder's checkpoints (runs/resnet/<variant>)."""
    return f"train_resnet@{Path(run_dir).name}"


def saved_epochs(run_dir: Path) -> list[int]:
    """The epochs whose weights are saved (epoch_NN.pt files)."""
    folder = Path(run_dir) / "checkpoints"
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_*.pt")) if folder.is_dir() else []


# --------------------------------------------------------------------------------------
# Which epochs keep their weights
# --------------------------------------------------------------------------------------
def keeps_weights(recipe: ResnetParams, epoch: int) -> bool:
    return recipe.keep_epochs == "all" or epoch == recipe.epochs or epoch in recipe.keep_epochs


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
def save_atomic(state: dict, path: Path, what: str = "a checkpoint") -> None:
    """A new file renamed into place: complete or absent, and never an existing file rewritten.

    The state is serialised in memory first, so a full disk is a plain OSError about this file
    (torch.save writing to disk reports it as "unexpected pos ..."), with the file's size; the
    temporary is removed on any failure or stop signal."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path, what, buffer.getbuffer().nbytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # one left by a killed write is replaced by a new file, not rewritten
        try:
            with open(tmp, "wb") as handle:
                handle.write(buffer.getbuffer())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def load_checkpoint(path: Path, stage: str | None = None, expect: tuple[str, ...] = ("epoch",)) -> dict:
    """Load a checkpoint (a ResNet run's or a language model's) as data only (weights_only=True):
    unpickling never runs code. A file that is not one - truncated, random bytes, another program's,
    a newer PyTorch's, a PyTorch file without the ``expect`` keys - is a DamagedCheckpoint naming it,
    what is wrong and how ``stage`` (default: the training stage of the run folder it is in) brings it back."""
    path = Path(path)
    stage = stage or training_stage(path.parent.parent)
    recover = (f"Restore the last committed one with `dvc checkout {stage}`, or delete it and re-run "
               f"`dvc repro {stage}`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every way a file can fail to load is reported the same way
        raise DamagedCheckpoint(f"{path}: not a readable checkpoint ({why_unreadable(path, error)}). {recover}.") from None
    missing = [key for key in expect if key not in state] if isinstance(state, dict) else list(expect)
    if missing:
        raise DamagedCheckpoint(f"{path}: not a readable checkpoint (a PyTorch file, but not one this project writes: "
                                f"it has no {', '.join(repr(k) for k in missing)}). {recover}.")
    return state


def why_unreadable(path: Path, error: Exception) -> str:
    """What is wrong with a file torch.load refused, in the user's terms. Never torch's own advice:
    for a file it will not unpickle that is to load it with weights_only=False, which runs any code
    the file holds."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return "the file is empty: a write that never finished, or a copy that failed"
    if head != b"PK\x03\x04":
        return "not a PyTorch checkpoint at all: random bytes, or a file of another kind"
    if not zipfile.is_zipfile(path):
        return "truncated or damaged: its zip directory is missing, as after a write or copy that was cut off"
    newer = re.search(r"version (\d+), but the maximum supported version for reading is (\d+)", str(error))
    if newer:
        return (f"written by a newer PyTorch, format version {newer[1]}; this torch {torch.__version__} reads up "
                f"to {newer[2]}: use the environment requirements.txt locks")
    foreign = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if foreign:
        return (f"it holds a Python object of type {foreign[1]}, which this project never saves: another "
                f"program's file? It is not loaded, because loading it would run that program's code")
    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects this project never saves; it is not loaded, because that could run code"
    return f"damaged: {type(error).__name__} while reading it"


def save_epoch(run_dir: Path, recipe: ResnetParams, weights: dict, resume: dict) -> None:
    """After an epoch: its weights file (if kept), then the resume state - in this order (see
    above) - each also linked into the run's progress folder."""
    if keeps_weights(recipe, weights["epoch"]):
        save_atomic(weights, checkpoint_path(run_dir, weights["epoch"]), f"the weights of epoch {weights['epoch']}")
        _link(checkpoint_path(run_dir, weights["epoch"]), progress_path(run_dir, recipe))
    save_atomic(resume, resume_path(run_dir), f"the resume state after epoch {resume['epoch']}")
    _link(resume_path(run_dir), progress_path(run_dir, recipe))


# --------------------------------------------------------------------------------------
# The progress folder: an unfinished run's checkpoints, out of DVC's reach
# --------------------------------------------------------------------------------------
# The run folder is a DVC output. `dvc exp run` first checks out the committed outputs of the
# stages it runs, which replaces the checkpoints of a run that was interrupted (never committed)
# with the baseline's. So every checkpoint a run writes is also hard-linked (no extra disk) into
# a hidden sibling, runs/resnet/.<variant>-progress/, which DVC does not track; the next start
# links them back, and a run that finishes removes the folder.
#
# A queued experiment (`dvc exp run --queue` + `dvc queue start`, or `dvc exp run --temp`) runs in
# a temporary copy of the project, <project>/.dvc/tmp/exps/tmpXXXX/, which DVC deletes when the run
# ends, failed or not (DVC 3.67) - sibling folder included. There the progress folder is in the
# project's own .dvc/tmp (never deleted by DVC, ignored by git), keyed by the variant and the
# recipe: queueing the same experiment again resumes it.
EXPERIMENT_WORKSPACES = (".dvc", "tmp", "exps")


def queued_project(run_dir: Path) -> Path | None:
    """The project whose temporary experiment workspace holds ``run_dir``, or None."""
    parts = Path(run_dir).absolute().parts
    for i in range(len(parts) - len(EXPERIMENT_WORKSPACES)):
        if parts[i:i + len(EXPERIMENT_WORKSPACES)] == EXPERIMENT_WORKSPACES:
            return Path(*parts[:i])
    return None


def recipe_key(recipe: ResnetParams) -> str:
    """A short name for what a run trains (its RESULT_KEYS)."""
    recorded = recipe.recipe()
    return hashlib.md5(repr([(k, recorded[k]) for k in RESULT_KEYS]).encode()).hexdigest()[:12]


def progress_path(run_dir: Path, recipe: ResnetParams | None = None) -> Path:
    run_dir = Path(run_dir)
    project = queued_project(run_dir) if recipe is not None else None
    if project is not None:
        return project / ".dvc" / "tmp" / "dlreport-progress" / f"{run_dir.name}-{recipe_key(recipe)}"
    return run_dir.parent / f".{run_dir.name}-progress"


def _link(source: Path, folder: Path) -> None:
    """``folder/<source name>`` becomes the same file as ``source`` (a copy where links fail)."""
    folder.mkdir(parents=True, exist_ok=True)
    target, tmp = folder / source.name, folder / f".{source.name}.tmp"
    tmp.unlink(missing_ok=True)
    with writing(target, f"a link to {source.name} (a copy where links fail)"):
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copy2(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def recover_progress(run_dir: Path, recipe: ResnetParams, log=print) -> None:
    """Put an interrupted run's checkpoints back into ``run_dir`` if DVC replaced them.

    The progress folder is recovered when its resume.pt was made with this recipe and is ahead of
    the run folder's; progress of other params is moved aside (never deleted); progress the run
    folder already holds is dropped.
    """
    run_dir, progress = Path(run_dir), progress_path(run_dir, recipe)
    if not (progress / "resume.pt").exists():
        shutil.rmtree(progress, ignore_errors=True)  # nothing resumable (killed before its first epoch)
        return
    ahead = load_checkpoint(progress / "resume.pt", training_stage(run_dir))
    if recipe_differences(ahead.get("recipe", {}), recipe, ahead["epoch"]):
        stale = run_dir.parent / f".{run_dir.name}-stale-{time.strftime('%Y%m%d-%H%M%S')}-progress"
        shutil.move(str(progress), str(stale))
        log(f"=> an interrupted run of other params left checkpoints in {progress}; moved to {stale}")
        return
    current = resume_path(run_dir)
    if current.exists() and os.path.samefile(current, progress / "resume.pt"):
        return  # the run folder holds this progress (a plain re-run after an interruption)
    held = load_checkpoint(current, training_stage(run_dir)) if current.exists() else None
    held_differs = held is not None and recipe_differences(held.get("recipe", {}), recipe, held["epoch"])
    if held is not None and not held_differs and held["epoch"] >= ahead["epoch"]:
        shutil.rmtree(progress)  # the run folder is as far or further
        return
    if held_differs:
        move_aside(run_dir, "were restored by DVC for other params while this run was interrupted", log,
                   restart=False)
    files = [f for f in sorted(progress.glob("*.pt"))
             if f.name == "resume.pt" or int(f.stem.split("_")[1]) <= ahead["epoch"]]
    for file in files:
        _link(file, run_dir / "checkpoints")
    log(f"=> recovered {len(files)} checkpoint file(s) of the interrupted run from {progress} "
        f"(resume.pt at epoch {ahead['epoch']}): DVC had replaced them in {run_dir}")


def finish(run_dir: Path, recipe: ResnetParams) -> None:
    """The run is complete and its folder holds every checkpoint: no progress to keep."""
    shutil.rmtree(progress_path(run_dir, recipe), ignore_errors=True)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])


# --------------------------------------------------------------------------------------
# Resuming
# --------------------------------------------------------------------------------------
# Schedules whose learning rate at an epoch does not depend on the total number of epochs: with
# these, the first T epochs of a longer run are exactly those of a T-epoch run, so raising
# resnet.epochs continues a run instead of starting over (DVC 3 has no checkpoint experiments).
TOTAL_FREE_SCHEDULES = ("constant", "step")


def recipe_differences(saved: dict, current: ResnetParams, trained: int | None = None) -> list[str]:
    """The RESULT_KEYS whose value a checkpoint's recorded recipe (``saved``; older ones may lack a
    key) has other than the current recipe. With ``trained`` (the saved run's epochs) a longer
    ``epochs`` is no difference where the schedule does not depend on the total."""
    differences = [f"{k}: {saved.get(k)!r} -> {getattr(current, k)!r}" for k in RESULT_KEYS
                   if saved.get(k) != getattr(current, k)]
    if trained is not None and continues(saved, current, trained):
        differences = [d for d in differences if not d.startswith("epochs:")]
    return differences


def continues(saved: dict, current: ResnetParams, trained: int) -> bool:
    """Whether a run of ``saved``'s recipe, ``trained`` epochs in, is the start of ``current``'s."""
    return current.schedule in TOTAL_FREE_SCHEDULES and trained <= current.epochs


def why_not_continued(saved: dict, current: ResnetParams, trained: int) -> str:
    """Why a run whose recipe differs only in ``epochs`` cannot go on (one clause for the log)."""
    schedule = current.schedule
    if schedule not in TOTAL_FREE_SCHEDULES:
        return (f"the {schedule} schedule depends on the total number of epochs, so epochs 1-{min(trained, current.epochs)} "
                f"of a {current.epochs}-epoch run differ from these")
    if trained > current.epochs:
        return (f"{trained} epochs are trained, more than resnet.epochs = {current.epochs}, and the weights of epoch "
                f"{current.epochs} were not kept (resnet.keep_epochs)")
    return "resume.pt was cut from a longer run and holds no optimizer state to continue from"


def cut_state(state: dict, weights: dict, recipe: ResnetParams) -> dict:
    """The resume state of a ``recipe.epochs``-epoch run cut from the longer run ``state`` with the
    weights file of that epoch: a finished run's, with no optimizer state (nothing is trained
    from it; raising resnet.epochs again trains afresh)."""
    return {**weights, "recipe": recipe.recipe(), "history": list(state["history"][:weights["epoch"]]),
            "cut_from": state["epoch"]}


def cut_to_epochs(run_dir: Path, recipe: ResnetParams, state: dict, log) -> dict | None:
    """A finished longer run cut to ``recipe.epochs`` (where its first epochs are those of the
    shorter run): the later epochs' files and resume.pt set aside, resume.pt rewritten as the
    shorter run's end. None (nothing changed) where the weights of that epoch were not kept."""
    run_dir, epochs = Path(run_dir), recipe.epochs
    kept = checkpoint_path(run_dir, epochs)
    if not kept.exists():
        return None
    weights = load_checkpoint(kept, training_stage(run_dir))
    later = [checkpoint_path(run_dir, e) for e in saved_epochs(run_dir) if e > epochs] + [resume_path(run_dir)]
    where = set_aside(run_dir, later)
    short = cut_state(state, weights, recipe)
    save_atomic(short, resume_path(run_dir))
    log(f"=> {run_dir}: cut the finished {state['epoch']}-epoch run to resnet.epochs = {epochs} without training: "
        f"with the {recipe.schedule} schedule its epochs 1-{epochs} are those of a {epochs}-epoch run; epoch "
        f"{epochs}'s weights are now the last; its later checkpoints: {'; '.join(where)}")
    return short


@functools.cache
def dvc_cache_dir(root: str) -> Path | None:
    """The DVC cache of the project at ``root`` as `dvc cache dir` reports it (the project's,
    local, global and system config, and DVC's defaults), or None where DVC cannot say."""
    try:
        result = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=root, capture_output=True,
                                text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None


def dvc_cache_holds(file: Path) -> bool:
    """Whether DVC's cache holds ``file``'s content (only known under `dvc repro` / `dvc exp run`,
    which set DVC_ROOT): then `dvc checkout` / `dvc exp apply` can always bring it back."""
    root = os.environ.get("DVC_ROOT")
    cache = dvc_cache_dir(root) if root else None
    if cache is None:
        return False
    digest = hashlib.md5()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    stored = cache / "files" / "md5" / digest.hexdigest()[:2] / digest.hexdigest()[2:]
    return stored.is_file() and stored.stat().st_size == file.stat().st_size


def stale_path(run_dir: Path) -> Path:
    """A new folder name beside the run folder for checkpoints set aside now."""
    run_dir = Path(run_dir)
    base = run_dir.parent / f".{run_dir.name}-stale-{time.strftime('%Y%m%d-%H%M%S')}"
    path, count = base, 1
    while path.exists():
        count += 1
        path = base.with_name(f"{base.name}-{count}")
    return path


def set_aside(run_dir: Path, files: list[Path]) -> list[str]:
    """Take ``files`` out of the run folder without losing them: those DVC's cache holds (a
    committed run that DVC restored, or unprotected into copies, before re-running the stage)
    are removed, the others moved to a stale sibling folder. Returns where they went."""
    cached = [f for f in files if f.is_file() and dvc_cache_holds(f)]
    for file in cached:
        file.unlink()
    where = []
    if cached:
        where.append(f"{len(cached)} file(s) DVC's cache holds removed (dvc checkout / dvc exp apply restore them)")
    others = [f for f in files if f.exists()]
    if others:
        stale = stale_path(run_dir)
        stale.mkdir(parents=True, exist_ok=True)
        for file in others:
            shutil.move(str(file), str(stale / file.name))
        where.append(f"moved to {stale}")
    return where


def move_aside(run_dir: Path, why: str, log, restart: bool = True) -> None:
    """Never resume these checkpoints, never lose them (``set_aside``)."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints"
    where = set_aside(run_dir, sorted(f for f in folder.iterdir() if not f.is_dir()))
    with contextlib.suppress(OSError):
        folder.rmdir()  # (empty now, unless it held folders, which stay)
    log(f"=> checkpoints in {run_dir} {why}; not resuming them: {'; '.join(where)}"
        + ("; training from epoch 1." if restart else "."))


def find_resume_point(run_dir: Path, recipe: ResnetParams, log=print) -> tuple[dict | None, int]:
    """The resume state made with the same recipe, and the epoch to start at.

    Checkpoints that cannot be resumed - other params, no resume.pt (the old format, or a run
    killed during its first save), or weights now asked for by resnet.keep_epochs that the
    earlier run did not keep - are moved aside and training starts afresh. Weights the current
    keep_epochs no longer asks for, and any epoch file beyond resume.pt's epoch (left by an
    interrupted epoch, which is trained again), are removed.
    """
    run_dir = Path(run_dir)
    for leftover in (run_dir / "checkpoints").glob(".*.tmp"):  # from a write that was killed
        leftover.unlink()
    recover_progress(run_dir, recipe, log)
    epochs = saved_epochs(run_dir)
    if not resume_path(run_dir).exists():
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            move_aside(run_dir, "have no resume.pt (the old format, or a run killed before its first "
                                "epoch was saved)", log)
        return None, 1
    state = load_checkpoint(resume_path(run_dir), training_stage(run_dir))
    trained, saved = state["epoch"], state.get("recipe", {})
    differences = recipe_differences(saved, recipe, trained)
    only_epochs = len(differences) == 1 and differences[0].startswith("epochs:")
    if only_epochs and trained > recipe.epochs and recipe.schedule in TOTAL_FREE_SCHEDULES:
        short = cut_to_epochs(run_dir, recipe, state, log)
        if short is not None:
            state, trained, saved, differences = short, recipe.epochs, short["recipe"], []
            epochs = saved_epochs(run_dir)
    if not differences and "cut_from" in state and trained < recipe.epochs:
        differences = [f"epochs: {trained} -> {recipe.epochs}"]  # a cut run: nothing to continue from
        only_epochs = True
    if differences:
        why = ""
        if only_epochs:
            why = f" - {why_not_continued(saved, recipe, trained)}"
        move_aside(run_dir, f"were made with other params ({'; '.join(differences)}){why}", log)
        return None, 1
    missing = [e for e in range(1, trained + 1) if keeps_weights(recipe, e) and e not in epochs]
    if missing:
        move_aside(run_dir, f"lack the weights of epoch(s) {', '.join(map(str, missing))}, which "
                            f"resnet.keep_epochs now keeps but the earlier run did not", log)
        return None, 1
    dropped = [e for e in epochs if e > trained or not keeps_weights(recipe, e)]
    for epoch in dropped:
        checkpoint_path(run_dir, epoch).unlink()
    if dropped:
        log(f"=> removed the weights of epoch(s) {', '.join(map(str, dropped))} "
            f"(resnet.keep_epochs={recipe.keep_epochs}, {trained} epochs trained)")
    if trained >= recipe.epochs:
        log(f"=> {run_dir}: all {recipe.epochs} epochs already trained (resume.pt at epoch {trained})")
    elif saved.get("epochs") != recipe.epochs:
        log(f"=> continuing {run_dir} from epoch {trained} (resume.pt of a {saved.get('epochs')}-epoch run) to "
            f"{recipe.epochs} epochs: with the {recipe.schedule} schedule its epochs "
            f"1-{trained} are those of a {recipe.epochs}-epoch run")
    else:
        log(f"=> resuming {run_dir} from epoch {trained} (resume.pt)")
    return state, trained + 1


# --------------------------------------------------------------------------------------
# Checkpoints set aside: listed, and removed on request
# --------------------------------------------------------------------------------------
def set_aside_folders(runs: Path, project: Path = Path(".")) -> list[tuple[Path, str]]:
    """The hidden folders beside the run folders in ``runs``, and the queued runs' progress in
    ``project``: (folder, kind), kind ``stale`` (checkpoints of other params, kept in case they
    are wanted) or ``progress`` (an interrupted run's, which its next start resumes)."""
    found = []
    queued = sorted((project / ".dvc" / "tmp" / "dlreport-progress").glob("*"))
    for folder in sorted(Path(runs).glob(".*-stale-*")) + sorted(Path(runs).glob(".*-progress")) + queued:
        if folder.is_dir():
            found.append((folder, "progress" if folder.name.endswith("-progress") and "-stale-" not in folder.name
                          or folder in queued else "stale"))
    return found


def clean_main(argv: list[str] | None = None) -> int:
    """python -m dlreport.checkpoints [--clean] RUNS: list (and with --clean remove) the stale
    checkpoint folders beside the run folders in RUNS; an interrupted run's progress is listed only."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dlreport.checkpoints", description=clean_main.__doc__)
    parser.add_argument("runs", nargs="?", default="runs/resnet", help="the folder of the run folders")
    parser.add_argument("--clean", action="store_true", help="remove the stale folders listed")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    if not runs.is_dir():
        print(f"error: {runs}: no such folder; give the folder that holds the run folders "
              f"(python -m dlreport.checkpoints --clean runs/resnet).", file=sys.stderr)
        return 1
    found = set_aside_folders(runs)
    if not found:
        print(f"{runs}: no checkpoints set aside")
    for folder, kind in found:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files) / 1e6
        what = (f"{folder}: {len(files)} file(s), {size:.1f} MB ({', '.join(p.name for p in files[:6])}"
                f"{', ...' if len(files) > 6 else ''})")
        if kind == "progress":
            print(f"{what} - an interrupted run's progress, which its next start resumes: kept")
        elif args.clean:
            shutil.rmtree(folder)
            print(f"{what} - removed")
        else:
            print(f"{what} - set aside (--clean removes it)")
    return 0


if __name__ == "__main__":
    sys.exit(clean_main())
