"""The claims ledger: every claim of the course report, the report's own figure, ours, the rule
that decides and a verdict - supported, contradicted, not comparable, or not measurable in this
run (with why).

The rules are written here, as code and as a sentence shown beside each verdict, before any
number of a run was seen. A claim about the report's training runs is judged like with like: on
a run of the report's recipe (``dlreport.recipe``: main.py at 224 on the real Tiny-ImageNet, as
each run's summary records it). A run of another recipe or other data is "not comparable", with
the difference named; a claim this run has no numbers for (no GPU variant trained, fewer epochs
than the claim needs) is "not measurable". Where the run still has the numbers, the ledger shows
them and what the rule gives on them, so a faster recipe or a sample run shows the machinery and
its figures but never counts as evidence about the report's experiment.

Inputs are the stage outputs (read through ``report.Inputs``, which records every path asked
for, so a test checks that the stage's dvc.yaml deps are exactly these).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from dlreport.evaluation import mcnemar_log10_p
from dlreport.recipe import REPORT_EPOCHS, REPORT_RECIPE_NAME, describe_recipe, differences
from dlreport.report import Inputs
from dlreport.reporting import render_template
from dlreport.stats import LEVEL, interval, resample_weights, resampled_means
from dlreport.wordlm.probe import CONTRADICTED, NOT_MEASURABLE, SUPPORTED

NOT_COMPARABLE = "not comparable"
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_COMPARABLE, NOT_MEASURABLE)

# ---------------------------------------------------------------------------------------------
# What the report said (its figures, as it gives them)

REPORT_LAYERS = {  # its table: each block's output for one 64x64 image (H x W x C)
    "conv1": "32x32x64", "maxpool": "16x16x64", "layer1": "16x16x64", "layer2": "8x8x128",
    "layer3": "4x4x256", "layer4": "2x2x512", "avgpool": "1x1x512", "fc": "200"}
REPORT_MINUTES = {"cpu": 36 * 60 + 37, "gpu1": 99, "gpu8": 57.5}  # 20 epochs, on 1080 Tis
REPORT_MINUTES_PER_EPOCH = {"cpu": 110, "gpu1": 4.95, "gpu8": 2.85}
REPORT_SPEEDUP_GPU1, REPORT_SPEEDUP_GPU8_OVER_GPU1, REPORT_EFFICIENCY_GPU8 = 22, 1.74, 0.22
REPORT_EPOCH_A, REPORT_EPOCH_B = 7, 18
REPORT_ACC1 = {7: 37.94, 18: 48.73}
REPORT_ACC5 = {7: 66.38, 18: 75.30}
REPORT_LISTED_IMAGES = 10
REPORT_LM_EPOCH, REPORT_LM_VALID_PPL, REPORT_LM_MS_PER_BATCH = 5, 214.11, 14.7
REPORT_LM_MODEL = "lstm"  # the example's default model, which the report's log is taken to be
WIKITEXT2_TRAIN_TOKENS = 2_088_628  # the example's count of WikiText-2's training split (words and <eos>)

# ---------------------------------------------------------------------------------------------
# The rules' thresholds (fixed before any run's numbers were seen)

STEADY_RISE_SHARE = 0.05     # C2: the rises add up to at most 5% of the total fall
OVERFIT_VAL_LOSS_RISE = 0.05  # C3/C5: a validation loss 5% above its minimum has risen
OVERFIT_ACC1_GAP = 20.0      # C3: train minus validation Acc@1 (points) that counts as over-fitting
TRAIN_ACC1_TARGET, TRAIN_ACC1_LONG_TARGET, TRAIN_ACC1_TOLERANCE = 90.0, 95.0, 5.0  # C4
PEAK_MIN_RISE, SLIGHT_FALL_MAX = 5.0, 3.0  # C6: rose by 5+ points, then fell by at most 3
ARITHMETIC_TOLERANCE = 0.05  # C7: the report's own figures agree within 5%
SPEEDUP_FACTOR = 2.0         # C7: a speedup within a factor of 2 of the report's
LITTLE_ACC5_CHANGE = 2.0     # C8: "differ little" = the Acc@5 change lies within +-2 points
MANY_DIFFERING_SHARE = 0.10  # C9: "many" = at least 10% of the validation images
LM_PPL_TOLERANCE = 0.15      # C10: validation perplexity within 15% of the report's
COST_EXPONENT_TOLERANCE = 0.3  # C13: exponents within 0.3 of 2 (Transformer) and 1 (CNN)


@dataclass
class Claim:
    id: str
    statement: str   # the report's claim, in our words
    report: str      # the report's own figure ("-" where it gives none)
    ours: str        # what this run measured
    rule: str        # what decides
    verdict: str     # one of VERDICTS
    reason: str = ""  # why not comparable or not measurable (and, where the run has the numbers, what the rule gives)


# ---------------------------------------------------------------------------------------------
# The rules on curves (lists of per-epoch values, epoch 1 first)

def steady_decline(loss: list[float]) -> tuple[bool, str]:
    """C2: the loss ends below where it started and its epoch-to-epoch rises add up to at most
    STEADY_RISE_SHARE of the fall from the first epoch to the lowest (ties are not rises)."""
    rises = [b - a for a, b in zip(loss, loss[1:]) if b > a]
    fall = loss[0] - min(loss)
    share = sum(rises) / fall if fall > 0 else math.inf
    ok = loss[-1] < loss[0] and share <= STEADY_RISE_SHARE
    return ok, (f"loss {loss[0]:.3f} -> {loss[-1]:.3f}; {len(rises)} rise(s) in {len(loss) - 1} epochs, adding up "
                f"to {100 * share:.1f}% of the fall" if fall > 0 else f"loss {loss[0]:.3f} -> {loss[-1]:.3f}; no fall")


def overfitting(train_loss: list[float], val_loss: list[float], train_acc1: list[float],
                val_acc1: list[float]) -> tuple[bool, str]:
    """C3: over-fitting if the validation loss ends OVERFIT_VAL_LOSS_RISE above its minimum
    while the training loss fell over the same epochs, or the last epoch's train minus
    validation Acc@1 exceeds OVERFIT_ACC1_GAP points."""
    best = min(range(len(val_loss)), key=lambda i: (val_loss[i], i))
    rise = val_loss[-1] / val_loss[best] - 1
    rising = rise >= OVERFIT_VAL_LOSS_RISE and train_loss[-1] < train_loss[best]
    gap = train_acc1[-1] - val_acc1[-1]
    return rising or gap > OVERFIT_ACC1_GAP, (
        f"validation loss lowest at epoch {best + 1} ({val_loss[best]:.3f}), {100 * rise:+.1f}% by epoch "
        f"{len(val_loss)} while the training loss went {train_loss[best]:.3f} -> {train_loss[-1]:.3f}; "
        f"train - validation Acc@1 at epoch {len(val_acc1)}: {gap:.1f} points")


def no_overfitting(*curves: list[float]) -> tuple[bool, str]:
    """C3 as the report said it: the opposite of ``overfitting`` (same figures)."""
    over, ours = overfitting(*curves)
    return not over, ours


def rises_with_epochs(val_loss: list[float]) -> tuple[bool, str]:
    """C5: the validation loss is lowest in the first half of training and ends at least
    OVERFIT_VAL_LOSS_RISE above that minimum."""
    best = min(range(len(val_loss)), key=lambda i: (val_loss[i], i))
    rise = val_loss[-1] / val_loss[best] - 1
    return best + 1 <= len(val_loss) // 2 and rise >= OVERFIT_VAL_LOSS_RISE, (
        f"lowest at epoch {best + 1} ({val_loss[best]:.3f}), {val_loss[-1]:.3f} at epoch {len(val_loss)} "
        f"({100 * rise:+.1f}%)")


def peak_then_slight_fall(acc1: list[float]) -> tuple[bool, str]:
    """C6: the highest value (its last occurrence) comes before the last epoch, at least
    PEAK_MIN_RISE points above the first epoch, and the last epoch is below it by more than 0
    and at most SLIGHT_FALL_MAX points."""
    top = max(acc1)
    peak = max(i for i, v in enumerate(acc1) if v == top)
    fall = top - acc1[-1]
    ok = peak < len(acc1) - 1 and top - acc1[0] >= PEAK_MIN_RISE and 0 < fall <= SLIGHT_FALL_MAX
    return ok, f"{acc1[0]:.2f} at epoch 1, highest {top:.2f} at epoch {peak + 1}, {acc1[-1]:.2f} at epoch {len(acc1)}"


def within(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= tolerance


def within_factor(value: float, target: float, factor: float) -> bool:
    return target / factor <= value <= target * factor


def exponent_verdict(quadratic: float, linear: float) -> bool:
    """C13: the Transformer's exponent within COST_EXPONENT_TOLERANCE of 2, the CNN's of 1."""
    return within(quadratic, 2, COST_EXPONENT_TOLERANCE) and within(linear, 1, COST_EXPONENT_TOLERANCE)


# ---------------------------------------------------------------------------------------------
# Bootstrap over validation images (C8)

def correctness(predictions: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (in file order): top-1 right, top-5 right (as 0/1 floats)."""
    table = predictions.sort_values("file").reset_index(drop=True)
    truth = torch.tensor(table["true_index"].to_numpy())
    top = torch.tensor(table[[f"top{k}_index" for k in range(1, 6)]].to_numpy())
    return (top[:, 0] == truth).double(), (top == truth[:, None]).any(1).double()


def accuracy_intervals(a: pd.DataFrame, b: pd.DataFrame, resamples: int, seed: int) -> dict:
    """Acc@1 and Acc@5 (%) of two checkpoints on the same images and of their difference
    (b - a), each with a paired percentile-bootstrap interval over the images."""
    if sorted(a["file"]) != sorted(b["file"]):
        raise ValueError("the two prediction files cover different images")
    (a1, a5), (b1, b5) = correctness(a), correctness(b)
    weights = resample_weights(len(a1), resamples, seed)
    out = {}
    for name, rows in (("acc1", torch.stack([a1, b1, b1 - a1])), ("acc5", torch.stack([a5, b5, b5 - a5]))):
        point = 100 * rows.mean(dim=1)
        low, high = interval(100 * resampled_means(rows, weights))
        out[name] = [(point[i].item(), (low[i].item(), high[i].item())) for i in range(3)]
    return out  # {"acc1": [a, b, b - a], ...}, each (value, (low, high))


def fmt(value: float, bounds: tuple[float, float] | None = None, spec: str = ".2f") -> str:
    return f"{value:{spec}}" + (f" [{bounds[0]:{spec}}, {bounds[1]:{spec}}]" if bounds else "")


# ---------------------------------------------------------------------------------------------
# The ledger

@dataclass(frozen=True)
class RunFacts:
    """What the ledger needs to know of the run beyond its outputs (from params.yaml). What each
    training run trained with, it reads from the run's own summary (its ``recipe``)."""
    input_size: int       # resnet.input_size
    stem: str             # resnet.stem: the layer table's model (stage layer_shapes, always at 64x64)
    epochs: int           # resnet.epochs
    variants: list[str]   # keys of resnet_runs
    lm_models: list[str]  # keys of wordlm.models
    bootstrap: int
    seed: int


class Ledger:
    def __init__(self, inputs: Inputs, facts: RunFacts):
        self.inputs, self.facts = inputs, facts
        self.claims: list[Claim] = []

    def add(self, cid, statement, report, rule, *, ours="-", verdict=NOT_MEASURABLE, reason="",
            measured: tuple[bool, str] | None = None, gate: str = "") -> None:
        """Record a claim. ``measured`` = (the rule holds, our figures); ``gate`` = how this run
        differs from the experiment the claim is about: the claim is not comparable, and the
        reason says what the rule gives on this run's numbers."""
        if measured is not None:
            holds, ours = measured
            verdict = SUPPORTED if holds else CONTRADICTED
            if gate:
                reason = f"{gate}; on this run's numbers the rule gives: {verdict}"
                verdict = NOT_COMPARABLE
        self.claims.append(Claim(cid, statement, report, ours, rule, verdict, reason))

    # -- inputs --------------------------------------------------------------------------
    def summaries(self) -> dict[str, dict]:
        return {v: self.inputs.json(f"metrics/train_resnet_{v}.json") or {} for v in self.facts.variants}

    def evaluated_run(self) -> str | None:
        ev = self.inputs.json("metrics/eval.json")
        return ev.get("run") if ev else None

    def curves(self, run: str) -> dict[str, list[float]] | None:
        base = f"runs/resnet/{run}/dvclive/plots/metrics"
        out = {}
        for key in ("train/loss", "val/loss", "train/acc1", "val/acc1"):
            table = self.inputs.tsv(f"{base}/{key}.tsv")
            if table is None or table.empty:
                return None
            out[key] = table.sort_values("step")[key.split("/")[1]].tolist()
        return out

    def recipe_gate(self, *variants: str) -> str:
        """How the runs of ``variants`` differ from the report's recipe ("" if they are its recipe)."""
        summaries = self.summaries()
        found: list[str] = []
        for variant in variants:
            for difference in differences((summaries.get(variant) or {}).get("recipe")):
                if difference not in found:
                    found.append(difference)
        return f"not the report's recipe ({REPORT_RECIPE_NAME}) - " + "; ".join(found) if found else ""

    def corpus(self) -> dict:
        return self.inputs.json("metrics/corpus.json") or {}

    def corpus_gate(self, whole_wikitext2: bool) -> str:
        """How this run's corpus differs from what the claim is about: WikiText-2 itself
        (``whole_wikitext2``, C10a), or natural text at all (the context claims)."""
        corpus = self.corpus()
        source, tokens = corpus.get("source"), corpus.get("train_tokens", 0)
        if not corpus:
            return "metrics/corpus.json absent (stage prepare_corpus): the corpus is unknown"
        if source == "sample":
            return (f"this run's corpus: the generated sample ({tokens:,} training tokens of made-up text); the report: "
                    f"natural text (WikiText-2; set wordlm.corpus)")
        if whole_wikitext2 and tokens != WIKITEXT2_TRAIN_TOKENS:
            return (f"this run's corpus: `{source}` ({tokens:,} training tokens); the report: WikiText-2 "
                    f"({WIKITEXT2_TRAIN_TOKENS:,} training tokens)")
        return ""

    def about(self) -> str:
        """The run the ledger judges, in one paragraph: each trained variant's recipe, the corpus."""
        trained = {v: s for v, s in self.summaries().items() if s.get("status") == "trained"}
        runs = "; ".join(f"`{v}`: {describe_recipe(s.get('recipe'))}" for v, s in trained.items()) or "none trained"
        corpus = self.corpus()
        text = (f"`{corpus.get('source')}` ({corpus.get('train_tokens', 0):,} training tokens)" if corpus
                else "unknown (metrics/corpus.json absent)")
        return f"This run's ResNet-18 runs - {runs}. Language models on {text}."

    # -- the claims ------------------------------------------------------------------------
    def layer_sizes(self) -> None:
        rule = "supported if every block's measured output size equals the report's table; contradicted otherwise"
        report = ", ".join(f"{k} {v}" for k, v in REPORT_LAYERS.items())
        statement = "ResNet-18's block output sizes for a 64x64 input (the report's 8-row table)."
        table = self.inputs.csv("reports/layer_shapes.csv")
        if table is None:
            return self.add("C1", statement, report, rule, reason="reports/layer_shapes.csv absent (stage layer_shapes)")
        # The table is always for a 64x64 input (stage layer_shapes): the architecture decides it.
        measured = dict(zip(table["layer"], table["output"].astype(str)))
        wrong = [f"{k}: {measured.get(k, 'absent')} (report {v})" for k, v in REPORT_LAYERS.items() if measured.get(k) != v]
        ours = "; ".join(wrong) if wrong else "all 8 rows equal (forward hooks, reports/layer_shapes.csv)"
        gate = (f"this run's model has the {self.facts.stem} stem; the report's table is of torchvision's ResNet-18"
                if self.facts.stem != "torchvision" else "")
        self.add("C1", statement, report, rule, measured=(not wrong, ours), gate=gate)

    def curve_claims(self) -> None:
        run = self.evaluated_run()
        curves = self.curves(run) if run else None
        epochs = len(curves["train/loss"]) if curves else 0
        specs = [
            ("C2", "The training loss falls steadily, nearly monotonically, over the 20 epochs.", "-", REPORT_EPOCHS,
             f"supported if the training loss ends below its first epoch and its epoch-to-epoch rises add up to at "
             f"most {STEADY_RISE_SHARE:.0%} of its fall (epochs 1-{REPORT_EPOCHS}; ties are not rises)",
             lambda c: steady_decline(c["train/loss"])),
            ("C3", "No over-fitting.", "-", REPORT_EPOCHS,
             f"contradicted (over-fitting) if the validation loss ends {OVERFIT_VAL_LOSS_RISE:.0%} or more above its "
             f"minimum while the training loss fell over the same epochs, or the last epoch's train minus validation "
             f"Acc@1 exceeds {OVERFIT_ACC1_GAP:.0f} points; supported otherwise",
             lambda c: no_overfitting(c["train/loss"], c["val/loss"], c["train/acc1"], c["val/acc1"])),
            ("C4", "Training Acc@1 reaches about 90% by epoch 18.", f"about {TRAIN_ACC1_TARGET:.0f}%", 18,
             f"supported if training Acc@1 (main.py's running average over the epoch) at epoch 18 is within "
             f"{TRAIN_ACC1_TOLERANCE:.0f} points of {TRAIN_ACC1_TARGET:.0f}",
             lambda c: (within(c["train/acc1"][17], TRAIN_ACC1_TARGET, TRAIN_ACC1_TOLERANCE),
                        f"{c['train/acc1'][17]:.2f}% at epoch 18")),
            ("C4b", "With more epochs training Acc@1 reaches about 95%.", f"about {TRAIN_ACC1_LONG_TARGET:.0f}%",
             REPORT_EPOCHS + 1,
             f"supported if the highest training Acc@1 after epoch {REPORT_EPOCHS} is within "
             f"{TRAIN_ACC1_TOLERANCE:.0f} points of {TRAIN_ACC1_LONG_TARGET:.0f}",
             lambda c: (within(max(c["train/acc1"][REPORT_EPOCHS:]), TRAIN_ACC1_LONG_TARGET, TRAIN_ACC1_TOLERANCE),
                        f"highest {max(c['train/acc1'][REPORT_EPOCHS:]):.2f}% after epoch {REPORT_EPOCHS}")),
            ("C5", "The validation loss rises with the epochs.", "-", REPORT_EPOCHS,
             f"supported if the validation loss is lowest in the first half of the {REPORT_EPOCHS} epochs and ends "
             f"{OVERFIT_VAL_LOSS_RISE:.0%} or more above that minimum",
             lambda c: rises_with_epochs(c["val/loss"])),
            ("C6", "Validation Acc@1 rises, then falls slightly at the end.", "-", REPORT_EPOCHS,
             f"supported if validation Acc@1 peaks before epoch {REPORT_EPOCHS}, at least {PEAK_MIN_RISE:.0f} points "
             f"above epoch 1, and epoch {REPORT_EPOCHS} is below the peak by more than 0 and at most "
             f"{SLIGHT_FALL_MAX:.0f} points",
             lambda c: peak_then_slight_fall(c["val/acc1"])),
        ]
        for cid, statement, report, needs, rule, judge in specs:
            if curves is None:
                self.add(cid, statement, report, rule, reason="no trained run's curves (metrics/eval.json names the "
                         "run; runs/resnet/<run>/dvclive/plots/metrics/*.tsv)")
            elif epochs < needs:
                self.add(cid, statement, report, rule, reason=f"needs {needs} epochs, run `{run}` has {epochs} "
                         f"(resnet.epochs = {self.facts.epochs})")
            else:
                # the claims are about the report's 20 epochs (C4b: the epochs after them)
                window = curves if cid == "C4b" else {k: v[:REPORT_EPOCHS] for k, v in curves.items()}
                self.add(cid, statement, report, rule, measured=judge(window), gate=self.recipe_gate(run))

    def timings(self) -> None:
        summaries = self.summaries()
        trained = {v: s for v, s in summaries.items() if s.get("status") == "trained"}
        # C7a: the report's own table, recomputed.
        per_epoch = {v: REPORT_MINUTES[v] / REPORT_EPOCHS for v in REPORT_MINUTES}
        speedup1 = REPORT_MINUTES["cpu"] / REPORT_MINUTES["gpu1"]
        speedup8 = REPORT_MINUTES["gpu1"] / REPORT_MINUTES["gpu8"]
        checks = [(per_epoch[v], REPORT_MINUTES_PER_EPOCH[v]) for v in per_epoch] + [
            (speedup1, REPORT_SPEEDUP_GPU1), (speedup8, REPORT_SPEEDUP_GPU8_OVER_GPU1),
            (speedup8 / 8, REPORT_EFFICIENCY_GPU8)]
        consistent = all(abs(a / b - 1) <= ARITHMETIC_TOLERANCE for a, b in checks)
        self.add("C7a", "The timing table adds up: 36 h 37 min, 1 h 39 min and 57 min 30 s for 20 epochs are 110, "
                 "4.95 and 2.85 min an epoch, a 22x speedup for one GPU, 1.74x more for eight (22% efficiency).",
                 "110 / 4.95 / 2.85 min an epoch; 22x; 1.74x; 22%",
                 f"supported if each figure recomputed from the three totals agrees with the report's within "
                 f"{ARITHMETIC_TOLERANCE:.0%}",
                 measured=(consistent, f"{per_epoch['cpu']:.2f} / {per_epoch['gpu1']:.2f} / {per_epoch['gpu8']:.3f} "
                                       f"min an epoch; {speedup1:.2f}x; {speedup8:.3f}x; {100 * speedup8 / 8:.1f}%"))
        # C7b: the CPU's time per epoch, ours on the named CPU.
        cpu = trained.get("cpu")
        rule = (f"supported if our CPU run's minutes per epoch (of the report's recipe: main.py at 224, the full "
                f"100,000 training images) are within a factor of {SPEEDUP_FACTOR:g} of the report's 110 (the CPUs "
                f"differ and are named)")
        statement = "Training on the CPU takes about 110 min an epoch (36 h 37 min for 20)."
        if cpu is None:
            self.add("C7b", statement, "110 min an epoch", rule, reason="train_resnet@cpu did not train in this run")
        else:
            minutes = cpu["seconds_per_epoch"] / 60
            ours = (f"{minutes:.2f} min an epoch, {minutes * REPORT_EPOCHS / 60:.2f} h for {REPORT_EPOCHS} epochs, "
                    f"on {cpu.get('device')} ({cpu.get('processes', 1)} process(es), {cpu.get('precision')}); "
                    f"{REPORT_MINUTES_PER_EPOCH['cpu'] / minutes:.1f}x faster than the report")
            self.add("C7b", statement, "110 min an epoch", rule, gate=self.recipe_gate("cpu"),
                     measured=(within_factor(minutes, REPORT_MINUTES_PER_EPOCH["cpu"], SPEEDUP_FACTOR), ours))
        # C7c, C7d: the GPU speedups.
        gpu1, gpu8 = trained.get("gpu1"), trained.get("gpu8")
        rule = (f"supported if our speedup, both runs of the report's recipe (a GPU's lead depends on the "
                f"resolution), is within a factor of {SPEEDUP_FACTOR:g} of the report's (the GPUs differ and are named)")
        statement = "One GPU trains about 22x faster than the CPU."
        if cpu is None or gpu1 is None:
            missing = [v for v, s in (("cpu", cpu), ("gpu1", gpu1)) if s is None]
            self.add("C7c", statement, f"{REPORT_SPEEDUP_GPU1}x", rule,
                     reason=f"no {' or '.join(missing)} variant trained in this run (a CPU-only host records the GPU "
                            f"variants as skipped; on a GPU host: dvc exp run -S devices=8)")
        else:
            speedup = cpu["seconds_per_epoch"] / gpu1["seconds_per_epoch"]
            self.add("C7c", statement, f"{REPORT_SPEEDUP_GPU1}x", rule, gate=self.recipe_gate("cpu", "gpu1"),
                     measured=(within_factor(speedup, REPORT_SPEEDUP_GPU1, SPEEDUP_FACTOR),
                               f"{speedup:.1f}x ({gpu1.get('device')} against {cpu.get('device')})"))
        statement = "Eight GPUs train 1.74x faster than one (22% scaling efficiency)."
        if gpu1 is None or gpu8 is None:
            missing = [v for v, s in (("gpu1", gpu1), ("gpu8", gpu8)) if s is None]
            self.add("C7d", statement, f"{REPORT_SPEEDUP_GPU8_OVER_GPU1}x, {REPORT_EFFICIENCY_GPU8:.0%}", rule,
                     reason=f"no {' or '.join(missing)} variant trained in this run (a CPU-only host records the "
                            f"GPU variants as skipped; on an 8-GPU host: dvc exp run -S devices=8)")
        else:
            speedup = gpu1["seconds_per_epoch"] / gpu8["seconds_per_epoch"]
            self.add("C7d", statement, f"{REPORT_SPEEDUP_GPU8_OVER_GPU1}x, {REPORT_EFFICIENCY_GPU8:.0%}", rule,
                     gate=self.recipe_gate("gpu1", "gpu8"),
                     measured=(within_factor(speedup, REPORT_SPEEDUP_GPU8_OVER_GPU1, SPEEDUP_FACTOR),
                               f"{speedup:.2f}x, {100 * speedup / gpu8.get('gpus', 8):.0f}% "
                               f"({gpu8.get('gpus', 8)} x {gpu8.get('device')})"))

    def checkpoints(self) -> None:
        ev = self.inputs.json("metrics/eval.json")
        pair = (ev["first"]["epoch"], ev["last"]["epoch"]) if ev else None
        a = self.inputs.csv(f"runs/eval/predictions_epoch_{REPORT_EPOCH_A:02d}.csv")
        b = self.inputs.csv(f"runs/eval/predictions_epoch_{REPORT_EPOCH_B:02d}.csv")
        report1 = f"{REPORT_ACC1[7]:.2f} / {REPORT_ACC1[18]:.2f}"
        report5 = f"{REPORT_ACC5[7]:.2f} / {REPORT_ACC5[18]:.2f}"
        rule_value = (f"supported if the report's figure lies in our {LEVEL:.0%} interval (paired bootstrap over the "
                      f"validation images) at both epochs; contradicted otherwise")
        rule_little = (f"supported if the {LEVEL:.0%} interval of the Acc@5 change (epoch 18 - epoch 7) lies within "
                       f"+-{LITTLE_ACC5_CHANGE:g} points; contradicted if it lies wholly outside; not measurable "
                       f"otherwise (too wide to tell)")
        statements = [("C8a", "Acc@1 of the epoch-7 and epoch-18 checkpoints: 37.94% and 48.73%.", report1, rule_value),
                      ("C8b", "Acc@5 of the epoch-7 and epoch-18 checkpoints: 66.38% and 75.30%.", report5, rule_value),
                      ("C8c", "The top-5 accuracies of the two checkpoints differ little.",
                       f"{REPORT_ACC5[18] - REPORT_ACC5[7]:+.2f} points (Acc@1 {REPORT_ACC1[18] - REPORT_ACC1[7]:+.2f})",
                       rule_little)]
        if a is None or b is None:
            if not pair:
                reason = "no evaluated checkpoints (metrics/eval.json)"
            elif pair != (REPORT_EPOCH_A, REPORT_EPOCH_B):
                reason = (f"this run evaluated epochs {pair[0]} and {pair[1]}, not {REPORT_EPOCH_A} and {REPORT_EPOCH_B} "
                          f"(eval.epochs)")
            else:
                reason = (f"runs/eval/predictions_epoch_{REPORT_EPOCH_A:02d}.csv or _{REPORT_EPOCH_B:02d}.csv absent "
                          f"(stage eval_epochs)")
            for cid, statement, report, rule in statements:
                self.add(cid, statement, report, rule, reason=reason)
            return
        gate = self.recipe_gate(ev["run"]) if ev else ""
        acc = accuracy_intervals(a, b, self.facts.bootstrap, self.facts.seed)
        for (cid, statement, report, rule), key, said in zip(statements[:2], ("acc1", "acc5"), (REPORT_ACC1, REPORT_ACC5)):
            (va, ia), (vb, ib), _ = acc[key]
            holds = ia[0] <= said[7] <= ia[1] and ib[0] <= said[18] <= ib[1]
            self.add(cid, statement, report, rule, gate=gate, measured=(holds, f"{fmt(va, ia)} / {fmt(vb, ib)}"))
        cid, statement, report, rule = statements[2]
        change5, bounds5 = acc["acc5"][2]
        change1, bounds1 = acc["acc1"][2]
        ours = f"{fmt(change5, bounds5, '+.2f')} points (Acc@1 {fmt(change1, bounds1, '+.2f')})"
        inside = -LITTLE_ACC5_CHANGE <= bounds5[0] and bounds5[1] <= LITTLE_ACC5_CHANGE
        outside = bounds5[0] > LITTLE_ACC5_CHANGE or bounds5[1] < -LITTLE_ACC5_CHANGE
        if inside or outside:
            self.add(cid, statement, report, rule, gate=gate, measured=(inside, ours))
        elif gate:
            self.add(cid, statement, report, rule, ours=ours, verdict=NOT_COMPARABLE, reason=f"{gate}; on this run's "
                     f"numbers the rule gives: not measurable (the interval straddles +-{LITTLE_ACC5_CHANGE:g} points)")
        else:
            self.add(cid, statement, report, rule, ours=ours,
                     reason=f"the interval straddles +-{LITTLE_ACC5_CHANGE:g} points")

    def differing(self) -> None:
        diff = self.inputs.json("reports/diff_predictions/summary.json")
        rule = (f"supported if the two checkpoints' top-1 predictions differ on at least {MANY_DIFFERING_SHARE:.0%} "
                f"of the validation images (exact McNemar test of which one is right more often, shown)")
        statement = "The epoch-7 and epoch-18 checkpoints judge many validation images differently."
        report = f"{REPORT_LISTED_IMAGES} images listed"
        if diff is None:
            return self.add("C9", statement, report, rule, reason="reports/diff_predictions/summary.json absent")
        if (diff["epoch_a"], diff["epoch_b"]) != (REPORT_EPOCH_A, REPORT_EPOCH_B):
            return self.add("C9", statement, report, rule, reason=f"this run compared epochs {diff['epoch_a']} and "
                            f"{diff['epoch_b']} (diff.a, diff.b, eval.epochs)")
        share = diff["differing"] / max(1, diff["images"])
        ours = (f"{diff['differing']:,} of {diff['images']:,} ({100 * share:.1f}%); only epoch 7 right "
                f"{diff['only_a_right']:,}, only epoch 18 right {diff['only_b_right']:,}; McNemar log10 p = "
                f"{mcnemar_log10_p(diff['only_a_right'], diff['only_b_right']):.1f}")
        run = self.evaluated_run()
        self.add("C9", statement, report, rule, gate=self.recipe_gate(run) if run else "",
                 measured=(share >= MANY_DIFFERING_SHARE, ours))

    def language_model(self) -> None:
        model = REPORT_LM_MODEL
        rule = (f"supported if the `{model}` model's validation perplexity after epoch {REPORT_LM_EPOCH} is within "
                f"{LM_PPL_TOLERANCE:.0%} of the report's (its log does not name the model: the example's default, "
                f"an LSTM, is assumed)")
        statement = "The word LM reaches validation perplexity 214.11 after epoch 5 (of 6) on WikiText-2."
        gate = self.corpus_gate(whole_wikitext2=True)
        table = self.inputs.tsv(f"runs/wordlm/{model}/dvclive/plots/metrics/valid/ppl.tsv") \
            if model in self.facts.lm_models else None
        row = table[table["step"] == REPORT_LM_EPOCH] if table is not None else None
        if row is None or row.empty:
            self.add("C10a", statement, f"{REPORT_LM_VALID_PPL}", rule,
                     reason=f"no validation perplexity of `{model}` after epoch {REPORT_LM_EPOCH}")
        else:
            ppl = float(row["ppl"].iloc[0])
            self.add("C10a", statement, f"{REPORT_LM_VALID_PPL}", rule, gate=gate,
                     measured=(abs(ppl / REPORT_LM_VALID_PPL - 1) <= LM_PPL_TOLERANCE,
                               f"{ppl:.2f} (`{model}`, epoch {REPORT_LM_EPOCH})"))
        summary = self.inputs.json(f"metrics/train_wordlm_{model}.json") if model in self.facts.lm_models else None
        ours = (f"{summary['tokens_per_s']:,.0f} tokens/s on the CPU, "
                f"{1000 * 20 * 35 / summary['tokens_per_s']:.1f} ms a 20x35 batch" if summary and
                summary.get("tokens_per_s") else "-")
        self.add("C10b", "A training batch of 20x35 tokens takes about 14.7 ms on the report's GPU.",
                 f"{REPORT_LM_MS_PER_BATCH} ms", "a GPU figure: measurable only where the LM trains on a GPU",
                 ours=ours, reason="the language models train on the CPU in this pipeline; the report's figure is "
                                   "its GPU's")

    def context(self) -> None:
        """C11 is a property of the architecture (any text shows it); C12 and C14 are about how
        models use the context of natural text, so a run on the generated corpus is not comparable."""
        probe = self.inputs.json("reports/context_probe/claims.json")
        known = {c["id"]: c for c in probe or []}
        text_gate = self.corpus_gate(whole_wikitext2=False)
        for cid, statement in (("C11", "A CNN's context window is fixed by its kernel size, depth and dilation."),
                               ("C12", "A Transformer links any two positions directly (so it can use distant "
                                       "tokens)."),
                               ("C14", "The Transformer handles long-range dependencies better than the CNN.")):
            c = known.get(cid)
            if c is None:
                self.add(cid, statement, "-", "see the context probe", reason="reports/context_probe/claims.json "
                         "absent (stage context_probe)")
            elif cid != "C11" and text_gate:
                self.add(cid, c["statement"], "-", c["rule"], ours=c["ours"], verdict=NOT_COMPARABLE,
                         reason=f"{text_gate}; on this run's numbers the probe gives: {c['verdict']}"
                                + (f" ({c['reason']})" if c["reason"] else ""))
            else:
                self.add(cid, c["statement"], "-", c["rule"], ours=c["ours"], verdict=c["verdict"], reason=c["reason"])

    def cost(self) -> None:
        summary = self.inputs.json("reports/lm_cost/summary.json")
        statement = ("A Transformer's compute and memory grow with the square of the sequence length, a CNN's "
                     "linearly.")
        rule = (f"supported if, over the lengths where attention dominates, the training step's fitted exponent (log "
                f"cost against log length) is within {COST_EXPONENT_TOLERANCE:g} of 2 for the Transformer and of 1 for "
                f"the CNN; contradicted otherwise; judged for time (C13a) and peak memory (C13b); forward passes shown")
        if summary is None:
            for cid in ("C13a", "C13b"):
                self.add(cid, statement, "-", rule, reason="reports/lm_cost/summary.json absent (stage lm_cost)")
            return
        quadratic = summary["quadratic_model"]
        linear = next((m for m, t in summary["types"].items() if t == "GCNN"), None)
        for cid, kind in (("C13a", "seconds"), ("C13b", "bytes")):
            train, forward = summary["fits"][f"train_{kind}"], summary["fits"][f"forward_{kind}"]
            what = "time" if kind == "seconds" else "peak memory"
            ours = (f"training step {what}: exponent {train['exponents'][quadratic]:.2f} (`{quadratic}`)"
                    + (f", {train['exponents'][linear]:.2f} (`{linear}`)" if linear else "")
                    + f" over lengths {train['fit_lengths'][0]}-{train['fit_lengths'][-1]}; forward: "
                    + ", ".join(f"{e:.2f} (`{m}`)" for m, e in forward["exponents"].items())
                    + f" over {forward['fit_lengths'][0]}-{forward['fit_lengths'][-1]}")
            if linear is None:
                self.add(cid, statement, "-", rule, ours=ours, reason="lm_cost.models names no CNN (type GCNN)")
            elif not train["attention_dominates"]:
                self.add(cid, statement, "-", rule, ours=ours, reason=f"attention does not dominate the training step's "
                         f"{what} at the lengths measured (up to {max(train['fit_lengths'])}; raise lm_cost.lengths)")
            else:
                self.add(cid, statement + (" (time)" if kind == "seconds" else " (memory)"), "-", rule,
                         measured=(exponent_verdict(train["exponents"][quadratic], train["exponents"][linear]), ours))

    def build(self) -> list[Claim]:
        self.layer_sizes()
        self.curve_claims()
        self.timings()
        self.checkpoints()
        self.differing()
        self.language_model()
        self.context()
        self.cost()
        return self.claims


def build_ledger(root: str | Path, facts: RunFacts) -> tuple[list[Claim], list[str], str]:
    """The claims, every input path asked for (relative to ``root``) and the run they judge, in words."""
    inputs = Inputs(root)
    ledger = Ledger(inputs, facts)
    claims = ledger.build()
    return claims, inputs.asked, ledger.about()


# Which runs' recipes each claim about the report's training runs needs ("evaluated": the run
# eval_epochs evaluated), and which corpus each language claim needs (True: WikiText-2 itself).
RECIPE_CLAIMS = {**{cid: ("evaluated",) for cid in ("C2", "C3", "C4", "C4b", "C5", "C6", "C8a", "C8b", "C8c", "C9")},
                 "C7b": ("cpu",), "C7c": ("cpu", "gpu1"), "C7d": ("gpu1", "gpu8")}
CORPUS_CLAIMS = {"C10a": True, "C12": False, "C14": False}
RULE_GIVES = "the rule gives: "


def regate(records: list[dict], ledger: Ledger) -> list[Claim]:
    """A recorded ledger judged again under today's like-with-like rules, without its inputs: each
    claim keeps its recorded figures and what its rule gave on them; a claim whose run (or corpus)
    is not the report's becomes not comparable, naming the difference (``ledger`` reads the
    recorded summaries and corpus). For results recorded before the rules existed; a result
    with its inputs is judged by ``build_ledger`` itself."""
    rules = {c.id: c.rule for c in ledger.build()}  # today's wording of each rule
    evaluated = ledger.evaluated_run()
    out = []
    for record in records:
        claim = Claim(**{**record, "rule": rules.get(record["id"], record["rule"])})
        if claim.id in RECIPE_CLAIMS:
            gate = ledger.recipe_gate(*(evaluated if v == "evaluated" else v for v in RECIPE_CLAIMS[claim.id]))
        else:
            gate = ledger.corpus_gate(CORPUS_CLAIMS[claim.id]) if claim.id in CORPUS_CLAIMS else ""
        gave = claim.verdict if claim.verdict in (SUPPORTED, CONTRADICTED) else (
            claim.reason.rsplit(RULE_GIVES, 1)[1] if RULE_GIVES in claim.reason else None)
        if gate and gave:
            claim.verdict, claim.reason = NOT_COMPARABLE, f"{gate}; on this run's numbers the {'probe' if claim.id in ('C12', 'C14') else 'rule'} gives: {gave}"
        out.append(claim)
    return out


def verdict_counts(claims: list[Claim]) -> dict[str, int]:
    counts = {v.replace(" ", "_"): sum(c.verdict == v for c in claims) for v in VERDICTS}
    return {"claims": len(claims), **counts}


def render(claims: list[Claim], facts: RunFacts, about: str) -> str:
    """reports/claims.md: the table, then each claim's rule (worded in templates/claims.md.j2)."""
    return render_template("claims.md.j2", claims=[asdict(c) for c in claims], counts=verdict_counts(claims),
                           about=about, level=LEVEL, resamples=facts.bootstrap)


def as_records(claims: list[Claim]) -> list[dict]:
    return [asdict(c) for c in claims]
