"""The README against the project: its test command is the one CI runs, its stage graph is
`dvc dag`'s, its links resolve and its headline figures are the committed metrics - so a change
that makes one of them stale fails here instead of misleading a reader."""
from __future__ import annotations

import json
import re
import subprocess

import yaml

from conftest import REPO, run

README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of the same level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^\1 |\Z)", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(2)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def metrics(name: str) -> dict:
    return json.loads((REPO / "metrics" / name).read_text())


def test_the_test_command_is_what_ci_runs():
    install, tests = code_blocks(section("Two commands"), "bash")[:2]
    assert "dvc repro" in install
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    for step in tests.strip().split(" && "):
        # CI's pip is quiet (-q); the command is otherwise the README's, word for word.
        assert any(line.replace(" -q ", " ") == step.replace(" -q ", " ") for line in ci_lines), \
            f"the README's test command step {step!r} is not a line of .ci/run"
    assert ci_lines[-1] == ".venv/bin/python -m pytest -q"


def test_stage_graph_is_dvc_dag():
    shown = run(["dvc", "dag", "--md"], cwd=REPO).stdout
    graph = re.search(r"```mermaid\n.*?```", shown, re.S).group(0)
    assert graph in README, f"the README's stage graph is not `dvc dag --md`'s; paste:\n{graph}"


def test_relative_links_resolve():
    """Each link is a file git tracks or one a stage of dvc.yaml writes (the report)."""
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.splitlines())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outputs = [next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])]
    links = re.findall(r"\]\(((?!https?:|#)[^)]+)\)", README)
    assert links
    for link in links:
        assert link in tracked or any(link == o or link.startswith(o.rstrip("/") + "/") for o in outputs), \
            f"README links {link}, which is neither tracked nor a stage output"


def test_highlights_are_the_committed_metrics():
    text = section("The committed results")
    ev, diff, cpu = metrics("eval.json"), metrics("diff_predictions.json"), metrics("train_resnet_cpu.json")
    expected = [
        f"epoch {ev['first']['epoch']} | {ev['first']['acc1']:.2f} / {ev['first']['acc5']:.2f} |",
        f"epoch {ev['last']['epoch']} | {ev['last']['acc1']:.2f} / {ev['last']['acc5']:.2f} |",
        f"{diff['differing']} of 600 (only epoch 7 right: {diff['only_a_right']}, "
        f"only epoch 18 right: {diff['only_b_right']};",
        f"`mcnemar_log10_p` {diff['mcnemar_log10_p']}",
        f"train_resnet@cpu ({cpu['precision']}) | {cpu['seconds_per_epoch']:.2f} s/epoch, "
        f"{cpu['images_per_second']:.0f} img/s, {cpu['total_seconds']:.0f} s for {cpu['epochs']} epochs",
        "LSTM {:.2f}, Transformer {:.2f}, gated CNN {:.2f}; trained on 128 tokens: {:.2f}, {:.2f}, {:.2f}".format(
            *(metrics(f"train_wordlm_{m}.json")["test_ppl"] for m in
              ("lstm", "transformer", "gcnn", "lstm_long", "transformer_long", "gcnn_long"))),
    ]
    for figure in expected:
        assert figure in text, f"README's committed results do not say {figure!r} (metrics/ does)"


def test_probe_table_is_the_committed_metrics():
    text = section("Word-level language models")
    table = text[text.index("What the default run measures"):text.index("Claim by claim")]
    for path in sorted((REPO / "metrics" / "context_probe").glob("*.json")):
        m = json.loads(path.read_text())
        row = (f"| {path.stem} | {m['trained_context']}"
               f"{' (receptive field)' if 'receptive_field' in m else ''} | "
               f"{m['effective_context']} [{m['effective_context_low']}, {m['effective_context_high']}] | "
               f"{m['best_ppl']:.2f} [")
        assert row in table, f"README's probe table has no row starting {row!r}"
