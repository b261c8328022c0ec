"""Stage context_probe: how much context the trained language models use (the protocol of
Khandelwal et al. 2018, "Sharp Nearby, Fuzzy Far Away"), each model inside the context it was
trained on, with 95% bootstrap intervals.

Every measurement scores the same ``targets`` token positions of the chosen split, evenly
spread over the positions that have enough tokens before them, for every model:

* Truncated context: the model sees exactly the last k tokens before each target (RNNs start
  from a zero state, the Transformer and the CNN get a window of k tokens), k = 1, 2, 4, ... up
  to its trained context T (the checkpoint's ``trained_context``: bptt for the Transformer and
  RNNs, the receptive field for the CNN), plus T and ``reference_context``. The lengths beyond
  T up to ``max_context`` are extrapolation - a Transformer trained on 35-token chunks never
  saw position 36 - and are reported apart, never in a headline figure.
* Perturbed far context: with C = min(T, ``reference_context``) tokens of context - 35 tokens
  for every model trained on at least 35, so the curves compare - the tokens farther than d from the target
  (distance 1 = the token right before it) shuffled among themselves or replaced by uniformly
  drawn tokens; the loss increase over the intact context, for each d < C of ``distances``.
* Effective context: the smallest k whose loss is within ``tolerance`` (relative) of the
  model's best loss over k <= T.
* Gain beyond ``reference_context`` (35, the example's bptt): loss(k = 35) - loss(k = T), for
  the models trained on more than 35 tokens: what tokens 36 .. T add.

Intervals are percentile bootstraps over the target tokens: ``bootstrap`` resamples of the
targets, drawn once and used for every model, length and distance, so that differences
(between lengths, between models) are paired. Each statistic is recomputed on every resample
from the per-target losses: one matrix product, no loop over tokens.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dlreport.errors import PipelineError
from dlreport.fileio import atomic_dir, write_json
from dlreport.params import ContextProbeParams
from dlreport.progress import Progress
from dlreport.stats import LEVEL, difference_interval, discrete_interval, interval, resample_weights, resampled_means
from dlreport.wordlm.corpus import Corpus
from dlreport.wordlm.train import load_model, set_threads

PERTURBATIONS = ("shuffle", "random")


# ---------------------------------------------------------------------------------------------
# What is scored

def powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, ... up to ``limit``."""
    return [2 ** i for i in range(int(math.log2(limit)) + 1)] if limit >= 1 else []


def context_grid(trained: int, reference: int, max_context: int) -> tuple[list[int], list[int]]:
    """(lengths inside the trained context T: powers of two, T and the reference below T;
    lengths beyond T up to max_context: the extrapolation)."""
    inside = set(powers_of_two(trained)) | {trained} | ({reference} if reference < trained else set())
    beyond = {k for k in powers_of_two(max_context) if k > trained} | ({max_context} if max_context > trained else set())
    return sorted(inside), sorted(beyond)


def target_positions(length: int, context: int, count: int) -> torch.Tensor:
    """``count`` evenly spread stream positions t with ``context`` tokens before them."""
    if length - 1 < context:
        raise PipelineError(f"the split has {length} tokens, too few for a context of {context} "
                            f"(params context_probe.max_context, wordlm.models.<name>.bptt)")
    return torch.linspace(context, length - 1, min(count, length - context)).round().long().unique()


def windows(stream: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """(k, N): column n holds the k tokens right before target n."""
    offsets = torch.arange(-k, 0)
    return stream[targets.view(1, -1) + offsets.view(-1, 1)]


@torch.no_grad()
def target_losses(model, inputs: torch.Tensor, targets: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Per-target cross-entropy (nats, float64) of predicting ``targets`` (N,) from ``inputs``
    (k, N), one forward per ``batch`` columns; RNNs start from a zero state, windowed models see
    exactly the k tokens."""
    model.eval()
    out = []
    for start in range(0, inputs.size(1), batch):
        logits, _ = model(inputs[:, start:start + batch], None, last=1)
        out.append(F.cross_entropy(logits[-1].double(), targets[start:start + batch], reduction="none"))
    return torch.cat(out)


def shuffle_far(context: torch.Tensor, d: int, generator: torch.Generator) -> torch.Tensor:
    """Shuffle, independently in every column, the tokens farther than d from the target."""
    far = context.size(0) - d
    out = context.clone()
    if far > 0:
        order = torch.rand(far, context.size(1), generator=generator).argsort(dim=0)
        out[:far] = context[:far].gather(0, order)
    return out


def replace_far(context: torch.Tensor, d: int, ntokens: int, generator: torch.Generator) -> torch.Tensor:
    """Replace the tokens farther than d from the target by uniformly drawn random tokens."""
    far = context.size(0) - d
    out = context.clone()
    if far > 0:
        out[:far] = torch.randint(ntokens, (far, context.size(1)), generator=generator)
    return out


def score(model, stream: torch.Tensor, targets: torch.Tensor, ks: list[int], distances: list[int], context: int,
          ntokens: int, seed: int, batch: int = 500, what: str = "context probe") -> dict[str, torch.Tensor]:
    """Per-target losses: ``truncated`` (len(ks), N) with the last k tokens; ``shuffle`` and
    ``random`` (len(distances), N) with ``context`` tokens, those farther than d perturbed."""
    gold = stream[targets]
    counter = Progress(len(ks) + len(PERTURBATIONS) * len(distances), what, "passes over the targets")
    truncated = []
    for k in ks:
        truncated.append(target_losses(model, windows(stream, targets, k), gold, batch))
        counter.update()
    truncated = torch.stack(truncated)
    intact = windows(stream, targets, context)
    generator = torch.Generator().manual_seed(seed)
    perturbed = {kind: [] for kind in PERTURBATIONS}
    for d in distances:
        perturbed["shuffle"].append(target_losses(model, shuffle_far(intact, d, generator), gold, batch))
        perturbed["random"].append(target_losses(model, replace_far(intact, d, ntokens, generator), gold, batch))
        counter.update(len(PERTURBATIONS))
    counter.close()
    empty = torch.zeros(0, len(targets), dtype=torch.float64)
    return dict(truncated=truncated, **{kind: torch.stack(rows) if rows else empty for kind, rows in perturbed.items()})


# ---------------------------------------------------------------------------------------------
# Effective context

def effective_contexts(means: torch.Tensor, ks: list[int], tolerance: float) -> torch.Tensor:
    """Smallest k whose loss is within ``tolerance`` of the best, for each column of ``means``
    (len(ks), resamples) - or (len(ks),) for the point estimate."""
    close = means <= means.min(dim=0).values * (1 + tolerance)
    first = close.int().argmax(dim=0)  # the first k that is close enough
    return torch.tensor(ks)[first]


def summarize(losses: dict[str, torch.Tensor], ks: list[int], beyond: list[int], distances: list[int], context: int,
              weights: torch.Tensor, tolerance: float, reference: int) -> dict:
    """Every figure of one model's ``score`` with its interval, plus the per-resample statistics
    that comparisons between models need. ``ks`` ends with the trained context T; ``beyond``
    are the extrapolation lengths, scored after them; the perturbations used ``context``
    tokens (one of ``ks``)."""
    inside = len(ks)
    truncated = losses["truncated"]
    point = truncated.mean(dim=1)
    boot = resampled_means(truncated, weights)
    low, high = interval(boot)
    curve = [dict(context=k, loss=point[i].item(), loss_lower=low[i].item(), loss_upper=high[i].item(),
                  extrapolation=i >= inside) for i, k in enumerate(ks + beyond)]
    effective_samples = effective_contexts(boot[:inside], ks, tolerance)
    best = int(point[:inside].argmin())
    best_samples = boot[:inside].min(dim=0).values
    best_low, best_high = interval(best_samples)
    r = dict(curve=curve, effective_context=int(effective_contexts(point[:inside], ks, tolerance)),
             effective_context_interval=discrete_interval(effective_samples), effective_samples=effective_samples,
             best_context=ks[best], best_loss=point[best].item(), best_loss_interval=(best_low.item(), best_high.item()))
    if reference in ks[:-1]:
        per_target = truncated[ks.index(reference)] - truncated[inside - 1]  # loss(k = 35) - loss(k = T)
        gain_samples = resampled_means(per_target[None], weights)[0]
        gain_low, gain_high = interval(gain_samples)
        r.update(gain=per_target.mean().item(), gain_interval=(gain_low.item(), gain_high.item()),
                 gain_samples=gain_samples)
    if beyond:  # the largest change of any target's loss from more context than T (nats)
        r["beyond_change"] = (truncated[inside:] - truncated[inside - 1]).abs().max().item()
    intact = truncated[(ks + beyond).index(context)]
    for kind in PERTURBATIONS:
        increase = losses[kind] - intact
        low, high = interval(resampled_means(increase, weights))
        r[kind] = [dict(distance=d, increase=increase[i].mean().item(), lower=low[i].item(), upper=high[i].item(),
                        max_abs=increase[i].abs().max().item()) for i, d in enumerate(distances)]
    return r


# ---------------------------------------------------------------------------------------------
# Findings: each claim of the report's prose, with the numbers that decide it

def fmt_interval(value: float, bounds: tuple[float, float], spec: str = ".3f") -> str:
    return f"{value:{spec}} [{bounds[0]:{spec}}, {bounds[1]:{spec}}]"


def ppl_text(r: dict) -> str:
    lo, hi = r["best_loss_interval"]
    return f"{math.exp(r['best_loss']):.2f} [{math.exp(lo):.2f}, {math.exp(hi):.2f}]"


SUPPORTED, CONTRADICTED, NOT_MEASURABLE = "supported", "contradicted", "not measurable"
# The rules, fixed before any number was seen; the claims ledger shows them beside the verdicts.
PROBE_RULES = {
    "C11": "supported if giving each CNN more tokens than its receptive field changes no target's loss by more "
           "than 1e-6 nats; contradicted otherwise",
    "C12": "supported if a Transformer trained on more than {reference} tokens predicts better with all of them "
           "than with {reference} (95% interval of the gain above 0); contradicted if worse (interval below 0); "
           "not measurable if the interval contains 0; over several such Transformers, supported if some support and "
           "none contradict, contradicted conversely",
    "C14": "supported if a Transformer's effective context or its gain beyond {reference} tokens exceeds the CNN's "
           "trained on as many tokens (95% paired interval of the difference above 0, and neither below 0); "
           "contradicted if below 0 (and neither above); not measurable otherwise; over the pairs, supported if some "
           "support and none contradict, contradicted conversely",
}


def combined(verdicts: list[str]) -> str:
    """One verdict from several models or pairs: supported if some support and none contradict,
    contradicted conversely, not measurable otherwise."""
    if SUPPORTED in verdicts and CONTRADICTED not in verdicts:
        return SUPPORTED
    if CONTRADICTED in verdicts and SUPPORTED not in verdicts:
        return CONTRADICTED
    return NOT_MEASURABLE


def probe_claims(results: list[dict], cfg: ContextProbeParams) -> list[dict]:
    """The report's three claims about context (C11, C12, C14) judged from the probe's numbers:
    one record each (id, statement, ours, rule, verdict, reason)."""
    reference = cfg.reference_context
    cnns = [r for r in results if r["receptive_field"]]
    transformers = [r for r in results if r["type"] == "Transformer"]
    claims = []

    def record(cid, statement, verdict, ours, reason=""):
        claims.append(dict(id=cid, statement=statement, verdict=verdict, ours=ours, reason=reason,
                           rule=PROBE_RULES[cid].format(reference=reference)))

    # C11. The CNN's window is fixed by kernel size, depth and dilation.
    statement = "A CNN's context window is fixed by its kernel size, depth and dilation."
    measured = [r for r in cnns if "beyond_change" in r]
    if not measured:
        record("C11", statement, NOT_MEASURABLE, "-", "no CNN was probed beyond its receptive field (raise "
               "context_probe.max_context above it)" if cnns else "no CNN was probed")
    else:
        exact = all(r["beyond_change"] <= 1e-6 for r in measured)
        record("C11", statement, SUPPORTED if exact else CONTRADICTED, " ".join(
            f"`{r['model']}` (receptive field {r['receptive_field']}): giving it more than {r['receptive_field']} "
            f"tokens (up to {r['curve'][-1]['context']}) changes no target's loss by more than "
            f"{r['beyond_change']:.1e} nats; its effective context is {r['effective_context']} "
            f"[{r['effective_context_interval'][0]}, {r['effective_context_interval'][1]}]." for r in measured))

    # C12. The Transformer links any two positions directly, so it can use distant tokens.
    statement = "A Transformer links any two positions directly (so it can use distant tokens)."
    long_ = [r for r in transformers if "gain" in r]
    if not long_:
        record("C12", statement, NOT_MEASURABLE, "-", f"no Transformer was trained on more than {reference} "
               f"tokens; positions beyond its trained context are extrapolation (add a long-context variant to "
               f"wordlm.models)")
    else:
        verdicts, parts = [], []
        for r in long_:
            low, high = r["gain_interval"]
            verdicts.append(SUPPORTED if low > 0 else CONTRADICTED if high < 0 else NOT_MEASURABLE)
            parts.append(f"`{r['model']}` (trained on {r['trained_context']} tokens): loss with {reference} tokens "
                         f"minus loss with {r['trained_context']} = {fmt_interval(r['gain'], r['gain_interval'])} "
                         f"nats" + ("" if low > 0 else " - the tokens beyond {0} make its predictions worse"
                                    if high < 0 else " - no effect of the tokens beyond {0} distinguishable from "
                                    "zero").format(reference) + ".")
        verdict = combined(verdicts)
        parts.append("(That the probe finds such use where it exists is checked by tests/test_context_probe.py: "
                     "on a corpus whose answers depend on the token exactly 60 back, a Transformer trained on 128 "
                     "tokens has its loss on the answers fall by 1.5-2 nats from k = 59 to k = 60.)")
        record("C12", statement, verdict, " ".join(parts),
               "the gain's 95% interval contains 0" if verdict == NOT_MEASURABLE else "")

    # C14. The Transformer handles long-range dependencies better than the CNN.
    statement = "The Transformer handles long-range dependencies better than the CNN."
    pairs = [(t, c) for t in transformers for c in cnns if ("gain" in t) == ("gain" in c)]
    if not pairs:
        record("C14", statement, NOT_MEASURABLE, "-", "no Transformer and CNN trained on comparable contexts")
    else:
        verdicts, parts = [], []
        for t, c in pairs:
            low, high = difference_interval(t["effective_samples"], c["effective_samples"])
            more, less = [low > 0], [high < 0]
            part = (f"effective context {t['effective_context']} vs {c['effective_context']}, difference "
                    f"{t['effective_context'] - c['effective_context']:+d} [{low:+.0f}, {high:+.0f}]")
            if "gain" in t:
                glow, ghigh = difference_interval(t["gain_samples"], c["gain_samples"])
                more.append(glow > 0)
                less.append(ghigh < 0)
                part += (f"; gain beyond {reference} tokens {t['gain']:.3f} vs {c['gain']:.3f} nats, difference "
                         f"{t['gain'] - c['gain']:+.3f} [{glow:+.3f}, {ghigh:+.3f}]")
            verdict = (SUPPORTED if any(more) and not any(less) else
                       CONTRADICTED if any(less) and not any(more) else NOT_MEASURABLE)
            verdicts.append(verdict)
            parts.append(f"`{t['model']}` vs `{c['model']}`: {verdict} - {part}.")
        verdict = combined(verdicts)
        record("C14", statement, verdict, " ".join(parts),
               "" if verdict != NOT_MEASURABLE else "the pairs disagree" if {SUPPORTED, CONTRADICTED} <= set(verdicts)
               else "no difference distinguishable from zero")
    return claims


def findings(results: list[dict], cfg: ContextProbeParams, info: dict) -> str:
    """The findings as Markdown, every verdict computed from the measured numbers."""
    tol, reference = cfg.tolerance, cfg.reference_context
    pct = f"{LEVEL:.0%}"
    lines = ["# Context probe: how much context the language models use", "",
             f"Corpus `{info['corpus']}`, split `{info['split']}`, {info['targets']:,} target tokens, the same for "
             f"every model and setting. Effective context: the smallest k whose loss is within {tol:.0%} of the "
             f"model's best loss over k up to its trained context. Brackets: {pct} bootstrap intervals over the "
             f"target tokens ({info['resamples']:,} resamples, paired across lengths and models). Headline figures "
             f"come only from contexts a model was trained on; longer contexts are listed as extrapolation.", "",
             f"| model | type | trained context | effective context | best perplexity (at k) | "
             f"gain beyond {reference} tokens (nats) |", "|---|---|---|---|---|---|"]
    for r in results:
        gain = fmt_interval(r["gain"], r["gain_interval"]) if "gain" in r else "-"
        trained = f"{r['trained_context']}" + (" (receptive field)" if r["receptive_field"] else "")
        lines.append(f"| {r['model']} | {r['type']} | {trained} | "
                     f"{r['effective_context']} [{r['effective_context_interval'][0]}, "
                     f"{r['effective_context_interval'][1]}] | {ppl_text(r)} ({r['best_context']}) | {gain} |")
    rnns = [r for r in results if r["type"] not in ("Transformer", "GCNN")]
    lines += ["", "## Claims of the report", "",
              "Verdicts (supported, contradicted, not measurable) as the claims ledger (`reports/claims.md`) "
              "lists them, with the numbers that decide:", ""]
    for claim in probe_claims(results, cfg):
        lines.append(f"- **{claim['id']}: {claim['statement']}** {claim['verdict'].capitalize()}"
                     + (f" ({claim['reason']})" if claim["reason"] else "") + f". {claim['ours']}")
    for r in (r for r in results if r["type"] == "Transformer"):
        beyond = [c for c in r["curve"] if c["extrapolation"]]
        if beyond:
            last = beyond[-1]
            lines.append(f"   - Extrapolation, not a headline figure: `{r['model']}` was trained on "
                         f"{r['trained_context']}-token chunks; with {last['context']} tokens its perplexity is "
                         f"{math.exp(last['loss']):.2f} [{math.exp(last['loss_lower']):.2f}, "
                         f"{math.exp(last['loss_upper']):.2f}] against its best {ppl_text(r)} at k = "
                         f"{r['best_context']}: positions it never saw in training.")

    # The RNNs: what "trained context" means for them.
    if rnns:
        lines += ["", "## RNNs", ""]
        for r in rnns:
            lines.append(f"- `{r['model']}` ({r['type']}): effective context {r['effective_context']} "
                         f"[{r['effective_context_interval'][0]}, {r['effective_context_interval'][1]}]"
                         + (f", gain beyond {reference} tokens {fmt_interval(r['gain'], r['gain_interval'])} nats"
                            if "gain" in r else "") + ".")
        lines.append("- An RNN trained with truncated BPTT over L tokens carries its state across chunks, so in "
                     "training it conditions on everything before, but gradients reach only L tokens back: L is "
                     "the longest span it was *trained* to use, and its trained context here. The probe starts it "
                     "from a zero state k tokens before the target, as it starts each epoch.")

    lines += ["", "## Far context perturbed", ""]
    for r in results:
        parts = []
        for kind in PERTURBATIONS:
            rows = r[kind]
            if rows:
                parts.append(f"{'shuffled' if kind == 'shuffle' else 'replaced by random tokens'}: " + ", ".join(
                    f"d={row['distance']} {fmt_interval(row['increase'], (row['lower'], row['upper']))}" for row in rows))
        if parts:
            lines.append(f"- `{r['model']}`, tokens farther than d from the target (context {r['perturbation_context']}), "
                         f"loss increase in nats - " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The stage

CURVE_COLUMNS = ["model", "context", "ppl", "lower", "upper", "loss", "loss_lower", "loss_upper"]
INCREASE_COLUMNS = ["model", "distance", "increase", "lower", "upper"]


def write_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def headline(r: dict, reference: int) -> dict:
    """The headline figures of one model (metrics/context_probe/<model>.json; the curves go to CSV files)."""
    out = dict(trained_context=r["trained_context"], effective_context=r["effective_context"],
               effective_context_low=r["effective_context_interval"][0],
               effective_context_high=r["effective_context_interval"][1],
               best_ppl=round(math.exp(r["best_loss"]), 4))
    if "gain" in r:
        out.update({f"gain_beyond_{reference}{suffix}": round(value, 5) + 0.0  # + 0.0: no -0.0
                    for suffix, value in (("", r["gain"]), ("_low", r["gain_interval"][0]),
                                          ("_high", r["gain_interval"][1]))})
    if r["receptive_field"]:
        out["receptive_field"] = r["receptive_field"]
    return out


def context_probe(cfg: ContextProbeParams, runs: str | Path, models: list[str], corpus_dir: str | Path, out: str | Path,
                  metrics: str | Path) -> dict:
    set_threads(cfg.threads)
    max_context, reference = cfg.max_context, cfg.reference_context
    tolerance, seed, batch = cfg.tolerance, cfg.seed, cfg.batch
    start = time.time()
    loaded = {name: load_model(Path(runs) / name) for name in models}
    vocab = next(iter(loaded.values()))[2]  # every model trained on datasets/corpus (DVC re-runs them all)
    corpus = Corpus(corpus_dir, vocab)
    stream = getattr(corpus, cfg.split)
    trained = {name: int(config.get("trained_context") or config.get("receptive_field") or config["bptt"])
               for name, (_, config, _) in loaded.items()}
    targets = target_positions(len(stream), max([max_context, *trained.values()]), cfg.targets)
    weights = resample_weights(len(targets), cfg.bootstrap, seed)
    results = []
    for name, (model, config, _) in loaded.items():
        ks, beyond = context_grid(trained[name], reference, max_context)
        context = min(trained[name], reference)
        distances = sorted({d for d in cfg.distances if d < context})
        losses = score(model, stream, targets, ks + beyond, distances, context, len(vocab), seed, batch,
                       what=f"context probe of {name}")
        r = dict(model=name, type=config["type"], trained_context=trained[name],
                 receptive_field=config.get("receptive_field"),
                 perturbation_context=context,
                 **summarize(losses, ks, beyond, distances, context, weights, tolerance, reference))
        results.append(r)
        low, high = r["effective_context_interval"]
        print(f"| {name:16s} | trained context {trained[name]:4d} | effective context {r['effective_context']:4d} "
              f"[{low}, {high}] | best ppl {ppl_text(r)} at k={r['best_context']}"
              + (f" | gain beyond {reference}: {fmt_interval(r['gain'], r['gain_interval'])} nats" if "gain" in r else ""))
    corpus_info = Path(corpus_dir) / "corpus.json"
    source = json.loads(corpus_info.read_text()).get("source", "?") if corpus_info.is_file() else "?"
    info = dict(corpus=source, split=cfg.split, targets=int(len(targets)), resamples=cfg.bootstrap)
    with atomic_dir(out) as tmp:
        for name, extrapolation in (("perplexity.csv", False), ("perplexity_extrapolation.csv", True)):
            write_rows(tmp / name, CURVE_COLUMNS, [
                dict(model=r["model"], context=c["context"], ppl=round(math.exp(c["loss"]), 4),
                     lower=round(math.exp(c["loss_lower"]), 4), upper=round(math.exp(c["loss_upper"]), 4),
                     loss=round(c["loss"], 6), loss_lower=round(c["loss_lower"], 6), loss_upper=round(c["loss_upper"], 6))
                for r in results for c in r["curve"] if c["extrapolation"] == extrapolation])
        for kind in PERTURBATIONS:
            write_rows(tmp / f"{kind}_increase.csv", INCREASE_COLUMNS, [
                dict(model=r["model"], distance=row["distance"], increase=round(row["increase"], 6),
                     lower=round(row["lower"], 6), upper=round(row["upper"], 6)) for r in results for row in r[kind]])
        (tmp / "targets.json").write_text(json.dumps(dict(info, positions=targets.tolist())) + "\n")
        (tmp / "findings.md").write_text(findings(results, cfg, info))
        write_json(tmp / "claims.json", probe_claims(results, cfg))
        summary = dict(targets=info["targets"], models={r["model"]: headline(r, reference) for r in results})
        write_json(tmp / "summary.json", summary)
    # One metrics file per model (metrics/context_probe/<model>.json): `dvc metrics show` gives each
    # model a row with the same columns, instead of a column per model and figure.
    with atomic_dir(metrics) as tmp:
        for model, figures in summary["models"].items():
            write_json(tmp / f"{model}.json", figures)
    print(f"| context probe: {len(results)} models, {info['targets']:,} targets, {time.time() - start:.1f} s")
    return dict(summary, results=results)
