"""The README and docs/ against the project: the README stays short and lists every docs/ page;
its test command is the one CI runs; the stage graph is `dvc dag`'s; every link resolves; every
figure that moves with a re-run is the committed metrics', params' or files' own; every command
shown parses, names real stages, params and flags, and names the test that runs it - so a change
that makes one of them stale fails here instead of misleading a reader."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run
from dlreport.claims import REPORT_ACC1, REPORT_ACC5

README = (REPO / "README.md").read_text()
README_MAX_LINES = 150
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))                            # each listed in the README's contents
# each link and command checked - but not a recorded run's report (docs/results/<run>/report/): it is
# what that run's report stage wrote, its links pointing into the run's own project
DOCUMENTS = [REPO / "README.md", *sorted(p for p in DOCS.rglob("*.md") if p.parent.name != "report")]
WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


# --------------------------------------------------------------------------------------
# Reading the pages
# --------------------------------------------------------------------------------------
def read(name: str) -> str:
    return (REPO / name).read_text()


def section(title: str, doc: str = "README.md") -> str:
    """The text of ``doc`` from the heading ``title`` to the next heading of the same level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^\1 |\Z)", read(doc), re.M | re.S)
    assert match, f"{doc} has no section {title!r}"
    return match.group(2)


def flat(text: str) -> str:
    """Text with every run of whitespace one space, so a figure may wrap across lines."""
    return " ".join(text.split())


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def committed(path: str) -> str:
    """A file as git's index holds it (the committed version, or the one staged to commit): the pages
    quote the committed run, and a user's own `dvc repro` (README command 1) rewrites metrics/ with
    this machine's timings before the tests run. The working file outside a git checkout."""
    shown = subprocess.run(["git", "show", f":{path}"], cwd=REPO, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (REPO / path).read_text()


def metrics(name: str) -> dict:
    return json.loads(committed(f"metrics/{name}"))


def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def p_value(log10_p: float) -> str:
    return f"{10 ** log10_p:.1e}"


def cpu_label(summary: dict) -> str:
    """How the pages name the CPU a run's metrics record (torch's capability level, native bf16)."""
    labels = {("AVX512", True): "AVX-512 BF16", ("AVX2", False): "AVX2"}
    key = (summary["cpu_capability"], summary["cpu_bf16"])
    assert key in labels, f"the committed run is from a CPU the docs do not name yet: {key}; add it here"
    return labels[key]


def assert_says(text: str, figures: list[str], where: str):
    for figure in figures:
        assert figure in flat(text), f"{where} does not say {figure!r} (its source does)"


# --------------------------------------------------------------------------------------
# Shape: a short README, one page per topic, each listed and each opening with what it answers
# --------------------------------------------------------------------------------------
def test_readme_is_short_and_its_contents_list_every_docs_page():
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES} (move the rest to docs/)"
    contents = section("Documentation")
    rows = [row for row in contents.splitlines() if row.startswith("| [")]
    listed = {link for row in rows for link in re.findall(r"\]\((docs/[^)#]+)\)", row)}
    for page in PAGES:
        name = str(page.relative_to(REPO))
        assert name in listed, f"README's Documentation table does not link {name}"
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) >= 2 and cells[1], f"a contents row without what the page answers: {row}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_opens_with_what_it_answers(page: Path):
    paragraphs = page.read_text().split("\n\n")
    assert paragraphs[0].startswith("# ") and "\n" not in paragraphs[0], f"{page.name}: no title line first"
    opening = paragraphs[1]
    assert not opening.startswith(("#", "|", "```", "-", "!", "*")), f"{page.name} opens with {opening[:40]!r}"
    assert len(opening.splitlines()) <= 4, f"{page.name}: its opening says more than what it answers"


def test_the_test_command_is_what_ci_runs():
    install, tests = code_blocks(section("Two commands"), "bash")[:2]
    assert "dvc repro" in install
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    for step in tests.strip().split(" && "):
        # CI's pip is quiet (-q); the command is otherwise the README's, word for word.
        assert any(line.replace(" -q ", " ") == step.replace(" -q ", " ") for line in ci_lines), \
            f"the README's test command step {step!r} is not a line of .ci/run"
    assert ci_lines[-1] == ".venv/bin/python -m pytest -q"


# --------------------------------------------------------------------------------------
# The pipeline page: dvc dag's graph, every stage in the tables
# --------------------------------------------------------------------------------------
@cache
def stage_names() -> tuple[str, ...]:
    return tuple(run(["dvc", "stage", "list", "--name-only"], cwd=REPO).stdout.split())


def test_stage_graph_is_dvc_dag():
    shown = run(["dvc", "dag", "--md"], cwd=REPO).stdout
    graph = re.search(r"```mermaid\n.*?```", shown, re.S).group(0)
    assert graph in read("docs/pipeline.md"), f"docs/pipeline.md's stage graph is not `dvc dag --md`'s; paste:\n{graph}"


def test_stage_tables_name_every_stage():
    named = set()
    for row in section("What each stage writes", "docs/pipeline.md").splitlines():
        if not row.startswith("| `"):
            continue
        base = None
        for name in re.findall(r"`([^`]+)`", row.split(" | ")[0]):
            base = name.split("@")[0] if not name.startswith("@") else base
            named.add(base + name if name.startswith("@") else name)
    assert named == set(stage_names()), \
        f"docs/pipeline.md's stage tables name {sorted(named)}; dvc.yaml has {sorted(stage_names())}"


# --------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------
def project_files() -> set[str]:
    """What a clone holds: tracked files and new ones not ignored (work in progress counts)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return set(listed)


def stage_outputs() -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])]


def github_anchors(markdown: str) -> set[str]:
    """The #anchors GitHub gives a page's headings: lower case, punctuation but - and _ dropped,
    spaces to hyphens, a repeated heading numbered."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path):
    """Each relative link is a file (or folder) of the project or one a stage writes (the report),
    and each #anchor a heading of the page it points into."""
    files, outputs = project_files(), stage_outputs()
    folders = {str(Path(f).parent) for f in files} | {str(p) for f in files for p in Path(f).parents}
    text = doc.read_text()
    links = re.findall(r"\]\(((?!https?:|mailto:)[^)\s]+)\)", prose(text))
    if doc.name == "README.md":
        assert links
    for link in links:
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc.resolve()
        assert target.is_relative_to(REPO.resolve()), f"{doc.name} links {link}, outside the project"
        name = target.relative_to(REPO.resolve()).as_posix()
        assert name in files or name in folders or any(name == o or name.startswith(o.rstrip("/") + "/") for o in outputs), \
            f"{doc.relative_to(REPO)} links {link}, which is neither in the project nor a stage output"
        if anchor and name.endswith(".md") and target.exists():
            assert anchor in github_anchors(target.read_text()), \
                f"{doc.relative_to(REPO)} links {link}, but {name} has no heading with anchor #{anchor}"


# --------------------------------------------------------------------------------------
# Figures: each is its source's
# --------------------------------------------------------------------------------------
def test_readme_headline_results_are_the_committed_metrics():
    text = section("What you get")
    ev, diff, cpu = metrics("eval.json"), metrics("diff_predictions.json"), metrics("train_resnet_cpu.json")
    data, corpus = metrics("dataset.json"), metrics("corpus.json")
    lm = [metrics(f"train_wordlm_{m}.json")["test_ppl"] for m in ("lstm", "transformer", "gcnn")]
    probe = [metrics(f"context_probe/{m}.json") for m in ("lstm", "transformer", "gcnn")]
    first, last = ev["first"], ev["last"]
    assert "| result | default run, generated sample data |" in text
    assert_says(text, [
        f"at epoch {first['epoch']} | {first['acc1']:.2f} / {first['acc5']:.2f} |",
        f"at epoch {last['epoch']} | {last['acc1']:.2f} / {last['acc5']:.2f} |",
        f"epochs {diff['epoch_a']} and {diff['epoch_b']} judge differently | {diff['differing']} of {data['val_images']}: "
        f"only epoch {diff['epoch_a']} right {diff['only_a_right']}, only epoch {diff['epoch_b']} right "
        f"{diff['only_b_right']} (McNemar p = {p_value(diff['mcnemar_log10_p'])}) |",
        "| {:.2f} / {:.2f} / {:.2f} |".format(*lm),
        "| " + " / ".join(f"{m['effective_context']} [{m['effective_context_low']}, {m['effective_context_high']}]"
                          for m in probe) + " |",
        f"{data['train_images']:,} generated images of {data['classes']} classes ({data['val_images']} to validate)",
        f"a {corpus['train_tokens']:,}-token generated corpus",
        f"{cpu['device']} with {cpu_label(cpu)}:",
    ], "README's What you get")


def test_plots_page_caption_counts_dvc_yaml_plots():
    declared = [next(iter(p)) if isinstance(p, dict) else p for p in yaml.safe_load(read("dvc.yaml"))["plots"]]
    vega = [p for p in declared if not p.endswith(".png")]
    models = len(params()["wordlm"]["models"])
    assert_says(section("What you get"), [f"it now draws {len(vega)} Vega plots for {WORDS[models]}"],
                "README's screenshot caption")


def test_committed_results_are_the_committed_metrics():
    """docs/reproducibility.md: the committed run's highlights, and its row in the CPU table."""
    text = section("The committed results", "docs/reproducibility.md")
    ev, diff, cpu = metrics("eval.json"), metrics("diff_predictions.json"), metrics("train_resnet_cpu.json")
    lms = [metrics(f"train_wordlm_{m}.json")["test_ppl"] for m in
           ("lstm", "transformer", "gcnn", "lstm_long", "transformer_long", "gcnn_long")]
    assert_says(text, [
        f"{cpu['device']} with {cpu_label(cpu)} (so ResNet-18 trained in {cpu['precision']})",
        f"epoch {ev['first']['epoch']} | {ev['first']['acc1']:.2f} / {ev['first']['acc5']:.2f} |",
        f"epoch {ev['last']['epoch']} | {ev['last']['acc1']:.2f} / {ev['last']['acc5']:.2f} |",
        f"{diff['differing']} of 600 (only epoch 7 right: {diff['only_a_right']}, "
        f"only epoch 18 right: {diff['only_b_right']};",
        f"McNemar p = {p_value(diff['mcnemar_log10_p'])}, `mcnemar_log10_p` {diff['mcnemar_log10_p']}",
        f"train_resnet@cpu ({cpu['precision']}) | {cpu['seconds_per_epoch']:.2f} s/epoch, "
        f"{cpu['images_per_second']:.0f} img/s, {cpu['total_seconds']:.0f} s for {cpu['epochs']} epochs",
        "LSTM {:.2f}, Transformer {:.2f}, gated CNN {:.2f}; trained on 128 tokens: {:.2f}, {:.2f}, {:.2f}".format(*lms),
        "| claims ledger (`metrics/claims.json`) | {supported} supported, {contradicted} contradicted, "
        "{not_comparable} not comparable, {not_measurable} not measurable (of {claims}) |".format(**metrics("claims.json")),
    ], "docs/reproducibility.md's committed results")
    same = section("Same params, same numbers", "docs/reproducibility.md")
    assert_says(same, [f"epoch-{ev['last']['epoch']} Acc@1 {ev['last']['acc1']:.2f}, LSTM test perplexity {lms[0]:.2f}"],
                "docs/reproducibility.md")
    table = section("Across CPUs and precisions", "docs/reproducibility.md")
    assert_says(table, [
        f"| {cpu_label(cpu)} (the committed run) | {cpu['precision']} (`auto`) | {ev['first']['acc1']:.2f} / "
        f"{ev['last']['acc1']:.2f} | {diff['differing']}, {diff['only_a_right']} / {diff['only_b_right']} | {lms[0]:.2f} |",
    ], "docs/reproducibility.md's CPU table")


def test_metrics_show_width_is_measured():
    """The width of `dvc metrics show`'s table, run here on the committed metrics."""
    header = run(["dvc", "metrics", "show"], cwd=REPO).stdout.splitlines()[0]
    assert_says(section("The committed results", "docs/reproducibility.md"),
                [f"a row per metrics file, {len(header):,} characters wide"], "docs/reproducibility.md")
    shown = run(["dvc", "metrics", "show", "metrics/eval.json", "metrics/diff_predictions.json"], cwd=REPO).stdout
    assert "metrics/eval.json" in shown and "metrics/diff_predictions.json" in shown


def test_evaluation_tables_are_the_committed_metrics():
    text = section("What the stages do", "docs/evaluation.md")
    ev, diff, data = metrics("eval.json"), metrics("diff_predictions.json"), metrics("dataset.json")
    assert_says(text, [
        *(f"| {e['epoch']} | {e['acc1']:.2f} | {e['acc5']:.2f} | {e['loss']:.3f} |" for e in (ev["first"], ev["last"])),
        f"only epoch {diff['epoch_a']} right | only epoch {diff['epoch_b']} right",
        f"| {diff['differing']} of {data['val_images']} | {diff['only_a_right']} | {diff['only_b_right']} | "
        f"p = {p_value(diff['mcnemar_log10_p'])} (`mcnemar_log10_p` {diff['mcnemar_log10_p']}) |",
        f"sample data, {data['val_images']} validation images",
    ], "docs/evaluation.md")


def test_wordlm_table_is_the_committed_metrics():
    text = section("What the default run measures", "docs/wordlm.md")
    corpus = metrics("corpus.json")
    rows = [f"{corpus['train_tokens']:,} training tokens, vocabulary {corpus['vocab_size']:,}",
            f"{params()['wordlm']['train']['epochs']} epochs each"]
    for name in params()["wordlm"]["models"]:
        m = metrics(f"train_wordlm_{name}.json")
        field = " (receptive field)" if "receptive_field" in m else ""
        rows.append(f"| {name} | {m['trained_context']}{field} | {m['parameters']:,} | "
                    f"{m['best_valid_ppl']:.2f} | {m['test_ppl']:.2f} |")
    assert_says(text, rows, "docs/wordlm.md's default run")


def table_rows(text: str) -> dict[str, list[str]]:
    """A markdown table's rows by their first cell."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    return {row[0]: row[1:] for row in rows}


def numbers(cell: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", cell)]


def test_probe_table_is_the_committed_metrics():
    text = section("What the default run measures", "docs/context-probe.md")
    table = table_rows(text[:text.index("Claim by claim")])
    files = sorted((REPO / "metrics" / "context_probe").glob("*.json"))
    assert set(table) - {"model"} == {p.stem for p in files}, "the probe table's models are not metrics/context_probe's"
    for path in files:
        m, (trained, effective, best, gain) = metrics(f"context_probe/{path.name}"), table[path.stem]
        where = f"docs/context-probe.md's row {path.stem}"
        field = " (receptive field)" if "receptive_field" in m else ""
        assert trained == f"{m['trained_context']}{field}", where
        assert effective == f"{m['effective_context']} [{m['effective_context_low']}, {m['effective_context_high']}]", where
        assert best.startswith(f"{m['best_ppl']:.2f} ["), where
        if "gain_beyond_35" in m:  # metrics keep 5 decimals, the table 3
            shown = numbers(gain)
            expected = [m["gain_beyond_35"], m["gain_beyond_35_low"], m["gain_beyond_35_high"]]
            assert all(abs(s - e) <= 6e-4 for s, e in zip(shown, expected, strict=True)), (where, gain, expected)
        else:
            assert gain == "-", where
    claims = text[text.index("Claim by claim"):]
    cnn, cnn_long = metrics("context_probe/gcnn.json"), metrics("context_probe/gcnn_long.json")
    tr, tr_long = metrics("context_probe/transformer.json"), metrics("context_probe/transformer_long.json")
    assert_says(claims, [
        f"beyond their receptive fields ({cnn['receptive_field']}, {cnn_long['receptive_field']})",
        f"({tr_long['gain_beyond_35']:.3f} [{tr_long['gain_beyond_35_low']:.3f}, {tr_long['gain_beyond_35_high']:.3f}] nats)",
        f"effective context {tr['effective_context']} vs {cnn['effective_context']}",
    ], "docs/context-probe.md's claims")


def test_default_run_figures_in_speed_are_the_committed_metrics():
    text = section("The default run's ResNet-18", "docs/speed.md")
    cpu, ev, data = metrics("train_resnet_cpu.json"), metrics("eval.json"), metrics("dataset.json")
    assert_says(text, [
        f"{cpu['epochs']} epochs of {data['train_images']:,} images plus validation of {data['val_images']}, "
        f"{cpu['seconds_per_epoch']:.2f} s an epoch in {cpu['precision']} on the "
        + ("Intel Xeon with AMX of the committed run" if "Intel" in cpu["device"]
           else f"{cpu_label(cpu).replace(' ', '-')} EPYC"),
        f"to {ev['first']['acc1']:.2f}% (epoch {ev['first']['epoch']}) and {ev['last']['acc1']:.2f}% "
        f"(epoch {ev['last']['epoch']}) Acc@1 there",
    ], "docs/speed.md")


def sci(x: float) -> str:
    """1e-4, as the pages write small params."""
    return f"{x:.0e}".replace("e-0", "e-")


def test_recipes_are_the_params():
    p = params()
    r, train, models = p["resnet"], p["wordlm"]["train"], p["wordlm"]["models"]
    size = r["input_size"]
    assert_says(section("Recipe", "docs/resnet.md"), [
        f"SGD lr {r['lr']:g}, momentum {r['momentum']:g}, weight decay {sci(r['weight_decay'])}, global batch "
        f"{r['batch_size']}, {r['epochs']} epochs, {size}x{size} input, {r['schedule']} lr",
    ], "docs/resnet.md's recipe")
    lstm, transformer = models["lstm"], models["transformer"]
    assert_says(section("Recipe", "docs/wordlm.md"), [
        f"emsize {lstm['emsize']}, nhid {lstm['nhid']}, {lstm['nlayers']} layers, SGD lr {lstm['lr']:g} "
        f"({transformer['lr']:g} for the Transformer), clip {train['clip']:g}, batch {train['batch_size']}, "
        f"bptt {train['bptt']}, dropout {lstm['dropout']:g}, seed {train['seed']}, {train['epochs']} epochs",
    ], "docs/wordlm.md's recipe")
    assert_says(section("What each stage writes", "docs/pipeline.md"), [
        f"`Linear(512, 200)`), {r['epochs']} epochs, one variant per hardware setting",
        f"word_language_model example, {train['epochs']} epochs",
        f"| {p['generate']['words']} words from a trained model",
    ], "docs/pipeline.md's stage table")


def test_sources_and_versions_are_the_files():
    url = yaml.safe_load(read("data.dvc"))["deps"][0]["path"]
    assert_says(section("WikiText-2", "docs/real-data.md"), [f"({url}, md5 {params()['wordlm']['data_md5']})"],
                "docs/real-data.md")
    # the direct dependencies (requirements*.in) at the versions their locks pin
    locked = dict(re.findall(r"^([\w.-]+)==([\w.]+)", read("requirements-dev.txt"), re.M))
    direct = [re.split(r"[=~<>! ]", line.split("#")[0].strip())[0].lower().replace("_", "-").replace(".", "-")
              for name in ("requirements.in", "requirements-dev.in") for line in read(name).splitlines()
              if line.split("#")[0].strip() and not line.startswith("-")]
    assert direct and all(name in locked for name in direct), "a direct dependency is not locked: bash tools/lock.sh"
    assert_says(section("Dependencies", "docs/development.md"), [f"{name} {locked[name]}" for name in direct],
                "docs/development.md's Dependencies")
    vendored = json.loads(read("tools/plots_page/vendored.json"))["libraries"]
    assert_says(section("The plots page", "docs/development.md"), [f"{lib['name']} {lib['version']}" for lib in vendored],
                "docs/development.md's plots page")


# --------------------------------------------------------------------------------------
# Commands: each shown is run by a named test, or says why none can
# --------------------------------------------------------------------------------------
# Which test runs each command shown in a bash block of README/docs, or in a page's prose as a
# script to run. "not run: ..." says why no test can. A command shown but absent here fails
# test_every_command_shown_names_its_test, and so does an entry no page shows any more.
# (The README's two commands - install + dvc repro, install + pytest - are .ci/run's:
# test_the_test_command_is_what_ci_runs; conftest.py's `reproduced` runs dvc repro in a fresh clone.)
REAL_ARCHIVE = "tests/test_fresh_clone.py::test_targeted_experiment_on_the_real_archive"
WIKITEXT = "tests/test_wordlm_data.py::test_update_fetches_the_archive_and_the_stages_train_on_it"
FRESH_CLONE = "tests/test_fresh_clone.py::test_targeted_experiment_then_metrics_diff_and_exp_show"
LINKS_AND_RESUME = "tests/test_pipeline.py::test_outputs_are_links_to_the_cache_and_checkout_apply_resume_work"
EPOCH_DIFF = "tests/test_pipeline.py::test_metrics_diff_between_epochs_without_retraining"
PLOTS_SHOW = "tests/test_plots_page.py::test_plots_show_draws_every_plot_offline_without_warning"
BENCHMARK = "not run: a benchmark (minutes), printed, never timed by a test"
BENCH_RESNET = "tests/test_benchmarks.py::test_bench_resnet_input_prints_the_fraction_of_peak"
BENCH_WORDLM = "tests/test_benchmarks.py::test_bench_wordlm_compares_every_model_with_the_example"
COVERED: dict[str, list[str]] = {
    # Real data (README, docs/real-data.md): the official archive is the shared 3,000-image subset's
    # file:// URL in the test (no network); data.dvc's import is served from a loopback HTTP server.
    "dvc exp run -S tinyimagenet.source=http://cs231n.stanford.edu/tiny-imagenet-200.zip "
    "-S tinyimagenet.md5=90528d7ca1a48142e341f4ef8d21d0de": [REAL_ARCHIVE],
    # The real run's command (docs/results/tinyimagenet-real-cpu): the same targeted experiment on
    # the shared real archive's 200x10 subset.
    "dvc exp run -n real-cpu -S tinyimagenet.source=file://$PWD/../shared/data/tiny-imagenet-200.zip "
    "-S tinyimagenet.md5=5cac8f5f2794de738ffdaaeb12735df9 diff_predictions": [REAL_ARCHIVE],
    # The report's recipe on the real data: the archive as above, training at 224 on a small sample.
    "dvc exp run -S tinyimagenet.source=file://$PWD/../shared/data/tiny-imagenet-200.zip "
    "-S tinyimagenet.md5=5cac8f5f2794de738ffdaaeb12735df9 -S resnet.input_size=224":
        [REAL_ARCHIVE, "tests/test_fresh_clone.py::test_the_reports_recipe_at_224"],
    # docs/results/tinyimagenet-real-cpu-224-epoch1: the report's recipe, one epoch, aimed at train_resnet@cpu.
    "dvc exp run -n real224 -S tinyimagenet.source=file://$PWD/../shared/data/tiny-imagenet-200.zip "
    "-S tinyimagenet.md5=5cac8f5f2794de738ffdaaeb12735df9 -S resnet.input_size=224 -S resnet.epochs=1 "
    "train_resnet@cpu":
        [REAL_ARCHIVE, "tests/test_fresh_clone.py::test_the_reports_recipe_at_224"],
    "python tools/record_result.py <scratch project> docs/results/<name> --note ...":
        ["tests/test_claims.py::test_record_result_copies_a_run"],
    "python tools/record_result.py <scratch project> docs/results/tinyimagenet-real-cpu --note ...":
        ["tests/test_claims.py::test_record_result_copies_a_run"],
    "python tools/record_result.py <scratch project> docs/results/wikitext2-sample-lms --note ...":
        ["tests/test_claims.py::test_record_result_copies_a_run"],
    "python tools/rejudge_result.py docs/results/tinyimagenet-real-cpu":
        ["tests/test_claims.py::test_the_recorded_real_run_is_judged_by_todays_rules"],
    "python tools/rejudge_result.py docs/results/<name>":
        ["tests/test_claims.py::test_the_recorded_real_run_is_judged_by_todays_rules"],
    "dvc update data.dvc": [WIKITEXT],
    "dvc exp run -S wordlm.corpus=folder -S wordlm.folder=../shared/data/wikitext-2-sample":
        ["tests/test_local_corpus.py::test_dvc_tracks_the_folder_and_a_changed_file_reruns_the_language_models",
         "tests/test_local_corpus.py::test_the_shared_wikitext_sample_by_a_relative_path"],
    "dvc exp run -S wordlm.corpus=data": [WIKITEXT],
    # GPUs (README, docs/resnet.md): on a CPU-only host, -S devices=1 must fail before training
    # and leave @cpu alone; the skip / too-many-GPUs rules themselves are unit-tested.
    "dvc exp run -S devices=8": ["tests/test_pipeline.py::test_devices_param_leaves_the_cpu_variant_alone",
                                 "tests/test_training.py::test_gpu_variants_skip_without_devices_and_fail_beyond_present"],
    # Two 'nodes' of one CPU process each, c10d rendezvous on loopback.
    "torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 "
    "stages/train_resnet.py --variant gpu8": ["tests/test_training.py::test_two_nodes_on_loopback"],
    # Resume (docs/resnet.md): the stage's script killed and re-run; `dvc exp run` killed and re-run.
    "dvc repro train_resnet@cpu": ["tests/test_training.py::test_killed_run_resumes_to_the_same_weights", LINKS_AND_RESUME],
    # The editor schema (docs/development.md): regenerated from the models; the test fails while it is stale.
    "python -m dlreport.params": ["tests/test_params.py::test_the_editor_schema_is_current_and_params_yaml_points_at_it"],
    # Checkpoints set aside (docs/resnet.md): listed, then removed, in a project folder.
    "python -m dlreport.checkpoints runs/resnet":
        ["tests/test_checkpoints.py::test_the_clean_command_lists_and_removes_what_was_set_aside"],
    "python -m dlreport.checkpoints --clean runs/resnet":
        ["tests/test_checkpoints.py::test_the_clean_command_lists_and_removes_what_was_set_aside"],
    # Continuing (docs/resnet.md): the stage's script continued from 2 to 3 epochs; the rule per schedule.
    "dvc exp run -S resnet.epochs=30 train_resnet@cpu":
        ["tests/test_training.py::test_raising_epochs_continues_to_the_weights_of_a_longer_run",
         "tests/test_checkpoints.py::test_raising_epochs_continues_where_the_schedule_allows"],
    # The claims ledger (docs/claims.md): the stage alone after a full run, and its counts.
    "dvc repro claims": ["tests/test_claims.py::test_dvc_repro_claims_and_its_metrics",
                         "tests/test_claims.py::test_the_default_run_writes_a_ledger_with_every_claim"],
    "dvc metrics show metrics/claims.json": ["tests/test_claims.py::test_dvc_repro_claims_and_its_metrics"],
    # Everyday DVC (README, docs/working-with-dvc.md)
    "dvc metrics show": ["tests/test_fresh_clone.py::test_dvc_metrics_show_of_the_committed_default_run_is_narrow",
                         "tests/test_readme.py::test_metrics_show_width_is_measured"],
    "dvc metrics diff": [FRESH_CLONE],
    "dvc plots show": ["tests/test_pipeline.py::test_dvc_metrics_and_plots_show", PLOTS_SHOW],
    "dvc exp run -n seed1 -S resnet.seed=1 train_resnet@cpu": [LINKS_AND_RESUME],
    "dvc exp show": [FRESH_CLONE],
    "dvc plots diff <exp1> <exp2>": ["tests/test_plots_page.py::test_plots_diff_of_two_experiments_draws_both_offline"],
    "dvc exp apply seed1": [LINKS_AND_RESUME],
    "dvc exp save -n NAME train_resnet@cpu": [LINKS_AND_RESUME],
    # Two epochs compared (docs/evaluation.md): the test's tiny run compares epochs 1 and 2.
    "dvc exp run -n epoch07 -S eval.epochs=[7]": [EPOCH_DIFF],
    "dvc exp run -n epoch18 -S eval.epochs=[18]": [EPOCH_DIFF],
    "dvc metrics diff epoch07 epoch18 --all": [EPOCH_DIFF],
    "dvc exp diff epoch07 epoch18": [EPOCH_DIFF],
    "git checkout params.yaml && dvc repro": [EPOCH_DIFF],
    "dvc metrics show metrics/eval.json metrics/diff_predictions.json":
        ["tests/test_readme.py::test_metrics_show_width_is_measured"],
    # Benchmarks (README, docs/speed.md): run at the smallest sizes by tests/test_benchmarks.py.
    "python benchmarks/bench_resnet_input.py --batch-size 256 --rounds 5 --layers": [BENCHMARK, BENCH_RESNET],
    "python benchmarks/bench_resnet_input.py --rounds 7": [BENCHMARK, BENCH_RESNET],
    "python benchmarks/bench_resnet_input.py --ablation --rounds 5 --batch-size 256": [BENCHMARK, BENCH_RESNET],
    "python benchmarks/bench_wordlm.py --threads 1 --batches 40 --repeats 6": [BENCHMARK, BENCH_WORDLM],
    "python benchmarks/bench_wordlm.py --corpus ../shared/data/wikitext-2-sample --batches 30 --repeats 4":
        [BENCHMARK, BENCH_WORDLM],
    # The GPU check (docs/gpu-check.md): its CPU mode runs the same steps.
    "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out gpu_check.json":
        ["tests/test_gpu_check.py::test_cpu_mode_passes_every_step"],
    "python benchmarks/gpu_check.py --device cpu --out /tmp/gpu_check.json":
        ["tests/test_gpu_check.py::test_cpu_mode_passes_every_step"],
    # Development (docs/development.md)
    "python -m pytest -q": ["not run: the suite itself (.ci/run runs it)"],
    "python -m pytest -q tests/test_readme.py": ["not run: this file"],
    "CI=true bash .ci/run": ["not run: CI itself; test_the_test_command_is_what_ci_runs checks it runs the README's command"],
    "bash tools/lock.sh --upgrade": ["not run: needs the package registries and minutes; "
                                     "tests/test_requirements.py checks the locks it writes"],
    "python tools/plots_page/build.py": ["not run: needs npm and the registry",
                                         "tests/test_plots_page.py::test_the_committed_page_is_the_generated_one"],
    "python tools/plots_page/headless.py dvc_plots/index.html --screenshot docs/dvc_plots.png --width 2000 --height 2040":
        [PLOTS_SHOW],
}
SCRIPT_SPAN = r"`((?:[A-Z_]+=\S+ )*(?:python3? |torchrun |bash )[^`]*)`"


def normalized(command: str) -> str:
    """A command as one line: continuations joined, the comment dropped, words single-spaced, shell
    quotes removed (so 'eval.epochs=[7]' reads as DVC gets it)."""
    command = re.sub(r"(^|\s)#.*$", "", command.replace("\\\n", " "), flags=re.M)
    return " ".join(word for word in shlex.split(command, posix=True)) if command.strip() else ""


def commands_shown() -> dict[str, set[str]]:
    """Command -> the pages that show it: bash blocks (the README's two commands aside) and
    scripts named in prose."""
    shown: dict[str, set[str]] = {}
    for doc in DOCUMENTS:
        text = doc.read_text()
        if doc.name == "README.md":
            text = text.replace(section("Two commands"), "")
        name = str(doc.relative_to(REPO))
        for block in code_blocks(text, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                if normalized(line):
                    shown.setdefault(normalized(line), set()).add(name)
        for span in re.findall(SCRIPT_SPAN, prose(text)):
            shown.setdefault(normalized(span), set()).add(name)
    return shown


def test_every_command_shown_names_its_test():
    shown = commands_shown()
    missing = sorted(set(shown) - set(COVERED))
    assert not missing, f"commands shown without a COVERED entry naming the test that runs them: {missing}"
    stale = sorted(set(COVERED) - set(shown))
    assert not stale, f"COVERED entries no page shows any more: {stale}"
    for command, tests in COVERED.items():
        for test in tests:
            if test.startswith("not run: "):
                continue
            path, _, name = test.partition("::")
            assert re.search(rf"^def {name}\(", read(path), re.M), f"{command!r}: {test} does not exist"


PLACEHOLDER = re.compile(r"<[^>]+>|^\.\.\.$|^\[\w+\]$|^key=value$")


def dvc_args(words: list[str], prose_mention: bool = False):
    """``dvc`` args parsed by DVC's own parser (placeholders such as <exp1> are plain words to it);
    None if it refuses them. A mention in prose may leave out required arguments (`dvc exp apply`)."""
    from dvc.cli.parser import get_main_parser

    for filler in ([], ["x"], ["x", "x"]) if prose_mention else ([],):
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return get_main_parser().parse_args(words + filler)
        except (SystemExit, Exception):  # DvcParserError, after DVC logs the reason
            continue
    return None


def set_param(tmp_path: Path, assignment: str) -> str | None:
    """The error, if any, of the project's own params check for ``key=value`` set on params.yaml."""
    from dlreport.errors import PipelineError
    from dlreport.params import load_params

    key, _, value = assignment.partition("=")
    values = params()
    try:
        node = values
        for part in key.split(".")[:-1]:
            node = node[part]
        node[key.split(".")[-1]] = yaml.safe_load(value)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        load_params(path, key)
    except (KeyError, TypeError):
        return f"params.yaml has no key {key}"
    except PipelineError as error:
        return str(error)
    return None


def script_problems(words: list[str]) -> list[str]:
    """A python script shown with flags: the script is the project's and has every flag."""
    if not words or words[0] == "-m":
        return []
    script = REPO / words[0]
    if not script.is_file():
        return [f"{words[0]} is not a file of the project"]
    source = script.read_text()
    return [f"{words[0]} has no option {flag}" for flag in (w.split("=")[0] for w in words[1:] if w.startswith("--"))
            if f'"{flag}"' not in source]


def command_problems(command: str, tmp_path: Path, prose_mention: bool = False) -> list[str]:
    problems = []
    for part in command.split(" && "):
        words = [w for w in part.split() if not re.match(r"^[A-Z_]+=", w)] or [""]
        program, args = words[0], words[1:]
        if program in ("python", "python3"):
            problems += script_problems(args)
        elif program == "bash":
            problems += [] if (REPO / args[0]).is_file() else [f"{args[0]} is not a file of the project"]
        elif program == "torchrun":
            from torch.distributed.run import get_args_parser

            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    launched = get_args_parser().parse_args(args)
            except SystemExit:
                problems.append("torchrun's parser refuses it")
                continue
            problems += script_problems([launched.training_script, *launched.training_script_args])
        elif program == "dvc":
            parsed = dvc_args(args, prose_mention)
            if parsed is None:
                problems.append("DVC's parser refuses it")
                continue
            kind = parsed.func.__name__
            targets = [t for t in (getattr(parsed, "targets", None) or []) if not PLACEHOLDER.search(t)]
            if kind in ("CmdRepro", "CmdExperimentsRun", "CmdCheckout", "CmdExperimentsSave", "CmdDataStatus"):
                groups = {s.split("@")[0] for s in stage_names()}
                problems += [f"no stage {t}" for t in targets if t not in stage_names() and t not in groups
                             and not (REPO / t).is_file()]
            elif kind in ("CmdMetricsShow", "CmdMetricsDiff", "CmdPlotsShow", "CmdUpdate"):
                problems += [f"no file {t}" for t in targets if not (REPO / t).exists()]
            for assignment in getattr(parsed, "set_param", None) or []:
                if not PLACEHOLDER.search(assignment):
                    error = set_param(tmp_path, assignment)
                    problems += [f"-S {assignment}: {error}"] if error else []
    return problems


def test_commands_shown_parse_and_name_real_stages_params_and_flags(tmp_path: Path):
    """Every command shown - bash blocks, scripts and `dvc ...` in prose - parses with DVC's or
    torchrun's own parser, targets stages dvc.yaml has, sets params the project's check accepts,
    and gives scripts flags they have."""
    shown, mentioned = commands_shown(), {}
    for doc in DOCUMENTS:
        for span in re.findall(r"`(dvc [^`]*)`", prose(doc.read_text())):
            mentioned.setdefault(normalized(span), set()).add(str(doc.relative_to(REPO)))
    assert len(shown) > 25 and len(mentioned) > 20  # the pages' commands were found
    problems = {command: found for command in shown if (found := command_problems(command, tmp_path))}
    problems |= {command: found for command in set(mentioned) - set(shown)
                 if (found := command_problems(command, tmp_path, prose_mention=True))}
    assert not problems, "\n".join(f"{sorted(shown.get(c) or mentioned[c])}: {c}: {p}" for c, p in problems.items())


# --------------------------------------------------------------------------------------
# The real run, recorded in docs/results/ (tools/record_result.py)
# --------------------------------------------------------------------------------------
REAL_RUN = REPO / "docs" / "results" / "tinyimagenet-real-cpu"


def curve(name: str) -> list[float]:
    lines = (REAL_RUN / "curves" / f"{name}.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[1]) for line in lines]


def test_real_run_figures_are_its_recorded_files():
    """README's real-run paragraph and table against the files the run left in docs/results/."""
    text = section("What you get")
    run_facts = json.loads((REAL_RUN / "run.json").read_text())
    summary = json.loads((REAL_RUN / "metrics" / "train_resnet_cpu.json").read_text())
    dataset = json.loads((REAL_RUN / "metrics" / "dataset.json").read_text())
    diff = json.loads((REAL_RUN / "metrics" / "diff_predictions.json").read_text())
    counts = json.loads((REAL_RUN / "metrics" / "claims.json").read_text())
    epochs = run_facts["epochs_completed"]
    acc1, acc5 = curve("val/acc1"), curve("val/acc5")
    assert len(acc1) == epochs == summary["epochs"]
    # A stopped run's table has every epoch; a finished one the first, the report's two and the last.
    shown = range(1, epochs + 1) if epochs < 20 else (1, 7, 18, 20)
    report = {e: f"{REPORT_ACC1[e]:.2f} / {REPORT_ACC5[e]:.2f}" for e in REPORT_ACC1}
    figures = [f"| {e} | {acc1[e - 1]:.2f} / {acc5[e - 1]:.2f} | {report.get(e, '-')} |" for e in shown]
    figures += [f"({dataset['train_images']:,} training, {dataset['val_images']:,} validation images)",
                f"stopped after {epochs} of the 20 epochs" if epochs < 20 else "all 20 epochs",
                f"Epochs {diff['epoch_a']} and {diff['epoch_b']} judge {diff['differing']:,} of the "
                f"{dataset['val_images']:,} images differently (only epoch {diff['epoch_a']} right "
                f"{diff['only_a_right']:,}, only epoch {diff['epoch_b']} right {diff['only_b_right']:,})",
                f"Verdicts: {counts['supported']} supported, {counts['contradicted']} contradicted, "
                f"{counts['not_comparable']} not comparable, {counts['not_measurable']} not measurable "
                f"(of {counts['claims']})"]
    assert_says(text, figures, "README's real run")
    assert "Intel(R) Xeon(R)" in summary["device"] and summary["precision"] == "bf16"
    assert run_facts["params_changed"]["tinyimagenet.md5"] == "5cac8f5f2794de738ffdaaeb12735df9"
    ledger = (REAL_RUN / "claims.md").read_text()
    assert f"Verdicts: {counts['supported']} supported, {counts['contradicted']} contradicted" in ledger
    assert (REAL_RUN / "report" / "report.md").is_file()


LM_RUN = REPO / "docs" / "results" / "wikitext2-sample-lms"


def test_real_text_figures_are_their_recorded_files():
    """The word LMs on the WikiText-2 sample: the record's page and docs/context-probe.md against
    the files the run left (its metrics, the probe's findings, the ledger)."""
    page = read("docs/results/wikitext2-sample-lms/README.md")
    rows = table_rows(page)
    for name in ("lstm", "transformer", "gcnn", "lstm_long", "transformer_long", "gcnn_long"):
        m = json.loads((LM_RUN / "metrics" / f"train_wordlm_{name}.json").read_text())
        assert m["corpus"] == {"source": "../shared/data/wikitext-2-sample", "md5": "6438f6307e040c4d86e461c6c7ff6ef2",
                               "train_tokens": 217646}, name
        field = " (receptive field)" if m.get("receptive_field") else ""
        assert rows[name] == [f"{m['trained_context']}{field}", f"{m['best_valid_ppl']:.2f}", f"{m['test_ppl']:.2f}"]
        assert f"{m['test_ppl']:.2f}" in section("On real WikiText-2 text", "docs/context-probe.md"), name
    counts = json.loads((LM_RUN / "metrics" / "claims.json").read_text())
    assert_says(page, [f"({counts['supported']} supported, {counts['contradicted']} contradicted, "
                       f"{counts['not_comparable']} not comparable, {counts['not_measurable']} not measurable, "
                       f"of {counts['claims']})"], "the LM record's page")
    verdicts = {row["id"]: row["verdict"] for row in json.loads((LM_RUN / "claims.json").read_text())}
    for claims, verdict in ((["C10a"], "not comparable"), (["C10b"], "not measurable"), (["C11"], "supported"),
                            (["C12"], "contradicted"), (["C14"], "contradicted"), (["C13a", "C13b"], "supported")):
        assert [verdicts[c] for c in claims] == [verdict] * len(claims), claims
        assert f"**{', '.join(claims)} {verdict}**" in page, claims
    findings = (LM_RUN / "context_probe" / "findings.md").read_text()
    probe = table_rows(section("On real WikiText-2 text", "docs/context-probe.md"))
    for name, cells in table_rows(findings).items():
        if name in probe:
            assert probe[name] == [cells[1], *cells[2:]], name  # (the page leaves out the type column)
