"""context_probe: exactness for the CNN, identical targets, the bootstrap, a dependency exactly 60
tokens back found where it is and nowhere else, long-range structure on the sample corpus, and
the stage end to end."""
from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_PARAMS, run
from dlreport.wordlm.corpus import Corpus, write_corpus
from dlreport.wordlm.models import build_model
from dlreport.wordlm.probe import (context_grid, effective_contexts, powers_of_two, replace_far, resample_weights,
                                   score, shuffle_far, summarize, target_positions, windows)
from dlreport.wordlm.sample import generate_sample
from dlreport.params import LMTrainParams, lm_model
from dlreport.wordlm.train import load_model, train_wordlm

# Small models run fastest, and alike on any machine, on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


def sharp(model):
    with torch.no_grad():  # sharper than at initialisation, so every input visibly matters
        for p in model.parameters():
            p.mul_(4)
    return model.eval()


def by(rows: list[dict], key: str) -> dict:
    return {row[key]: row for row in rows}


def test_cnn_ignores_exactly_what_lies_beyond_its_receptive_field():
    torch.manual_seed(0)
    model = sharp(build_model(lm_model(dict(type="GCNN", emsize=16, nhid=16, kernel_size=3, dilations=[1, 2, 4],
                                            dropout=0.0, lr=1.0)), 50))
    rf = model.receptive_field
    assert rf == 15
    stream = torch.randint(50, (800,))
    targets = target_positions(len(stream), 32, 200)
    ks, beyond = context_grid(rf, 35, 32)
    assert (ks, beyond) == ([1, 2, 4, 8, 15], [16, 32])
    distances = [1, 2, 5, rf - 1, rf, rf + 1, 20, 31]
    losses = score(model, stream, targets, ks + beyond, distances, 32, 50, seed=0)
    r = summarize(losses, ks, beyond, distances, 32, resample_weights(len(targets), 200, 0), 0.01, 35)
    for kind in ("shuffle", "random"):
        for d, row in by(r[kind], "distance").items():
            if d >= rf:  # only tokens beyond the receptive field are perturbed: exactly no change
                assert row["max_abs"] == 0.0 and row["increase"] == row["lower"] == row["upper"] == 0.0, d
            elif kind == "random":
                assert row["max_abs"] > 1e-3, d
    loss = by(r["curve"], "context")
    assert r["beyond_change"] < 1e-6  # k = 16, 32: the same tokens within reach (float rounding aside)
    assert all(abs(loss[k]["loss"] - loss[rf]["loss"]) > 1e-4 for k in ks[:-1])
    assert [c["extrapolation"] for c in r["curve"]] == [False] * len(ks) + [True] * len(beyond)
    assert r["effective_context"] <= rf and "gain" not in r  # trained on 15 < 35 tokens: no gain beyond 35


def test_the_targets_are_the_same_for_every_setting():
    torch.manual_seed(0)
    stream = torch.randint(40, (500,))
    targets = target_positions(len(stream), 64, 100)
    assert len(targets) == 100 and targets.min() >= 64 and targets.max() == 499
    for k in powers_of_two(64):
        w = windows(stream, targets, k)
        assert w.shape == (k, 100)
        assert torch.equal(w[-1], stream[targets - 1])  # always the token right before the target
        assert torch.equal(w[0], stream[targets - k])
    context = windows(stream, targets, 64)
    g = torch.Generator().manual_seed(0)
    for d in (1, 10, 50):
        shuffled, replaced = shuffle_far(context, d, g), replace_far(context, d, 40, g)
        assert torch.equal(shuffled[-d:], context[-d:]) and torch.equal(replaced[-d:], context[-d:])
        assert torch.equal(shuffled[:-d].sort(dim=0).values, context[:-d].sort(dim=0).values)
        assert not torch.equal(shuffled, context) and not torch.equal(replaced, context)
    # the probe's loss at k is the loss of each target, computed one by one
    model = sharp(build_model(lm_model(dict(type="LSTM", emsize=8, nhid=8, nlayers=1, dropout=0.0, lr=1.0)), 40))
    losses = score(model, stream, targets, [1, 4, 64], [10], 64, 40, seed=0, batch=30)
    with torch.no_grad():
        for row, k in enumerate((1, 4, 64)):
            one_by_one = [F.cross_entropy(model(stream[t - k:t].view(-1, 1))[0][-1], stream[t:t + 1]).item()
                          for t in targets.tolist()]
            assert losses["truncated"][row].tolist() == pytest.approx(one_by_one, abs=1e-5)


def test_the_bootstrap_intervals_and_the_effective_context():
    weights = resample_weights(300, 500, seed=1)
    assert weights.shape == (500, 300) and torch.equal(weights.sum(dim=1), torch.full((500,), 300.0, dtype=torch.float64))
    assert torch.equal(weights, resample_weights(300, 500, seed=1))
    # the smallest k within 1% of the best, per column
    means = torch.tensor([[5.0, 5.0], [4.03, 4.0], [4.0, 4.05], [4.02, 3.9]], dtype=torch.float64)
    assert effective_contexts(means, [1, 2, 4, 8], 0.01).tolist() == [2, 8]
    # per-target losses: the context helps up to k = 4, then nothing; k = 8 is the trained context
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(300, generator=generator, dtype=torch.float64)
    truncated = torch.stack([3.0 + 2.0 / k + noise for k in (1, 2, 4, 8)])
    truncated[2] = truncated[3]  # k = 4 is exactly as good as k = 8
    losses = dict(truncated=truncated, shuffle=truncated[3:] + 0.2, random=truncated[3:] + noise)
    r = summarize(losses, [1, 2, 4, 8], [], [1], 8, weights, 0.01, 2)
    curve = by(r["curve"], "context")
    for k, row in zip((1, 2, 4, 8), truncated):
        c = curve[k]
        assert c["loss"] == pytest.approx(row.mean().item()) and c["loss_lower"] < c["loss"] < c["loss_upper"]
    assert r["effective_context"] == 4 and r["effective_context_interval"] == (4, 4)
    assert r["best_context"] in (4, 8) and r["best_loss"] == pytest.approx(truncated[3].mean().item())
    # the gain beyond the reference (k = 2) is paired: loss(2) - loss(8) is 2/2 - 2/8 for every target
    assert r["gain"] == pytest.approx(0.75) and r["gain_interval"] == pytest.approx((0.75, 0.75))
    shuffle, random_ = r["shuffle"][0], r["random"][0]
    assert (shuffle["increase"], shuffle["lower"], shuffle["upper"]) == pytest.approx((0.2, 0.2, 0.2))
    assert random_["increase"] == pytest.approx(noise.mean().item())
    assert random_["lower"] < random_["increase"] < random_["upper"]


# --- a dependency exactly LAG tokens back -------------------------------------------------------

LAG = 60
CLASSES, KEYS, FILLERS = 8, 8, 16


def lag_text(lines: int, seed: int) -> str:
    """Each line: one random key of each of CLASSES classes (`k<class>_<key>`), random fillers, `?`,
    the CLASSES answers (`a<class>_<key>`), each exactly LAG tokens after its key, and random
    fillers up to 75 tokens a line, so that the previous line's keys lie more than 128 tokens
    back. Every answer is fully determined by the token LAG positions back; keys and fillers
    are random."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        keys = [rng.randrange(KEYS) for _ in range(CLASSES)]
        filler = [f"f{rng.randrange(FILLERS)}" for _ in range(LAG - CLASSES - 1 + 6)]
        out.append(" ".join([f"k{c}_{k}" for c, k in enumerate(keys)] + filler[:LAG - CLASSES - 1] + ["?"]
                            + [f"a{c}_{k}" for c, k in enumerate(keys)] + filler[LAG - CLASSES - 1:]))
    return "\n".join(out) + "\n"


def test_a_dependency_exactly_60_tokens_back_is_found_where_it_is(tmp_path: Path):
    """A Transformer trained on 128-token chunks learns to look 60 tokens back: the probe shows its
    loss falling exactly when k reaches 60, and rising when the tokens 60 or more back are
    replaced. The CNN, whose receptive field is 31 tokens, cannot: exactly no change."""
    corpus = tmp_path / "corpus"
    # One epoch (the example's lr decay never fires) of ~1,460 steps of 8 x 128 tokens.
    write_corpus({"train": lag_text(20000, 1), "valid": lag_text(10, 2), "test": lag_text(40, 3)}, corpus, {})
    params = {"wordlm": {
        "train": dict(epochs=1, batch_size=8, bptt=35, clip=1.0, seed=1, log_interval=10 ** 6, eval_batch_size=4,
                      eval_context=35, eval_stride=35, threads=1),
        "models": {
            "transformer": dict(type="Transformer", emsize=64, nhid=128, nlayers=2, nhead=4, dropout=0.0, lr=2e-3,
                                optimizer="adamw", bptt=128, eval_context=128, eval_stride=64),
            "gcnn": dict(type="GCNN", emsize=32, nhid=32, kernel_size=3, dilations=[1, 2, 4, 8], dropout=0.0,
                         lr=3e-3, optimizer="adamw", batch_size=64)}}}
    results, stream = {}, None
    for name in ("transformer", "gcnn"):
        # (built directly: eval_stride = eval_context, which params.yaml may not hold, keeps the
        # shared windows non-overlapping here)
        train_wordlm(LMTrainParams(**params["wordlm"]["train"]), name, lm_model(params["wordlm"]["models"][name]),
                     corpus, tmp_path / name,
                     tmp_path / f"{name}.json", log=lambda *_: None)
        model, config, vocab = load_model(tmp_path / name)
        if stream is None:
            stream = Corpus(corpus, vocab).test
            answers = torch.tensor([vocab[w].startswith("a") for w in stream.tolist()])
            targets = torch.nonzero(answers[128:]).flatten() + 128  # the answers with 128 tokens before them
            weights = resample_weights(len(targets), 1000, 0)
        trained = config["trained_context"]
        lengths = sorted({*powers_of_two(128), LAG - 1, LAG})  # k = 59: the key just out of sight; 60: in sight
        ks, beyond = [k for k in lengths if k <= trained], [k for k in lengths if k > trained]
        distances = [10, 30, LAG - 1, LAG, 100]  # farther than d = 59: the key replaced; d = 60: the key kept
        losses = score(model, stream, targets, ks + beyond, distances, 128, len(vocab), seed=0)
        results[name] = dict(trained=trained, **summarize(losses, ks, beyond, distances, 128, weights, 0.01, 999))

    transformer, gcnn = results["transformer"], results["gcnn"]
    assert transformer["trained"] == 128 and gcnn["trained"] == 31  # bptt 128 for it alone; the CNN: its field
    loss = by(transformer["curve"], "context")
    assert loss[LAG - 1]["loss_lower"] > 0.9 * math.log(KEYS)  # the key out of sight: a guess among 8 keys
    assert loss[LAG - 1]["loss_lower"] - loss[LAG]["loss_upper"] > 1.0  # one token more, the key: a large drop
    assert transformer["effective_context_interval"][0] >= LAG
    # Replacing the tokens 60 or more back removes the key: far worse. Random tokens are often keys
    # too, which the model (it finds keys by content: shuffling them hardly matters) takes for the
    # real one, so replacing only the tokens beyond the key costs something too - but less.
    replaced = by(transformer["random"], "distance")
    assert replaced[LAG - 1]["lower"] > 1.0
    assert replaced[LAG - 1]["increase"] > replaced[LAG]["increase"] + 0.5

    cnn = {c["context"]: c["loss"] for c in gcnn["curve"]}
    assert cnn[32] > 0.9 * math.log(KEYS)  # it never sees the key ...
    for k in (LAG - 1, LAG, 64, 128):  # ... so the tokens beyond its 31 change nothing: no drop at k = 60
        assert cnn[k] == pytest.approx(cnn[32], abs=1e-6)
    for kind in ("shuffle", "random"):
        for d in (LAG - 1, LAG, 100):  # all beyond its 31 tokens: exactly zero change, target by target
            assert by(gcnn[kind], "distance")[d]["max_abs"] == 0.0


# --- long-range structure of the sample corpus ---------------------------------------------------

def far_context_use(tmp_path: Path, long_range: bool) -> dict:
    """Train a small LSTM briefly on the sample (with or without long-range structure); its loss
    increase (with interval) when the tokens farther than 15 and 20 are replaced, in its trained
    context of 35 tokens."""
    corpus = tmp_path / f"corpus-{long_range}"
    write_corpus(generate_sample(seed=2, train_words=20000, valid_words=3000, test_words=6000, topics=4,
                                 topic_words=6, long_range=long_range), corpus, {})
    params = {"wordlm": {
        "train": dict(epochs=15, batch_size=20, bptt=35, clip=0.25, seed=1, log_interval=10 ** 6,
                      eval_batch_size=10, eval_context=35, eval_stride=35, threads=1),
        "models": {"lstm": dict(type="LSTM", emsize=64, nhid=64, nlayers=1, dropout=0.0, lr=0.003,
                                optimizer="adamw")}}}
    train_wordlm(LMTrainParams(**params["wordlm"]["train"]), "lstm", lm_model(params["wordlm"]["models"]["lstm"]),
                 corpus, tmp_path / f"run-{long_range}",
                 tmp_path / "m.json", log=lambda *_: None)
    model, config, vocab = load_model(tmp_path / f"run-{long_range}")
    stream = Corpus(corpus, vocab).test
    targets = target_positions(len(stream), 35, 3000)
    ks, _ = context_grid(config["trained_context"], 35, 35)
    losses = score(model, stream, targets, ks, [15, 20], 35, len(vocab), seed=0)
    return by(summarize(losses, ks, [], [15, 20], 35, resample_weights(len(targets), 1000, 0), 0.01, 35)["random"],
              "distance")


def test_long_range_structure_is_used_and_its_absence_shows(tmp_path: Path):
    on, off = far_context_use(tmp_path, True), far_context_use(tmp_path, False)
    for d in (15, 20):
        # with article-level topics the tokens more than d back matter (the interval lies above 0) ...
        assert on[d]["lower"] > 0, on
        # ... and without them they do not: far less, and the intervals do not overlap
        assert off[d]["upper"] < on[d]["lower"] and off[d]["increase"] < on[d]["increase"] / 4, (on, off)


# --- the stage ----------------------------------------------------------------------------------

def test_context_probe_stage_end_to_end(reproduced: Path, repro_log: str):
    project, out = reproduced, repro_log
    assert "Running stage 'train_wordlm@gcnn'" in out and "Running stage 'context_probe'" in out
    metrics = json.loads((project / "reports" / "context_probe" / "summary.json").read_text())
    cfg = TINY_PARAMS["context_probe"]
    reference = cfg["reference_context"]
    models = set(TINY_PARAMS["wordlm"]["models"])
    assert metrics["targets"] == cfg["targets"] and set(metrics["models"]) == models
    rows = {p.stem: json.loads(p.read_text()) for p in (project / "metrics" / "context_probe").iterdir()}
    assert rows == metrics["models"], "metrics/context_probe/<model>.json: a row per model"
    for name, m in metrics["models"].items():  # headline figures only, each with its interval
        assert m["effective_context_low"] <= m["effective_context"] <= m["effective_context_high"] <= m["trained_context"]
        assert len(m) <= 9 and all(isinstance(v, (int, float)) for v in m.values())
    trained = {name: m["trained_context"] for name, m in metrics["models"].items()}
    assert trained == dict(lstm=10, transformer=10, gcnn=7, lstm_long=16, transformer_long=16, gcnn_long=15)
    gcnn = metrics["models"]["gcnn"]
    assert gcnn["receptive_field"] == 7 and metrics["models"]["gcnn_long"]["receptive_field"] == 15
    gain = f"gain_beyond_{reference}"  # only the models trained on more than the reference (10) tokens
    for name, m in metrics["models"].items():
        if name.endswith("_long"):
            assert m[f"{gain}_low"] <= m[gain] <= m[f"{gain}_high"], m
        else:
            assert gain not in m, m
    lstm = metrics["models"]["lstm"]

    folder = project / "reports" / "context_probe"
    rows = list(csv.DictReader((folder / "perplexity.csv").open()))
    assert [int(r["context"]) for r in rows if r["model"] == "lstm"] == [1, 2, 4, 8, 10]
    assert [int(r["context"]) for r in rows if r["model"] == "gcnn"] == [1, 2, 4, 7]
    for r in rows:
        assert float(r["lower"]) <= float(r["ppl"]) <= float(r["upper"])
    best = min(float(r["ppl"]) for r in rows if r["model"] == "lstm")
    assert best == pytest.approx(lstm["best_ppl"], rel=1e-4)
    beyond = list(csv.DictReader((folder / "perplexity_extrapolation.csv").open()))
    assert [int(r["context"]) for r in beyond if r["model"] == "gcnn"] == [8, 16]
    at_field = next(float(r["loss"]) for r in rows if r["model"] == "gcnn" and r["context"] == "7")
    for r in beyond:  # beyond its receptive field the CNN's loss does not change
        if r["model"] == "gcnn":
            assert float(r["loss"]) == pytest.approx(at_field, abs=1e-5)
    for kind in ("shuffle", "random"):
        increases = list(csv.DictReader((folder / f"{kind}_increase.csv").open()))
        assert [int(r["distance"]) for r in increases if r["model"] == "gcnn"] == [1, 2, 5]  # d < 7
        assert [int(r["distance"]) for r in increases if r["model"] == "lstm_long"] == [1, 2, 5]  # d < 10
        assert all(float(r["lower"]) <= float(r["increase"]) <= float(r["upper"]) for r in increases)
    positions = json.loads((folder / "targets.json").read_text())["positions"]
    assert len(positions) == metrics["targets"]
    findings = (folder / "findings.md").read_text()
    for name, m in metrics["models"].items():
        assert f"| {name} |" in findings
        assert f"{m['effective_context']} [{m['effective_context_low']}, {m['effective_context_high']}]" in findings
    assert "- **C11: A CNN's context window is fixed by its kernel size, depth and dilation.** Supported." in findings
    claims = {c["id"]: c for c in json.loads((folder / "claims.json").read_text())}
    assert set(claims) == {"C11", "C12", "C14"}
    assert claims["C11"]["verdict"] == "supported" and claims["C11"]["rule"]

    plots = json.loads(run(["dvc", "plots", "show", "--json"], cwd=project).stdout)["data"]
    spec = plots["context_probe_perplexity"][0]["content"]
    assert spec["encoding"]["x"]["scale"]["type"] == "log" and spec["encoding"]["color"]["field"] == "model"
    band, line = spec["layer"]
    assert band["encoding"]["y"]["field"] == "lower" and band["encoding"]["y2"]["field"] == "upper"
    assert line["encoding"]["y"]["field"] == "ppl"
    values = spec["data"]["values"]
    assert {v["model"] for v in values} == models
    assert all(float(v["lower"]) <= float(v["ppl"]) <= float(v["upper"]) for v in values)
    assert {"context_probe_extrapolation", "context_probe_shuffle", "context_probe_random"} <= set(plots)
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=project).stdout)
    assert {f"metrics/context_probe/{m}.json" for m in models} <= set(next(iter(shown.values()))["data"])
