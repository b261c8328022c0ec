"""A user's first day: in a fresh clone (no dvc.lock, an empty DVC cache, the committed results in
metrics/) the documented DVC commands work, targeted experiments included, and leave data.dvc
as it was."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_ZIP, TINY_ZIP_MD5, make_project, needs_shared, ran, run


def changed_files(project: Path) -> set[str]:
    return {line[3:] for line in run(["git", "status", "--porcelain"], cwd=project).stdout.splitlines()}


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone with the committed params (no overrides): what a user starts from."""
    project = make_project(tmp_path / "clone")
    assert not (project / "dvc.lock").exists() and (project / "metrics" / "eval.json").exists()
    return project


def test_targeted_experiment_then_metrics_diff_and_exp_show(clone: Path):
    out = run(["dvc", "exp", "run", "-S", "wordlm.sample.seed=1", "prepare_corpus"], cwd=clone)
    assert ran(out.stdout, "prepare_corpus") and "Ran experiment(s)" in out.stdout
    assert "failed to load" not in out.stdout + out.stderr
    # The experiment is applied to the workspace: its params, its metrics, its dvc.lock; data.dvc
    # (read by every pipeline command) is exactly as committed.
    assert changed_files(clone) == {"params.yaml", "metrics/corpus.json", "dvc.lock"}
    assert run(["git", "diff", "--exit-code", "data.dvc"], cwd=clone, check=False).returncode == 0

    # dvc metrics diff against the committed results names what moved (a new corpus sample).
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], cwd=clone).stdout)
    assert "train_tokens" in diff["metrics/corpus.json"]
    committed = json.loads(run(["git", "show", "HEAD:metrics/corpus.json"], cwd=clone).stdout)
    assert diff["metrics/corpus.json"]["train_tokens"]["old"] == committed["train_tokens"]

    shown = json.loads(run(["dvc", "exp", "show", "--json"], cwd=clone).stdout)
    experiments = [e for baseline in shown for e in (baseline.get("experiments") or [])]
    assert experiments, shown
    params = experiments[0]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    assert params["wordlm"]["sample"]["seed"] == 1


@needs_shared(TINY_ZIP)
def test_targeted_experiment_on_the_real_archive(clone: Path):
    """The real-data command (README, docs/real-data.md), aimed at relabel_val, on the shared Tiny-ImageNet subset."""
    out = run(["dvc", "exp", "run", "-S", f"tinyimagenet.source={TINY_ZIP.resolve().as_uri()}",
               "-S", f"tinyimagenet.md5={TINY_ZIP_MD5}", "relabel_val"], cwd=clone)
    assert ran(out.stdout, "download_tinyimagenet") and ran(out.stdout, "relabel_val")
    assert json.loads((clone / "metrics" / "dataset.json").read_text()) == \
        {"classes": 200, "train_images": 2000, "val_images": 1000}
    assert changed_files(clone) == {"params.yaml", "metrics/dataset.json", "dvc.lock"}


def test_the_reports_recipe_at_224(clone: Path):
    """The report's recipe (docs/real-data.md, README: -S resnet.input_size=224), on a small sample so
    that it trains in seconds: trained, evaluated and diffed at 224 as main.py does, and the run's
    summary records main.py's transforms and the data it trained on."""
    out = run(["dvc", "exp", "run", "-S", "resnet.input_size=224", "-S", "resnet.epochs=1",
               "-S", "tinyimagenet.sample.train_per_class=1", "-S", "tinyimagenet.sample.val_per_class=1",
               "-S", "eval.epochs=[1]", "-S", "diff.a=1", "-S", "diff.b=1", "diff_predictions"], cwd=clone)
    assert ran(out.stdout, "train_resnet@cpu") and ran(out.stdout, "eval_epochs")
    recipe = json.loads((clone / "metrics" / "train_resnet_cpu.json").read_text())["recipe"]
    assert (recipe["input_size"], recipe["train_transform"], recipe["eval_transform"]) == \
        (224, "RandomResizedCrop(224) + flip", "Resize(256) + CenterCrop(224)")
    assert recipe["data"] == {"source": "sample", "md5": None, "train_images": 200, "val_images": 200}
    evaluated = json.loads((clone / "metrics" / "eval.json").read_text())
    assert evaluated["first"]["epoch"] == evaluated["last"]["epoch"] == 1


def test_dvc_metrics_show_of_the_committed_default_run_is_narrow(clone: Path):
    """metrics/ holds the default run's headline figures: `dvc metrics show` prints one row per
    file whose columns are the union of the files' keys, so keys shared between files (status,
    epochs, test_ppl, ...) and few of them keep it readable. Curves and per-k tables are plots."""
    shown = run(["dvc", "metrics", "show"], cwd=clone).stdout.splitlines()
    header = shown[0]
    # (1,600: the training summaries carry the recipe and corpus they ran, which the ledger judges by)
    assert len(header) <= 1600, f"{len(header)} characters: {header}"
    files = {line.split()[0] for line in shown[1:] if line.strip()}
    assert files == {str(p.relative_to(clone)) for p in (clone / "metrics").rglob("*.json")}, files
