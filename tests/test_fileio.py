"""Atomic outputs: complete or absent, and a killed stage's temporaries removed by its next run."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_PARAMS, deep_update, env, make_project, ran, run
from dlreport.fileio import atomic_dir, atomic_file, remove_leftovers


def test_a_failed_block_leaves_the_earlier_output(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("earlier")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("half-written")
        raise RuntimeError("stage failed")
    assert [p.name for p in out.iterdir()] == ["kept.txt"] and list(tmp_path.iterdir()) == [out]


def test_leftovers_of_a_killed_writer_are_removed_by_the_next(tmp_path: Path):
    out = tmp_path / "result"
    other = tmp_path / "other"
    leftovers = [tmp_path / ".result.tmp-abc123", tmp_path / ".result.tmp-def456"]
    leftovers[0].mkdir()
    (leftovers[0] / "big.bin").write_bytes(b"0" * 1000)
    leftovers[1].write_text("half a file")
    foreign = [tmp_path / ".other.tmp-xyz", tmp_path / ".result.tmpfile", tmp_path / "result.tmp-1"]
    foreign[0].mkdir()
    for path in foreign[1:]:
        path.write_text("not ours")
    with atomic_dir(out) as tmp:
        (tmp / "done.txt").write_text("complete")
    assert not any(p.exists() for p in leftovers), "the same output's leftovers are gone"
    assert all(p.exists() for p in foreign), "other outputs' files are not touched"
    assert (out / "done.txt").read_text() == "complete"
    other.mkdir()
    (other / ".metrics.json.tmp-zzz").write_text('{"half": ')
    with atomic_file(other / "metrics.json") as handle:
        handle.write("{}")
    assert sorted(p.name for p in other.iterdir()) == ["metrics.json"]
    assert remove_leftovers(other / "metrics.json") == []


def test_kill_9_mid_stage_then_the_next_run_leaves_nothing_behind(tmp_path: Path):
    """A real stage process killed with SIGKILL while writing runs/wordlm/lstm; then dvc repro."""
    overrides = deep_update(TINY_PARAMS, {"wordlm": {"train": {"epochs": 6}}})
    project = make_project(tmp_path / "project", overrides)
    run(["dvc", "repro", "prepare_corpus"], cwd=project)
    runs = project / "runs" / "wordlm"
    stage = [sys.executable, "stages/train_wordlm.py", "--model", "lstm", "--corpus", "datasets/corpus",
             "--out", "runs/wordlm/lstm", "--summary", "metrics/train_wordlm_lstm.json"]
    process = subprocess.Popen(stage, cwd=project, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(runs.glob(".lstm.tmp-*")):
        assert process.poll() is None and time.time() < deadline, "the stage ended before writing its output"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(runs.glob(".lstm.tmp-*")) and not (runs / "lstm").exists(), "killed mid-write"
    out = run(["dvc", "repro", "train_wordlm@lstm"], cwd=project).stdout
    assert ran(out, "train_wordlm@lstm")
    assert sorted(p.name for p in runs.iterdir()) == ["lstm"], "no hidden temporaries remain"
    assert (runs / "lstm" / "model.pt").is_file()


def test_temporaries_left_in_a_tracked_folder_do_not_change_its_hash(tmp_path: Path):
    """The project's .dvcignore names every temporary the stages make: left in a stage's
    dependency or output by a killed run, none makes `dvc status` see a change (a real file does)."""
    import shutil

    from conftest import REPO

    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("a\n")
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    run(["dvc", "init", "--no-scm", "-q"], cwd=root)
    run(["dvc", "stage", "add", "-q", "-n", "copy", "-d", "data", "-o", "out", "cp -r data out"], cwd=root)
    run(["dvc", "repro", "-q"], cwd=root)
    for folder in ("data", "out"):
        (root / folder / ".x.tmp-123").mkdir()                    # fileio.atomic_dir's
        (root / folder / ".x.tmp-123" / "half.npy").write_bytes(b"half")
        (root / folder / ".status.json.tmp-k2j4").write_text("{")  # fileio.atomic_file's
        (root / folder / ".epoch_03.pt.tmp").write_bytes(b"half")   # checkpoints.save_atomic's
        for hidden in (".cpu-progress", ".cpu-stale-20260101-120000"):
            (root / folder / hidden).mkdir()
            (root / folder / hidden / "resume.pt").write_bytes(b"state")
    assert run(["dvc", "status"], cwd=root).stdout.strip() == "Data and pipelines are up to date."
    (root / "data" / "b.txt").write_text("b\n")
    assert "changed deps" in run(["dvc", "status"], cwd=root).stdout
