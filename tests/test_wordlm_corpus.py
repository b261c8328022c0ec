"""The LM corpus: the generated sample, the WikiText-2 reader (folder and zip), vocabulary, batchify."""
from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import REPO, WIKITEXT_SAMPLE, needs_shared
from dlreport.errors import PipelineError
from dlreport.params import parse, read_params
from dlreport.wordlm import corpus as C
from dlreport.wordlm.prepare import prepare_corpus
from dlreport.wordlm.sample import generate_sample

SMALL = dict(seed=5, train_words=4000, valid_words=1000, test_words=1000, topics=6)
# ../shared/data/README.md: words and lines of each split (the example adds <eos> per line)
REAL_COUNTS = {"train": (213886, 3760), "valid": (116727, 2158), "test": (124484, 2200)}


def wikitext_zip(dest: Path, source: Path = WIKITEXT_SAMPLE) -> Path:
    """A zip in the official archive's layout built from a folder of train/valid/test.txt."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in C.SPLITS:
            archive.write(source / f"{split}.txt", f"wikitext-2/wiki.{split}.tokens")
    return dest


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- the sample
def test_sample_is_deterministic_and_seeded():
    a, b = generate_sample(**SMALL), generate_sample(**SMALL)
    assert a == b
    assert generate_sample(**{**SMALL, "seed": 6}) != a
    assert generate_sample(**{**SMALL, "long_range": False}) != a


def test_sample_has_wikitext_format():
    texts = generate_sample(**SMALL)
    for split, words in (("train", 4000), ("valid", 1000), ("test", 1000)):
        lines = texts[split].splitlines()
        assert words <= sum(len(line.split()) for line in lines) < words * 2
        assert all(line.startswith(" ") and line.endswith(" ") for line in lines)
        headings = [line for line in lines if line.startswith(" = ") and not line.startswith(" = = ")]
        assert headings and all(line.endswith(" = ") for line in headings)
        assert " " in lines  # blank lines between paragraphs
        assert all("  " not in line.strip() for line in lines)  # single spaces between tokens
    counts = Counter(w for t in texts.values() for w in t.split())
    assert counts["<unk>"] > 0
    rare = [w for w, n in counts.items() if n < 3 and w != "="]
    assert rare == []  # everything rarer than unk_min_count became <unk>


def test_sample_topic_words_recur_within_articles_only_with_long_range():
    """With long_range the heading's topic name recurs in its article; without, it does not."""
    def recurrence(texts: dict) -> float:
        articles: list[tuple[str, list[str]]] = []
        for line in texts["train"].splitlines():
            if line.startswith(" = ") and not line.startswith(" = = "):
                articles.append((line.strip(" =").strip(), []))
            elif articles:
                articles[-1][1].append(line)
        return sum(" ".join(body).count(title) >= 1 for title, body in articles) / len(articles)

    def one_register(texts: dict) -> float:  # articles whose sentences all end with the same mark
        articles = [a for a in texts["train"].split("\n \n = ")[1:] if not a.startswith("= ")]
        marks = [{w for w in a.split() if w in (".", ";")} for a in articles]
        return sum(len(m) == 1 for m in marks if m) / len([m for m in marks if m])
    on, off = generate_sample(**SMALL), generate_sample(**{**SMALL, "long_range": False})
    assert recurrence(on) > 0.6 and one_register(on) == 1.0
    assert recurrence(off) < 0.3 and one_register(off) < 0.5


def test_prepare_corpus_sample_and_errors(tmp_path: Path):
    sample = parse("wordlm.sample", {**read_params(REPO / "params.yaml")["wordlm"]["sample"], **SMALL})
    stats = prepare_corpus("sample", C.OFFICIAL_MD5, sample, tmp_path / "absent", tmp_path / "corpus", tmp_path / "corpus.json")
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["corpus.json", "test.txt", "train.txt", "valid.txt"]
    corpus = C.Corpus(tmp_path / "corpus")
    assert stats["train_tokens"] == len(corpus.train) and stats["vocab_size"] == len(corpus)
    # (a wrong corpus choice or sample key is a params error: tests/test_params.py)
    with pytest.raises(PipelineError, match="dvc update data.dvc"):
        prepare_corpus("data", C.OFFICIAL_MD5, sample, tmp_path / "absent", tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- real text
@needs_shared(WIKITEXT_SAMPLE)
def test_real_text_token_counts_and_vocabulary():
    corpus = C.Corpus(WIKITEXT_SAMPLE)
    for split, (words, lines) in REAL_COUNTS.items():
        assert len(getattr(corpus, split)) == words + lines  # <eos> after every line
    all_words = [w for s in C.SPLITS for w in C.tokenize((WIKITEXT_SAMPLE / f"{s}.txt").read_text())]
    assert len(corpus) == len(set(all_words))  # one vocabulary over the three splits
    assert corpus.idx2word[:3] == all_words[0:1] + [w for w in dict.fromkeys(all_words)][1:3]
    assert {"<eos>", "<unk>", "=", "Homarus"} <= set(corpus.word2idx)
    assert corpus.idx2word[corpus.train[0]] == "<eos>"  # the file starts with a blank line
    decoded = [corpus.idx2word[i] for i in corpus.valid[:50].tolist()]
    assert decoded == C.tokenize((WIKITEXT_SAMPLE / "valid.txt").read_text())[:50]
    train_vocab = set(C.tokenize((WIKITEXT_SAMPLE / "train.txt").read_text()))
    assert max(corpus.word2idx[w] for w in train_vocab) == len(train_vocab) - 1  # train words first


@needs_shared(WIKITEXT_SAMPLE)
def test_archive_reads_like_the_folder_and_checks_md5(tmp_path: Path):
    archive = wikitext_zip(tmp_path / "data" / "wikitext-2-v1.zip")
    folder = C.read_source(WIKITEXT_SAMPLE)
    assert C.read_source(archive, md5(archive)) == folder
    assert C.read_source(tmp_path / "data", md5(archive)) == folder  # a folder holding the import
    with pytest.raises(PipelineError, match="wordlm.data_md5"):
        C.read_source(tmp_path / "data", C.OFFICIAL_MD5)
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("wikitext-2/wiki.train.tokens", "a b\n")
    with pytest.raises(PipelineError, match="wiki.valid.tokens"):
        C.read_source(broken)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="not a readable zip"):
        C.read_source(tmp_path / "junk.zip")


def test_batchify_and_get_batch():
    data = torch.arange(103)
    batched = C.batchify(data, 4)
    assert batched.shape == (25, 4)
    assert torch.equal(batched[:, 1], torch.arange(25, 50))  # columns of the token stream
    inputs, targets = C.get_batch(batched, 20, 10)
    assert inputs.shape == (4, 4) and torch.equal(targets, inputs + 1)  # the tail is shorter
    with pytest.raises(PipelineError):
        C.batchify(torch.arange(5), 4)
