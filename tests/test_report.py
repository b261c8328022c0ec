"""The report stage: on a real tiny end-to-end run of the whole pipeline, and on hand-made outputs."""
from __future__ import annotations

import json
import math
import re
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, produced, ran, run
from dlreport.report import Inputs, Report, build_report
from dlreport.params import read_params

CODE_DEPS = {"stages/report.py", "dlreport/report.py", "dlreport/reporting.py", "dlreport/templates/report.md.j2",
             "dlreport/templates/verdicts.md.j2", "dlreport/templates/macros.md.j2"}


def sections(text: str) -> dict[str, str]:
    """'## 3. Title' -> {'3': body}."""
    parts = re.split(r"^## (\d)\. .*$", text, flags=re.M)
    return {number: body for number, body in zip(parts[1::2], parts[2::2])}


def table_rows(body: str, first_cell: str) -> list[list[str]]:
    """The cells of every Markdown table row of ``body`` whose first cell is ``first_cell``."""
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in body.splitlines()
            if line.startswith("| ")]
    return [row for row in rows if row[0] == first_cell]


def images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def read(project: Path, path: str):
    return json.loads((project / path).read_text())


@pytest.fixture(scope="module")
def report(reported: Path) -> dict[str, str]:
    return sections((reported / "reports/report/report.md").read_text())


def test_every_section_is_there(reported: Path, report: dict):
    assert sorted(report) == ["1", "2", "3", "4", "5", "6", "7"]
    for number in "123456":
        assert "Not available" not in report[number], report[number]
    for name in ("lstm", "transformer", "gcnn"):
        summary = read(reported, f"metrics/train_wordlm_{name}.json")
        row = table_rows(report["5"], name)[0]
        assert row[5] == f"{summary['best_valid_ppl']:.2f}" and row[6] == f"{summary['test_ppl']:.2f}"
        probe = read(reported, f"metrics/context_probe/{name}.json")
        assert table_rows(report["6"], name)[0][3] == (f"{probe['effective_context']} [{probe['effective_context_low']}, "
                                                       f"{probe['effective_context_high']}]")
    generated = (reported / "reports/generated.txt").read_text().splitlines()
    assert generated[0] in report["5"]
    assert images(report["5"]) and images(report["6"])


def test_layer_table_and_curves_match_their_sources(reported: Path, report: dict):
    shapes = pd.read_csv(reported / "reports/layer_shapes.csv")
    for layer, output in zip(shapes.layer, shapes.output):
        assert table_rows(report["1"], layer) == [[layer, str(output)]]
    assert "64x64" in report["1"]
    base = reported / "runs/resnet/cpu/dvclive/plots/metrics"
    for split in ("train", "val"):
        for metric in ("loss", "acc1", "acc5"):
            tsv = pd.read_csv(base / split / f"{metric}.tsv", sep="\t")
            header = table_rows(report["2"], "epoch")[0]
            column = header.index(f"{split}/{metric}")
            for step, value in zip(tsv.step, tsv[metric]):
                assert table_rows(report["2"], str(step))[0][column] == f"{value:.2f}"
    assert "![" in report["2"] and "resnet_curves_cpu.png" in report["2"]


def test_device_table_and_skip_reasons(reported: Path, report: dict):
    cpu = pd.read_csv(reported / "reports/device_comparison.csv").set_index("variant").loc["cpu"]
    row = table_rows(report["3"], "cpu")[0]
    assert row[1] == "trained" and row[5] == f"{cpu['seconds_per_epoch']:.2f}"
    assert row[6] == f"{cpu['images_per_second']:.1f}" and row[7] == f"{cpu['total_seconds']:.2f}"
    assert row[8] == f"{cpu['speedup_over_cpu']:.2f}" and row[9] == "-"
    for variant in ("gpu1", "gpu8"):
        reason = read(reported, f"runs/resnet/{variant}/status.json")["reason"]
        assert "devices=0" in reason
        assert table_rows(report["3"], variant)[0][1] == f"skipped: {reason}"
        assert f"Skipped: {reason}" in report["2"]
    assert "No GPU variant trained" in report["3"]


def test_checkpoints_and_their_differences(reported: Path, report: dict):
    ev, diff = read(reported, "metrics/eval.json"), read(reported, "reports/diff_predictions/summary.json")
    body = report["4"]
    first, last = ev["first"], ev["last"]
    assert first["epoch"] != last["epoch"]  # TINY_PARAMS evaluates epochs 1 and 2
    for entry in (first, last):
        assert table_rows(body, f"epoch {entry['epoch']}")[0][1:] == [
            f"{entry['acc1']:.2f}", f"{entry['acc5']:.2f}", f"{entry['loss']:.4f}"]
    assert table_rows(body, "difference (last - first)")[0][1:] == [
        f"{ev['change']['acc1']:+.2f}", f"{ev['change']['acc5']:+.2f}", f"{ev['change']['loss']:+.4f}"]
    assert table_rows(body, "both right")[0][1] == str(diff["both_right"])
    assert table_rows(body, f"only A (epoch {diff['epoch_a']}) right")[0][1] == str(diff["only_a_right"])
    assert table_rows(body, f"only B (epoch {diff['epoch_b']}) right")[0][1] == str(diff["only_b_right"])
    assert table_rows(body, "differing top-1 predictions")[0][1] == str(diff["differing"])
    assert f"p = {diff['mcnemar_p']:.4g}." in body
    listed = (reported / "reports/diff_predictions/diff_predictions.txt").read_text().splitlines()[1:]
    files = [line.split()[0] for line in listed]
    rows = [line for line in body.splitlines() if re.match(r"\| val_\d+\.JPEG \|", line)]
    assert len(rows) == diff["differing"] == len(files)
    assert [r.split(" | ")[0].strip("| ") for r in rows] == files


def test_figures_exist_and_open(reported: Path):
    folder = reported / "reports/report"
    text = (folder / "report.md").read_text()
    refs = images(text)
    assert {"resnet_curves_cpu.png", "diff_grid.png"} <= set(refs)
    assert sorted(p.name for p in folder.iterdir()) == sorted(refs + ["report.md"])
    for ref in refs:
        with Image.open(folder / ref) as image:
            image.verify()
        with Image.open(folder / ref) as image:
            assert image.format == "PNG" and min(image.size) > 100
    assert (folder / "diff_grid.png").read_bytes() == \
        (reported / "reports/diff_predictions/diff_grid.png").read_bytes()


def test_provenance(reported: Path, report: dict):
    # The report was written before its results were committed: it names the code's commit.
    commit = run(["git", "rev-parse", "HEAD~1"], cwd=reported).stdout.strip()
    body = report["7"]
    assert f"git commit: `{commit}`" in body
    assert "params: as committed" in body
    lock = yaml.safe_load((reported / "dvc.lock").read_text())
    dataset = lock["stages"]["download_tinyimagenet"]["outs"][0]["md5"]
    assert "source `sample`" in body and dataset in body
    from importlib.metadata import version

    assert f"torch {version('torch')}" in body and "dvc 3." in body and "python 3." in body


def test_deps_are_exactly_what_the_report_reads(reported: Path, tmp_path: Path):
    """Every input the report reads is a dep of the stage, and every dep is read."""
    asked = build_report(reported, tmp_path / "out")["inputs"]
    deps = report_deps()

    def under(path: str, roots: set[str]) -> bool:
        return any(path == r or path.startswith(r + "/") for r in roots)

    for path in asked:
        assert under(path, deps), f"{path} is read but not a dep of the report stage"
    for dep in deps:
        assert any(under(path, {dep}) for path in asked), f"dep {dep} is never read"


def report_deps() -> set[str]:
    return set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["deps"]) - CODE_DEPS


def test_reruns_exactly_when_an_input_changes(reported: Path):
    again = run(["dvc", "repro", "report"], cwd=reported).stdout
    assert "Running stage" not in again, again
    out = run(["dvc", "exp", "run", "-S", "eval.epochs=[2]", "report"], cwd=reported).stdout
    assert produced(out, "eval_epochs") and produced(out, "report") and not ran(out, "train_resnet@cpu"), out
    report = sections((reported / "reports/report/report.md").read_text())
    ev = read(reported, "metrics/eval.json")
    assert ev["first"]["epoch"] == ev["last"]["epoch"] == 2
    assert "only epoch 2 was evaluated" in report["4"]
    assert table_rows(report["7"], "eval.epochs")[0][1:] == ["[1, 2]", "[2]"]


# --- unit level: hand-made outputs in the formats the stages write ------------------------------

LM_PARAMS = {
    "wordlm": {"corpus": "sample", "train": {"epochs": 2, "batch_size": 20, "bptt": 35},
               "models": {"lstm": {"type": "LSTM"}, "gcnn": {"type": "GCNN"}}},
    "generate": {"model": "lstm", "temperature": 1.0, "seed": 1111},
}


def write(root: Path, rel: str, content) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def lm_outputs(root: Path) -> dict:
    """What train_wordlm@lstm/gcnn, generate_text and context_probe write (made by hand)."""
    summaries = {
        "lstm": dict(parameters=1234567, trained_context=35, best_valid_ppl=math.exp(5.1), test_ppl=math.exp(5.0),
                     seconds=10.0, tokens_per_s=2631.6),
        "gcnn": dict(parameters=765432, trained_context=31, receptive_field=31, best_valid_ppl=math.exp(5.4),
                     test_ppl=math.exp(5.3), seconds=8.0, tokens_per_s=3333.3),
    }
    valid_losses = {"lstm": [5.6, 5.1], "gcnn": [5.4, 5.5]}  # the gcnn's best epoch is the first
    for name, summary in summaries.items():
        write(root, f"metrics/train_wordlm_{name}.json", summary)
        base = f"runs/wordlm/{name}/dvclive/plots/metrics"
        write(root, f"{base}/train/ppl.tsv", "step\tppl\n20\t900.0\n40\t400.0\n60\t300.0\n")
        write(root, f"{base}/valid/ppl.tsv", "step\tppl\n" + "".join(f"{i}\t{math.exp(v)}\n" for i, v in
                                                                   enumerate(valid_losses[name], 1)))
        write(root, f"{base}/valid/loss.tsv", "step\tloss\n" + "".join(f"{i}\t{v}\n" for i, v in
                                                                     enumerate(valid_losses[name], 1)))
    words = [f"w{i}" for i in range(200)]
    write(root, "reports/generated.txt", "\n".join(" ".join(words[i:i + 20]) for i in range(0, 200, 20)) + "\n")
    probe = {"targets": 50, "models": {
        "lstm": dict(trained_context=35, effective_context=16, effective_context_low=8, effective_context_high=32,
                     best_ppl=math.exp(5.0)),
        "gcnn": dict(trained_context=31, effective_context=8, effective_context_low=8, effective_context_high=16,
                     best_ppl=math.exp(5.3), receptive_field=31)}}
    write(root, "reports/context_probe/summary.json", probe)
    folder = "reports/context_probe"
    curve = "".join(f"{m},{k},{math.exp(b + 1 / k)},{math.exp(b + 1 / k - 0.1)},{math.exp(b + 1 / k + 0.1)}\n"
                    for m, b, ks in (("lstm", 5.0, (1, 2, 4, 8, 16, 32, 35)), ("gcnn", 5.3, (1, 2, 4, 8, 16, 31)))
                    for k in ks)
    write(root, f"{folder}/perplexity.csv", "model,context,ppl,lower,upper\n" + curve)
    write(root, f"{folder}/perplexity_extrapolation.csv", "model,context,ppl,lower,upper\n"
          f"lstm,64,{math.exp(5.0)},{math.exp(4.9)},{math.exp(5.1)}\ngcnn,64,{math.exp(5.3)},{math.exp(5.2)},{math.exp(5.4)}\n")
    for kind in ("shuffle", "random"):
        write(root, f"{folder}/{kind}_increase.csv", "model,distance,increase,lower,upper\n"
              "lstm,1,0.5,0.4,0.6\nlstm,10,0.05,0.0,0.1\ngcnn,1,0.4,0.3,0.5\ngcnn,10,0.0,0.0,0.0\n")
    write(root, f"{folder}/findings.md", "# Context probe: how much context the language models use\n\n"
          "1. **A CNN sees a window fixed by its kernel size, depth and dilation.** Supported.\n")
    (root / "reports/lm_cost").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "reports/lm_cost/cost.png")  # lm_cost's figure
    return {"summaries": summaries, "probe": probe, "words": words, "best_epoch": {"lstm": 2, "gcnn": 1}}


def test_lm_and_context_sections_render_their_numbers(tmp_path: Path):
    made = lm_outputs(tmp_path)
    # (the ResNet sections' variants are the keys of resnet_runs: one, whose outputs are absent)
    result = build_report(tmp_path, tmp_path / "out", params={**LM_PARAMS, "resnet_runs": {"cpu": {}}})
    report = sections(result["text"])
    lm, context = report["5"], report["6"]
    assert "Not available" not in lm and "Not available" not in context
    for name, s in made["summaries"].items():
        row = table_rows(lm, name)[0]
        assert row[1] == LM_PARAMS["wordlm"]["models"][name]["type"] and row[2] == f"{s['parameters']:,}"
        assert row[4] == str(made["best_epoch"][name]) and row[9] == str(s["trained_context"])
        assert row[5] == f"{s['best_valid_ppl']:.2f}" and row[6] == f"{s['test_ppl']:.2f}"
        assert f"| End of training | test loss {math.log(s['test_ppl']):5.2f} | test ppl {s['test_ppl']:8.2f}" in lm
    assert "w0 w1 w2" in lm and "w99" in lm and "w100" not in lm  # the first 5 lines of 20 words
    assert "200 words; model lstm" in lm
    for name, r in made["probe"]["models"].items():
        row = table_rows(context, name)[0]
        assert row[2] == str(r["trained_context"]) and row[4] == f"{r['best_ppl']:.2f}"
        assert row[3] == f"{r['effective_context']} [{r['effective_context_low']}, {r['effective_context_high']}]"
        assert row[6] == str(r.get("receptive_field", "-"))
    assert "sees at most 31 tokens (its receptive field); its measured effective context, 8 [8, 16] tokens, lies " \
           "inside it" in context
    assert "> 1. **A CNN sees a window fixed by its kernel size, depth and dilation.** Supported." in context
    assert {"wordlm_curves.png", "context_probe.png", "lm_cost.png"} <= set(images(result["text"]))
    for ref in images(result["text"]):
        with Image.open(tmp_path / "out" / ref) as image:
            assert image.format == "PNG"
    # No ResNet outputs here: those sections say so instead of failing; no git: commit unknown.
    for number in "1234":
        assert "Not available" in report[number]
    assert "git commit: `unknown`" in report["7"]


def test_the_lm_deps_are_what_the_lm_sections_read(tmp_path: Path):
    lm_outputs(tmp_path)
    models = read_params(REPO / "params.yaml")["wordlm"]["models"]  # what dvc.yaml lists
    params = {**LM_PARAMS, "wordlm": {**LM_PARAMS["wordlm"], "models": {m: {} for m in models}}}
    asked = build_report(tmp_path, tmp_path / "out", params=params)["inputs"]
    lm = {p for p in asked if "wordlm" in p or "generated" in p or "context_probe" in p}
    pending = {d for d in report_deps() if "wordlm" in d or "generated" in d or "context_probe" in d}
    assert all(any(p == d or p.startswith(d + "/") for d in pending) for p in lm), (lm, pending)
    assert all(any(p == d or p.startswith(d + "/") for p in lm) for d in pending), (lm, pending)


def test_a_trained_gpu_variant_gets_its_scaling_and_a_skipped_one_its_reason(tmp_path: Path):
    reason = "needs 8 GPU(s) but this experiment may use devices=1; on a host with 8 GPUs run: dvc exp run -S devices=8"
    write(tmp_path, "reports/device_comparison.csv",
          "variant,device,gpus,processes,seconds_per_epoch,images_per_second,total_seconds,speedup_over_cpu,"
          "scaling_efficiency\n"
          "cpu,CPU X,0,1,100.0,1000.0,2000.0,1.0,\n"
          "gpu1,GPU Y,1,1,8.0,12500.0,160.0,12.5,\n")
    write(tmp_path, "metrics/train_resnet_gpu8.json", {"status": "skipped", "variant": "gpu8", "gpus": 8})
    write(tmp_path, "runs/resnet/gpu8/status.json", {"status": "skipped", "reason": reason})
    variants = {"resnet_runs": {"cpu": {}, "gpu1": {}, "gpu8": {}}}  # the report's rows: the keys of resnet_runs
    body = sections(build_report(tmp_path, tmp_path / "out", params=variants)["text"])["3"]
    assert table_rows(body, "gpu1")[0][1:] == ["trained", "GPU Y", "1", "1", "8.00", "12500.0", "160.00",
                                               "12.50", "-"]
    assert table_rows(body, "gpu8")[0][1] == f"skipped: {reason}"
    assert "No GPU variant trained" not in body


# --- the templates word the report as the string-built code did --------------------------------

def report_before_templates():
    """dlreport/report.py as it was before templates/report.md.j2 (the parent of the commit that
    added it), from git: the report it writes from the same inputs is the one to match."""
    added = run(["git", "log", "--diff-filter=A", "--format=%H", "--", "dlreport/templates/report.md.j2"], cwd=REPO,
                check=False).stdout.split()
    if not added:
        pytest.skip("no git history of dlreport/templates/report.md.j2 here (a shallow or exported tree)")
    module = types.ModuleType("report_before_templates")
    source = run(["git", "show", f"{added[-1]}^:dlreport/report.py"], cwd=REPO).stdout
    exec(compile(source, "report_before_templates.py", "exec"), module.__dict__)
    return module


def assert_worded_as_before(root: Path, params: dict, out: Path) -> str:
    """The same report, figures and inputs read (in the same order) as the code before the templates."""
    before = report_before_templates()
    old = before.Report(before.Inputs(root), params, out / "before")
    new = Report(Inputs(root), params, out / "after")
    for report in (old, new):
        report.out.mkdir(parents=True)
    text = new.render()
    assert text == old.render()
    assert new.figures == old.figures and new.inputs.asked == old.inputs.asked
    return text


def test_the_default_runs_report_is_worded_as_before(reported: Path, tmp_path: Path):
    """The whole pipeline's report (every section with its figures and tables) from the template is
    the string-built report of the same outputs, byte for byte."""
    text = assert_worded_as_before(reported, read_params(reported / "params.yaml"), tmp_path)
    assert "Not available" not in text.split("## 7.")[0]


def test_the_lm_sections_and_the_missing_inputs_are_worded_as_before(tmp_path: Path):
    """Sections 5 and 6 with every value (hand-made outputs), the ResNet sections with their inputs
    absent ("not available", the file named), an empty folder, and the recorded real run's folder."""
    lm_outputs(tmp_path / "lm")
    text = assert_worded_as_before(tmp_path / "lm", {**LM_PARAMS, "resnet_runs": {"cpu": {}}}, tmp_path / "out1")
    assert "*Not available: `reports/layer_shapes.csv` absent.* (stage `layer_shapes`)" in text
    (tmp_path / "empty").mkdir()
    text = assert_worded_as_before(tmp_path / "empty", read_params(REPO / "params.yaml"), tmp_path / "out2")
    assert "*Not available: `metrics/claims.json` absent.* (stage `claims`): no claims ledger." in text
    assert_worded_as_before(REPO / "docs" / "results" / "tinyimagenet-real-cpu", {}, tmp_path / "out3")
