"""The language-model corpus: the WikiText-2 archive or a folder of text files, read as the
PyTorch word_language_model example reads it, so perplexities stay comparable with its runs.

* one vocabulary over the three splits (words numbered in order of first appearance in
  train, then valid, then test), ``<eos>`` appended to every line;
* ``batchify``: the token stream cut into ``batch_size`` columns (the tail that does not fill
  a row is dropped); ``get_batch``: ``bptt`` rows of inputs and the next tokens as targets.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import torch

from dlreport.errors import PipelineError
from dlreport.fileio import atomic_dir

SPLITS = ("train", "valid", "test")
ARCHIVE_MEMBERS = {split: f"wikitext-2/wiki.{split}.tokens" for split in SPLITS}
OFFICIAL_URL = "https://wikitext.smerity.com/wikitext-2-v1.zip"
OFFICIAL_MD5 = "542ccefacc6c27f945fb54453812b3cd"
EOS, UNK = "<eos>", "<unk>"


def md5_of(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_archive(path: str | Path, md5: str | None = None) -> dict[str, str]:
    """{split: text} from a WikiText-2 zip (``wikitext-2/wiki.<split>.tokens``), md5-checked."""
    path = Path(path)
    if md5:
        actual = md5_of(path)
        if actual != md5:
            raise PipelineError(f"{path}: md5 {actual} does not match the expected {md5} "
                                f"(param wordlm.data_md5); the archive is not the one pinned: "
                                f"re-fetch it with `dvc update data.dvc`, or set wordlm.data_md5 to "
                                f"the archive you mean to use")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [m for m in ARCHIVE_MEMBERS.values() if m not in names]
            if missing:
                raise PipelineError(f"{path}: not the WikiText-2 layout, missing {', '.join(missing)} "
                                    f"(expected {', '.join(ARCHIVE_MEMBERS.values())})")
            return {split: archive.read(member).decode("utf-8") for split, member in ARCHIVE_MEMBERS.items()}
    except zipfile.BadZipFile as error:
        raise PipelineError(f"{path}: not a readable zip archive ({error}); re-fetch it with "
                            f"`dvc update data.dvc`") from None


def read_source(path: str | Path, md5: str | None = None) -> dict[str, str]:
    """{split: text} from a zip archive, a folder holding one, or a folder of split files.

    A folder may hold ``train.txt``/``valid.txt``/``test.txt`` (the example's layout),
    ``wiki.<split>.tokens`` or ``wikitext-2/wiki.<split>.tokens`` (an unpacked archive), or a
    single ``*.zip`` (the ``data.dvc`` import).
    """
    path = Path(path)
    if path.is_file():
        return read_archive(path, md5)
    if not path.is_dir():
        raise PipelineError(f"{path}: the corpus is absent; with wordlm.corpus=data fetch the "
                            f"WikiText-2 archive first with `dvc update data.dvc`, or use "
                            f"wordlm.corpus=sample")
    for layout in ("{split}.txt", "wiki.{split}.tokens", "wikitext-2/wiki.{split}.tokens"):
        files = {split: path / layout.format(split=split) for split in SPLITS}
        if all(f.is_file() for f in files.values()):
            return {split: f.read_text(encoding="utf-8") for split, f in files.items()}
    archives = sorted(path.glob("*.zip"))
    if len(archives) == 1:
        return read_archive(archives[0], md5)
    found = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
    raise PipelineError(f"{path}: no corpus found (it holds {found}); expected train.txt, valid.txt "
                        f"and test.txt, or one WikiText-2 zip archive (fetch it with `dvc update data.dvc`)")


FOLDER_FILES = tuple(f"{split}.txt" for split in SPLITS)
HOW_TO_SET = "dvc exp run -S wordlm.corpus=folder -S wordlm.folder=PATH"


def folder_md5(folder: str | Path) -> str:
    """The fingerprint of a corpus folder: the md5 of the listing ``md5sum train.txt valid.txt
    test.txt`` prints there, so ``md5sum train.txt valid.txt test.txt | md5sum`` in the folder gives
    it too. A change to any byte of the three files, or moving text between them, changes it."""
    listing = "".join(f"{md5_of(Path(folder) / name)}  {name}\n" for name in FOLDER_FILES)
    return hashlib.md5(listing.encode()).hexdigest()


def read_folder(folder: str | Path) -> tuple[dict[str, str], str]:
    """``({split: text}, fingerprint)`` of a folder of train.txt, valid.txt and test.txt (the
    layout of the PyTorch example's data/wikitext-2): ``wordlm.corpus: folder``. ``folder`` is the
    param as written (relative to the project root, or absolute) and every error names it so."""
    path = Path(folder)
    if not path.exists():
        raise PipelineError(f"{folder}: no such folder (param wordlm.folder; a relative path is read from the "
                            f"project root); set it to the folder of {', '.join(FOLDER_FILES)}: {HOW_TO_SET}")
    if not path.is_dir():
        raise PipelineError(f"{folder} is not a folder (param wordlm.folder); with wordlm.corpus=folder set it to "
                            f"the folder of {', '.join(FOLDER_FILES)}: {HOW_TO_SET}")
    missing = [name for name in FOLDER_FILES if not (path / name).is_file()]
    if missing:
        found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
        raise PipelineError(f"{folder}: missing {', '.join(missing)} (it holds {found}); a corpus folder (param "
                            f"wordlm.folder) holds {', '.join(FOLDER_FILES)}: add them, or point wordlm.folder at "
                            f"the folder that does")
    texts = {}
    for split, name in zip(SPLITS, FOLDER_FILES):
        file = path / name
        try:
            texts[split] = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise PipelineError(f"{file}: not UTF-8 text ({error.reason} at byte {error.start}); the files of "
                                f"wordlm.folder must be UTF-8") from None
        if not texts[split].split():
            raise PipelineError(f"{file} is empty (no words); every file of wordlm.folder ({', '.join(FOLDER_FILES)}) "
                                f"needs text: the {split} split")
    return texts, folder_md5(path)


def tokenize(text: str) -> list[str]:
    """The example's tokenisation: split each line on whitespace, ``<eos>`` after every line."""
    words: list[str] = []
    for line in io.StringIO(text):
        words += line.split() + [EOS]
    return words


def write_corpus(texts: dict[str, str], out: str | Path, info: dict) -> dict:
    """Write ``out/{train,valid,test}.txt`` and ``out/corpus.json`` (counts) atomically."""
    stats = dict(info)
    vocab: dict[str, int] = {}
    for split in SPLITS:
        words = tokenize(texts[split])
        for w in words:
            vocab.setdefault(w, len(vocab))
        stats[f"{split}_tokens"] = len(words)
        stats[f"{split}_lines"] = texts[split].count("\n") + (0 if texts[split].endswith("\n") or not texts[split] else 1)
    stats["vocab_size"] = len(vocab)
    if stats["train_tokens"] < 2 or stats["valid_tokens"] < 2 or stats["test_tokens"] < 2:
        raise PipelineError(f"the corpus has an empty split ({stats}); check wordlm.sample or the data")
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            (tmp / f"{split}.txt").write_text(texts[split], encoding="utf-8")
        (tmp / "corpus.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


class Corpus:
    """The three splits as LongTensors over one vocabulary (the example's ``data.Corpus``)."""

    def __init__(self, folder: str | Path, vocab: list[str] | None = None):
        texts = read_source(folder)
        self.idx2word: list[str] = list(vocab) if vocab else []
        self.word2idx = {w: i for i, w in enumerate(self.idx2word)}
        grow = vocab is None
        for split in SPLITS:
            ids = []
            for w in tokenize(texts[split]):
                if grow and w not in self.word2idx:  # (the corpus a model trained on holds only its words)
                    self.word2idx[w] = len(self.idx2word)
                    self.idx2word.append(w)
                ids.append(self.word2idx[w])
            setattr(self, split, torch.tensor(ids, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.idx2word)


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(tokens,) -> (tokens // batch_size, batch_size): columns of the token stream."""
    nbatch = data.size(0) // batch_size
    if nbatch < 2:
        raise PipelineError(f"a split of {data.size(0)} tokens is too short for batch size {batch_size}")
    return data.narrow(0, 0, nbatch * batch_size).view(batch_size, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len]
