"""The claims ledger: each rule on crafted curves, the paired intervals, the timing claims with
trained GPU variants (made-up timings in the format train_resnet writes), and the ledger the
default pipeline writes: a row for every claim, each with a verdict or a reason."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, read_params
from dlreport.claims import (CONTRADICTED, NOT_COMPARABLE, NOT_MEASURABLE, SUPPORTED, VERDICTS, Claim, Ledger,
                             RunFacts, accuracy_intervals, build_ledger, overfitting, peak_then_slight_fall, render,
                             rises_with_epochs, steady_decline)
from dlreport.params import load_params
from dlreport.recipe import data_record, differences, portable_source, resnet_recipe
from dlreport.report import Inputs
from dlreport.reporting import compare_devices

CLAIM_IDS = ["C1", "C2", "C3", "C4", "C4b", "C5", "C6", "C7a", "C7b", "C7c", "C7d", "C8a", "C8b", "C8c", "C9",
             "C10a", "C10b", "C11", "C12", "C14", "C13a", "C13b"]
CODE_DEPS = {"stages/claims.py", "dlreport/claims.py", "dlreport/stats.py", "dlreport/templates/claims.md.j2"}


def facts(**changes) -> RunFacts:
    base = dict(input_size=64, stem="torchvision", epochs=20, variants=["cpu", "gpu1", "gpu8"], lm_models=["lstm"],
                bootstrap=500, seed=0)
    return RunFacts(**{**base, **changes})


REAL = data_record("file:///elsewhere/tiny-imagenet-200.zip", "5cac8f5f2794de738ffdaaeb12735df9", 100_000, 10_000)
SAMPLE = data_record("sample", None, 1_000, 600)


def recipe(data: dict = REAL, **changes) -> dict:
    """A summary's recipe block as train_resnet writes it: the committed params.yaml's recipe at
    224 px (the report's: main.py) unless ``changes`` say otherwise."""
    params = load_params(REPO / "params.yaml", "resnet")["resnet"]
    return resnet_recipe(dataclasses.replace(params, **{"input_size": 224, **changes}), data)


def test_differences_name_what_a_run_did_otherwise():
    assert differences(recipe()) == []
    fast = differences(recipe(input_size=64))
    assert fast == ["this run: 64 px, RandomCrop(64, padding=4) + flip, evaluated on the whole 64-px image; the "
                    "report: main.py at 224 (RandomResizedCrop(224) + flip, Resize(256) + CenterCrop(224))"]
    assert differences(recipe(lr=0.05, stem="cifar")) == ["this run: stem cifar; the report: torchvision",
                                                          "this run: lr 0.05; the report: 0.1"]
    assert differences(recipe(schedule="step", step_size=30)) == []  # main.py's StepLR(30): constant over 20
    assert differences(recipe(schedule="step", step_size=10)) == ["this run: schedule step; the report: constant"]
    assert "generated sample (1,000 training images)" in differences(recipe(SAMPLE))[0]
    mini = differences(recipe(data_record("../shared/data/mini.zip", None, 2_000, 1_000)))
    assert mini and "`../shared/data/mini.zip` (2,000 training, 1,000 validation images)" in mini[0]
    assert differences(None) == ["its summary records no recipe (trained before recipes were recorded)"]


def test_data_sources_are_recorded_relative_to_the_project():
    assert portable_source("file:///work/shared/data/t.zip", root="/work/main") == "../shared/data/t.zip"
    assert portable_source("/work/main/datasets/t.zip", root="/work/main") == "datasets/t.zip"
    assert portable_source("http://cs231n.stanford.edu/tiny-imagenet-200.zip") == \
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    assert portable_source("sample") == "sample"


def write(root: Path, rel: str, content) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


# --- the rules on crafted curves ----------------------------------------------------------------

def test_steady_decline():
    assert steady_decline([5.0 - 0.2 * i for i in range(20)])[0]
    assert steady_decline([5, 4, 4, 3, 3, 2])[0]                       # ties are not rises
    assert steady_decline([5, 4, 4.05, 3, 2, 1])[0]                    # a rise of 1.25% of the fall
    assert not steady_decline([5, 4, 4.5, 3, 2, 1])[0]                 # 12.5%
    assert not steady_decline([5, 4, 3, 4, 5, 6])[0]                   # ends above where it started
    assert not steady_decline([5, 5, 5])[0]                            # no fall at all


def test_overfitting():
    train = [4.0 - 0.2 * i for i in range(20)]
    val_rising = [3.0 - 0.1 * i for i in range(8)] + [2.3 + 0.05 * i for i in range(12)]
    acc = [10.0 + i for i in range(20)]
    assert overfitting(train, val_rising, acc, acc)[0]                  # val loss up 24% as train loss falls
    val_flat = [3.0 - 0.05 * i for i in range(20)]
    assert not overfitting(train, val_flat, acc, acc)[0]
    assert overfitting(train, val_flat, [a + 25 for a in acc], acc)[0]  # a 25-point accuracy gap
    assert not overfitting(train, val_flat, [a + 20 for a in acc], acc)[0]  # 20 points: not above the line
    # the validation loss rises, but so does the training loss: not over-fitting by this rule
    assert not overfitting(list(reversed(train)), val_rising, acc, acc)[0]


def test_validation_loss_rises():
    assert rises_with_epochs([3, 2, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0])[0]
    assert not rises_with_epochs([3, 2.5, 2, 1.8, 1.6, 1.5, 1.4, 1.3])[0]   # falls throughout
    assert not rises_with_epochs([3, 2, 1.8, 1.6, 1.5, 1.4, 1.3, 1.35])[0]  # lowest in the second half
    assert not rises_with_epochs([2, 1.0, 1.01, 1.02, 1.03, 1.04])[0]       # up by 4% only
    assert rises_with_epochs([1, 1, 1.2, 1.2])[0]                           # a tie: the first minimum counts


def test_accuracy_peaks_then_falls_slightly():
    rise = [10.0 + 2 * i for i in range(18)]                  # 10 .. 44
    assert peak_then_slight_fall(rise + [43.0, 42.5])[0]       # peak 44 at epoch 18, -1.5 at 20
    assert not peak_then_slight_fall(rise + [45.0, 46.0])[0]   # still rising: the peak is the last epoch
    assert not peak_then_slight_fall(rise + [40.0, 39.0])[0]   # a fall of 5 points is not slight
    assert not peak_then_slight_fall(rise + [44.0, 44.0])[0]   # a tie with the peak at the end: no fall
    assert not peak_then_slight_fall([30.0, 31.0, 32.0, 31.5])[0]  # rose 2 points only


def curves(root: Path, run: str, n: int, *, train_loss=None, val_loss=None, train_acc1=None, val_acc1=None):
    base = f"runs/resnet/{run}/dvclive/plots/metrics"
    values = {"train/loss": train_loss or [5 - 0.2 * i for i in range(n)],
              "val/loss": val_loss or [5 - 0.1 * i for i in range(n)],
              "train/acc1": train_acc1 or [2.0 + 5 * i for i in range(n)],
              "val/acc1": val_acc1 or [2.0 + 2 * i for i in range(n)]}
    for key, series in values.items():
        write(root, f"{base}/{key}.tsv", f"step\t{key.split('/')[1]}\n" + "".join(
            f"{i}\t{v}\n" for i, v in enumerate(series, 1)))
    write(root, "metrics/eval.json", {"run": run, "first": {"epoch": 7}, "last": {"epoch": 18}})


def trained(root: Path, run: str, recipe_block: dict) -> None:
    write(root, f"metrics/train_resnet_{run}.json", summary(6600.0, 0, "CPU X", recipe_block))


def ledger(root: Path, **changes) -> dict:
    claims = Ledger(Inputs(root), facts(**changes)).build()
    return {c.id: c for c in claims}


def test_curve_claims_on_a_full_run_and_a_short_one(tmp_path: Path):
    curves(tmp_path, "cpu", 20, val_loss=[3.0 - 0.1 * i for i in range(8)] + [2.3 + 0.05 * i for i in range(12)],
           val_acc1=[10.0 + 2 * i for i in range(18)] + [43.0, 42.5])
    trained(tmp_path, "cpu", recipe())  # the report's recipe: like with like
    c = ledger(tmp_path)
    assert c["C2"].verdict == SUPPORTED
    assert c["C3"].verdict == CONTRADICTED            # the validation loss rose 24%: over-fitting
    assert c["C4"].verdict == SUPPORTED and c["C4"].ours == "87.00% at epoch 18"  # within 5 points of 90
    assert c["C5"].verdict == SUPPORTED and c["C6"].verdict == SUPPORTED
    assert c["C4b"].verdict == NOT_MEASURABLE and "needs 21 epochs" in c["C4b"].reason
    short = tmp_path / "short"
    curves(short, "cpu", 2)
    s = ledger(short, epochs=2)
    for cid in ("C2", "C3", "C4", "C5", "C6"):
        assert s[cid].verdict == NOT_MEASURABLE and "has 2" in s[cid].reason and "resnet.epochs = 2" in s[cid].reason
    # The same curves from a run of the 64-px recipe: not comparable, the difference named, our
    # figures and what the rule gives on them still shown.
    trained(tmp_path, "cpu", recipe(input_size=64))
    fast = ledger(tmp_path)
    for cid in ("C2", "C3", "C4", "C5", "C6"):
        assert fast[cid].verdict == NOT_COMPARABLE and fast[cid].ours == c[cid].ours
        assert "this run: 64 px, RandomCrop(64, padding=4)" in fast[cid].reason
        assert "the report: main.py at 224" in fast[cid].reason
        assert fast[cid].reason.endswith(f"the rule gives: {c[cid].verdict}")
    trained(tmp_path, "cpu", recipe(SAMPLE))  # the report's recipe on the generated sample
    assert ledger(tmp_path)["C2"].verdict == NOT_COMPARABLE and "generated sample" in ledger(tmp_path)["C2"].reason
    write(tmp_path, "metrics/train_resnet_cpu.json", {**summary(6600.0, 0, "CPU X"), "recipe": None})  # before recipes
    assert "records no recipe" in ledger(tmp_path)["C3"].reason


def test_language_claims_need_their_corpus(tmp_path: Path):
    """C10a is about WikiText-2 itself; C12 and C14 about natural text; C11 about the architecture."""
    write(tmp_path, "runs/wordlm/lstm/dvclive/plots/metrics/valid/ppl.tsv", "step\tppl\n5\t220.0\n")
    probe = [{"id": cid, "statement": f"{cid} said", "rule": "r", "ours": "o", "verdict": SUPPORTED, "reason": ""}
             for cid in ("C11", "C12", "C14")]
    write(tmp_path, "reports/context_probe/claims.json", probe)
    for corpus, c10a, context in (({"source": "sample", "train_tokens": 27_097}, NOT_COMPARABLE, NOT_COMPARABLE),
                                  ({"source": "../shared/data/wikitext-2-sample", "train_tokens": 217_646},
                                   NOT_COMPARABLE, SUPPORTED),
                                  ({"source": "data", "train_tokens": 2_088_628}, SUPPORTED, SUPPORTED)):
        write(tmp_path, "metrics/corpus.json", corpus)
        c = ledger(tmp_path)
        assert c["C10a"].verdict == c10a and c["C10a"].ours.startswith("220.00")
        assert c["C11"].verdict == SUPPORTED
        assert c["C12"].verdict == c["C14"].verdict == context
    assert "217,646 training tokens" in ledger_with(tmp_path, {"source": "x", "train_tokens": 217_646})["C10a"].reason


def ledger_with(root: Path, corpus: dict) -> dict:
    write(root, "metrics/corpus.json", corpus)
    return ledger(root)



# --- paired intervals over validation images ----------------------------------------------------

def predictions(truth: list[int], top1: list[int], top5_right: list[bool]) -> pd.DataFrame:
    rows = []
    for i, (t, p, in5) in enumerate(zip(truth, top1, top5_right)):
        others = [c for c in range(10, 20) if c != t][:4]
        top = [p] + ([t] if in5 and p != t else []) + others
        rows.append({"file": f"val_{i}.JPEG", "true_index": t, **{f"top{k + 1}_index": top[k] for k in range(5)}})
    return pd.DataFrame(rows)


def test_paired_accuracy_intervals():
    n = 400
    truth = [i % 7 for i in range(n)]
    a = predictions(truth, [t if i % 2 else 9 for i, t in enumerate(truth)], [True] * n)  # Acc@1 50, Acc@5 100
    b = predictions(truth, truth, [True] * n)                                             # Acc@1 100
    acc = accuracy_intervals(a, b.sample(frac=1, random_state=0), resamples=500, seed=0)  # any row order
    (va, ia), (vb, ib), (change, bounds) = acc["acc1"]
    assert (va, vb, change) == (50.0, 100.0, 50.0)
    assert ia[0] < 50 < ia[1] and ib == (100.0, 100.0) and bounds[0] < 50 < bounds[1]
    assert bounds[1] - bounds[0] < 15  # about 2 x 1.96 x 2.5 points
    assert acc["acc5"][2] == (0.0, (0.0, 0.0))  # both right on every image: no change, no width
    with pytest.raises(ValueError, match="different images"):
        accuracy_intervals(a, b.iloc[1:], resamples=10, seed=0)


# --- C7: the timing claims with trained GPU variants ---------------------------------------------

def summary(seconds: float, gpus: int, device: str, recipe_block: dict | None = None) -> dict:
    """A trained variant's metrics/train_resnet_<variant>.json (the fields train_resnet writes), of
    the report's recipe unless ``recipe_block`` says otherwise."""
    return {"status": "trained", "processes": max(1, gpus), "gpus": gpus, "device": device, "precision": "bf16",
            "epochs": 20, "seconds_per_epoch": seconds, "images_per_second": 100_000 / seconds,
            "total_seconds": 20 * seconds, "recipe": recipe_block or recipe()}


def test_device_speedups_and_timing_verdicts_with_trained_gpus(tmp_path: Path):
    summaries = {"cpu": summary(6600.0, 0, "CPU X"), "gpu1": summary(300.0, 1, "GPU Y"),
                 "gpu8": summary(50.0, 8, "GPU Y")}
    metrics, table = compare_devices(summaries)
    assert metrics["speedup_over_cpu"] == {"gpu1": pytest.approx(22.0), "gpu8": pytest.approx(132.0)}
    assert metrics["scaling_efficiency"] == {"gpu8": pytest.approx(0.75)}  # 300 / 50 / 8
    assert table.set_index("variant").loc["gpu1", "scaling_efficiency"] is None or \
        pd.isna(table.set_index("variant").loc["gpu1", "scaling_efficiency"])
    for variant, s in summaries.items():
        write(tmp_path, f"metrics/train_resnet_{variant}.json", s)
    c = ledger(tmp_path)
    assert c["C7a"].verdict == SUPPORTED  # the report's own figures add up
    assert c["C7b"].verdict == SUPPORTED and c["C7b"].ours.startswith("110.00 min an epoch")  # 6600 s = 110 min
    assert c["C7c"].verdict == SUPPORTED and c["C7c"].ours.startswith("22.0x")
    assert c["C7d"].verdict == CONTRADICTED and c["C7d"].ours.startswith("6.00x, 75%")  # 6x: past 2 x 1.74
    # eight GPUs that scale as the report's did
    write(tmp_path, "metrics/train_resnet_gpu8.json", summary(300 / 1.8, 8, "GPU Y"))
    assert ledger(tmp_path)["C7d"].verdict == SUPPORTED
    # GPU variants skipped, as on a CPU-only host
    for variant in ("gpu1", "gpu8"):
        write(tmp_path, f"metrics/train_resnet_{variant}.json", {"status": "skipped", "gpus": 1})
    c = ledger(tmp_path)
    assert c["C7c"].verdict == c["C7d"].verdict == NOT_MEASURABLE
    assert "no gpu1 variant trained" in c["C7c"].reason and "no gpu1 or gpu8 variant" in c["C7d"].reason
    # a CPU run of the 64-px recipe: its minutes an epoch are not the report's experiment's
    write(tmp_path, "metrics/train_resnet_cpu.json", summary(6600.0, 0, "CPU X", recipe(input_size=64)))
    c7b = ledger(tmp_path)["C7b"]
    assert c7b.verdict == NOT_COMPARABLE and "64 px" in c7b.reason and c7b.reason.endswith("gives: supported")


# --- the ledger of the default pipeline (tiny params) ------------------------------------------

def test_the_default_run_writes_a_ledger_with_every_claim(reproduced: Path):
    records = json.loads((reproduced / "reports/claims.json").read_text())
    assert [r["id"] for r in records] == CLAIM_IDS
    for r in records:
        assert r["verdict"] in VERDICTS and r["rule"] and r["statement"], r
        assert (r["verdict"] in (NOT_MEASURABLE, NOT_COMPARABLE)) == bool(r["reason"]), r
    by_id = {r["id"]: r for r in records}
    assert by_id["C1"]["verdict"] == SUPPORTED  # the architecture does not depend on the data
    assert by_id["C7a"]["verdict"] == SUPPORTED
    assert by_id["C11"]["verdict"] == SUPPORTED  # the CNN's loss does not change beyond its receptive field
    assert by_id["C2"]["reason"].startswith("needs 20 epochs")  # the tiny params train 2
    assert "no gpu1 variant trained" in by_id["C7c"]["reason"]
    counts = json.loads((reproduced / "metrics/claims.json").read_text())
    assert counts == {"claims": len(CLAIM_IDS), **{v.replace(" ", "_"): sum(r["verdict"] == v for r in records)
                                                   for v in VERDICTS}}
    page = (reproduced / "reports/claims.md").read_text()
    for r in records:
        assert f"| {r['id']} | {r['statement']} |" in page and f"- **{r['id']}**: {r['rule']}." in page
    report = (reproduced / "reports/report/report.md").read_text()
    assert "[the claims ledger](../claims.md)" in report and f"{counts['supported']} are supported" in report


def test_deps_are_exactly_what_the_ledger_reads(reproduced: Path):
    params = read_params(reproduced / "params.yaml")
    _, asked, _ = build_ledger(reproduced, facts(variants=list(params["resnet_runs"]),
                                              lm_models=list(params["wordlm"]["models"])))
    deps = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["claims"]["deps"]) - CODE_DEPS

    def under(path: str, roots: set[str]) -> bool:
        return any(path == r or path.startswith(r + "/") for r in roots)

    for path in asked:
        assert under(path, deps), f"{path} is read but not a dep of the claims stage"
    # the curves read are those of the run eval_epochs evaluated (eval.run: auto picks one), so the
    # stage depends on every variant's; the others are never read here
    curve_deps = {f"runs/resnet/{v}/dvclive" for v in params["resnet_runs"]}
    for dep in deps - curve_deps:
        assert any(under(path, {dep}) for path in asked), f"dep {dep} is never read"
    assert sum(any(under(path, {dep}) for path in asked) for dep in curve_deps) == 1


def test_dvc_repro_claims_and_its_metrics(reproduced: Path, tmp_path: Path):
    """docs/claims.md's commands, in a clone of the reproduced run (its experiment stays there):
    the stage alone (nothing else re-runs), then its counts."""
    from conftest import ran, run

    # A clone sharing the reproduced run's cache (and so its run-cache) whose outputs are copies:
    # a hard link here would change the link counts tests/test_pipeline.py checks in that run.
    project = tmp_path / "project"
    run(["git", "clone", "-q", str(reproduced), str(project)], cwd=tmp_path)
    run(["dvc", "cache", "dir", "--local", str(reproduced / ".dvc" / "cache")], cwd=project)
    run(["dvc", "config", "--local", "cache.type", "copy"], cwd=project)
    run(["dvc", "checkout"], cwd=project)
    out = run(["dvc", "repro", "claims"], cwd=project).stdout
    assert "Running stage" not in out, out  # up to date after the full run
    out = run(["dvc", "exp", "run", "-S", "claims.bootstrap=300", "claims"], cwd=project).stdout
    assert ran(out, "claims") and out.count("Running stage") == 1, out
    shown = run(["dvc", "metrics", "show", "metrics/claims.json"], cwd=project).stdout
    counts = json.loads((project / "metrics/claims.json").read_text())
    header, values = shown.splitlines()[:2]
    assert "not_measurable" in header and "supported" in header and str(counts["claims"]) in values


def test_record_result_copies_a_run(reproduced: Path, tmp_path: Path):
    """tools/record_result.py, as docs/results/ was made: the report, the ledger, the curves and the
    metrics of a run, with the params it changed against the committed params.yaml."""
    import subprocess
    import sys

    out = tmp_path / "result"
    subprocess.run([sys.executable, str(REPO / "tools" / "record_result.py"), str(reproduced), str(out),
                    "--note", "a test"], check=True, capture_output=True, text=True)
    run_facts = json.loads((out / "run.json").read_text())
    assert run_facts["epochs_completed"] == 2 and run_facts["note"] == "a test"
    assert run_facts["params_changed"]["resnet.epochs"] == 2  # the tiny params against the committed 20
    assert (out / "report" / "report.md").is_file() and (out / "claims.md").is_file()
    assert (out / "curves" / "val" / "acc1.tsv").is_file() and (out / "metrics" / "claims.json").is_file()


def test_a_recorded_ledger_judged_again_keeps_its_figures(tmp_path: Path):
    """tools/rejudge_result.py's core: recorded verdicts of a 64-px run become not comparable with
    what the rule gave kept; claims with no recipe to match, or not measurable anyway, stay."""
    from dlreport.claims import regate

    trained(tmp_path, "cpu", recipe(input_size=64))
    write(tmp_path, "metrics/eval.json", {"run": "cpu", "first": {"epoch": 7}, "last": {"epoch": 18}})
    write(tmp_path, "metrics/corpus.json", {"source": "sample", "train_tokens": 27_097})
    records = [{"id": cid, "statement": "s", "report": "r", "ours": f"ours {cid}", "rule": "old rule",
                "verdict": verdict, "reason": reason} for cid, verdict, reason in (
        ("C1", SUPPORTED, ""), ("C3", CONTRADICTED, ""), ("C4b", NOT_MEASURABLE, "needs 21 epochs"),
        ("C7a", SUPPORTED, ""), ("C9", SUPPORTED, ""),
        ("C10a", NOT_MEASURABLE, "sample corpus: ...; on this run's numbers the rule gives: contradicted"))]
    c = {claim.id: claim for claim in regate(records, Ledger(Inputs(tmp_path), facts()))}
    assert c["C1"].verdict == c["C7a"].verdict == SUPPORTED
    assert c["C3"].verdict == NOT_COMPARABLE and c["C3"].reason.endswith("the rule gives: contradicted")
    assert "64 px" in c["C3"].reason and c["C3"].ours == "ours C3" and c["C3"].rule != "old rule"
    assert c["C9"].verdict == NOT_COMPARABLE and c["C9"].reason.endswith("gives: supported")
    assert c["C4b"].verdict == NOT_MEASURABLE and c["C4b"].reason == "needs 21 epochs"
    assert c["C10a"].verdict == NOT_COMPARABLE and "generated sample" in c["C10a"].reason
    assert c["C10a"].reason.endswith("the rule gives: contradicted")


def test_the_recorded_real_run_is_judged_by_todays_rules(tmp_path: Path):
    """docs/claims.md's `python tools/rejudge_result.py docs/results/<name>`: on a copy of the
    recorded 64-px real run, the committed ledger is what today's rules give (judging it again
    changes nothing), and its recorded data source is relative to the project."""
    import shutil
    import subprocess
    import sys

    recorded = REPO / "docs" / "results" / "tinyimagenet-real-cpu"
    copy = tmp_path / "result"
    shutil.copytree(recorded, copy)
    subprocess.run([sys.executable, str(REPO / "tools" / "rejudge_result.py"), str(copy)], check=True,
                   capture_output=True, text=True)
    for rel in ("claims.json", "metrics/claims.json", "metrics/train_resnet_cpu.json"):
        assert json.loads((copy / rel).read_text()) == json.loads((recorded / rel).read_text()), rel
    run_facts = json.loads((recorded / "run.json").read_text())
    assert run_facts["params_changed"]["tinyimagenet.source"] == "../shared/data/tiny-imagenet-200.zip"
    summary = json.loads((recorded / "metrics/train_resnet_cpu.json").read_text())
    assert summary["recipe"]["input_size"] == 64 and summary["recipe"]["data"]["train_images"] == 100_000
    records = {c["id"]: c for c in json.loads((recorded / "claims.json").read_text())}
    assert records["C8a"]["verdict"] == NOT_COMPARABLE and "64 px" in records["C8a"]["reason"]


def test_the_ledger_template_writes_the_recorded_ledger_unchanged():
    """reports/claims.md is worded by dlreport/templates/claims.md.j2. Rendered from the recorded real
    run's rows (docs/results/tinyimagenet-real-cpu/claims.json), it is byte for byte the page the
    string-built render wrote there before the template (claims.md, committed before it)."""
    recorded = REPO / "docs" / "results" / "tinyimagenet-real-cpu"
    page = (recorded / "claims.md").read_text()
    about = page.splitlines()[2].split(" Verdicts: ")[0]  # the run's own sentence, as recorded
    claims = [Claim(**r) for r in json.loads((recorded / "claims.json").read_text())]
    bootstrap = load_params(REPO / "params.yaml", "claims")["claims"].bootstrap
    assert render(claims, facts(bootstrap=bootstrap), about) == page
    # a reason with a | stays inside its cell; a claim without a reason shows its verdict alone
    odd = [Claim("C1", "a | b", "r", "-", "rule", NOT_COMPARABLE, "x | y"), Claim("C2", "s", "r", "o", "rule", SUPPORTED, "")]
    text = render(odd, facts(), "About.")
    assert "| C1 | a \\| b | r | - | **not comparable**: x \\| y |\n| C2 | s | r | o | **supported** |" in text
