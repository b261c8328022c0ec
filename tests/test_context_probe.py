"""context_probe: exactness for the CNN, identical targets, a real long-range effect on the
sample corpus that disappears without long-range structure, and the stage end to end."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_PARAMS, run
from dlreport.wordlm.corpus import Corpus, write_corpus
from dlreport.wordlm.models import build_model
from dlreport.wordlm.probe import (context_lengths, probe_model, replace_far, shuffle_far, target_positions,
                                   windows)
from dlreport.wordlm.sample import generate_sample
from dlreport.wordlm.train import load_checkpoint, train_wordlm


# Small models run fastest, and alike on any machine, on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


def sharp(model):
    with torch.no_grad():  # sharper than at initialisation, so every input visibly matters
        for p in model.parameters():
            p.mul_(4)
    return model.eval()


def test_cnn_ignores_exactly_what_lies_beyond_its_receptive_field():
    torch.manual_seed(0)
    model = sharp(build_model(dict(type="GCNN", emsize=16, nhid=16, kernel_size=3, dilations=[1, 2, 4], dropout=0.0), 50))
    rf = model.receptive_field
    assert rf == 15
    stream = torch.randint(50, (800,))
    ks = context_lengths(32)
    targets = target_positions(len(stream), 32, 200)
    distances = [1, 2, 5, rf - 1, rf, rf + 1, 20, 31]
    r = probe_model(model, stream, targets, ks, distances, 50, seed=0, tolerance=0.01)
    for d in distances:
        if d >= rf:  # only tokens beyond the receptive field are perturbed: exactly no change
            assert r["shuffle_increase"][str(d)] == 0.0 and r["random_increase"][str(d)] == 0.0, d
        else:
            assert r["random_increase"][str(d)] != 0.0, d
    for k in ks:
        if k >= rf:
            assert r["loss"][str(k)] == pytest.approx(r["full_context_loss"], abs=1e-9)
        else:
            assert abs(r["loss"][str(k)] - r["full_context_loss"]) > 1e-4, k
    assert r["effective_context"] <= 16


def test_the_targets_are_the_same_for_every_setting():
    torch.manual_seed(0)
    stream = torch.randint(40, (500,))
    targets = target_positions(len(stream), 64, 100)
    assert len(targets) == 100 and targets.min() >= 64 and targets.max() == 499
    for k in context_lengths(64):
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
    # the probe's loss at k is the mean loss of those targets, computed one by one
    model = sharp(build_model(dict(type="LSTM", emsize=8, nhid=8, nlayers=1, dropout=0.0), 40))
    r = probe_model(model, stream, targets, [1, 4, 64], [10], 40, seed=0, tolerance=0.01)
    with torch.no_grad():
        for k in (1, 4, 64):
            losses = [F.cross_entropy(model(stream[t - k:t].view(-1, 1))[0][-1], stream[t:t + 1]).item()
                      for t in targets.tolist()]
            assert r["loss"][str(k)] == pytest.approx(sum(losses) / len(losses), abs=1e-5)


def long_range_gain(tmp_path: Path, long_range: bool) -> tuple[float, float]:
    """Train a small LSTM briefly on the sample (with or without long-range structure) and
    return (loss increase when tokens farther than 20 are randomised, loss(k=8) - loss(k=64))."""
    corpus = tmp_path / f"corpus-{long_range}"
    write_corpus(generate_sample(seed=2, train_words=20000, valid_words=3000, test_words=6000, topics=4,
                                 topic_words=6, long_range=long_range), corpus, {})
    params = {"wordlm": {
        "train": dict(epochs=15, batch_size=20, bptt=35, clip=0.25, seed=1, log_interval=10 ** 6,
                      eval_batch_size=10, eval_context=35, eval_stride=35, threads=1),
        "models": {"lstm": dict(type="LSTM", emsize=64, nhid=64, nlayers=1, dropout=0.0, lr=0.003,
                                optimizer="adamw")}}}
    train_wordlm(params, "lstm", corpus, tmp_path / f"run-{long_range}", tmp_path / "m.json", log=lambda *_: None)
    model, _, vocab = load_checkpoint(tmp_path / f"run-{long_range}")
    stream = Corpus(corpus, vocab).test
    targets = target_positions(len(stream), 64, 400)
    r = probe_model(model, stream, targets, context_lengths(64), [20], len(vocab), seed=0, tolerance=0.01)
    return r["random_increase"]["20"], r["loss"]["8"] - r["loss"]["64"]


def test_long_range_structure_is_used_and_its_absence_shows(tmp_path: Path):
    far_on, truncation_on = long_range_gain(tmp_path, True)
    far_off, truncation_off = long_range_gain(tmp_path, False)
    # with article-level structure the model gains from tokens more than 20 back ...
    assert far_on > 0.01 and truncation_on > 0.01, (far_on, truncation_on)
    # ... and without it those tokens are worth (almost) nothing
    assert far_off < far_on / 4 and truncation_off < truncation_on / 4, (far_off, truncation_off)


def test_context_probe_stage_end_to_end(wordlm_project: Path):
    project = wordlm_project
    out = (project / "repro.log").read_text()
    assert "Running stage 'train_wordlm@gcnn'" in out and "Running stage 'context_probe'" in out
    metrics = json.loads((project / "metrics" / "context_probe.json").read_text())
    assert metrics["context_lengths"] == [1, 2, 4, 8, 16] and metrics["distances"] == [1, 2, 5, 10]
    assert set(metrics["models"]) == {"lstm", "transformer", "gcnn"}
    gcnn = metrics["models"]["gcnn"]
    assert gcnn["receptive_field"] == 7
    assert gcnn["random_increase"]["10"] == 0.0 == gcnn["shuffle_increase"]["10"]  # 10 > receptive field
    assert gcnn["loss"]["8"] == pytest.approx(gcnn["loss"]["16"], abs=1e-9)
    positions = json.loads((project / "reports" / "context_probe" / "targets.json").read_text())["positions"]
    assert len(positions) == metrics["targets"] == TINY_PARAMS["context_probe"]["targets"]
    rows = list(csv.DictReader((project / "reports" / "context_probe" / "perplexity.csv").open()))
    assert [int(r["context"]) for r in rows] == [1, 2, 4, 8, 16]
    assert float(rows[-1]["lstm"]) == pytest.approx(metrics["models"]["lstm"]["full_context_ppl"], rel=1e-4)
    findings = (project / "reports" / "context_probe" / "findings.md").read_text()
    for name, r in metrics["models"].items():
        assert f"**{name}**" in findings and f"uses about {r['effective_context']} token(s)" in findings
    assert "receptive field of 7 tokens" in findings
    plots = json.loads(run(["dvc", "plots", "show", "--json"], cwd=project).stdout)["data"]
    spec = plots["context_probe_perplexity"][0]["content"]
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    assert {"context_probe_shuffle", "context_probe_random"} <= set(plots)
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=project).stdout)
    assert "metrics/context_probe.json" in next(iter(shown.values()))["data"]
