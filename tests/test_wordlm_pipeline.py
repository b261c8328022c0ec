"""End to end in a temp git+DVC repo (the reproduced project): prepare_corpus, train_wordlm@*,
generate_text on the sample corpus, offline, with data.dvc present and its data absent."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from conftest import REPO, TINY_PARAMS, make_project, run
from dlreport.params import read_params

MODELS = ("lstm", "transformer", "gcnn")


def test_default_pipeline_offline(reproduced: Path, repro_log: str):
    project = reproduced
    data_dvc = (project / "data.dvc").read_text()
    assert data_dvc == (REPO / "data.dvc").read_text()  # untouched by the run
    assert "md5" not in yaml.safe_load(data_dvc)["outs"][0]  # the archive was never recorded
    out = repro_log
    for name in MODELS:
        assert f"Running stage 'train_wordlm@{name}'" in out
    assert "| End of training | test loss" in out and "| end of epoch   2 | time:" in out
    assert not (project / "data").exists()  # the import was not fetched
    assert (project / "data.dvc").read_text() == data_dvc
    for name in MODELS:
        metrics = json.loads((project / "metrics" / f"train_wordlm_{name}.json").read_text())
        assert metrics["test_ppl"] < metrics["parameters"] and metrics["tokens_per_s"] > 0
        assert metrics["best_valid_ppl"] < 285  # learned something (the tiny vocabulary has ~285 words)
        state = torch.load(project / "runs" / "wordlm" / name / "model.pt", weights_only=True)
        assert state["config"]["type"] == TINY_PARAMS["wordlm"]["models"][name]["type"]
    assert json.loads((project / "metrics" / "train_wordlm_gcnn.json").read_text())["receptive_field"] == 7
    # a model entry's own bptt (and batch size) overrides wordlm.train's; the checkpoint keeps what it trained on
    for name, trained in (("lstm", 10), ("lstm_long", 16), ("transformer_long", 16), ("gcnn_long", 15)):
        assert json.loads((project / "metrics" / f"train_wordlm_{name}.json").read_text())["trained_context"] == trained
        config = torch.load(project / "runs" / "wordlm" / name / "model.pt", weights_only=True)["config"]
        assert config["trained_context"] == trained and config["bptt"] == (10 if name == "lstm" else 16)
    text = (project / "reports" / "generated.txt").read_text().splitlines()
    assert [len(line.split()) for line in text] == [20, 20, 10]

    shown = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=project).stdout)
    files = next(iter(shown.values()))["data"]
    assert {f"metrics/train_wordlm_{n}.json" for n in MODELS} <= set(files)
    plots = json.loads(run(["dvc", "plots", "show", "--json"], cwd=project).stdout)
    assert {"wordlm_valid_ppl", "wordlm_train_ppl", "wordlm_lr", "wordlm_tokens_per_s"} <= set(plots["data"])
    files = {row["filename"] for row in plots["data"]["wordlm_valid_ppl"][0]["content"]["data"]["values"]}
    assert len(files) == len(TINY_PARAMS["wordlm"]["models"]) == 6  # one line per model, the long variants too

    # Everything is up to date; a change to one model's params re-runs that model only.
    assert "Running stage" not in run(["dvc", "repro", "train_wordlm", "generate_text"], cwd=project).stdout
    original = (project / "params.yaml").read_text()
    params = read_params(project / "params.yaml")
    params["wordlm"]["models"]["gcnn"]["lr"] = 1.5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        changed = set(json.loads(run(["dvc", "status", "--json"], cwd=project).stdout))
    finally:
        (project / "params.yaml").write_text(original)
    assert "train_wordlm@gcnn" in changed and not {"train_wordlm@lstm", "train_wordlm@transformer",
                                                    "prepare_corpus"} & changed


def test_stage_scripts_report_errors_in_one_line(tmp_path: Path):
    project = make_project(tmp_path / "project", TINY_PARAMS, git=False)
    result = run(["python", "stages/train_wordlm.py", "--model", "lstm"], cwd=project, check=False)
    assert result.returncode == 1 and result.stderr.strip().startswith("error: ")
    assert "datasets/corpus" in result.stderr and "dvc update data.dvc" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run(["python", "stages/generate_text.py"], cwd=project, check=False)
    assert result.returncode == 1 and "train_wordlm" in result.stderr
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace("corpus: sample", "corpus: data"))
    result = run(["python", "stages/prepare_corpus.py"], cwd=project, check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: data: the corpus is absent")
    assert not (project / "datasets").exists()
