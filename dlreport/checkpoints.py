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

import os
import random
import shutil
import time
from pathlib import Path

import torch

from dlreport.errors import PipelineError

# Recipe keys that change the trained weights: a checkpoint resumes only if these match.
# (keep_epochs is not one: it changes which weights are kept, not what they are.)
RESULT_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "input_size", "stem",
               "schedule", "warmup_epochs", "step_size", "gamma", "label_smoothing", "seed",
               "precision", "sync_bn")


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:02d}.pt"


def resume_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "resume.pt"


def saved_epochs(run_dir: Path) -> list[int]:
    """The epochs whose weights are saved (epoch_NN.pt files)."""
    folder = Path(run_dir) / "checkpoints"
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_*.pt")) if folder.is_dir() else []


# --------------------------------------------------------------------------------------
# Which epochs keep their weights
# --------------------------------------------------------------------------------------
def keeps_weights(recipe: dict, epoch: int) -> bool:
    keep = recipe.get("keep_epochs", "all")
    return keep == "all" or epoch == recipe["epochs"] or epoch in keep


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
def save_atomic(state: dict, path: Path) -> None:
    """A new file renamed into place: complete or absent, and never an existing file rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # one left by a killed write is replaced by a new file, not rewritten
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint as data only (weights_only=True): unpickling never runs code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such checkpoint.") from None
    except Exception as error:
        raise PipelineError(f"{path}: not a readable checkpoint ({error}). Delete it and re-run "
                            f"the training stage to recreate it.") from None


def save_epoch(run_dir: Path, weights: dict, resume: dict) -> None:
    """After an epoch: its weights file (if kept), then the resume state - in this order (see above)."""
    if keeps_weights(weights["recipe"], weights["epoch"]):
        save_atomic(weights, checkpoint_path(run_dir, weights["epoch"]))
    save_atomic(resume, resume_path(run_dir))


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
def recipe_differences(saved: dict, current: dict) -> list[str]:
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in RESULT_KEYS
            if saved.get(k) != current.get(k)]


def move_aside(run_dir: Path, why: str, log) -> None:
    """Never resume these checkpoints, never delete them: move them to a sibling folder."""
    run_dir = Path(run_dir)
    stale = run_dir.parent / f".{run_dir.name}-stale-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.move(str(run_dir / "checkpoints"), str(stale))
    log(f"=> checkpoints in {run_dir} {why}; not resuming them. Moved to {stale}; training from epoch 1.")


def find_resume_point(run_dir: Path, recipe: dict, log=print) -> tuple[dict | None, int]:
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
    epochs = saved_epochs(run_dir)
    if not resume_path(run_dir).exists():
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            move_aside(run_dir, "have no resume.pt (the old format, or a run killed before its first "
                                "epoch was saved)", log)
        return None, 1
    state = load_checkpoint(resume_path(run_dir))
    differences = recipe_differences(state.get("recipe", {}), recipe)
    if differences:
        move_aside(run_dir, f"were made with other params ({'; '.join(differences)})", log)
        return None, 1
    trained = state["epoch"]
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
            f"(resnet.keep_epochs={recipe.get('keep_epochs', 'all')}, {trained} epochs trained)")
    if trained >= recipe["epochs"]:
        log(f"=> {run_dir}: all {recipe['epochs']} epochs already trained (resume.pt at epoch {trained})")
    else:
        log(f"=> resuming {run_dir} from epoch {trained} (resume.pt)")
    return state, trained + 1
