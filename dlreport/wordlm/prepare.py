"""Stage prepare_corpus: the corpus choice as a pipeline step.

``wordlm.corpus: sample`` generates the offline sample corpus from ``wordlm.sample``;
``wordlm.corpus: data`` reads ``data/`` (the WikiText-2 archive imported by ``data.dvc``,
md5-checked against ``wordlm.data_md5``, or a folder of train/valid/test.txt). Either way the
stage writes ``datasets/corpus/{train,valid,test}.txt`` and ``corpus.json``.
"""
from __future__ import annotations

from pathlib import Path

from dlreport.errors import PipelineError
from dlreport.fileio import write_json
from dlreport.wordlm.corpus import read_source, write_corpus
from dlreport.wordlm.sample import generate_sample

SAMPLE_KEYS = ("seed", "train_words", "valid_words", "test_words", "topics", "topic_words", "long_range", "unk_min_count")


def prepare_corpus(wordlm: dict, data_dir: str | Path, out: str | Path, metrics: str | Path | None = None) -> dict:
    choice = wordlm.get("corpus")
    if choice == "sample":
        sample = wordlm.get("sample") or {}
        unknown = set(sample) - set(SAMPLE_KEYS)
        if unknown:
            raise PipelineError(f"unknown keys {sorted(unknown)} in params wordlm.sample (known: {', '.join(SAMPLE_KEYS)})")
        texts = generate_sample(**sample)
        info = dict(source="sample", **sample)
    elif choice == "data":
        md5 = wordlm.get("data_md5")
        texts = read_source(data_dir, md5)
        info = dict(source=str(data_dir), md5=md5)
    else:
        raise PipelineError(f"wordlm.corpus is {choice!r}; use sample (generated offline) or data "
                            f"(the WikiText-2 import: `dvc update data.dvc` fetches it)")
    stats = write_corpus(texts, out, info)
    if metrics:
        write_json(metrics, stats)
    return stats
