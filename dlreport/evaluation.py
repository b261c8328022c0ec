"""eval_epochs and diff_predictions: evaluate epoch checkpoints, compare two of them image by image."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dlreport.errors import PipelineError
from dlreport.fileio import atomic_dir, read_json, write_json
from dlreport.models import build_resnet18
from dlreport.params import DiffParams, EvalParams
from dlreport.progress import progress
from dlreport.tinyimagenet import load_classes, load_split_tensors
from dlreport.checkpoints import checkpoint_path, load_checkpoint, saved_epochs, training_stage
from dlreport.devices import autocast_dtype
from dlreport.training import evaluate_images


# --------------------------------------------------------------------------------------
# Which run, which epochs
# --------------------------------------------------------------------------------------
def resolve_run(spec: str, summaries: dict[str, dict]) -> str:
    """``auto``: the variant with the most GPUs that actually trained; else the named one (a key of
    resnet_runs: params.py checks)."""
    trained = {name: s for name, s in summaries.items() if s.get("status") == "trained"}
    if spec == "auto":
        if not trained:
            statuses = ", ".join(f"{n}={s.get('status')}" for n, s in summaries.items())
            raise PipelineError(f"eval.run=auto, but no train_resnet variant has trained ({statuses}). "
                                f"Run dvc repro train_resnet@cpu first.")
        return max(trained, key=lambda n: (trained[n].get("gpus", 0), trained[n].get("processes", 1), n))
    if spec not in trained:
        status = summaries.get(spec, {}).get("status", f"no metrics/train_resnet_{spec}.json among --summaries")
        raise PipelineError(f"eval.run={spec!r}: that variant did not train ({status}; runs/resnet/{spec}/status.json "
                            f"says why). Use eval.run: auto or a variant that trained.")
    return spec


def resolve_epochs(spec, run_dir: Path) -> list[int]:
    """The epochs to evaluate: ``all`` saved ones, or the listed ones, each of which must be saved.
    (params.py keeps eval.epochs within resnet.epochs and resnet.keep_epochs; DVC re-trains a run
    whose params changed: so a missing epoch means a run folder changed by hand.)"""
    available = saved_epochs(run_dir)
    epochs = available if spec == "all" else list(spec)
    missing = [e for e in epochs if e not in available]
    if missing or not epochs:
        raise PipelineError(f"{run_dir}/checkpoints holds no weights of epoch(s) {', '.join(map(str, missing)) or 'any'} "
                            f"(saved: {', '.join(map(str, available)) or 'none'}). Restore the run with `dvc checkout` "
                            f"or re-run it (`dvc repro --force train_resnet@{Path(run_dir).name}`), or set eval.epochs "
                            f"to saved epochs.")
    return epochs


# --------------------------------------------------------------------------------------
# eval_epochs
# --------------------------------------------------------------------------------------
def evaluate_epoch(run_dir: Path, epoch: int, images: torch.Tensor, labels: torch.Tensor, *,
                   batch_size: int, device: torch.device, log=print) -> tuple[dict, torch.Tensor]:
    """Loss/Acc@1/Acc@5 of one checkpoint on the validation images, and its logits."""
    state = load_checkpoint(checkpoint_path(run_dir, epoch), training_stage(run_dir))
    recipe = state["recipe"]
    model = build_resnet18(state["num_classes"], recipe["stem"])
    model.load_state_dict(state["model"])
    model = model.to(device, memory_format=torch.channels_last)
    amp = autocast_dtype(recipe["precision"], device)
    log(f"=> evaluating {checkpoint_path(run_dir, epoch)}")
    logits = evaluate_images(model, images, labels.to(device), batch_size=batch_size,
                             input_size=recipe["input_size"], amp=amp, device=device,
                             print_freq=recipe["print_freq"], log=log).cpu()
    top5 = logits.topk(5, 1).indices
    metrics = {
        "epoch": epoch,
        "loss": float(F.cross_entropy(logits, labels)),
        "acc1": float((top5[:, 0] == labels).double().mean() * 100),
        "acc5": float((top5 == labels[:, None]).any(1).double().mean() * 100),
    }
    log(f" * Acc@1 {metrics['acc1']:.3f} Acc@5 {metrics['acc5']:.3f}")
    return metrics, logits


def predictions_table(val: pd.DataFrame, classes: pd.DataFrame, logits: torch.Tensor) -> pd.DataFrame:
    """One row per validation image: file, true class and the top-5 classes with probabilities."""
    probs, top = F.softmax(logits, 1).topk(5, 1)
    wnids = classes.wnid.to_numpy()
    table = pd.DataFrame({"file": val.path.str.rsplit("/", n=1).str[-1], "true_index": val.class_index,
                          "true_wnid": val.wnid})
    for k in range(5):
        table[f"top{k + 1}_index"] = top[:, k].numpy()
        table[f"top{k + 1}_wnid"] = wnids[top[:, k].numpy()]
        table[f"top{k + 1}_prob"] = probs[:, k].numpy().round(6)
    return table


def predictions_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / f"predictions_epoch_{epoch:02d}.csv"


def eval_epochs(cfg: EvalParams, prepared: Path, runs_dir: Path, summaries: dict[str, dict], out: Path,
                log=print) -> dict:
    """Evaluate the chosen epochs; write their predictions to ``out``; return the metrics."""
    run = resolve_run(cfg.run, summaries)
    run_dir = Path(runs_dir) / run
    epochs = resolve_epochs(cfg.epochs, run_dir)
    device = torch.device("cuda" if torch.cuda.is_available() and summaries[run].get("gpus", 0) else "cpu")
    val, images, labels = load_split_tensors(prepared, "val")
    classes = load_classes(prepared)
    results = {}
    with atomic_dir(out) as tmp:
        for epoch in progress(epochs, f"evaluating the checkpoints of {run}", "checkpoints"):
            metrics, logits = evaluate_epoch(run_dir, epoch, images, labels,
                                             batch_size=cfg.batch_size, device=device, log=log)
            predictions_table(val, classes, logits).to_csv(predictions_path(tmp, epoch), index=False)
            results[epoch] = metrics
        pd.DataFrame(results.values()).to_csv(tmp / "accuracy_by_epoch.csv", index=False)
    first, last = results[epochs[0]], results[epochs[-1]]
    return {
        "run": run,
        # first/last keep the same names whatever the epochs, so `dvc metrics diff` and
        # `dvc exp diff` line two experiments' epochs up against each other.
        "first": first,
        "last": last,
        "change": {k: last[k] - first[k] for k in ("loss", "acc1", "acc5")},
        # every evaluated epoch is in <out>/accuracy_by_epoch.csv (a plot, not a metric)
    }


# --------------------------------------------------------------------------------------
# diff_predictions
# --------------------------------------------------------------------------------------
def mcnemar_log10_p(only_a: int, only_b: int) -> float:
    """log10 of the two-sided exact McNemar test's p: the binomial test of the discordant pairs
    against 1/2, summed in integers (exact where a float p would underflow to 0)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 0.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(0.0, math.log10(2 * tail) - n * math.log10(2))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    return 10 ** mcnemar_log10_p(only_a, only_b)


def compare_predictions(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Images whose top-1 differs between ``a`` and ``b`` (same images, any order) and the counts."""
    merged = a[["file", "true_index", "true_wnid", "top1_index"]].merge(
        b[["file", "top1_index"]], on="file", suffixes=("_a", "_b"), validate="one_to_one")
    right_a = merged.top1_index_a == merged.true_index
    right_b = merged.top1_index_b == merged.true_index
    same = merged.top1_index_a == merged.top1_index_b
    counts = {
        "images": int(len(merged)),
        "both_right": int((right_a & right_b).sum()),
        "only_a_right": int((right_a & ~right_b).sum()),
        "only_b_right": int((~right_a & right_b).sum()),
        "both_wrong_same": int((~right_a & ~right_b & same).sum()),
        "both_wrong_different": int((~right_a & ~right_b & ~same).sum()),
    }
    counts["differing"] = int((~same).sum())
    counts["agreement"] = float(same.mean()) if len(merged) else 1.0
    counts["acc1_change"] = 100 * (counts["only_b_right"] - counts["only_a_right"]) / max(1, len(merged))
    counts["mcnemar_p"] = mcnemar_exact(counts["only_a_right"], counts["only_b_right"])
    differing = merged[~same].copy()
    differing["right"] = np.select([right_a[~same], right_b[~same]], ["a", "b"], "neither")
    differing = differing.iloc[natural_order(differing.file)].reset_index(drop=True)
    return differing, counts


def natural_order(files: pd.Series) -> np.ndarray:
    """Sort val_2 before val_10, as a person reads the list."""
    import re

    keys = [tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f)) for f in files]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=int)


def name_columns(differing: pd.DataFrame, classes: pd.DataFrame) -> pd.DataFrame:
    names = dict(zip(classes.class_index, classes.name))
    wnids = dict(zip(classes.class_index, classes.wnid))
    out = differing.assign(true_name=differing.true_index.map(names),
                           pred_a_wnid=differing.top1_index_a.map(wnids), pred_a_name=differing.top1_index_a.map(names),
                           pred_b_wnid=differing.top1_index_b.map(wnids), pred_b_name=differing.top1_index_b.map(names))
    return out.rename(columns={"top1_index_a": "pred_a_index", "top1_index_b": "pred_b_index"})[
        ["file", "true_index", "true_wnid", "true_name", "pred_a_index", "pred_a_wnid", "pred_a_name",
         "pred_b_index", "pred_b_wnid", "pred_b_name", "right"]]


def plain_list(differing: pd.DataFrame, epoch_a: int, epoch_b: int) -> str:
    """The report's list: one ``val_1008.JPEG 107`` line (file, true class index) per image."""
    header = (f"# validation images whose top-1 prediction differs between epoch {epoch_a} and "
              f"epoch {epoch_b}: file, true class index (details in diff_predictions.csv)\n")
    return header + "".join(f"{f} {t}\n" for f, t in zip(differing.file, differing.true_index))


def image_grid(differing: pd.DataFrame, root: Path, path: Path, epoch_a: int, epoch_b: int, count: int) -> None:
    """The first ``count`` differing images, captioned with the true and both predicted names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    shown = differing.head(count)
    cols = min(6, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, shown.itertuples()):
        with Image.open(root / "val" / "images" / row.file) as image:
            ax.imshow(image.convert("RGB"))
        mark = {"a": " (A right)", "b": " (B right)", "neither": ""}[row.right]
        ax.set_title(f"{row.file}\ntrue: {row.true_name[:28]}\n{epoch_a}: {row.pred_a_name[:28]}\n"
                     f"{epoch_b}: {row.pred_b_name[:28]}{mark}", fontsize=6.5, loc="left")
    if shown.empty:
        axes[0, 0].text(0.5, 0.5, "the two epochs agree on every image", ha="center", va="center")
    fig.suptitle(f"Validation images judged differently by epoch {epoch_a} (A) and epoch {epoch_b} (B)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def resolve_pair(cfg: DiffParams, evaluated: list[int]) -> tuple[int, int]:
    """diff.a and diff.b, None meaning the first and the last evaluated epoch."""
    a = cfg.a if cfg.a is not None else evaluated[0]
    b = cfg.b if cfg.b is not None else evaluated[-1]
    missing = [e for e in (a, b) if e not in evaluated]
    if missing:
        raise PipelineError(f"diff epoch(s) {', '.join(map(str, missing))} were not evaluated "
                            f"(eval_epochs evaluated {', '.join(map(str, evaluated))}). Add them to "
                            f"eval.epochs or change diff.a/diff.b in params.yaml.")
    return int(a), int(b)


def evaluated_epochs(folder: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in Path(folder).glob("predictions_epoch_*.csv"))


def diff_metrics(counts: dict) -> dict:
    """What `dvc metrics show` lists of a comparison (every count is in <out>/summary.json). The
    p-value as its log10: DVC prints metrics to 5 decimals, so p = 2e-54 would read 0.0."""
    return {**{key: counts[key] for key in ("epoch_a", "epoch_b", "differing", "only_a_right", "only_b_right")},
            "mcnemar_log10_p": round(mcnemar_log10_p(counts["only_a_right"], counts["only_b_right"]), 2)}


def diff_predictions(cfg: DiffParams, predictions: Path, prepared: Path, dataset_root: Path, out: Path) -> dict:
    """The diff_predictions stage: write the list, the table, the grid and every count
    (summary.json) to ``out``; return the counts."""
    a, b = resolve_pair(cfg, evaluated_epochs(predictions))
    differing, counts = compare_predictions(pd.read_csv(predictions_path(predictions, a)),
                                            pd.read_csv(predictions_path(predictions, b)))
    differing = name_columns(differing, load_classes(prepared))
    counts = {"epoch_a": a, "epoch_b": b, **counts}
    with atomic_dir(out) as tmp:
        (tmp / "diff_predictions.txt").write_text(plain_list(differing, a, b))
        differing.to_csv(tmp / "diff_predictions.csv", index=False)
        image_grid(differing, Path(dataset_root), tmp / "diff_grid.png", a, b,
                   cfg.grid_images)
        write_json(tmp / "summary.json", counts)
    return counts


def load_summaries(paths: list[Path]) -> dict[str, dict]:
    """Variant name -> train_resnet summary, from metrics/train_resnet_<variant>.json files."""
    return {Path(p).stem.removeprefix("train_resnet_"): read_json(p) for p in paths}
