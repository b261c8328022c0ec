"""Training and evaluation of the word-level language models (stage train_wordlm@<name>).

The loop is the PyTorch word_language_model example's (SGD at ``lr`` with gradient clipping,
batches as columns of the token stream, ``bptt`` steps, lr divided by 4 when the validation
loss stops improving, the best-validation model kept, its log lines), with its flaws fixed:

* evaluation gives every model context the same way: RNNs carry their state through the
  stream (as in the example); the Transformer and the CNN slide a window of
  ``eval_context`` tokens over it in steps of ``eval_stride``, scoring the last
  ``eval_stride`` positions of each window, so every scored token is predicted from at least
  ``eval_context - eval_stride + 1`` and at most ``eval_context`` tokens (the example scored
  the Transformer on independent 35-token chunks: its first tokens had no context at all);
* the Transformer always runs with the causal mask;
* with ``optimizer: adamw`` the lr decay acts on the optimizer's lr (the example's decay
  changed a variable the optimizer never read).

The CNN trains on ``bptt`` targets per step, each chunk preceded by ``receptive_field - 1``
tokens of history, so every target sees its whole receptive field as in evaluation.

A model entry may override the shared settings of ``wordlm.train`` listed in
``dlreport.params.MODEL_OVERRIDES`` (a long-context variant: ``bptt: 128``). The checkpoint records the
model's trained context: the longest context any of its training targets was predicted from
inside one gradient step - ``bptt`` for the Transformer (chunks start at position 0) and for
RNNs (truncated BPTT; their carried state reaches further, but no gradient does), the
receptive field for the CNN.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlreport.checkpoints import load_checkpoint, save_atomic
from dlreport.params import LMModelParams, LMTrainParams, lm_model
from dlreport.devices import autocast_dtype, hardware, keep_freed_memory, precision_name
from dlreport.errors import PipelineError
from dlreport.faults import Fault, Stopped, disk_error, where_stopped
from dlreport.fileio import atomic_dir, write_json
from dlreport.progress import eta_line
from dlreport.wordlm.corpus import Corpus, batchify, get_batch
from dlreport.wordlm.models import GCNNModel, RNNModel, build_model, count_parameters

CHECKPOINT = "model.pt"
# The headline figures of metrics/train_wordlm_<name>.json (dvc metrics show); the checkpoint
# and DVCLive's summary keep the rest (losses, epochs, evaluation settings).
SUMMARY_KEYS = ("parameters", "trained_context", "receptive_field", "best_valid_ppl", "test_ppl", "seconds",
                "tokens_per_s", "precision", "cpu_capability")


def set_threads(threads) -> None:
    """``threads`` > 0: use that many CPU threads (0 or None: PyTorch's default). Small models
    gain little from threads and lose much when other processes share the cores."""
    if threads:
        torch.set_num_threads(int(threads))


def history_of(model: nn.Module) -> int:
    """Tokens of history fed before each training chunk: RF - 1 for the CNN, else 0."""
    return model.receptive_field - 1 if isinstance(model, GCNNModel) else 0


def detach(hidden):
    if hidden is None:
        return None
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(detach(h) for h in hidden)


def trained_context(model: nn.Module, train: LMTrainParams) -> int:
    """The most tokens any training target was predicted from within one gradient step."""
    return model.receptive_field if isinstance(model, GCNNModel) else train.bptt


def window_context(model: nn.Module, train: LMTrainParams) -> int:
    """The window generation gives a windowed model: the CNN its receptive field, the
    Transformer no more than it was trained on (bptt) or evaluated with (eval_context)."""
    if isinstance(model, GCNNModel):
        return model.receptive_field
    return min(train.eval_context, train.bptt)


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, bptt: int, context: int, stride: int) -> float:
    """Mean cross-entropy (nats) over every target of ``data`` (time, batch)."""
    model.eval()
    total, count = 0.0, 0
    if isinstance(model, RNNModel):
        hidden = model.init_hidden(data.size(1))
        for i in range(0, data.size(0) - 1, bptt):
            inputs, targets = get_batch(data, i, bptt)
            logits, hidden = model(inputs, hidden)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
        return total / count
    for i in range(0, data.size(0) - 1, stride):
        end = min(i + stride, data.size(0) - 1)
        start = max(0, end - context)
        targets = data[i + 1:end + 1]
        logits, _ = model(data[start:end], last=len(targets))
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    return total / count


# Rows of logits the fused loss materialises at a time: 128 x vocabulary floats stay in the L2
# cache for the sample corpus (2,300 words) and take 17 MB, not 93, for WikiText-2's 33,278.
LOSS_CHUNK = 128


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``features @ weight.T + bias`` against ``targets``, computed
    ``chunk`` rows at a time; each chunk's gradients are taken while its logits are still in
    cache (softmax - one_hot), so the full (tokens x vocabulary) logits, their log-softmax and
    its gradient are never stored. The same three matrix products as the unfused loss.

    With ``gemm_dtype`` bf16 the three products take bf16 operands (the matrix units of CPUs with
    native bf16 run them 5-8x faster than fp32); each product's result is rounded to bf16 (CPU
    matmuls have no fp32 output for bf16 operands), and the softmax and the loss stay fp32. The
    chunks' d loss / d logits are then kept, in bf16 (2 bytes a logit: 26 MB for 700 tokens of
    WikiText-2's sample vocabulary), for two whole-batch products: per-chunk products that short
    run at half the speed, and per-chunk accumulation costs a conversion each."""

    @staticmethod
    def forward(ctx, features, weight, bias, targets, chunk, gemm_dtype):
        n = features.size(0)
        low = gemm_dtype is not None and gemm_dtype != features.dtype
        operands, matrix = (features.to(gemm_dtype), weight.to(gemm_dtype)) if low else (features, weight)
        grad_bias = torch.zeros_like(bias)
        total = features.new_zeros(())
        if low:
            grad_logits = torch.empty(n, weight.size(0), dtype=gemm_dtype)
        else:
            grad_features, grad_weight = torch.empty_like(features), torch.zeros_like(weight)
        for start in range(0, n, chunk):
            rows, target = operands[start:start + chunk], targets[start:start + chunk]
            logits = torch.mm(rows, matrix.t()).float().add_(bias) if low else torch.addmm(bias, rows, weight.t())
            # softmax in place, in as few passes over the chunk as it takes (logsumexp would add two)
            row_max = logits.amax(dim=1, keepdim=True)
            total -= logits.gather(1, target[:, None]).sum()
            sums = logits.sub_(row_max).exp_().sum(dim=1, keepdim=True)
            total += (row_max + sums.log()).sum()
            probs = logits.div_(sums)
            probs[torch.arange(len(target)), target] -= 1  # d loss / d logits, times n
            grad_bias += probs.sum(0)
            if low:
                grad_logits[start:start + chunk] = probs
            else:
                torch.mm(probs, weight, out=grad_features[start:start + chunk])
                grad_weight.addmm_(probs.t(), rows)
        if low:
            grad_features = torch.mm(grad_logits, matrix).to(features.dtype)
            grad_weight = torch.mm(grad_logits.t(), operands).to(weight.dtype)
        ctx.save_for_backward(grad_features, grad_weight, grad_bias)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad_loss):
        grad_features, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_loss / ctx.n
        return grad_features * scale, grad_weight * scale, grad_bias * scale, None, None, None


def linear_cross_entropy(features: torch.Tensor, decoder: nn.Linear, targets: torch.Tensor,
                         chunk: int = LOSS_CHUNK, gemm_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``F.cross_entropy(decoder(features), targets)`` for (tokens, ninp) features, fused and
    chunked (see _LinearCrossEntropy); ``gemm_dtype`` bf16: its matrix products in bf16.
    On one CPU core, forward and backward of 700 tokens took 39 -> 35 ms with a 2,300-word
    vocabulary and 750 -> 630 ms with 33,278 words; benchmarks/bench_wordlm.py measures the
    whole training loop."""
    return _LinearCrossEntropy.apply(features, decoder.weight, decoder.bias, targets, chunk, gemm_dtype)


def decoder_dtype(precision: str) -> torch.dtype | None:
    """wordlm.train.precision: the dtype of the decoder's matrix products (None: fp32). auto is
    bf16 on CPUs with native bf16 (as resnet.precision), fp32 elsewhere."""
    return autocast_dtype(precision, torch.device("cpu"))


def make_optimizer(model: nn.Module, cfg: LMModelParams) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":  # the example's update p -= lr * grad (else adamw: params.py allows these two)
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, foreach=True)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def decay_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Divide the lr the optimizer actually uses (every param group) by ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] /= factor


def train_epoch(model, optimizer, data, epoch: int, bptt: int, clip: float, log_interval: int,
                log=print, on_interval=None, batch_limit: int | None = None,
                gemm_dtype: torch.dtype | None = None) -> dict:
    """One pass over ``data`` (time, batch) as the example's train(); returns its statistics."""
    model.train()
    history = history_of(model)
    hidden = model.init_hidden(data.size(1)) if isinstance(model, RNNModel) else None
    nbatches = len(data) // bptt
    interval_loss = torch.zeros(())
    interval_tokens, start = 0, time.time()
    epoch_tokens, epoch_start = 0, time.time()
    for batch, i in enumerate(range(0, data.size(0) - 1, bptt)):
        if batch_limit is not None and batch >= batch_limit:
            break
        inputs, targets = get_batch(data, i, bptt)
        if history:
            h = min(i, history)
            inputs = data[i - h:i + len(targets)]
        optimizer.zero_grad(set_to_none=True)
        hidden = detach(hidden)
        features, hidden = model.features(inputs, hidden, last=len(targets))  # CNN: history is context only
        loss = linear_cross_entropy(features.flatten(0, 1), model.decoder, targets.flatten(), gemm_dtype=gemm_dtype)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        optimizer.step()
        interval_loss += loss.detach()
        interval_tokens += targets.numel()
        epoch_tokens += targets.numel()
        if batch % log_interval == 0 and batch > 0:
            cur_loss = interval_loss.item() / log_interval
            elapsed = time.time() - start
            lr = optimizer.param_groups[0]["lr"]
            # the example's `lr {:02.2f}`, except for the small lrs of AdamW, which it would print as 0.00
            lr_text = f"{lr:02.2f}" if lr >= 0.01 else f"{lr:.1e}"
            log("| epoch {:3d} | {:5d}/{:5d} batches | lr {} | ms/batch {:5.2f} | "
                "loss {:5.2f} | ppl {:8.2f}".format(epoch, batch, nbatches, lr_text, elapsed * 1000 / log_interval,
                                                    cur_loss, math.exp(min(cur_loss, 50))))
            if on_interval:
                on_interval(dict(loss=cur_loss, ppl=math.exp(min(cur_loss, 50)), lr=lr,
                                 tokens_per_s=interval_tokens / max(elapsed, 1e-9)))
            interval_loss.zero_()
            interval_tokens, start = 0, time.time()
    seconds = time.time() - epoch_start
    return dict(tokens=epoch_tokens, seconds=seconds, tokens_per_s=epoch_tokens / max(seconds, 1e-9))


def model_config(cfg: LMModelParams, model: nn.Module, ntokens: int, train: LMTrainParams) -> dict:
    """The checkpoint's record of the model: its entry, vocabulary size, parameters and contexts."""
    config = dict(asdict(cfg), ntokens=ntokens, parameters=count_parameters(model), bptt=train.bptt,
                  window=window_context(model, train), trained_context=trained_context(model, train))
    if isinstance(model, GCNNModel):
        config["receptive_field"] = model.receptive_field
    return config


def load_model(path: str | Path) -> tuple[nn.Module, dict, list[str]]:
    """(model in eval mode, config, vocabulary) from a train_wordlm run folder or its model.pt."""
    path = Path(path)
    if path.suffix != ".pt":  # the run folder
        path = path / CHECKPOINT
    if not path.is_file():
        raise PipelineError(f"{path}: no trained model there; run `dvc repro train_wordlm@{path.parent.name}` first")
    state = load_checkpoint(path, f"train_wordlm@{path.parent.name}", expect=("state_dict", "config", "vocab"))
    model = build_model(lm_model(state["config"]), state["config"]["ntokens"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, state["config"], state["vocab"]


def train_wordlm(shared: LMTrainParams, name: str, cfg: LMModelParams, corpus_dir: str | Path, out: str | Path,
                 summary: str | Path, log=print) -> dict:
    """Train wordlm.models.<name> (``cfg``) with wordlm.train (``shared``) and the entry's own overrides."""
    train = cfg.training(shared)
    set_threads(train.threads)
    keep_freed_memory()  # each step frees and re-asks the same activation blocks
    torch.manual_seed(train.seed)
    corpus = Corpus(corpus_dir)
    ntokens = len(corpus)
    bptt, clip = train.bptt, train.clip
    train_data = batchify(corpus.train, train.batch_size)
    val_data = batchify(corpus.valid, train.eval_batch_size)
    test_data = batchify(corpus.test, train.eval_batch_size)
    model = build_model(cfg, ntokens)
    optimizer = make_optimizer(model, cfg)
    config = model_config(cfg, model, ntokens, train)
    context, stride = train.eval_context, train.eval_stride
    epochs = train.epochs
    gemm_dtype = decoder_dtype(train.precision)
    log(f"| model {name}: {cfg.type}, {config['parameters']:,} parameters, vocabulary {ntokens:,}, "
        f"{len(corpus.train):,} training tokens"
        + (f", receptive field {config['receptive_field']} tokens" if "receptive_field" in config else "")
        + f", decoder in {precision_name(gemm_dtype)}")

    from dvclive import Live

    progress = ResumeState(out, {"config": config, "train": asdict(train), "corpus": corpus_record(corpus_dir)}, log)
    with atomic_dir(out) as tmp:
        live = Live(str(tmp / "dvclive"), dvcyaml=False, save_dvc_exp=False, report=None)
        step = {"batches": 0}
        logged: list[tuple[int, str, float]] = []  # every value given to DVCLive (as given), replayed on resuming

        def record(at: int, name: str, value: float) -> None:
            logged.append((at, name, value))
            live.step = at
            live.log_metric(name, value)

        def on_interval(row: dict) -> None:
            for key in ("loss", "ppl", "tokens_per_s"):
                record(step["batches"], f"train/{key}", row[key])
            record(step["batches"], "lr", row["lr"])

        best_val, best_state, best_epoch = None, None, 0
        tokens, seconds, elapsed = 0, 0.0, 0.0
        epoch_times = []
        done = 0  # epochs finished (a stop after an epoch's last line is in the next one)
        saved = progress.load()
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])  # (its lr, decayed or not)
            torch.set_rng_state(saved["rng"])
            best_val, best_epoch, best_state = saved["best"]
            tokens, seconds, elapsed, epoch_times, done = (saved["tokens"], saved["seconds"], saved["elapsed"],
                                                           saved["epoch_times"], saved["epoch"])
            for at, metric, value in saved["logged"]:
                record(at, metric, value)
        start = time.time() - elapsed
        nbatches = len(train_data) // bptt + (1 if (len(train_data) - 1) % bptt else 0)
        try:
            for epoch in range(done + 1, epochs + 1):
                epoch_start = time.time()
                base = (epoch - 1) * nbatches

                def interval(row, base=base):
                    step["batches"] = base + interval.count * train.log_interval
                    interval.count += 1
                    on_interval(row)
                interval.count = 1
                stats = train_epoch(model, optimizer, train_data, epoch, bptt, clip, train.log_interval,
                                    log, interval, gemm_dtype=gemm_dtype)
                tokens += stats["tokens"]
                seconds += stats["seconds"]
                val_loss = evaluate(model, val_data, bptt, context, stride)
                log("-" * 89)
                epoch_times.append(time.time() - epoch_start)
                log("| end of epoch {:3d} | time: {:5.2f}s | valid loss {:5.2f} | valid ppl {:8.2f}".format(
                    epoch, epoch_times[-1], val_loss, math.exp(val_loss)))
                log(f"| {eta_line(epoch, epochs, epoch_times)}")
                log("-" * 89)
                record(epoch, "valid/loss", val_loss)
                record(epoch, "valid/ppl", math.exp(val_loss))
                record(epoch, "epoch_lr", optimizer.param_groups[0]["lr"])
                if best_val is None or val_loss < best_val:
                    best_val, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    decay_lr(optimizer, 4.0)  # the example's lr /= 4, on the optimizer
                progress.save(dict(epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                   rng=torch.get_rng_state(), best=(best_val, best_epoch, best_state), tokens=tokens,
                                   seconds=seconds, elapsed=time.time() - start, epoch_times=epoch_times,
                                   logged=logged), name)
                done = epoch
        except (Stopped, Fault, OSError) as error:
            fault = disk_error(error, out, f"model {name}'s logs") if isinstance(error, OSError) else error
            if fault is None:
                raise
            raise fault.add(where_stopped(done + 1, done, epochs, progress.path, f"model {name}"))
        model.load_state_dict(best_state)
        test_loss = evaluate(model, test_data, bptt, context, stride)
        log("=" * 89)
        log("| End of training | test loss {:5.2f} | test ppl {:8.2f}".format(test_loss, math.exp(test_loss)))
        log("=" * 89)
        metrics = dict(model=name, type=cfg.type, parameters=config["parameters"], epochs=epochs,
                       best_epoch=best_epoch, best_valid_loss=best_val, best_valid_ppl=math.exp(best_val),
                       test_loss=test_loss, test_ppl=math.exp(test_loss),
                       seconds=round(time.time() - start, 2), train_seconds=round(seconds, 2),
                       tokens_per_s=round(tokens / max(seconds, 1e-9), 1),
                       trained_context=config["trained_context"],
                       eval_context=None if isinstance(model, RNNModel) else context,
                       eval_stride=None if isinstance(model, RNNModel) else stride,
                       receptive_field=config.get("receptive_field"),
                       # the decoder's precision; the CPU's kernels, picked by instruction set, set the last bits
                       **hardware(torch.device("cpu"), gemm_dtype))
        live.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        live.make_summary()
        live.end()
        torch.save(dict(state_dict=best_state, config=config, vocab=corpus.idx2word, metrics=metrics),
                   tmp / CHECKPOINT)
    write_json(summary, {**{key: metrics[key] for key in SUMMARY_KEYS if metrics.get(key) is not None},
                         "corpus": corpus_record(corpus_dir)})
    progress.finish()
    return metrics


class ResumeState:
    """An unfinished model's state after each epoch, in a hidden folder beside its run folder
    (``runs/wordlm/.<name>-progress``; DVC neither tracks nor clears it): an interrupted run
    resumes from its last epoch - model, optimizer and lr, RNG, the best state so far and every
    logged value - to the weights an uninterrupted run ends with. State of other params (the
    model's entry, the shared settings, the corpus) is dropped with a line saying so."""

    def __init__(self, out: str | Path, fingerprint: dict, log):
        self.path = Path(out).parent / f".{Path(out).name}-progress"
        self.fingerprint, self.log = fingerprint, log

    def load(self) -> dict | None:
        state_file = self.path / "resume.pt"
        if not state_file.exists():
            return None
        state = load_checkpoint(state_file, f"train_wordlm@{self.path.name[1:-len('-progress')]}",
                                expect=("epoch", "fingerprint", "model"))
        if state["fingerprint"] != self.fingerprint:
            self.log(f"| {self.path}: an interrupted run of other params; dropped, training from epoch 1")
            self.finish()
            return None
        self.log(f"| resuming from epoch {state['epoch']} ({state_file})")
        return state

    def save(self, state: dict, name: str) -> None:
        save_atomic({**state, "fingerprint": self.fingerprint}, self.path / "resume.pt",
                    f"model {name}'s resume state after epoch {state['epoch']}")

    def finish(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def corpus_record(corpus_dir: str | Path) -> dict:
    """What the model trained on, from prepare_corpus's corpus.json: the source as written (sample,
    data, or the folder), its md5 where it has one, and the training tokens."""
    stats = json.loads((Path(corpus_dir) / "corpus.json").read_text())
    return {"source": stats.get("source"), "md5": stats.get("md5"), "train_tokens": stats.get("train_tokens")}
