"""Stage prepare_corpus: the corpus choice as a pipeline step.

``wordlm.corpus: sample`` generates the offline sample corpus from ``wordlm.sample``;
``wordlm.corpus: data`` reads ``data/`` (the WikiText-2 archive imported by ``data.dvc``,
md5-checked against ``wordlm.data_md5``, or a folder of train/valid/test.txt);
``wordlm.corpus: folder`` reads the folder ``wordlm.folder`` names (train.txt, valid.txt,
test.txt), which dvc.yaml lists as a dep of the stage, so DVC re-runs it when a file changes.
Either way the stage writes ``datasets/corpus/{train,valid,test}.txt`` and ``corpus.json``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path, PurePath

from dlreport.errors import PipelineError
from dlreport.fileio import write_json
from dlreport.params import SampleCorpusParams
from dlreport.wordlm.corpus import HOW_TO_SET, read_folder, read_source, write_corpus
from dlreport.wordlm.sample import generate_sample

# What `dvc metrics show` lists of the corpus (md5: the real archive's, or a folder's fingerprint).
CORPUS_METRICS = ("source", "md5", "vocab_size", "train_tokens", "valid_tokens", "test_tokens")
# wordlm.folder while wordlm.corpus is not folder: a file of the project, because a DVC dep (dvc.yaml
# lists ${wordlm.folder}) must exist - the sample generator, which the stage depends on anyway.
UNUSED_FOLDER = "dlreport/wordlm/sample.py"


def check_folder_param(corpus: str, folder: str) -> None:
    """wordlm.folder is a dep of prepare_corpus whatever the corpus: another value than the
    placeholder is meant for wordlm.corpus=folder (else DVC would track a folder the stage ignores)."""
    if corpus != "folder" and PurePath(folder) != PurePath(UNUSED_FOLDER):
        raise PipelineError(f"params.yaml: wordlm.folder = {folder} is read only with wordlm.corpus=folder "
                            f"(it is {corpus}); train on that folder with wordlm.corpus=folder ({HOW_TO_SET}), "
                            f"or set wordlm.folder back to {UNUSED_FOLDER}")


def prepare_corpus(corpus: str, md5: str, sample: SampleCorpusParams, data_dir: str | Path, out: str | Path,
                   metrics: str | Path | None = None, folder: str = UNUSED_FOLDER) -> dict:
    """``corpus``: wordlm.corpus (sample, data or folder), ``md5``: wordlm.data_md5, ``sample``:
    wordlm.sample, ``folder``: wordlm.folder (as written: it is recorded as the source)."""
    check_folder_param(corpus, str(folder))
    if corpus == "sample":
        texts = generate_sample(**asdict(sample))
        info = dict(source="sample", **asdict(sample))
    elif corpus == "folder":
        texts, fingerprint = read_folder(folder)
        info = dict(source=str(folder), md5=fingerprint)
    else:
        texts = read_source(data_dir, md5)
        info = dict(source=str(data_dir), md5=md5)
    stats = write_corpus(texts, out, info)  # every count, in out/corpus.json
    if metrics:
        write_json(metrics, {k: stats[k] for k in CORPUS_METRICS if k in stats})
    return stats
