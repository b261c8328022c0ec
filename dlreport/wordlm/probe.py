"""Stage context_probe: how much context the trained language models actually use
(the protocol of Khandelwal et al. 2018, "Sharp Nearby, Fuzzy Far Away").

Every measurement scores the same targets: ``targets`` token positions of the chosen split,
evenly spread over the positions that have ``max_context`` tokens before them.

* Truncated context: each model sees exactly the last k tokens before each target, k = 1, 2,
  4, ... up to ``max_context`` (RNNs start from a fresh zero state, the Transformer and the CNN
  get a window of k tokens).
* Perturbed far context: with the full ``max_context`` tokens, those farther than d from the
  target (distance 1 = the token right before it) are shuffled among themselves, or replaced
  by tokens drawn uniformly from the vocabulary; the loss increase over the intact context.
* Effective context: the smallest k whose loss is within ``tolerance`` (1%) of the loss with
  the full ``max_context`` tokens.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from dlreport.errors import PipelineError
from dlreport.fileio import atomic_dir, write_json
from dlreport.wordlm.corpus import Corpus
from dlreport.wordlm.train import load_checkpoint, set_threads


def context_lengths(max_context: int) -> list[int]:
    ks, k = [], 1
    while k < max_context:
        ks.append(k)
        k *= 2
    return ks + [max_context]


def target_positions(length: int, max_context: int, count: int) -> torch.Tensor:
    """``count`` evenly spread stream positions t with ``max_context`` tokens before them."""
    if length - 1 < max_context:
        raise PipelineError(f"the split has {length} tokens, too few for max_context {max_context} "
                            f"(param context_probe.max_context)")
    return torch.linspace(max_context, length - 1, min(count, length - max_context)).round().long().unique()


def windows(stream: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """(k, N): column n holds the k tokens right before target n."""
    offsets = torch.arange(-k, 0)
    return stream[targets.view(1, -1) + offsets.view(-1, 1)]


@torch.no_grad()
def target_losses(model, inputs: torch.Tensor, targets: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Per-target cross-entropy (nats) of predicting ``targets`` (N,) from ``inputs`` (k, N);
    RNNs start from a zero state, windowed models see exactly the k tokens."""
    model.eval()
    out = []
    for start in range(0, inputs.size(1), batch):
        chunk = inputs[:, start:start + batch]
        logits, _ = model(chunk, None, last=1)
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


def probe_model(model, stream: torch.Tensor, targets: torch.Tensor, ks: list[int], distances: list[int],
                ntokens: int, seed: int, tolerance: float, batch: int = 500) -> dict:
    gold = stream[targets]
    max_context = ks[-1]
    truncated = {}
    for k in ks:
        truncated[k] = target_losses(model, windows(stream, targets, k), gold, batch).mean().item()
    full = truncated[max_context]
    context = windows(stream, targets, max_context)
    generator = torch.Generator().manual_seed(seed)
    shuffled, replaced = {}, {}
    for d in distances:
        shuffled[d] = target_losses(model, shuffle_far(context, d, generator), gold, batch).mean().item() - full
        replaced[d] = target_losses(model, replace_far(context, d, ntokens, generator), gold, batch).mean().item() - full
    effective = next(k for k in ks if truncated[k] <= full * (1 + tolerance))
    return dict(full_context_loss=full, full_context_ppl=math.exp(full), effective_context=effective,
                loss={str(k): v for k, v in truncated.items()},
                ppl={str(k): math.exp(v) for k, v in truncated.items()},
                shuffle_increase={str(d): v for d, v in shuffled.items()},
                random_increase={str(d): v for d, v in replaced.items()})


def findings(results: dict, cfg: dict, ks: list[int], distances: list[int], trained: dict) -> str:
    """The findings as text, every statement computed from the measured numbers."""
    tol = float(cfg["tolerance"])
    lines = ["# Context probe: how much context the language models use", "",
             f"Split `{cfg['split']}`, {trained['targets']} target tokens (the same for every setting), "
             f"context k = {', '.join(map(str, ks))}; far-context perturbation at d = {', '.join(map(str, distances))}. "
             f"Effective context: the smallest k whose loss is within {tol:.0%} of the loss with all "
             f"{ks[-1]} tokens.", ""]
    order = sorted(results, key=lambda n: (results[n]["effective_context"], n))
    lines += ["| model | type | ppl k=1 | ppl k=" + str(ks[-1]) + " | effective context | receptive field |",
              "|---|---|---|---|---|---|"]
    for name in order:
        r = results[name]
        lines.append(f"| {name} | {r['type']} | {r['ppl'][str(ks[0])]:.2f} | {r['full_context_ppl']:.2f} | "
                     f"{r['effective_context']} | {r.get('receptive_field') or '-'} |")
    lines.append("")
    for name in order:
        r = results[name]
        gain = r["loss"][str(ks[0])] - r["full_context_loss"]
        used = [d for d in distances if r["shuffle_increase"][str(d)] > tol * r["full_context_loss"]]
        usedr = [d for d in distances if r["random_increase"][str(d)] > tol * r["full_context_loss"]]
        text = (f"- **{name}** ({r['type']}): uses about {r['effective_context']} token(s) of context "
                f"(loss within {tol:.0%} of the {ks[-1]}-token loss from k = {r['effective_context']} on); "
                f"going from 1 to {ks[-1]} tokens lowers its loss by {gain:.3f} nats "
                f"(perplexity {r['ppl'][str(ks[0])]:.1f} -> {r['full_context_ppl']:.1f}). ")
        text += (f"Shuffling the tokens farther than d raises its loss by more than {tol:.0%} up to d = {max(used)}"
                 if used else f"Shuffling far tokens never raises its loss by more than {tol:.0%} (d >= {distances[0]})")
        text += (f"; replacing them by random tokens does so up to d = {max(usedr)}." if usedr else
                 "; replacing them by random tokens never does.")
        lines.append(text)
        if r["type"] == "Transformer" and ks[-1] > r.get("trained_context", ks[-1]):
            lines.append(f"  It was trained on windows of {r['trained_context']} tokens; longer windows are "
                         f"positions it never saw in training (its loss at k = {ks[-1]}: {r['full_context_loss']:.3f}, "
                         f"best over k: {min(r['loss'].values()):.3f}).")
        rf = r.get("receptive_field")
        if rf:
            flat = r["effective_context"]
            beyond = [d for d in distances if d >= rf]
            after = [k for k in ks if k >= rf]
            change = max((abs(r["loss"][str(k)] - r["full_context_loss"]) for k in after), default=None)
            pert = max((max(abs(r["shuffle_increase"][str(d)]), abs(r["random_increase"][str(d)])) for d in beyond),
                       default=None)
            where = "before" if flat < rf else ("at" if flat == rf else "after")
            lines.append(f"  The CNN's curve goes flat at k = {flat}, {where} its receptive field of {rf} tokens "
                         f"({flat / rf:.2f} x; measured lengths are powers of two)"
                         + (f"; from k = {after[0]} on its loss differs from the full-context "
                            f"loss by at most {change:.2e} nats" if change is not None else "")
                         + (f", and perturbing only tokens farther than its receptive field (d >= {rf}) changes it "
                            f"by at most {pert:.2e} nats." if pert is not None else "."))
    return "\n".join(lines) + "\n"


def context_probe(cfg: dict, runs: str | Path, models: list[str], corpus_dir: str | Path, out: str | Path,
                  metrics: str | Path) -> dict:
    set_threads(cfg.get("threads"))
    ks = context_lengths(int(cfg["max_context"]))
    distances = sorted(int(d) for d in cfg["distances"] if 0 < int(d) < ks[-1])
    if not distances:
        raise PipelineError(f"context_probe.distances {cfg['distances']} has no distance between 1 and "
                            f"max_context - 1 = {ks[-1] - 1}")
    if cfg.get("split") not in ("train", "valid", "test"):
        raise PipelineError(f"context_probe.split is {cfg.get('split')!r}; use train, valid or test")
    results: dict[str, dict] = {}
    corpus = None
    targets = None
    for name in models:
        model, config, vocab = load_checkpoint(Path(runs) / name)
        if corpus is None:
            corpus = Corpus(corpus_dir, vocab)
            stream = getattr(corpus, cfg["split"])
            targets = target_positions(len(stream), ks[-1], int(cfg["targets"]))
        elif vocab != corpus.idx2word:
            raise PipelineError(f"runs/wordlm/{name}: trained on another vocabulary; re-run `dvc repro train_wordlm`")
        r = probe_model(model, stream, targets, ks, distances, len(vocab), int(cfg["seed"]),
                        float(cfg["tolerance"]), int(cfg.get("batch", 500)))
        r.update(type=config["type"], receptive_field=config.get("receptive_field"),
                 trained_context=config.get("bptt"))
        results[name] = r
        print(f"| {name:12s} | effective context {r['effective_context']:4d} | ppl " +
              " ".join(f"k={k}:{r['ppl'][str(k)]:.1f}" for k in ks))
    info = dict(targets=int(len(targets)), split=cfg["split"], context_lengths=ks, distances=distances)
    with atomic_dir(out) as tmp:
        with open(tmp / "perplexity.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["context"] + list(models))
            for k in ks:
                writer.writerow([k] + [f"{results[n]['ppl'][str(k)]:.4f}" for n in models])
        for kind in ("shuffle", "random"):
            with open(tmp / f"{kind}_increase.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["distance"] + list(models))
                for d in distances:
                    writer.writerow([d] + [f"{results[n][f'{kind}_increase'][str(d)]:.6f}" for n in models])
        (tmp / "targets.json").write_text(json.dumps(dict(info, positions=targets.tolist())) + "\n")
        (tmp / "findings.md").write_text(findings(results, cfg, ks, distances, info))
    summary = dict(info, models={n: {k: v for k, v in r.items()} for n, r in results.items()})
    write_json(metrics, summary)
    return summary
