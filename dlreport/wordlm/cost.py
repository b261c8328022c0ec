"""How a language model's cost grows with the sequence length: the report's claim that a
Transformer's compute and memory grow with the square of the length, a CNN's linearly (C13).

For each model and length L (batch 1, untrained weights: cost does not depend on them) this
times a forward pass (eval mode, no grad) and a training step (forward, backward of a scalar of
the features), best of ``repeats``, and counts their peak memory exactly: the bytes of CPU
tensors alive at once during the pass (``PeakMemory``; the parameters, alive before, are not
counted). What is measured is the sequence model - embedding and layers - without the
vocabulary projection, a per-token cost the two models share.

The exponent is fitted the way the rule says, before any number is seen: for each measure, a
non-negative least-squares fit ``cost = c0 + c1 L + c2 L^2`` (relative errors) of the
Transformer gives the length ``L*`` where its quadratic term overtakes the rest; both models'
exponents are the slope of log cost against log L over the measured lengths from ``L*`` up (the
three longest when fewer lie above ``L*``, flagged: attention does not dominate there).
"""
from __future__ import annotations

import itertools
import math
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from dlreport.wordlm.models import LanguageModel

MEASURES = ("forward_seconds", "train_seconds", "forward_bytes", "train_bytes")
MIN_FIT_POINTS = 3


class PeakMemory(TorchDispatchMode):
    """The most bytes of CPU tensor storage alive at once among the tensors made inside it.

    Every operator's outputs are counted once per storage (views share theirs) until Python
    frees the storage; the count is exact and the same on every machine, unlike the process's
    resident size."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._alive: dict[int, weakref.ref] = {}

    def _freed(self, key: int, size: int) -> None:
        self.live -= size
        self._alive.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self._alive:
                continue
            size = storage.nbytes()
            self.live += size
            self.peak = max(self.peak, self.live)
            self._alive[key] = weakref.ref(storage, lambda _ref, key=key, size=size: self._freed(key, size))
        return out


def forward_pass(model: LanguageModel, tokens: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        model.features(tokens)


def training_step(model: LanguageModel, tokens: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    features, _ = model.features(tokens)
    features.float().square().mean().backward()


def best_seconds(run, repeats: int) -> float:
    run()  # warm-up: first-call allocations and kernel choices are not the cost of a pass
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(run) -> int:
    with PeakMemory() as memory:
        run()
    return memory.peak


def measure(model: LanguageModel, length: int, repeats: int, ntoken: int, seed: int) -> dict:
    tokens = torch.randint(ntoken, (length, 1), generator=torch.Generator().manual_seed(seed))
    row = {"length": length}
    for name, step in (("forward", forward_pass), ("train", training_step)):
        run = lambda step=step: step(model, tokens)  # noqa: E731
        row[f"{name}_seconds"] = best_seconds(run, repeats)
        row[f"{name}_bytes"] = peak_bytes(run)
    model.zero_grad(set_to_none=True)
    return row


# ---------------------------------------------------------------------------------------------
# The fit

def fit_terms(lengths, costs) -> tuple[float, float, float]:
    """Non-negative (c0, c1, c2) of ``c0 + c1 L + c2 L^2`` minimising the relative squared
    error: every subset of the three terms is tried, the best fit without negative terms kept."""
    L, y = np.asarray(lengths, float), np.asarray(costs, float)
    columns = np.stack([np.ones_like(L), L, L ** 2], axis=1) / y[:, None]
    best, best_error = (0.0, 0.0, 0.0), math.inf
    for size in (1, 2, 3):
        for terms in itertools.combinations(range(3), size):
            coef, *_ = np.linalg.lstsq(columns[:, terms], np.ones_like(L), rcond=None)
            if (coef < 0).any():
                continue
            full = np.zeros(3)
            full[list(terms)] = coef
            error = float(((columns @ full - 1) ** 2).sum())
            if error < best_error:
                best, best_error = tuple(float(c) for c in full), error
    return best


def crossover(terms: tuple[float, float, float]) -> float:
    """The length where the quadratic term equals the others (inf without a quadratic term)."""
    c0, c1, c2 = terms
    if c2 <= 0:
        return math.inf
    return (c1 + math.sqrt(c1 * c1 + 4 * c2 * c0)) / (2 * c2)


def slope(lengths, costs) -> float:
    x, y = np.log(np.asarray(lengths, float)), np.log(np.asarray(costs, float))
    return float(np.polyfit(x, y, 1)[0])


def fit_lengths(lengths: list[int], start: float) -> tuple[list[int], bool]:
    """The measured lengths from ``start`` up, and whether attention dominates there (at least
    MIN_FIT_POINTS lengths); else the MIN_FIT_POINTS longest and False."""
    above = [n for n in lengths if n >= start]
    if len(above) >= MIN_FIT_POINTS:
        return above, True
    return sorted(lengths)[-MIN_FIT_POINTS:], False


def exponents(rows: list[dict], quadratic_model: str) -> dict:
    """For every measure: the quadratic model's crossover length, the lengths fitted, and each
    model's exponent over them."""
    out = {}
    for measure in MEASURES:
        by_model: dict[str, dict[int, float]] = {}
        for r in rows:
            by_model.setdefault(r["model"], {})[r["length"]] = r[measure]
        reference = by_model[quadratic_model]
        lengths = sorted(reference)
        start = crossover(fit_terms(lengths, [reference[n] for n in lengths]))
        fitted, dominant = fit_lengths(lengths, start)
        out[measure] = {"crossover_length": None if math.isinf(start) else round(start, 1),
                        "fit_lengths": fitted, "attention_dominates": dominant,
                        "exponents": {m: round(slope(fitted, [costs[n] for n in fitted]), 3)
                                      for m, costs in by_model.items()}}
    return out


@dataclass(frozen=True)
class CostSettings:
    """params.yaml `lm_cost`: which models, which lengths, how often."""
    lengths: list[int]
    repeats: int
    seed: int
    ntoken: int


def measure_models(models: dict[str, LanguageModel], settings: CostSettings, log=print) -> list[dict]:
    rows = []
    for name, model in models.items():
        for length in settings.lengths:
            row = {"model": name, **measure(model, length, settings.repeats, settings.ntoken, settings.seed)}
            rows.append(row)
            log(f"| lm cost | {name:12s} | length {length:5d} | forward {1e3 * row['forward_seconds']:8.2f} ms "
                f"{row['forward_bytes'] / 2 ** 20:8.1f} MiB | train step {1e3 * row['train_seconds']:8.2f} ms "
                f"{row['train_bytes'] / 2 ** 20:8.1f} MiB")
    return rows


# ---------------------------------------------------------------------------------------------
# The stage

COLUMNS = ["model", "length", *MEASURES]


def cost_figure(rows: list[dict], fits: dict, path) -> None:
    """Time and peak memory against length, log-log, one line per model; the fitted lengths marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    titles = {"forward_seconds": "forward time (s)", "train_seconds": "training step time (s)",
              "forward_bytes": "forward peak memory (bytes)", "train_bytes": "training step peak memory (bytes)"}
    models = list(dict.fromkeys(r["model"] for r in rows))
    for ax, measure in zip(axes, MEASURES):
        fit = fits[measure]
        for i, name in enumerate(models):
            mine = [r for r in rows if r["model"] == name]
            ax.plot([r["length"] for r in mine], [r[measure] for r in mine], "-o", color=f"C{i}", markersize=3,
                    label=f"{name} (exponent {fit['exponents'][name]:.2f})")
        ax.axvspan(min(fit["fit_lengths"]), max(fit["fit_lengths"]), color="grey", alpha=0.12, linewidth=0)
        ax.set(xscale="log", yscale="log", xlabel="sequence length (tokens)", title=titles[measure])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("cost against sequence length, batch 1 (shaded: the lengths the exponents are fitted on)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
