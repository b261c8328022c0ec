"""Training speed: our LSTM training loop against the PyTorch example's loop.

Same model (the example's RNNModel, LSTM 200/200, 2 layers), same corpus, batch size and bptt,
same seed. The reference loop is the example's main.py train(), copied faithfully: log_softmax
+ NLLLoss, model.zero_grad(), repackage_hidden, clip_grad_norm_, the manual
``p.data.add_(p.grad, alpha=-lr)`` update and ``loss.item()`` every batch. Ours is
dlreport.wordlm.train.train_epoch: the decoder and the cross-entropy fused and computed in
cache-sized chunks (linear_cross_entropy: the tokens x vocabulary logits, their log-softmax
and its gradient are never stored), foreach SGD and clipping, the loss kept on the device
between log lines. Runs alternate (which goes first
switches every repeat) and the best of ``--repeats`` is reported for each, so background load hits both alike.

    python benchmarks/bench_wordlm.py                       # the generated sample corpus
    python benchmarks/bench_wordlm.py --corpus data/wikitext-2-v1.zip --batches 100   # after dvc update data.dvc
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlreport.wordlm.corpus import Corpus, batchify, write_corpus  # noqa: E402
from dlreport.wordlm.models import build_model  # noqa: E402
from dlreport.wordlm.sample import generate_sample  # noqa: E402
from dlreport.wordlm.train import make_optimizer, train_epoch  # noqa: E402

CFG = dict(type="LSTM", emsize=200, nhid=200, nlayers=2, dropout=0.2, tied=False, lr=20)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def example_train(model, train_data, bptt, clip, lr, batches, ntokens):
    """word_language_model/main.py train(), as the example writes it (RNN branch)."""
    criterion = nn.NLLLoss()
    model.train()
    total_loss = 0.
    hidden = model.init_hidden(train_data.size(1))
    for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
        if batch >= batches:
            break
        seq_len = min(bptt, len(train_data) - 1 - i)
        data, targets = train_data[i:i + seq_len], train_data[i + 1:i + 1 + seq_len].view(-1)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        output = F.log_softmax(output.view(-1, ntokens), dim=1)  # the example's model returns log_softmax
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total_loss += loss.item()
    return total_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="folder of train/valid/test.txt or a WikiText-2 zip (default: the sample)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.corpus:
        corpus = Corpus(args.corpus)
    else:
        folder = Path(tempfile.mkdtemp()) / "corpus"
        write_corpus(generate_sample(train_words=max(40000, args.batches * args.batch_size * args.bptt)), folder, {})
        corpus = Corpus(folder)
    ntokens = len(corpus)
    data = batchify(corpus.train, args.batch_size)
    batches = min(args.batches, (len(data) - 1) // args.bptt)
    tokens = batches * args.bptt * args.batch_size

    def fresh():
        torch.manual_seed(1111)
        return build_model(CFG, ntokens)

    # warm-up, so the first timed run pays no one-off costs
    example_train(fresh(), data, args.bptt, 0.25, 20.0, 3, ntokens)
    def run_example() -> float:
        model = fresh()
        start = time.perf_counter()
        example_train(model, data, args.bptt, 0.25, 20.0, batches, ntokens)
        return tokens / (time.perf_counter() - start)

    def run_ours() -> float:
        model = fresh()
        optimizer = make_optimizer(model, CFG)
        start = time.perf_counter()
        train_epoch(model, optimizer, data, 1, args.bptt, 0.25, 10 ** 9, log=lambda *_: None, batch_limit=batches)
        return tokens / (time.perf_counter() - start)

    runs = {"example": [], "ours": []}
    for repeat in range(args.repeats):  # alternate which goes first, so neither gains from order
        order = ("example", "ours") if repeat % 2 == 0 else ("ours", "example")
        for name in order:
            runs[name].append(run_example() if name == "example" else run_ours())
    best = {name: max(values) for name, values in runs.items()}
    ratios = sorted(o / e for o, e in zip(runs["ours"], runs["example"]))
    print(f"LSTM 200x2, vocabulary {ntokens:,}, batch {args.batch_size}, bptt {args.bptt}, {batches} batches "
          f"x {args.repeats} repeats, {torch.get_num_threads()} threads")
    print(f"example loop: {best['example']:10,.0f} tokens/s")
    print(f"our loop:     {best['ours']:10,.0f} tokens/s")
    print(f"ratio ours/example: {best['ours'] / best['example']:.3f} (best of each); "
          f"median of the paired runs' ratios {ratios[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
