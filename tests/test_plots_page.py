"""`dvc plots show` and `dvc plots diff` pages, opened in headless Chromium with the network off:
every plot dvc.yaml declares is drawn - by the Vega libraries inlined in the project's page
template (tools/plots_page/page.html) - with every series DVC loaded, and no error on the console."""
from __future__ import annotations

import hashlib
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from dvc_render.base import Renderer
from dvc_render.html import PAGE_HTML
from PIL import Image

from conftest import REPO, clone_reproduced, ran, run
from tools.plots_page.headless import find_chromium, open_page

PAGE = REPO / "tools" / "plots_page" / "page.html"
VENDORED = json.loads((REPO / "tools" / "plots_page" / "vendored.json").read_text())
CDN = "https://cdn.jsdelivr.net/npm/vega@5"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true, but Chromium is not installed: .ci/run installs it (apt-get install chromium)")
    pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it and runs these tests")


def declared_plots(project: Path) -> dict[str, dict]:
    """dvc.yaml's plots: name (a file path, or a definition's key) -> definition."""
    entries = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    return dict(next(iter(e.items())) if isinstance(e, dict) else (e, {}) for e in entries)


def plots_json(project: Path, *command: str) -> dict:
    """What `dvc plots show|diff ... --json` loaded: per plot, its renderers' data."""
    return json.loads(run(["dvc", "plots", *command, "--json"], cwd=project).stdout)


class PlotsDom(HTMLParser):
    """What the browser drew in each plot's <div id=...> (DVC's layout): Vega's <svg class="marks">
    roots, the series its marks draw, and the images. Vega labels every mark item it draws with its
    datum ("rev: ...; filename: ...; field: ..."), so a series counts as drawn when a mark does."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, ids):
        super().__init__()
        self.plots = {i: {"svgs": 0, "series": set(), "images": []} for i in ids}
        self.stack: list[tuple[str, str | None, bool]] = [("document", None, False)]  # tag, plot, in a mark

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        _, plot, in_mark = self.stack[-1]
        if tag == "div" and attrs.get("id") in self.plots:
            plot = attrs["id"]
        in_mark = in_mark or (tag == "g" and "role-mark" in (attrs.get("class") or "").split())
        if plot:
            drawn = self.plots[plot]
            drawn["svgs"] += tag == "svg" and "marks" in (attrs.get("class") or "").split()
            if tag == "img":
                drawn["images"].append(attrs["src"])
            label = attrs.get("aria-label")
            if in_mark and label and (tag != "path" or attrs.get("d")):
                datum = dict(part.split(": ", 1) for part in label.split("; ") if ": " in part)
                if datum.get("rev", "undefined") != "undefined":
                    drawn["series"].add((datum["rev"], datum.get("filename"), datum.get("field")))
        if tag not in self.VOID:
            self.stack.append((tag, plot, in_mark))

    def handle_endtag(self, tag):
        while len(self.stack) > 1 and self.stack.pop()[0] != tag:
            pass


def check_page(project: Path, page: Path, shown: dict, chromium: str, screenshot: Path) -> dict[str, set]:
    """Open ``page`` offline; every declared plot must be drawn, each Vega view with exactly the
    series DVC loaded for it (``shown``: its --json) and each image loaded. Returns the drawn series."""
    names = list(declared_plots(project))
    assert "errors" not in shown and set(shown["data"]) == set(names)  # DVC loaded every plot, no error
    ids = {name: Renderer.remove_special_chars(name) for name in names}
    opened = open_page(page, chromium, screenshot=screenshot)
    # Vega logs its warnings as "WARN ..." (DVC's templates cause some, e.g. "Infinite extent" for the
    # empty hover layer); anything else - an uncaught exception, a failed load, Vega's "ERROR" - fails.
    assert [m for m in opened.console if not m.startswith("WARN ")] == [], opened.console
    record = opened.record
    assert record, "the page's recorder did not run: the inlined libraries did not load"
    assert record["versions"] == {lib["name"]: lib["version"] for lib in VENDORED["libraries"]}
    views = {view["id"]: view for view in record["views"]}
    loaded = {image["src"]: image["width"] for image in record["images"]}
    dom = PlotsDom(ids.values())
    dom.feed(opened.dom)
    for name in names:
        drawn, renderers = dom.plots[ids[name]], shown["data"][name]
        images = [r for r in renderers if r["type"] == "image"]
        if images:
            assert len(drawn["images"]) == len(images) and all(loaded[src] > 0 for src in drawn["images"]), name
            continue
        (vega,) = renderers
        assert views[ids[name]]["status"] == "ok", views[ids[name]]
        assert drawn["svgs"] == 1, (name, drawn)
        expected = {(d["rev"], d.get("filename"), d.get("field")) for d in vega["content"]["data"]["values"]}
        assert expected and drawn["series"] == expected, (name, drawn["series"], expected)
    assert len(views) == sum(r["type"] == "vega" for rs in shown["data"].values() for r in rs)
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size[1] >= record["height"] > 500
    return {name: dom.plots[ids[name]]["series"] for name in names}


def test_the_committed_page_is_the_generated_one():
    """page.html holds exactly the library files vendored.json records, and fits in git (< 2 MiB)."""
    text = PAGE.read_text(encoding="utf-8")
    assert PAGE.stat().st_size < 2 * 1024 ** 2 and "{plot_divs}" in text and "{scripts}" not in text
    for lib in VENDORED["libraries"]:
        match = re.search(rf"<script>/\* {re.escape(lib['name'])} {re.escape(lib['version'])} "
                          rf"{re.escape(lib['file'])} \(.*?\) \*/\n(.*?)\n    </script>", text, re.S)
        assert match and hashlib.sha256(match.group(1).encode()).hexdigest() == lib["file_sha256"], lib["name"]
        assert f"{lib['name']} {lib['version']} ({lib['license']}): {lib['file']} of {lib['tarball']}" in text
    assert "html_template = ../tools/plots_page/page.html" in (REPO / ".dvc" / "config").read_text()


def test_the_test_browser_has_no_network(chromium: str, tmp_path: Path):
    """A page that loads Vega from the CDN, and fetches it, gets nothing."""
    page = tmp_path / "cdn.html"
    page.write_text(f'<html><head><script src="{CDN}"></script></head><body><script>'
                    'document.documentElement.dataset.vega = typeof vega;'
                    f'fetch("{CDN}").then(r => console.log("fetched " + r.status), '
                    'e => console.log("fetch failed: " + e));</script></body></html>')
    opened = open_page(page, chromium)
    assert re.search(r'<html[^>]* data-vega="undefined"', opened.dom), opened.dom
    assert opened.console == ["fetch failed: TypeError: Failed to fetch"]


def test_dvc_default_page_draws_nothing_offline(reported: Path, chromium: str, tmp_path: Path):
    """DVC's built-in page (Vega from a CDN) draws none of the same plots in this browser: what the
    next test sees drawn is the inlined libraries' doing."""
    template = tmp_path / "dvc_default.html"
    template.write_text(PAGE_HTML)
    run(["dvc", "plots", "show", "-o", str(tmp_path / "default"), "--html-template", str(template)], cwd=reported)
    assert "cdn.jsdelivr.net" in (tmp_path / "default" / "index.html").read_text()
    opened = open_page(tmp_path / "default" / "index.html", chromium)
    assert opened.record is None and "<svg" not in opened.dom
    assert "Uncaught ReferenceError: vegaEmbed is not defined" in opened.console


def test_plots_show_draws_every_plot_offline_without_warning(reported: Path, chromium: str, tmp_path: Path):
    shown = run(["dvc", "plots", "show"], cwd=reported)
    page = reported / "dvc_plots" / "index.html"
    # The default run (GPU variants skipped) loads every plot: nothing on stderr, only the page's URI.
    assert shown.stderr == "" and shown.stdout.split() == [page.resolve().as_uri()]
    # ...which is where the report's link to the interactive page points.
    report = reported / "reports" / "report" / "report.md"
    link = re.search(r"\]\(([^)]*dvc_plots/index\.html)\)", report.read_text()).group(1)
    assert (report.parent / link).resolve() == page.resolve()
    drawn = check_page(reported, page, plots_json(reported, "show"), chromium, tmp_path / "show.png")
    assert {rev for series in drawn.values() for rev, _, _ in series} == {"workspace"}


@pytest.fixture(scope="module")
def experiments(reproduced: Path, reported: Path, tmp_path_factory) -> Path:
    """A clone of the reproduced project (its DVC cache shared, so the LM stages that `reported` ran
    are restored from the run-cache) with two experiments: `cpu_only`, the default run, and
    `gpu1_on_cpu`, where variant gpu1 trains with `gpus: 0` - on this CPU, but through the same
    stage, DVCLive files and dvc.yaml plots as on a GPU - so its curves exist beside the CPU's."""
    project = clone_reproduced(reproduced, tmp_path_factory.mktemp("plots_diff") / "project")
    run(["dvc", "exp", "run", "-n", "cpu_only"], cwd=project)
    out = run(["dvc", "exp", "run", "-n", "gpu1_on_cpu", "-S", "resnet_runs.gpu1.gpus=0"], cwd=project).stdout
    assert ran(out, "train_resnet@gpu1") and not ran(out, "train_resnet@cpu"), out
    return project


def test_plots_diff_of_two_experiments_draws_both_offline(experiments: Path, chromium: str, tmp_path: Path):
    out = tmp_path / "dvc_plots"
    diffed = run(["dvc", "plots", "diff", "cpu_only", "gpu1_on_cpu", "-o", str(out)], cwd=experiments)
    assert diffed.stderr == "", diffed.stderr
    shown = plots_json(experiments, "diff", "cpu_only", "gpu1_on_cpu")
    drawn = check_page(experiments, out / "index.html", shown, chromium, tmp_path / "diff.png")
    for name, series in drawn.items():
        assert series == set() or {rev for rev, _, _ in series} == {"cpu_only", "gpu1_on_cpu"}, name
    # Where dvc.yaml overlays the train_resnet variants, the trained gpu1's curve is drawn beside
    # the CPU's; the skipped gpu1 of the other experiment draws nothing.
    overlaid = [name for name, spec in declared_plots(experiments).items()
                if any("runs/resnet/gpu1/" in source for source in spec.get("y") or {})]
    assert overlaid
    for name in overlaid:
        variants = {rev: sorted(re.search(r"([^/]+)/dvclive/", f).group(1) for r, f, _ in drawn[name] if r == rev)
                    for rev, _, _ in drawn[name]}
        assert variants == {"cpu_only": ["cpu"], "gpu1_on_cpu": ["cpu", "gpu1"]}, (name, drawn[name])
