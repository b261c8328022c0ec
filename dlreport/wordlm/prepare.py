"""Stage prepare_corpus: the corpus choice as a pipeline step.

``wordlm.corpus: sample`` generates the offline sample corpus from ``wordlm.sample``;
``wordlm.corpus: data`` reads ``data/`` (the WikiText-2 archive imported by ``data.dvc``,
md5-checked against ``wordlm.data_md5``, or a folder of train/valid/test.txt). Either way the
stage writes ``datasets/corpus/{train,valid,test}.txt`` and ``corpus.json``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from dlreport.fileio import write_json
from dlreport.params import SampleCorpusParams
from dlreport.wordlm.corpus import read_source, write_corpus
from dlreport.wordlm.sample import generate_sample

# What `dvc metrics show` lists of the corpus (md5 only for the real archive).
CORPUS_METRICS = ("source", "md5", "vocab_size", "train_tokens", "valid_tokens", "test_tokens")


def prepare_corpus(corpus: str, md5: str, sample: SampleCorpusParams, data_dir: str | Path, out: str | Path,
                   metrics: str | Path | None = None) -> dict:
    """``corpus``: wordlm.corpus (sample or data), ``md5``: wordlm.data_md5, ``sample``: wordlm.sample."""
    if corpus == "sample":
        texts = generate_sample(**asdict(sample))
        info = dict(source="sample", **asdict(sample))
    else:
        texts = read_source(data_dir, md5)
        info = dict(source=str(data_dir), md5=md5)
    stats = write_corpus(texts, out, info)  # every count, in out/corpus.json
    if metrics:
        write_json(metrics, {k: stats[k] for k in CORPUS_METRICS if k in stats})
    return stats
