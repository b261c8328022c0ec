"""Stage generate_text: sample words from a trained language model (the example's generate.py).

Fixed against the example: the Transformer runs with the causal mask and sees at most the
window it was evaluated with (``config['window']``: ``wordlm.train.eval_context`` tokens), the
CNN its receptive field; RNNs carry their state. Same params, same text (a seeded generator).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from dlreport.errors import PipelineError
from dlreport.fileio import atomic_file
from dlreport.params import GenerateParams
from dlreport.progress import progress
from dlreport.wordlm.corpus import UNK
from dlreport.wordlm.models import is_windowed
from dlreport.wordlm.train import load_model

WORDS_PER_LINE = 20


def generate_words(model, config: dict, vocab: list[str], words: int, temperature: float, seed: int,
                   prompt: str | None = None, warn=lambda msg: print(msg, file=sys.stderr)) -> list[str]:
    # (temperature >= 1e-3 and words >= 1: checked with params.yaml, dlreport/params.py)
    word2idx = {w: i for i, w in enumerate(vocab)}
    generator = torch.Generator().manual_seed(seed)
    if prompt and prompt.split():
        tokens = prompt.split()
        unknown = sorted({w for w in tokens if w not in word2idx})
        if unknown:
            if UNK not in word2idx:
                raise PipelineError(f"generate.prompt has words outside the vocabulary ({', '.join(unknown)}) "
                                    f"and the vocabulary has no {UNK}")
            warn(f"warning: prompt words not in the vocabulary become {UNK}: {', '.join(unknown)}")
        history = [word2idx.get(w, word2idx.get(UNK)) for w in tokens]
    else:  # the example starts from one random word
        history = [int(torch.randint(len(vocab), (1,), generator=generator))]
    windowed = is_windowed(model)
    window = config["window"]
    out: list[str] = []
    model.eval()
    with torch.no_grad():
        hidden = None
        pending = history  # tokens not yet fed to the model
        for _ in progress(range(words), "generating text", "words"):
            if windowed:
                inputs = torch.tensor(history[-window:]).view(-1, 1)
                logits, _ = model(inputs, last=1)
            else:
                logits, hidden = model(torch.tensor(pending).view(-1, 1), hidden)
            probs = torch.softmax(logits[-1, 0].double() / temperature, dim=-1)
            idx = int(torch.multinomial(probs, 1, generator=generator))
            history.append(idx)
            pending = [idx]
            out.append(vocab[idx])
    return out


def generate_text(gen: GenerateParams, runs: str | Path, out: str | Path) -> list[str]:
    torch.set_num_threads(1)  # one token a step: threads only add synchronisation
    model, config, vocab = load_model(Path(runs) / gen.model)
    words = generate_words(model, config, vocab, gen.words, gen.temperature, gen.seed, gen.prompt)
    with atomic_file(out) as handle:
        for i, word in enumerate(words):
            handle.write(word + ("\n" if i % WORDS_PER_LINE == WORDS_PER_LINE - 1 else " "))
        if len(words) % WORDS_PER_LINE:
            handle.write("\n")
    return words
