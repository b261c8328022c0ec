"""wordlm.corpus=folder: the language models trained on a local folder of train.txt, valid.txt and
test.txt (WikiText-2, or any text in its layout), named by wordlm.folder as the user wrote it and
tracked by DVC as a dep of prepare_corpus, so that a changed file re-runs the LMs."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import REPO, STAGES, TINY_PARAMS, WIKITEXT_SAMPLE, deep_update, make_project, needs_shared, ran, \
    run, run_stage_in_process
from dlreport.params import parse, read_params
from dlreport.wordlm.corpus import SPLITS, folder_md5, tokenize
from dlreport.wordlm.prepare import UNUSED_FOLDER, prepare_corpus

WORDS = "the a cat dog sat ran on under mat log river town = history of <unk> , .".split()
LM_STAGES = ("train_wordlm@lstm", "train_wordlm@gcnn")  # two of the LM stages after prepare_corpus


def tiny_corpus(folder: Path) -> Path:
    """A few hundred words in each of train/valid/test.txt: enough for TINY_PARAMS' models."""
    folder.mkdir(parents=True)
    for n, (split, count) in enumerate(zip(SPLITS, (40, 12, 12))):
        lines = [" ".join(WORDS[(i * 7 + j * 3 + n) % len(WORDS)] for j in range(12)) for i in range(count)]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def stage_error(tmp_path: Path, folder: str, corpus: str = "folder") -> tuple[int, str]:
    """Run prepare_corpus in this process on params with wordlm.corpus/folder set; (status, stderr)."""
    params = deep_update(read_params(REPO / "params.yaml"), {"wordlm": {"corpus": corpus, "folder": folder}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return run_stage_in_process(["prepare_corpus.py", "--params", str(tmp_path / "params.yaml"),
                                 "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "corpus.json")])


def test_bad_folders_are_one_error_line_naming_the_path_and_the_fix(tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(STAGES))
    monkeypatch.chdir(REPO)  # relative paths are read from the project root, as in a stage DVC runs
    good = tiny_corpus(tmp_path / "good")
    no_test = tmp_path / "no_test"
    shutil.copytree(good, no_test)
    (no_test / "test.txt").unlink()
    empty = tmp_path / "empty"
    shutil.copytree(good, empty)
    (empty / "valid.txt").write_text("\n \n")  # lines, but no words
    latin1 = tmp_path / "latin1"
    shutil.copytree(good, latin1)
    (latin1 / "train.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    cases = [
        (str(tmp_path / "absent"), "folder", f"{tmp_path / 'absent'}: no such folder (param wordlm.folder"),
        (str(good / "train.txt"), "folder", "is not a folder (param wordlm.folder)"),
        (UNUSED_FOLDER, "folder", f"{UNUSED_FOLDER} is not a folder (param wordlm.folder)"),
        (str(no_test), "folder", f"{no_test}: missing test.txt (it holds train.txt, valid.txt)"),
        (str(empty), "folder", f"{empty / 'valid.txt'} is empty (no words)"),
        (str(latin1), "folder", f"{latin1 / 'train.txt'}: not UTF-8 text"),
        (str(good), "sample", f"wordlm.folder = {good} is read only with wordlm.corpus=folder (it is sample)"),
        ("s3://bucket/corpus", "folder", "wordlm.folder = s3://bucket/corpus; allowed: a local folder path"),
    ]
    for folder, corpus, expected in cases:
        status, stderr = stage_error(tmp_path, folder, corpus)
        assert status == 1 and "Traceback" not in stderr, (folder, stderr)
        assert stderr.strip().splitlines() == [stderr.strip()] and stderr.startswith("error: "), stderr
        assert expected in stderr, (expected, stderr)
        assert "wordlm.folder" in stderr, stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "corpus.json").exists()
    status, stderr = stage_error(tmp_path, str(good))
    assert status == 0, stderr


def test_fingerprint_is_md5sum_of_the_three_files(tmp_path: Path):
    folder = tiny_corpus(tmp_path / "corpus")
    listing = "".join(f"{hashlib.md5((folder / f'{s}.txt').read_bytes()).hexdigest()}  {s}.txt\n" for s in SPLITS)
    assert folder_md5(folder) == hashlib.md5(listing.encode()).hexdigest()
    if shutil.which("md5sum"):  # the check docs/real-data.md gives
        shown = subprocess.run("md5sum train.txt valid.txt test.txt | md5sum", shell=True, cwd=folder,
                               capture_output=True, text=True, check=True).stdout.split()[0]
        assert shown == folder_md5(folder)
    before = folder_md5(folder)
    with open(folder / "test.txt", "a") as handle:
        handle.write("one more line\n")
    assert folder_md5(folder) != before


@needs_shared(WIKITEXT_SAMPLE)
def test_the_shared_wikitext_sample_by_a_relative_path(tmp_path: Path, monkeypatch):
    """The documented value, ../shared/data/wikitext-2-sample, read from the project root: recorded as
    written, counted as the example counts, fingerprinted."""
    monkeypatch.chdir(REPO)
    written = os.path.relpath(WIKITEXT_SAMPLE, REPO)  # ../shared/data/wikitext-2-sample beside the checkout
    assert not Path(written).is_absolute()
    params = read_params(REPO / "params.yaml")
    sample = parse("wordlm.sample", params["wordlm"]["sample"])
    stats = prepare_corpus("folder", params["wordlm"]["data_md5"], sample, "data", tmp_path / "corpus",
                           tmp_path / "corpus.json", folder=written)
    recorded = json.loads((tmp_path / "corpus.json").read_text())
    assert recorded["source"] == written and recorded["md5"] == folder_md5(WIKITEXT_SAMPLE)
    for split in SPLITS:
        text = (WIKITEXT_SAMPLE / f"{split}.txt").read_text(encoding="utf-8")
        assert recorded[f"{split}_tokens"] == stats[f"{split}_tokens"] == len(tokenize(text))
        assert (tmp_path / "corpus" / f"{split}.txt").read_text(encoding="utf-8") == text
    assert recorded["train_tokens"] == 217_646  # docs/context-probe.md's count of this text
    assert str(REPO.parent) not in (tmp_path / "corpus" / "corpus.json").read_text()


def test_dvc_tracks_the_folder_and_a_changed_file_reruns_the_language_models(tmp_path: Path):
    """The documented command in a fresh git+DVC project, on a tiny corpus beside it (../corpus): the
    LMs train on it; an edit to one file shows in `dvc status` and `dvc repro` re-runs prepare_corpus
    and the LM stages; dvc.lock and the metrics name the folder as written."""
    corpus = tiny_corpus(tmp_path / "corpus")
    project = make_project(tmp_path / "project", TINY_PARAMS)

    # the documented command, aimed at two of the LM stages (and so prepare_corpus before them)
    out = run(["dvc", "exp", "run", "-S", "wordlm.corpus=folder", "-S", "wordlm.folder=../corpus", *LM_STAGES],
              cwd=project).stdout
    assert ran(out, "prepare_corpus") and all(ran(out, stage) for stage in LM_STAGES), out
    stats = json.loads((project / "metrics" / "corpus.json").read_text())
    assert stats["source"] == "../corpus" and stats["md5"] == folder_md5(corpus)
    for split in SPLITS:
        assert stats[f"{split}_tokens"] == len(tokenize((corpus / f"{split}.txt").read_text()))
    assert stats["vocab_size"] == len({w for s in SPLITS for w in tokenize((corpus / f"{s}.txt").read_text())})
    for stage in LM_STAGES:  # each model's summary names the text it trained on
        model = stage.split("@")[1]
        trained_on = json.loads((project / "metrics" / f"train_wordlm_{model}.json").read_text())["corpus"]
        assert trained_on == {"source": "../corpus", "md5": stats["md5"], "train_tokens": stats["train_tokens"]}
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    dep = [d for d in lock["prepare_corpus"]["deps"] if d["path"] == "../corpus"]
    assert dep and dep[0]["md5"].endswith(".dir") and dep[0]["nfiles"] == 3, lock["prepare_corpus"]["deps"]
    assert lock["prepare_corpus"]["params"]["params.yaml"]["wordlm.folder"] == "../corpus"
    for recorded in ("dvc.lock", "metrics/corpus.json", "datasets/corpus/corpus.json", "params.yaml"):
        assert str(tmp_path) not in (project / recorded).read_text(), f"{recorded} names an absolute path"
    assert "Data and pipelines are up to date" in run(["dvc", "status", "prepare_corpus"], cwd=project).stdout

    # one file of the folder changes: DVC sees it, and re-runs prepare_corpus and the LMs
    with open(corpus / "train.txt", "a") as handle:
        handle.write("the river ran under the town\n")
    status = run(["dvc", "status", "prepare_corpus"], cwd=project).stdout
    assert "prepare_corpus:" in status and "changed deps" in status and "modified:" in status, status
    assert "corpus" in status.split("modified:")[1], status
    out = run(["dvc", "repro", *LM_STAGES], cwd=project).stdout
    assert ran(out, "prepare_corpus") and all(ran(out, stage) for stage in LM_STAGES), out
    after = json.loads((project / "metrics" / "corpus.json").read_text())
    assert after["train_tokens"] == stats["train_tokens"] + 7 and after["md5"] == folder_md5(corpus) != stats["md5"]
    assert "Running stage" not in run(["dvc", "repro", *LM_STAGES], cwd=project).stdout

    # a file gone from the folder: the stage's one error line, through DVC
    (corpus / "test.txt").rename(corpus / "test.bak")
    failed = run(["dvc", "repro", "prepare_corpus"], cwd=project, check=False)
    assert failed.returncode != 0
    assert "error: ../corpus: missing test.txt" in failed.stderr, failed.stderr
    # the folder gone: DVC stops before the stage runs, naming it (docs/real-data.md)
    corpus.rename(tmp_path / "moved")
    failed = run(["dvc", "repro", "prepare_corpus"], cwd=project, check=False)
    assert failed.returncode != 0 and "Running stage" not in failed.stdout
    assert "failed to reproduce 'prepare_corpus': [Errno 2] No such file or directory" in failed.stderr, failed.stderr
    assert str(corpus) in failed.stderr, failed.stderr
