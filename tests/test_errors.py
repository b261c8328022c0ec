"""Every pipeline error a user can reach, reached as a user would: a stage script run in a project
folder whose files or params are wrong, ending with exit status 1 and one `error:` line that names
the file or param and the fix - no traceback. (Bad param values: tests/test_params.py.)

Each case sets up a small project folder (params.yaml overridden, data made wrong on purpose) and
runs the stage in this process, as `python stages/<script> ...` would run it."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, STAGES, TINY_PARAMS, deep_update, env, read_params, run_stage_in_process, update_params
from dlreport import tinyimagenet

BASE = read_params(REPO / "params.yaml")


def project(tmp_path: Path, overrides: dict | None = None) -> Path:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(deep_update(BASE, overrides or {}), sort_keys=False))
    return root


def fails_with(root: Path, monkeypatch, stage: list[str], expected: str) -> str:
    """Run ``stage`` in ``root``; it must fail with exactly one error line containing ``expected``."""
    monkeypatch.syspath_prepend(str(STAGES))
    monkeypatch.chdir(root)
    status, stderr = run_stage_in_process(stage)
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert status == 1 and len(errors) == 1 and "Traceback" not in stderr, f"exit {status}:\n{stderr}"
    assert expected in errors[0], errors[0]
    return errors[0]


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------
# train_resnet

TRAIN_CPU = ["train_resnet.py", "--variant", "cpu"]


def test_an_unknown_variant(tmp_path, monkeypatch):
    fails_with(project(tmp_path), monkeypatch, ["train_resnet.py", "--variant", "cpu1"],
               "--variant 'cpu1' is not a key of resnet_runs in params.yaml (known: cpu, gpu1, gpu8; did you mean cpu?)")


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="needs a host without GPUs")
def test_more_devices_than_the_host_has(tmp_path, monkeypatch):
    fails_with(project(tmp_path, {"devices": 1}), monkeypatch, ["train_resnet.py", "--variant", "gpu1"],
               "devices=1 in params.yaml, but this host has 0 CUDA GPU(s). Set devices to at most 0")


def test_a_variant_needing_more_gpus_than_the_host_has(tmp_path, monkeypatch):
    monkeypatch.setenv("DLREPORT_GPU_COUNT", "2")  # a simulated 2-GPU host (dlreport/gpulease.py)
    fails_with(project(tmp_path, {"devices": 8}), monkeypatch, ["train_resnet.py", "--variant", "gpu8"],
               "devices=8 in params.yaml, but this host has 2 CUDA GPU(s). Set devices to at most 2")


def test_several_nodes_without_a_rendezvous_endpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("RDZV_ENDPOINT", raising=False)
    monkeypatch.delenv("NNODES", raising=False)
    fails_with(project(tmp_path, {"resnet": {"launch": {"nnodes": 2}}}), monkeypatch, TRAIN_CPU,
               "resnet.launch.nnodes > 1 needs resnet.launch.rdzv_endpoint")


def test_nccl_for_cpu_processes_is_refused_before_torchrun(tmp_path, monkeypatch):
    fails_with(project(tmp_path, {"resnet": {"launch": {"backend": "nccl"}}, "resnet_runs": {"cpu": {"procs": 2}}}),
               monkeypatch, TRAIN_CPU, "resnet.launch.backend=nccl needs GPUs; CPU processes use gloo (or auto)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_a_gpu_variant_started_by_torchrun_on_a_host_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")  # as `torchrun stages/train_resnet.py --variant gpu1` sets it
    fails_with(project(tmp_path, {"devices": 1}), monkeypatch, ["train_resnet.py", "--variant", "gpu1"],
               "train_resnet@gpu1 needs CUDA, but torch sees no GPU on this host")


def test_an_unreadable_resume_checkpoint(tmp_path, monkeypatch, tiny_prepared):
    root = project(tmp_path)
    (root / "runs/resnet/cpu/checkpoints").mkdir(parents=True)
    (root / "runs/resnet/cpu/checkpoints/resume.pt").write_bytes(b"half a file")
    fails_with(root, monkeypatch, TRAIN_CPU + ["--prepared", str(tiny_prepared)],
               "runs/resnet/cpu/checkpoints/resume.pt: not a readable checkpoint (")


def test_torchrun_failing_is_one_error_of_the_stage(tmp_path):
    """Two CPU processes under torchrun, without a prepared dataset: each process fails, and the
    stage says which run failed and where its checkpoints stay."""
    root = project(tmp_path, {"resnet_runs": {"cpu": {"procs": 2}}, "resnet": {"batch_size": 64}})
    result = subprocess.run([sys.executable, str(STAGES / "train_resnet.py"), "--variant", "cpu", "--prepared",
                             "absent"], cwd=root, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr.split("error: torchrun")[-1]
    assert result.stderr.splitlines()[-1].startswith("error: torchrun for train_resnet@cpu exited with status 1 "
                                                      "(see its output above)"), result.stderr


# ---------------------------------------------------------------------------------------------
# eval_epochs and diff_predictions

def summaries(root: Path, **status: dict) -> list[str]:
    return [str(write_json(root / f"metrics/train_resnet_{name}.json", s)) for name, s in status.items()]


def test_eval_auto_with_no_trained_variant(tmp_path, monkeypatch):
    root = project(tmp_path)
    files = summaries(root, cpu={"status": "skipped", "gpus": 0}, gpu1={"status": "skipped", "gpus": 1})
    fails_with(root, monkeypatch, ["eval_epochs.py", "--summaries", *files],
               "eval.run=auto, but no train_resnet variant has trained (cpu=skipped, gpu1=skipped)")


def test_eval_of_a_variant_that_did_not_train(tmp_path, monkeypatch):
    root = project(tmp_path, {"eval": {"run": "gpu1"}})
    files = summaries(root, cpu={"status": "trained", "gpus": 0}, gpu1={"status": "skipped", "gpus": 1})
    fails_with(root, monkeypatch, ["eval_epochs.py", "--summaries", *files],
               "eval.run='gpu1': that variant did not train (skipped; runs/resnet/gpu1/status.json says why)")


def test_eval_of_epochs_a_run_folder_lacks(tmp_path, monkeypatch):
    root = project(tmp_path)
    files = summaries(root, cpu={"status": "trained", "gpus": 0})
    (root / "runs/resnet/cpu/checkpoints").mkdir(parents=True)
    (root / "runs/resnet/cpu/checkpoints/epoch_20.pt").write_bytes(b"")
    fails_with(root, monkeypatch, ["eval_epochs.py", "--summaries", *files],
               "runs/resnet/cpu/checkpoints holds no weights of epoch(s) 7, 18 (saved: 20)")


def test_diff_of_an_epoch_that_was_not_evaluated(tmp_path, monkeypatch):
    root = project(tmp_path, {"eval": {"epochs": "all"}, "diff": {"a": 25}})
    for epoch in (7, 18):
        (root / "runs/eval").mkdir(parents=True, exist_ok=True)
        (root / f"runs/eval/predictions_epoch_{epoch:02d}.csv").write_text("file\n")
    fails_with(root, monkeypatch, ["diff_predictions.py"],
               "diff epoch(s) 25 were not evaluated (eval_epochs evaluated 7, 18)")


# ---------------------------------------------------------------------------------------------
# report

def test_an_unreadable_stage_output_in_the_report(tmp_path, monkeypatch):
    root = project(tmp_path)
    (root / "metrics").mkdir()
    (root / "metrics/eval.json").write_text('{"first": ')
    fails_with(root, monkeypatch, ["report.py"], "metrics/eval.json: unreadable (")


# ---------------------------------------------------------------------------------------------
# The language models: corpus, training, generation, context probe

DATA = {"wordlm": {"corpus": "data"}}


def test_the_corpus_is_absent(tmp_path, monkeypatch):
    fails_with(project(tmp_path, DATA), monkeypatch, ["prepare_corpus.py"],
               "data: the corpus is absent; with wordlm.corpus=data fetch the WikiText-2 archive first")


def test_a_data_folder_without_a_corpus(tmp_path, monkeypatch):
    root = project(tmp_path, DATA)
    (root / "data").mkdir()
    (root / "data/notes.md").write_text("x")
    fails_with(root, monkeypatch, ["prepare_corpus.py"], "data: no corpus found (it holds notes.md)")


def archive_with_its_md5(root: Path, content: bytes | dict) -> dict:
    """data/ holding one archive, and params whose wordlm.data_md5 pins it (as the md5 error advises)."""
    (root / "data").mkdir()
    path = root / "data/wikitext-2-v1.zip"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in content.items():
                archive.writestr(name, text)
    return {"wordlm": {"corpus": "data", "data_md5": hashlib.md5(path.read_bytes()).hexdigest()}}


def test_a_truncated_archive(tmp_path, monkeypatch):
    root = project(tmp_path)
    root = project(tmp_path, archive_with_its_md5(root, b"PK\x03\x04 cut short"))
    fails_with(root, monkeypatch, ["prepare_corpus.py"], "data/wikitext-2-v1.zip: not a readable zip archive (")


def test_an_archive_of_another_layout(tmp_path, monkeypatch):
    root = project(tmp_path)
    root = project(tmp_path, archive_with_its_md5(root, {"train.txt": "a b\n"}))
    fails_with(root, monkeypatch, ["prepare_corpus.py"],
               "not the WikiText-2 layout, missing wikitext-2/wiki.train.tokens")


def test_a_corpus_with_an_empty_split(tmp_path, monkeypatch):
    root = project(tmp_path, DATA)
    (root / "data").mkdir()
    for split, text in (("train", "a b c\n" * 20), ("valid", "a b\n"), ("test", "")):
        (root / f"data/{split}.txt").write_text(text)
    fails_with(root, monkeypatch, ["prepare_corpus.py"], "the corpus has an empty split (")


@pytest.fixture
def lm_project(tmp_path, monkeypatch):
    """A project with the tiny sample corpus whose words each occur at least once (so no <unk>) and a
    trained tiny LSTM, made by the stages themselves."""
    root = project(tmp_path, {**TINY_PARAMS, "wordlm": deep_update(TINY_PARAMS["wordlm"],
                                                                    {"sample": {"unk_min_count": 1}})})
    monkeypatch.syspath_prepend(str(STAGES))
    monkeypatch.chdir(root)
    for stage in (["prepare_corpus.py"], ["train_wordlm.py", "--model", "lstm"]):
        status, stderr = run_stage_in_process(stage)
        assert status == 0, stderr
    return root


def test_a_batch_larger_than_a_split(lm_project, monkeypatch):
    update_params(lm_project, {"wordlm": {"train": {"batch_size": 100_000}}})
    fails_with(lm_project, monkeypatch, ["train_wordlm.py", "--model", "lstm"], "is too short for batch size 100000")


def test_a_prompt_outside_a_vocabulary_without_unk(lm_project, monkeypatch):
    update_params(lm_project, {"generate": {"prompt": "qqq zzz"}})
    fails_with(lm_project, monkeypatch, ["generate_text.py"],
               "generate.prompt has words outside the vocabulary (qqq, zzz) and the vocabulary has no <unk>")


def test_a_context_longer_than_the_probed_split(lm_project, monkeypatch):
    update_params(lm_project, {"context_probe": {"models": ["lstm"], "max_context": 100_000}})
    fails_with(lm_project, monkeypatch, ["context_probe.py"], "too few for a context of 100000")


def test_a_model_that_was_not_trained_or_is_unreadable(lm_project, monkeypatch):
    update_params(lm_project, {"generate": {"model": "gcnn"}})
    fails_with(lm_project, monkeypatch, ["generate_text.py"],
               "runs/wordlm/gcnn/model.pt: no trained model there; run `dvc repro train_wordlm@gcnn` first")
    (lm_project / "runs/wordlm/gcnn").mkdir(parents=True)
    (lm_project / "runs/wordlm/gcnn/model.pt").write_bytes(b"not a checkpoint")
    fails_with(lm_project, monkeypatch, ["generate_text.py"],
               "runs/wordlm/gcnn/model.pt: not a readable checkpoint (")


# ---------------------------------------------------------------------------------------------
# Tiny-ImageNet: the download stage, and relabel_val on a tree made wrong

def test_a_file_url_to_a_missing_archive(tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere.zip").as_uri()
    fails_with(project(tmp_path, {"tinyimagenet": {"source": missing}}), monkeypatch, ["download_tinyimagenet.py"],
               "nowhere.zip: no such file. Fix tinyimagenet.source in params.yaml")


def test_a_download_that_fails(tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tiny-imagenet-200.zip"
    fails_with(project(tmp_path, {"tinyimagenet": {"source": url}}), monkeypatch, ["download_tinyimagenet.py"],
               f"downloading {url} failed: ")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    return tinyimagenet.generate_sample(tmp_path_factory.mktemp("tree") / "tiny-imagenet-200", seed=0,
                                        train_per_class=1, val_per_class=1, test_images=0,
                                        grayscale_fraction=0.0, noise=0.3)


def first_class(root: Path) -> str:
    return sorted((root / "wnids.txt").read_text().split())[0]


def replace_line(path: Path, index: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = line
    path.write_text("\n".join(lines) + "\n")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


# (what is made wrong, the error's text); each function gets the copied tiny-imagenet-200 folder
TREE_ERRORS = [
    (lambda r: (r / "wnids.txt").unlink(), "not the Tiny-ImageNet layout, missing wnids.txt"),
    (lambda r: append(r / "wnids.txt", first_class(r) + "\n"), "more than once. Each class id must appear once"),
    (lambda r: (r / "wnids.txt").write_text("\n".join(sorted((r / "wnids.txt").read_text().split())[:150]) + "\n"),
     "lists 150 classes but train/ has 50 more"),
    (lambda r: shutil.rmtree(r / "train" / first_class(r)), "no folder for"),
    (lambda r: (r / "words.txt").write_text("n999\tsomething\n"), "words.txt: has no name for"),
    (lambda r: (r / "words.txt").write_text("just one column\n"),
     "words.txt: expected 2 tab-separated columns (wnid, name), found 1"),
    (lambda r: (r / "words.txt").write_text(""), "words.txt: cannot be parsed ("),
    (lambda r: replace_line(r / "val/val_annotations.txt", 0, "val_0.JPEG\tn000\t1\t2\t3\t4"),
     "val_0.JPEG is labelled n000, which wnids.txt does not list"),
    (lambda r: (r / "val/images/val_0.JPEG").unlink(), "val_0.JPEG: listed in"),
    (lambda r: replace_line(r / "val/val_annotations.txt", 0, "val_0.JPEG\t" + first_class(r) + "\tx\t2\t3\t4"),
     "line 1: box coordinate x0 is not a number"),
    (lambda r: (r / "val/val_annotations.txt").unlink(), "not the Tiny-ImageNet layout, missing val/val_annotations.txt"),
    (lambda r: append(r / "val/val_annotations.txt", (r / "val/val_annotations.txt").read_text().splitlines()[0] + "\n"),
     "val_0.JPEG is listed 2 times"),
    (lambda r: next((r / "train" / first_class(r) / "images").iterdir()).unlink(), "listed in"),
    (lambda r: [p.unlink() for p in (r / "train" / first_class(r)).rglob("*") if p.is_file()],
     "no images and no"),
    (lambda r: (r / "val/images/val_0.JPEG").write_bytes(b"not a JPEG"), "val_0.JPEG: unreadable image ("),
    (lambda r: (r / "train").rename(r / "training"), "not the Tiny-ImageNet layout, missing train"),
]


@pytest.mark.parametrize("spoil, expected", TREE_ERRORS, ids=[e for _, e in TREE_ERRORS])
def test_relabel_val_on_a_tree_made_wrong(small_tree, tmp_path, monkeypatch, spoil, expected):
    root = project(tmp_path)
    tree = root / "datasets/tiny-imagenet-200"
    shutil.copytree(small_tree, tree)
    spoil(tree)
    fails_with(root, monkeypatch, ["relabel_val.py"], expected)
    assert not (root / "datasets/tinyimagenet-prepared").exists(), "nothing half-written"
