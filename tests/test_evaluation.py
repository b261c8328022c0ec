"""eval_epochs / diff_predictions logic on hand-built predictions with known disagreements."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from dlreport import evaluation
from dlreport.errors import PipelineError
from dlreport.params import DiffParams


def predictions(top1: list[int], true: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"file": [f"val_{i}.JPEG" for i in range(len(true))], "true_index": true,
                         "true_wnid": [f"n{t:08d}" for t in true], "top1_index": top1})


TRUE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
#        both right  only A  only B     wrong same wrong diff   both right
A = [0, 1, 2, 9, 9, 9, 5, 5, 8, 9, 10, 11]
B = [0, 1, 7, 3, 4, 5, 5, 6, 8, 9, 10, 11]


def test_counts_and_list_of_hand_built_disagreements():
    # Shuffle B's rows: images are matched by file, not by position.
    differing, counts = evaluation.compare_predictions(predictions(A, TRUE), predictions(B, TRUE).sample(frac=1, random_state=0))
    assert counts == {"images": 12, "both_right": 6, "only_a_right": 1, "only_b_right": 3,
                      "both_wrong_same": 1, "both_wrong_different": 1, "differing": 5,
                      "agreement": 7 / 12, "acc1_change": 100 * 2 / 12,
                      "mcnemar_p": evaluation.mcnemar_exact(1, 3)}
    assert list(differing.file) == ["val_2.JPEG", "val_3.JPEG", "val_4.JPEG", "val_5.JPEG", "val_7.JPEG"]
    assert list(differing.right) == ["a", "b", "b", "b", "neither"]
    # The accuracy difference the counts imply is the difference of the two accuracies.
    acc = lambda top: 100 * sum(t == p for t, p in zip(TRUE, top)) / len(TRUE)  # noqa: E731
    assert math.isclose(counts["acc1_change"], acc(B) - acc(A))


def test_natural_order_puts_val_2_before_val_10():
    files = pd.Series(["val_10.JPEG", "val_2.JPEG", "val_1008.JPEG", "val_100.JPEG"])
    assert list(files.iloc[evaluation.natural_order(files)]) == ["val_2.JPEG", "val_10.JPEG", "val_100.JPEG",
                                                                 "val_1008.JPEG"]


def test_plain_list_is_the_reports_format():
    differing, _ = evaluation.compare_predictions(predictions(A, TRUE), predictions(B, TRUE))
    lines = evaluation.plain_list(differing, 7, 18).splitlines()
    assert lines[0].startswith("# ") and lines[1:] == ["val_2.JPEG 2", "val_3.JPEG 3", "val_4.JPEG 4",
                                                       "val_5.JPEG 5", "val_7.JPEG 7"]


def test_mcnemar_exact_textbook_values():
    # Two-sided exact McNemar = 2 * P(Binomial(n=14, 1/2) <= 3) = 2 * 470 / 16384.
    assert math.isclose(evaluation.mcnemar_exact(3, 11), 940 / 16384)
    assert math.isclose(evaluation.mcnemar_exact(11, 3), 940 / 16384)
    assert math.isclose(evaluation.mcnemar_exact(0, 10), 2 / 1024)
    assert evaluation.mcnemar_exact(5, 5) == 1.0 and evaluation.mcnemar_exact(0, 0) == 1.0
    counts = dict(epoch_a=1, epoch_b=2, differing=10, only_a_right=0, only_b_right=10)
    assert evaluation.diff_metrics(counts)["mcnemar_log10_p"] == round(math.log10(2 / 1024), 2)
    tiny = evaluation.diff_metrics({**counts, "only_a_right": 3, "only_b_right": 2000})
    assert evaluation.mcnemar_exact(3, 2000) == 0.0 and tiny["mcnemar_log10_p"] < -590  # exact where floats underflow


def test_run_and_epoch_resolution(tmp_path):
    summaries = {"cpu": {"status": "trained", "gpus": 0}, "gpu1": {"status": "trained", "gpus": 1},
                 "gpu8": {"status": "skipped", "gpus": 8}}
    assert evaluation.resolve_run("auto", summaries) == "gpu1"
    assert evaluation.resolve_run("cpu", summaries) == "cpu"
    with pytest.raises(PipelineError, match="gpu8.*did not train \\(skipped; runs/resnet/gpu8/status.json says why"):
        evaluation.resolve_run("gpu8", summaries)
    with pytest.raises(PipelineError, match="no train_resnet variant has trained"):
        evaluation.resolve_run("auto", {"gpu8": summaries["gpu8"]})
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for e in (1, 2, 3):
        (run / "checkpoints" / f"epoch_{e:02d}.pt").write_bytes(b"")
    assert evaluation.resolve_epochs("all", run) == [1, 2, 3]
    assert evaluation.resolve_epochs([3, 1], run) == [3, 1]
    with pytest.raises(PipelineError, match=r"holds no weights of epoch\(s\) 7, 18 \(saved: 1, 2, 3\)"):
        evaluation.resolve_epochs([7, 18], run)


def test_diff_pair_must_have_been_evaluated():
    assert evaluation.resolve_pair(DiffParams(a=None, b=None, grid_images=0), [7, 18]) == (7, 18)
    assert evaluation.resolve_pair(DiffParams(a=3, b=None, grid_images=0), [3, 7, 18]) == (3, 18)
    with pytest.raises(PipelineError, match="diff epoch.*5 were not evaluated.*eval.epochs"):
        evaluation.resolve_pair(DiffParams(a=5, b=18, grid_images=0), [7, 18])
