"""The recipe a ResNet-18 run trained with, recorded in its summary, and how it differs from the
report's.

The report trained with the PyTorch ImageNet example's ``main.py``, changing only the classifier
(``Linear(512, 200)``) and the data, so its images went through main.py's transforms:
RandomResizedCrop(224) + flip for training, Resize(256) + CenterCrop(224) for validation (the
64x64 images upsampled). Its timings say the same: 4.95 min an epoch on one 1080 Ti is 337
images/s, a 224-px rate, and 110 min an epoch on its CPU is 15 images/s. main.py's defaults
complete the recipe: SGD, lr 0.1 (divided by 10 every 30 epochs, so constant over 20), momentum
0.9, weight decay 1e-4, batch 256, torchvision's stem; the data is the full Tiny-ImageNet (100,000
training and 10,000 validation images of 200 classes).

A claim about the report's training runs is judged only on a run of that recipe: ``differences``
names what a run did otherwise, and the ledger calls such a run "not comparable". Precision is
not part of the comparison (main.py trained in fp32; bf16 changes the last digits of the
weights, not the recipe) and neither is the device.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse
from urllib.request import url2pathname

from dlreport.transforms import describe

# The full Tiny-ImageNet: what "the real data" means for the report's claims.
REAL_TRAIN_IMAGES, REAL_VAL_IMAGES = 100_000, 10_000

REPORT_RECIPE = {
    "input_size": 224,
    "train_transform": "RandomResizedCrop(224) + flip",
    "eval_transform": "Resize(256) + CenterCrop(224)",
    "stem": "torchvision",
    "schedule": "constant",   # main.py's StepLR(30, 0.1): constant over 20 epochs
    "warmup_epochs": 0,
    "batch_size": 256,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0001,
    "label_smoothing": 0.0,
}
REPORT_RECIPE_NAME = "main.py at 224 on the real Tiny-ImageNet"
REPORT_EPOCHS = 20


def portable_source(source: str, root: str | os.PathLike = ".") -> str:
    """A data source as a project would record it: a ``file://`` URL or a local path becomes a
    path relative to the project root (``../data/x.zip``), never this machine's path."""
    if source == "sample":
        return source
    parsed = urlparse(source)
    if parsed.scheme not in ("", "file"):
        return source
    path = url2pathname(parsed.path) if parsed.scheme == "file" else source
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root))


def data_record(source: str, md5: str | None, train_images: int, val_images: int,
                root: str | os.PathLike = ".") -> dict:
    """What a run trained on: its source (as ``portable_source`` writes it, relative to ``root``),
    the archive's md5 where params.yaml names it, and the image counts."""
    return {"source": portable_source(source, root), "md5": md5, "train_images": train_images,
            "val_images": val_images}


def effective_schedule(schedule: str, step_size: int, epochs: int) -> str:
    """A step schedule whose first step comes after the last epoch is a constant one (main.py's
    StepLR(30) over 20 epochs)."""
    return "constant" if schedule == "step" and step_size >= epochs else schedule


def resnet_recipe(recipe, data: dict) -> dict:
    """The ``recipe`` block of a training summary: what decides whether the run is the report's
    experiment. ``recipe`` is a ResnetParams (or anything with its attributes)."""
    train_transform, eval_transform = describe(recipe.input_size)
    return {
        "input_size": recipe.input_size,
        "train_transform": train_transform,
        "eval_transform": eval_transform,
        "stem": recipe.stem,
        "schedule": effective_schedule(recipe.schedule, recipe.step_size, min(recipe.epochs, REPORT_EPOCHS)),
        "warmup_epochs": recipe.warmup_epochs,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "label_smoothing": recipe.label_smoothing,
        "epochs": recipe.epochs,
        "precision": recipe.precision,
        "data": data,
    }


def describe_data(data: dict) -> str:
    if data.get("source") == "sample":
        return f"the generated sample ({data.get('train_images', 0):,} training images)"
    return f"`{data.get('source')}` ({data.get('train_images', 0):,} training, {data.get('val_images', 0):,} validation images)"


def differences(recipe: dict | None) -> list[str]:
    """What a run's recorded recipe does otherwise than the report's, one phrase each ("this run:
    ...; the report: ..."); empty when the run is the report's experiment."""
    if not recipe:
        return ["its summary records no recipe (trained before recipes were recorded)"]
    out = []
    if recipe["input_size"] != REPORT_RECIPE["input_size"] or recipe["train_transform"] != REPORT_RECIPE["train_transform"]:
        out.append(f"this run: {recipe['input_size']} px, {recipe['train_transform']}, evaluated on "
                   f"{recipe['eval_transform']}; the report: main.py at 224 ({REPORT_RECIPE['train_transform']}, "
                   f"{REPORT_RECIPE['eval_transform']})")
    for key in ("stem", "schedule", "warmup_epochs", "batch_size", "lr", "momentum", "weight_decay", "label_smoothing"):
        if recipe[key] != REPORT_RECIPE[key]:
            out.append(f"this run: {key.replace('_', ' ')} {recipe[key]:g}; the report: {REPORT_RECIPE[key]:g}"
                       if isinstance(recipe[key], (int, float)) else
                       f"this run: {key.replace('_', ' ')} {recipe[key]}; the report: {REPORT_RECIPE[key]}")
    data = recipe.get("data") or {}
    if (data.get("source") == "sample" or data.get("train_images") != REAL_TRAIN_IMAGES
            or data.get("val_images") != REAL_VAL_IMAGES):
        out.append(f"this run's data: {describe_data(data)}; the report: the real Tiny-ImageNet "
                   f"({REAL_TRAIN_IMAGES:,} training, {REAL_VAL_IMAGES:,} validation images)")
    return out


def describe_recipe(recipe: dict | None) -> str:
    """One line for a ledger or a results page: the transforms, the optimiser, the data."""
    if not recipe:
        return "not recorded"
    return (f"{recipe['input_size']} px, {recipe['train_transform']} / {recipe['eval_transform']}, {recipe['stem']} "
            f"stem, SGD lr {recipe['lr']:g} ({recipe['schedule']}), momentum {recipe['momentum']:g}, weight decay "
            f"{recipe['weight_decay']:g}, batch {recipe['batch_size']}, {recipe['epochs']} epochs, on "
            f"{describe_data(recipe.get('data') or {})}")
