"""dlreport.checkpoints: which epochs keep weights, and what a run folder resumes from.

The decisions are tested here on small real checkpoint files; tests/test_training.py resumes
real runs (killed, and killed between the two files an epoch writes)."""
from __future__ import annotations

from pathlib import Path


from dataclasses import replace

from conftest import REPO
from conftest import run as run_command
from dlreport import checkpoints
from dlreport.params import ResnetParams, load_params

# params.yaml's recipe, 4 epochs of batch 64, every epoch's weights kept
RECIPE = replace(load_params(REPO / "params.yaml", "resnet")["resnet"], epochs=4, batch_size=64, lr=0.1, seed=0,
                 keep_epochs="all")


def run_folder(tmp_path: Path, trained: int | None, weights: list[int], recipe: ResnetParams = RECIPE) -> Path:
    """A run folder whose resume.pt is at epoch ``trained`` (None: no resume.pt), with epoch files."""
    run = tmp_path / "run"
    for epoch in weights:
        checkpoints.save_atomic({"epoch": epoch, "recipe": recipe.recipe()}, checkpoints.checkpoint_path(run, epoch))
    if trained is not None:
        checkpoints.save_atomic({"epoch": trained, "recipe": recipe.recipe(), "history": []}, checkpoints.resume_path(run))
    return run


def test_keep_epochs_policy_and_its_errors():
    keep = replace(RECIPE, epochs=20, keep_epochs=[7, 18])
    assert [e for e in range(1, 21) if checkpoints.keeps_weights(keep, e)] == [7, 18, 20]
    assert all(checkpoints.keeps_weights(RECIPE, e) for e in range(1, 5))
    assert [e for e in range(1, 5) if checkpoints.keeps_weights(replace(RECIPE, keep_epochs=[]), e)] == [4]
    # (bad values of resnet.keep_epochs are params errors: tests/test_params.py)


def test_resume_from_resume_pt_and_drop_what_is_not_kept(tmp_path: Path):
    # Trained to epoch 3; epoch 4's file was written before a kill, resume.pt was not.
    run = run_folder(tmp_path, 3, [1, 2, 3, 4])
    (run / "checkpoints" / ".epoch_05.pt.tmp").write_bytes(b"half a file")  # a kill during a write
    log = []
    state, start = checkpoints.find_resume_point(run, replace(RECIPE, keep_epochs=[2]), log.append)
    assert state["epoch"] == 3 and start == 4
    assert checkpoints.saved_epochs(run) == [2], "epochs 1 and 3 are no longer kept; 4 is trained again"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_02.pt", "resume.pt"]
    assert "removed the weights of epoch(s) 1, 3, 4" in log[0] and "resuming" in log[1]


def test_what_is_never_resumed_is_moved_aside(tmp_path: Path):
    cases = [
        (None, [1, 2], RECIPE, "have no resume.pt"),                                 # old format
        (2, [1, 2], replace(RECIPE, lr=0.05), "made with other params (lr: 0.1 -> 0.05)"),
        (2, [2], RECIPE, "lack the weights of epoch(s) 1, which resnet.keep_epochs now keeps"),
    ]
    for i, (trained, weights, recipe, why) in enumerate(cases):
        base = tmp_path / str(i)
        base.mkdir()
        run = run_folder(base, trained, weights)
        log = []
        assert checkpoints.find_resume_point(run, recipe, log.append) == (None, 1)
        assert why in log[0] and "training from epoch 1" in log[0]
        stale = list(base.glob(".run-stale-*"))
        assert len(stale) == 1 and len(list(stale[0].glob("epoch_*.pt"))) == len(weights), "nothing is deleted"
        assert not checkpoints.saved_epochs(run)


def test_raising_epochs_continues_where_the_schedule_allows(tmp_path: Path):
    """Constant and step schedules do not depend on the total: a run of 4 epochs is the start of
    one of 6. Cosine does: that starts over."""
    for schedule, epochs, continued in (("constant", 6, True), ("step", 6, True), ("constant", 4, True),
                                        ("cosine", 6, False)):
        base = tmp_path / f"{schedule}-{epochs}"
        base.mkdir()
        recipe = replace(RECIPE, schedule=schedule)
        run = run_folder(base, 4, [1, 2, 3, 4], recipe)
        log = []
        state, start = checkpoints.find_resume_point(run, replace(recipe, epochs=epochs), log.append)
        if continued:
            assert state["epoch"] == 4 and start == 5, (schedule, epochs)
            assert ("continuing" in log[-1]) == (epochs > 4) and checkpoints.saved_epochs(run) == [1, 2, 3, 4]
        else:
            assert (state, start) == (None, 1) and "training from epoch 1" in log[0], (schedule, epochs)
            assert "depends on the total" in log[0]


def test_lowering_epochs_cuts_a_finished_run_where_the_schedule_allows(tmp_path: Path):
    """4 epochs trained, 2 asked for: with a constant schedule epoch 2's weights become the end of
    the run (resume.pt rewritten, epochs 3-4 set aside, nothing trained); raising it again trains
    afresh (a cut run has no optimizer state). Cosine, or epoch 2's weights not kept: afresh."""
    run = run_folder(tmp_path, 4, [1, 2, 3, 4])
    log = []
    state, start = checkpoints.find_resume_point(run, replace(RECIPE, epochs=2), log.append)
    assert (state["epoch"], start, state["cut_from"], state["recipe"]["epochs"]) == (2, 3, 4, 2), log
    assert "cut the finished 4-epoch run to resnet.epochs = 2 without training" in log[0], log
    assert "all 2 epochs already trained" in log[-1]
    assert checkpoints.saved_epochs(run) == [1, 2]
    assert checkpoints.load_checkpoint(checkpoints.resume_path(run))["epoch"] == 2
    stale = list(tmp_path.glob(".run-stale-*"))
    assert len(stale) == 1 and sorted(p.name for p in stale[0].iterdir()) == ["epoch_03.pt", "epoch_04.pt", "resume.pt"]
    log = []  # the same params again: the cut run is finished
    assert checkpoints.find_resume_point(run, replace(RECIPE, epochs=2), log.append)[1] == 3
    log = []
    assert checkpoints.find_resume_point(run, replace(RECIPE, epochs=3), log.append) == (None, 1)
    assert "resume.pt was cut from a longer run and holds no optimizer state" in log[0], log

    for case, recipe, weights, why in (("cosine", replace(RECIPE, schedule="cosine"), [1, 2, 3, 4], "depends on the total"),
                                       ("not-kept", RECIPE, [4], "the weights of epoch 2 were not kept")):
        base = tmp_path / case
        base.mkdir()
        run = run_folder(base, 4, weights, recipe)
        log = []
        assert checkpoints.find_resume_point(run, replace(recipe, epochs=2), log.append) == (None, 1)
        assert why in log[0] and "training from epoch 1" in log[0], log


def test_empty_run_folder_starts_at_epoch_one(tmp_path: Path):
    log = []
    assert checkpoints.find_resume_point(tmp_path / "run", RECIPE, log.append) == (None, 1) and not log


def trained_epochs(run: Path, recipe: ResnetParams, epochs: range) -> None:
    """What the training loop writes after each epoch (save_epoch: weights, resume.pt, progress)."""
    for epoch in epochs:
        weights = {"epoch": epoch, "recipe": recipe.recipe()}
        checkpoints.save_epoch(run, recipe, weights, {**weights, "history": []})


def test_an_interrupted_run_survives_dvc_restoring_the_committed_checkpoints(tmp_path: Path):
    """`dvc exp run` checks out the baseline's committed run folder before re-running the stage:
    the interrupted run's checkpoints come back from the progress folder, the baseline's are moved
    aside, and training resumes."""
    run, seed1 = tmp_path / "run", replace(RECIPE, seed=1)
    trained_epochs(run, seed1, range(1, 3))  # interrupted after epoch 2 of 4
    progress = checkpoints.progress_path(run)
    assert sorted(p.name for p in progress.iterdir()) == ["epoch_01.pt", "epoch_02.pt", "resume.pt"]
    assert all(p.samefile(run / "checkpoints" / p.name) for p in progress.iterdir()), "links, not copies"

    # DVC replaces the run folder with the committed baseline (seed 0, 4 epochs).
    import shutil

    shutil.rmtree(run)
    baseline = tmp_path / "baseline"
    trained_epochs(baseline, RECIPE, range(1, 5))
    shutil.copytree(baseline / "checkpoints", run / "checkpoints")

    log = []
    state, start = checkpoints.find_resume_point(run, seed1, log.append)
    assert (state["epoch"], start, state["recipe"]["seed"]) == (2, 3, 1), log
    assert any("recovered 3 checkpoint file(s)" in line for line in log), log
    assert checkpoints.saved_epochs(run) == [1, 2]
    stale = list(tmp_path.glob(".run-stale-*"))
    assert len(stale) == 1 and len(list(stale[0].glob("epoch_*.pt"))) == 4, "the baseline's are kept"

    trained_epochs(run, seed1, range(3, 5))
    checkpoints.finish(run, seed1)
    assert not progress.exists() and checkpoints.saved_epochs(run) == [1, 2, 3, 4]


def test_a_queued_run_keeps_its_progress_in_the_project_that_dvc_keeps(tmp_path: Path):
    """A queued experiment runs in <project>/.dvc/tmp/exps/tmpXXXX, which DVC deletes when the run
    fails: its progress is in the project's .dvc/tmp, and the same experiment queued again (a new
    workspace) resumes from it; a run of other params neither sees nor touches it."""
    import shutil

    project, seed1 = tmp_path / "project", replace(RECIPE, seed=1)
    workspace = project / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    trained_epochs(workspace / "runs" / "resnet" / "cpu", seed1, range(1, 3))  # interrupted after epoch 2
    progress = checkpoints.progress_path(workspace / "runs" / "resnet" / "cpu", seed1)
    assert progress.parent == project / ".dvc" / "tmp" / "dlreport-progress" and progress.name.startswith("cpu-")
    assert sorted(p.name for p in progress.iterdir()) == ["epoch_01.pt", "epoch_02.pt", "resume.pt"]
    shutil.rmtree(workspace)  # what DVC does with a failed queued run's workspace

    other = project / ".dvc" / "tmp" / "exps" / "tmpef34gh" / "runs" / "resnet" / "cpu"
    assert checkpoints.find_resume_point(other, RECIPE, lambda line: None) == (None, 1) and progress.is_dir()
    again = project / ".dvc" / "tmp" / "exps" / "tmpij56kl" / "runs" / "resnet" / "cpu"
    log = []
    state, start = checkpoints.find_resume_point(again, seed1, log.append)
    assert (state["epoch"], start) == (2, 3) and any("recovered 3 checkpoint file(s)" in line for line in log), log
    trained_epochs(again, seed1, range(3, 5))
    checkpoints.finish(again, seed1)
    assert not progress.exists() and checkpoints.saved_epochs(again) == [1, 2, 3, 4]


def test_progress_of_a_plain_rerun_or_of_other_params(tmp_path: Path):
    run = tmp_path / "run"
    trained_epochs(run, RECIPE, range(1, 3))
    log = []  # dvc repro after an interruption: the run folder still holds the progress
    assert checkpoints.find_resume_point(run, RECIPE, log.append)[1] == 3 and "resuming" in log[-1]
    assert checkpoints.progress_path(run).exists()
    log = []  # the next start has other params: that progress is moved aside, not deleted
    assert checkpoints.find_resume_point(run, replace(RECIPE, lr=0.05), log.append) == (None, 1)
    assert "an interrupted run of other params" in log[0] and not checkpoints.progress_path(run).exists()
    assert len(list(tmp_path.glob(".run-stale-*-progress/epoch_*.pt"))) == 2


def test_checkpoints_dvc_has_cached_are_removed_not_moved_aside(tmp_path: Path, monkeypatch):
    """Under DVC (DVC_ROOT set), a committed run that other params replace is in DVC's cache:
    its files are removed instead of piling up as copies; anything else is still moved aside."""
    import hashlib
    import shutil

    root = tmp_path / "project"
    root.mkdir()
    run_command(["dvc", "init", "--no-scm", "-q"], cwd=root)
    # The user's global DVC config moved the cache (`dvc cache dir --global`), which no file of the
    # project names: DVC's own `dvc cache dir` knows.
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "global-config"))
    cache = tmp_path / "elsewhere" / "cache"
    run_command(["dvc", "cache", "dir", "--global", str(cache)], cwd=root)
    assert not (root / ".dvc" / "config.local").exists() and str(cache) not in (root / ".dvc" / "config").read_text()
    run = run_folder(root / "runs", 2, [1, 2])
    for name in ("epoch_01.pt", "resume.pt"):  # committed; epoch_02.pt is not in the cache
        digest = hashlib.md5((run / "checkpoints" / name).read_bytes()).hexdigest()
        (cache / "files" / "md5" / digest[:2]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "checkpoints" / name, cache / "files" / "md5" / digest[:2] / digest[2:])
    monkeypatch.setenv("DVC_ROOT", str(root))
    log = []
    assert checkpoints.find_resume_point(run, replace(RECIPE, lr=0.05), log.append) == (None, 1)
    assert "2 file(s) DVC's cache holds removed" in log[0] and "moved to" in log[0], log
    stale = list((root / "runs").glob(".run-stale-*"))
    assert [p.name for p in stale[0].iterdir()] == ["epoch_02.pt"] and not (run / "checkpoints").exists()


def test_the_clean_command_lists_and_removes_what_was_set_aside(tmp_path: Path):
    """python -m dlreport.checkpoints [--clean] runs/resnet: the stale folders listed, then
    removed; an interrupted run's progress listed and kept; a missing folder is one error line."""
    import sys

    runs = tmp_path / "runs" / "resnet"
    trained_epochs(runs / "cpu", RECIPE, range(1, 3))  # an interrupted run: its progress folder
    checkpoints.move_aside(runs / "cpu", "were made with other params", lambda line: None)
    (tmp_path / "dlreport").symlink_to(REPO / "dlreport")  # run in a project folder, as the docs show
    command = [sys.executable, "-m", "dlreport.checkpoints"]
    listed = run_command([*command, "runs/resnet"], cwd=tmp_path).stdout.splitlines()
    assert len(listed) == 2 and listed[0].startswith("runs/resnet/.cpu-stale-") and listed[1].startswith(
        "runs/resnet/.cpu-progress: 3 file(s)"), listed
    assert "epoch_01.pt, epoch_02.pt, resume.pt) - set aside (--clean removes it)" in listed[0]
    cleaned = run_command([*command, "--clean", "runs/resnet"], cwd=tmp_path).stdout.splitlines()
    assert cleaned[0].endswith(" - removed") and cleaned[1].endswith("its next start resumes: kept")
    assert not list(runs.glob(".cpu-stale-*")) and checkpoints.progress_path(runs / "cpu").is_dir()
    failed = run_command([*command, "--clean", "runs/absent"], cwd=tmp_path, check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("error: runs/absent: no such folder")
    assert len(failed.stderr.splitlines()) == 1
