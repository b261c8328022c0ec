"""Training speed: our word-LM training loop against the PyTorch example's loop, for each model.

Same model (params.yaml's wordlm.models entry: the example's RNNModel LSTM 200/200 x 2, its
Transformer, our gated CNN), same corpus, batch size and bptt, same seed. The reference loop is the
example's main.py train(), copied faithfully: log_softmax + NLLLoss, model.zero_grad(),
repackage_hidden, clip_grad_norm_, the manual ``p.data.add_(p.grad, alpha=-lr)`` update and
``loss.item()`` every batch. Ours is dlreport.wordlm.train.train_epoch: the decoder and the
cross-entropy fused and computed in cache-sized chunks (linear_cross_entropy: the tokens x
vocabulary logits, their log-softmax and its gradient are never stored), foreach SGD and clipping,
the loss kept on the device between log lines, freed memory kept for the next step
(``devices.keep_freed_memory``; the example runs with glibc's default malloc settings). The example
has no CNN: its loop is given the CNN's inputs (history included) as ours is. Runs alternate (which
goes first switches every repeat) and the best of ``--repeats`` is reported for each, so background
load hits both alike. Each model's line also gives our loop's FLOP/s (FLOPs of a step counted per
operator) as a fraction of the machine's matrix-multiply peak in the precision of its decoder's
products (wordlm.train.precision: bf16 on CPUs with native bf16, where they are most of a step's
FLOPs; fp32 elsewhere).

    python benchmarks/bench_wordlm.py                       # the generated sample corpus
    python benchmarks/bench_wordlm.py --corpus data/wikitext-2-v1.zip --batches 100   # after dvc update data.dvc
    python benchmarks/bench_wordlm.py --models lstm                 # one model
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

from dlreport import perf  # noqa: E402
from dlreport.devices import keep_freed_memory, precision_name  # noqa: E402
from dlreport.params import lm_model, read_params  # noqa: E402
from dlreport.wordlm.corpus import Corpus, batchify, write_corpus  # noqa: E402
from dlreport.wordlm.models import RNNModel, build_model  # noqa: E402
from dlreport.wordlm.sample import generate_sample  # noqa: E402
from dlreport.wordlm.train import decoder_dtype, history_of, make_optimizer, train_epoch  # noqa: E402

PARAMS = read_params(Path(__file__).resolve().parent.parent / "params.yaml")["wordlm"]
MODELS = PARAMS["models"]


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def example_train(model, train_data, bptt, clip, lr, batches, ntokens):
    """word_language_model/main.py train(), as the example writes it (its RNN branch; the
    Transformer branch is the same without the hidden state)."""
    criterion = nn.NLLLoss()
    model.train()
    total_loss = 0.
    rnn = isinstance(model, RNNModel)
    hidden = model.init_hidden(train_data.size(1)) if rnn else None
    history = history_of(model)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
        if batch >= batches:
            break
        seq_len = min(bptt, len(train_data) - 1 - i)
        data, targets = train_data[i:i + seq_len], train_data[i + 1:i + 1 + seq_len].view(-1)
        if history:  # (the CNN: as our loop feeds it)
            data = train_data[i - min(i, history):i + seq_len]
        model.zero_grad()
        if rnn:
            hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden, last=seq_len)
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
    parser.add_argument("--models", default="lstm,transformer,gcnn", help="wordlm.models entries, comma-separated")
    parser.add_argument("--precision", default=PARAMS["train"].get("precision", "auto"), choices=["auto", "fp32", "bf16"],
                        help="our loop's decoder precision (default: params.yaml's wordlm.train.precision)")
    args = parser.parse_args()
    args.gemm_dtype = decoder_dtype(args.precision)
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
    peak, peak_kernel = perf.matmul_peak(args.gemm_dtype or torch.float32)
    print(f"CPU: {perf.cpu_label()}")
    print(f"vocabulary {ntokens:,}, batch {args.batch_size}, bptt {args.bptt}, {batches} batches x {args.repeats} "
          f"repeats; our decoder in {precision_name(args.gemm_dtype)}; {precision_name(args.gemm_dtype)} "
          f"matrix-multiply peak {peak / 1e12:.3f} TFLOP/s ({peak_kernel})")
    for name in args.models.split(","):
        compare_loops(name, lm_model(MODELS[name]), data, ntokens, batches, tokens, peak, args)


def compare_loops(name, cfg, data, ntokens, batches, tokens, peak, args) -> None:
    def fresh():
        torch.manual_seed(1111)
        return build_model(cfg, ntokens)

    def run_example() -> float:
        keep_freed_memory(False)  # the example runs with glibc's default malloc settings
        model = fresh()
        start = time.perf_counter()
        example_train(model, data, args.bptt, 0.25, cfg.lr, batches, ntokens)
        return tokens / (time.perf_counter() - start)

    def run_ours(limit=batches) -> float:
        keep_freed_memory(True)  # as train_wordlm does
        model = fresh()
        optimizer = make_optimizer(model, cfg)
        start = time.perf_counter()
        train_epoch(model, optimizer, data, 1, args.bptt, 0.25, 10 ** 9, log=lambda *_: None, batch_limit=limit,
                    gemm_dtype=args.gemm_dtype)
        return tokens / (time.perf_counter() - start)

    # warm-up, so the first timed run pays no one-off costs
    example_train(fresh(), data, args.bptt, 0.25, cfg.lr, 3, ntokens)
    run_ours(3)
    step_flops = perf.counted_flops(lambda: run_ours(1))
    runs = {"example": [], "ours": []}
    for repeat in range(args.repeats):  # alternate which goes first, so neither gains from order
        order = ("example", "ours") if repeat % 2 == 0 else ("ours", "example")
        for who in order:
            runs[who].append(run_example() if who == "example" else run_ours())
    best = {who: max(values) for who, values in runs.items()}
    ratios = sorted(o / e for o, e in zip(runs["ours"], runs["example"]))
    achieved = step_flops / (args.bptt * args.batch_size) * best["ours"]
    print(f"{name} ({cfg.type}): example loop {best['example']:9,.0f} tokens/s, ours {best['ours']:9,.0f}: "
          f"ratio {best['ours'] / best['example']:.3f} (best of each; median of the paired runs' ratios "
          f"{ratios[len(ratios) // 2]:.3f}); ours {achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.1%} of the peak")


if __name__ == "__main__":
    main()
