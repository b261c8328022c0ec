"""The language models: every type learns; the Transformer is causal; the CNN sees exactly its
receptive field; evaluation windows; lr decay on the optimizer; checkpoints; generation."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dlreport.wordlm.corpus import Corpus, batchify, write_corpus
from dlreport.wordlm.generate import generate_text, generate_words
from dlreport.params import GenerateParams, lm_model, parse
from dlreport.wordlm.models import MODEL_TYPES, GCNNModel, build_model, receptive_field
from dlreport.wordlm.sample import generate_sample
from dlreport.wordlm.train import (decay_lr, evaluate, linear_cross_entropy, load_model, make_optimizer,
                                   train_epoch, train_wordlm)

TINY = dict(emsize=24, nhid=24, nlayers=2, nhead=2, dropout=0.0, kernel_size=3, dilations=[1, 2, 4], lr=1.0)
LR = {"RNN_TANH": 2, "RNN_RELU": 1, "LSTM": 20, "GRU": 10, "Transformer": 1, "GCNN": 2}


# Small models run fastest, and alike on any machine, on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    write_corpus(generate_sample(seed=1, train_words=6000, valid_words=1500, test_words=1500, topics=6), out, {})
    return out


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_each_model_type_learns(kind: str, corpus_dir: Path):
    torch.manual_seed(0)
    corpus = Corpus(corpus_dir)
    data = batchify(corpus.train[:3000], 10)
    model = build_model(lm_model(dict(TINY, type=kind, lr=LR[kind])), len(corpus))
    before = evaluate(model, data, 20, 20, 10)
    assert abs(before - math.log(len(corpus))) < 0.5  # an untrained model is near uniform
    optimizer = make_optimizer(model, lm_model(dict(TINY, type=kind, lr=LR[kind])))
    for epoch in range(2):
        train_epoch(model, optimizer, data, epoch + 1, 20, 0.25, 1000, log=lambda *_: None)
    after = evaluate(model, data, 20, 20, 10)
    assert after < before - 0.7, (kind, before, after)


def test_transformer_is_causal():
    torch.manual_seed(0)
    model = build_model(lm_model(dict(TINY, type="Transformer")), 50).eval()
    x = torch.randint(50, (16, 3))
    for t in (0, 5, 14):
        y = x.clone()
        y[t + 1:] = torch.randint(50, y[t + 1:].shape)
        with torch.no_grad():
            a, b = model(x)[0], model(y)[0]
        assert torch.allclose(a[:t + 1], b[:t + 1], atol=1e-6, rtol=0)  # nothing after t leaks back
        assert not torch.allclose(a[t + 1:], b[t + 1:], atol=1e-3)
    z = x.clone()
    z[5] = (z[5] + 1) % 50
    with torch.no_grad():
        assert not torch.allclose(model(x)[0][5], model(z)[0][5], atol=1e-3)  # t sees itself


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_fused_loss_equals_decoder_then_cross_entropy(chunk: int):
    torch.manual_seed(0)
    embedding, decoder = torch.nn.Embedding(40, 8), torch.nn.Linear(8, 40)
    decoder.weight = embedding.weight  # tied weights: the gradients of both uses add up
    tokens, targets = torch.randint(40, (30,)), torch.randint(40, (30,))
    grads, losses = [], []
    for fused in (False, True):
        embedding.zero_grad(), decoder.zero_grad()
        features = torch.tanh(embedding(tokens))
        loss = (linear_cross_entropy(features, decoder, targets, chunk) if fused
                else F.cross_entropy(decoder(features), targets))
        (3 * loss).backward()  # a scaled loss: the stored gradients are scaled in backward
        losses.append(loss.detach())
        grads.append([embedding.weight.grad.clone(), decoder.bias.grad.clone()])
    torch.testing.assert_close(losses[1], losses[0])
    for fused_grad, plain_grad in zip(*grads[::-1]):
        torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [7, 128])
def test_fused_loss_with_bf16_products_is_within_bf16_rounding_of_fp32(chunk: int):
    """wordlm.train.precision bf16 (auto's choice on CPUs with native bf16): the loss and every
    gradient within a few bf16 roundings (2**-8 relative) of the fp32 loss's, at WikiText-like
    logits (a 2,000-word vocabulary, 200 features)."""
    torch.manual_seed(0)
    decoder = torch.nn.Linear(200, 2000)
    features, targets = torch.randn(300, 200), torch.randint(2000, (300,))
    results = []
    for dtype in (None, torch.bfloat16):
        decoder.zero_grad()
        x = features.clone().requires_grad_()
        loss = linear_cross_entropy(x, decoder, targets, chunk, gemm_dtype=dtype)
        loss.backward()
        results.append([loss.detach(), x.grad, decoder.weight.grad, decoder.bias.grad])
    for low, full in zip(results[1], results[0]):
        assert low.dtype == full.dtype == torch.float32
        assert (low - full).abs().max() <= 2 ** -6 * full.abs().max()
    assert not torch.equal(results[1][2], results[0][2]), "the bf16 products ran"


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_decoding_only_the_last_positions_gives_their_full_logits(kind: str):
    torch.manual_seed(0)
    model = build_model(lm_model(dict(TINY, type=kind)), 50).eval()
    tokens = torch.randint(50, (12, 3))
    with torch.no_grad():
        full, _ = model(tokens)
        for last in (1, 5, 12, 40):
            logits, _ = model(tokens, last=last)
            assert logits.shape == (min(last, 12), 3, 50)
            torch.testing.assert_close(logits, full[-last:], rtol=1e-5, atol=1e-5)


def test_gcnn_sees_exactly_its_receptive_field():
    torch.manual_seed(0)
    model = build_model(lm_model(dict(TINY, type="GCNN")), 50).eval()
    assert isinstance(model, GCNNModel)
    rf = model.receptive_field
    assert rf == receptive_field(3, [1, 2, 4]) == 1 + 2 * 7
    x = torch.randint(50, (40, 4))
    with torch.no_grad():
        base = model(x)[0][-1]
        far = x.clone()
        far[: 40 - rf] = torch.randint(50, (40 - rf, 4))
        assert torch.equal(model(far)[0][-1], base)  # beyond the receptive field: no effect at all
        for distance in (1, rf // 2, rf):  # the target's own input is distance 1
            near = x.clone()
            near[40 - distance] = (near[40 - distance] + 1) % 50
            assert not torch.allclose(model(near)[0][-1], base, atol=1e-4), distance
        assert torch.allclose(model(x[-rf:])[0][-1], base, atol=1e-5)  # rf tokens are enough


def test_windowed_evaluation_gives_every_target_its_context():
    """With windows at least the receptive field, the CNN's windowed loss is its exact loss."""
    torch.manual_seed(0)
    model = build_model(lm_model(dict(TINY, type="GCNN", dropout=0.2)), 60).eval()
    with torch.no_grad():  # sharper than at initialisation, so context matters visibly
        for p in model.parameters():
            p.mul_(4)
    data = torch.randint(60, (203, 3))
    rf = model.receptive_field
    exact = evaluate(model, data, 35, 203, 203)  # one window over everything
    with torch.no_grad():
        logits, _ = model(data[:-1])
    manual = F.cross_entropy(logits.flatten(0, 1), data[1:].flatten()).item()
    assert exact == pytest.approx(manual, abs=1e-5)
    assert evaluate(model, data, 35, rf + 4, 5) == pytest.approx(exact, abs=1e-5)
    assert evaluate(model, data, 35, rf + 4, 7) != pytest.approx(exact, abs=1e-3)  # too little context


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_lr_decay_acts_on_the_optimizer(name: str):
    def step(decayed: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        optimizer = make_optimizer(model, lm_model(dict(TINY, type="LSTM", lr=0.1, optimizer=name)))
        if decayed:
            decay_lr(optimizer, 4.0)
        start = model.weight.detach().clone()
        model(torch.ones(2, 4)).sum().backward()
        optimizer.step()
        return model.weight.detach() - start
    full, decayed = step(False), step(True)
    assert torch.allclose(decayed, full / 4, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    train = parse("wordlm.train", dict(epochs=2, batch_size=10, bptt=10, clip=0.25, seed=1, log_interval=10,
                                       eval_batch_size=5, eval_context=12, eval_stride=4, threads=1))
    models = {"lstm": lm_model(dict(TINY, type="LSTM", lr=20)), "gcnn": lm_model(dict(TINY, type="GCNN", lr=2))}
    lines: list[str] = []
    for name in ("lstm", "gcnn"):
        train_wordlm(train, name, models[name], corpus_dir, runs / name, runs / f"{name}.json", log=lines.append)
    assert any(line.startswith("| epoch   2 |    10/   ") and "| lr 20.00 | ms/batch" in line for line in lines)
    assert sum(line.startswith("| end of epoch") and "valid ppl" in line for line in lines) == 4
    assert sum(line.startswith("| epoch 1/2 took ") and "; ETA " in line for line in lines) == 2
    assert sum(line.startswith("| End of training | test loss") for line in lines) == 2
    return runs


def test_checkpoint_loads_with_weights_only(trained: Path):
    state = torch.load(trained / "gcnn" / "model.pt", weights_only=True)
    assert state["config"]["receptive_field"] == 15 == state["metrics"]["receptive_field"]
    model, config, vocab = load_model(trained / "gcnn")
    assert isinstance(model, GCNNModel) and len(vocab) == config["ntokens"]
    assert (trained / "lstm" / "dvclive" / "plots" / "metrics" / "valid" / "ppl.tsv").read_text().count("\n") == 3


def test_generation_is_deterministic(trained: Path, tmp_path: Path):
    gen = GenerateParams(model="lstm", words=45, temperature=1.0, seed=3, prompt=None)
    first = generate_text(gen, trained, tmp_path / "a.txt")
    assert generate_text(gen, trained, tmp_path / "b.txt") == first
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    lines = (tmp_path / "a.txt").read_text().splitlines()
    assert [len(line.split()) for line in lines] == [20, 20, 5]
    assert generate_text(replace(gen, seed=4), trained, tmp_path / "c.txt") != first
    assert generate_text(replace(gen, model="gcnn"), trained, tmp_path / "d.txt") != first


def test_prompt_words_outside_the_vocabulary_warn(trained: Path):
    model, config, vocab = load_model(trained / "lstm")
    warnings: list[str] = []
    words = generate_words(model, config, vocab, 10, 1.0, 0, f"{vocab[5]} zzzqx {vocab[7]} yyqq", warn=warnings.append)
    assert len(words) == 10 and len(warnings) == 1
    assert "yyqq, zzzqx" in warnings[0] and "<unk>" in warnings[0]
    cold = generate_words(model, config, vocab, 10, 1e-3, 0, vocab[5])
    assert cold == generate_words(model, config, vocab, 10, 1e-3, 1, vocab[5])  # ~argmax: seed-free
