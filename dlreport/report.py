"""The course report, regenerated from the pipeline's outputs: reports/report/report.md + PNG figures.

Every number and sentence comes from a stage output (metrics/*.json, the DVCLive TSVs, the
tables under reports/ and runs/eval/); a section whose inputs are absent says "not available"
and names the missing file instead of failing. Only the provenance block is read at run time
(git commit, params changed against git HEAD, dvc.lock's dataset hash, hardware, versions): it
is not a DVC dependency, so it describes the run that last wrote the report.

``Inputs`` records every path the report tries to read, so a test can check that the stage's
deps in dvc.yaml are exactly those.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
from ruamel.yaml import YAMLError

from dlreport.devices import cpu_name, gpu_names
from dlreport.errors import PipelineError
from dlreport.fileio import atomic_dir, read_yaml
from dlreport.params import read_params
from dlreport.reporting import render_template

EXCERPT_LINES = 5  # of reports/generated.txt (20 words a line)
# The page `dvc plots show` writes (dvc_plots/index.html), relative to the report's folder.
PLOTS_PAGE = "../../dvc_plots/index.html"


# ---------------------------------------------------------------------------------------------
# Reading inputs (recorded, missing -> None)

class Inputs:
    """Reads pipeline outputs below ``root``; remembers every relative path it was asked for."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.asked: list[str] = []

    def path(self, rel: str) -> Path | None:
        if rel not in self.asked:
            self.asked.append(rel)
        full = self.root / rel
        return full if full.exists() else None

    def _parse(self, rel: str, reader):
        full = self.path(rel)
        if full is None:
            return None
        try:
            return reader(full)
        except (ValueError, OSError, pd.errors.ParserError) as error:
            raise PipelineError(f"{rel}: unreadable ({error}); re-run the stage that writes it "
                                f"(dvc repro --force <stage>)") from error

    def json(self, rel: str) -> Any:
        return self._parse(rel, lambda p: json.loads(p.read_text()))

    def csv(self, rel: str, sep: str = ",") -> pd.DataFrame | None:
        return self._parse(rel, lambda p: pd.read_csv(p, sep=sep))

    def tsv(self, rel: str) -> pd.DataFrame | None:
        return self.csv(rel, sep="\t")

    def text(self, rel: str) -> str | None:
        return self._parse(rel, lambda p: p.read_text())


def num(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


# ---------------------------------------------------------------------------------------------
# Figures

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    _pyplot().close(fig)


def resnet_curves_figure(curves: dict[str, pd.DataFrame], variant: str, path: Path) -> None:
    """Loss, Acc@1 and Acc@5 by epoch, train and val (one PNG per variant)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, metric, label in zip(axes, ("loss", "acc1", "acc5"), ("loss", "Acc@1 (%)", "Acc@5 (%)")):
        for split, style in (("train", "-o"), ("val", "--s")):
            table = curves.get(f"{split}/{metric}")
            if table is not None:
                ax.plot(table["step"], table[metric], style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"ResNet-18, variant {variant}")
    _save(fig, path)


def lm_curves_figure(curves: dict[str, dict[str, pd.DataFrame]], path: Path) -> None:
    """Training perplexity per log interval and validation perplexity per epoch, one line per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, tables in curves.items():
        if tables.get("train/ppl") is not None:
            axes[0].plot(tables["train/ppl"]["step"], tables["train/ppl"]["ppl"], label=name)
        if tables.get("valid/ppl") is not None:
            axes[1].plot(tables["valid/ppl"]["step"], tables["valid/ppl"]["ppl"], "-o", label=name)
    for ax, xlabel, title in ((axes[0], "batch", "training perplexity"),
                              (axes[1], "epoch", "validation perplexity")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("perplexity")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def context_figure(curves: dict[str, pd.DataFrame | None], effective: dict[str, int], path: Path) -> None:
    """Perplexity against context length inside each model's trained context (solid) and beyond
    it (dotted: extrapolation), and the loss increase when far tokens are perturbed; every line
    with its 95% interval as a band."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    tables = [t for t in curves.values() if t is not None]
    models = list(dict.fromkeys(m for t in tables for m in t["model"]))
    def rows_of(key: str, name: str) -> pd.DataFrame:
        table = curves.get(key)
        return table[table["model"] == name] if table is not None else pd.DataFrame()

    for i, name in enumerate(models):
        colour = f"C{i}"
        inside = rows_of("perplexity", name)
        beyond = pd.concat([inside.tail(1), rows_of("extrapolation", name)])  # dotted on from the last trained k
        for rows, style, label in ((inside, "-o", f"{name} (effective {effective.get(name, '?')})"), (beyond, ":", None)):
            if len(rows) < 2 and rows is beyond:
                continue
            axes[0].plot(rows["context"], rows["ppl"], style, color=colour, markersize=3, label=label)
            axes[0].fill_between(rows["context"], rows["lower"], rows["upper"], color=colour, alpha=0.15, linewidth=0)
        for key, style in (("random", "-s"), ("shuffle", "--o")):
            rows = rows_of(key, name)
            if rows.empty:
                continue
            axes[1].plot(rows["distance"], rows["increase"], style, color=colour, markersize=3, label=f"{name} {key}")
            axes[1].fill_between(rows["distance"], rows["lower"], rows["upper"], color=colour, alpha=0.15, linewidth=0)
    axes[0].set(xscale="log", yscale="log", xlabel="context k (tokens; dotted: beyond the trained context)",
                ylabel="perplexity", title="perplexity against context length (95% bands)")
    axes[1].set(xscale="log", xlabel="distance d (tokens)", ylabel="loss increase (nats)",
                title="tokens farther than d replaced (solid) / shuffled (dashed)")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis, locator in ((axes[0].xaxis, LogLocator(base=2)), (axes[1].xaxis, LogLocator(base=2)),
                          (axes[0].yaxis, LogLocator(subs=(1, 2, 5)))):  # 1, 2, 4 .. tokens; 20, 50 .. perplexity
        axis.set_major_locator(locator)
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    axes[1].axhline(0, color="grey", linewidth=0.8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Sections: each hands templates/report.md.j2 its values (None: its input is absent)

class Report:
    def __init__(self, inputs: Inputs, params: dict, out: Path):
        self.inputs, self.params, self.out = inputs, params or {}, out
        self.figures: list[str] = []

    def figure(self, name: str, draw, *args) -> str:
        draw(*args, self.out / name)
        self.figures.append(name)
        return name

    def copy(self, source: Path, name: str) -> str:
        shutil.copyfile(source, self.out / name)
        self.figures.append(name)
        return name

    def variants(self) -> list[str]:
        """The train_resnet variants: the keys of resnet_runs (dvc.yaml's foreach)."""
        return list(self.params.get("resnet_runs") or {})

    def not_trained(self, variant: str, summary: dict) -> str:
        """Why a train_resnet variant did not train (its run folder's status.json says)."""
        status = self.inputs.json(f"runs/resnet/{variant}/status.json") or {}
        return status.get("reason") or summary.get("status") or "no summary"

    def lm_models(self) -> list[str]:
        """The train_wordlm models: the keys of wordlm.models (dvc.yaml's foreach)."""
        return list((self.params.get("wordlm") or {}).get("models") or {})

    def layer_sizes(self) -> dict | None:
        table = self.inputs.csv("reports/layer_shapes.csv")
        if table is None:
            return None
        extra = [c for c in table.columns if c.startswith("output_at_")]
        return {"stem": (self.params.get("resnet") or {}).get("stem", "?"), "rows": table.astype(str).to_dict("records"),
                "extra": extra[0] if extra else None, "columns": ["layer", "output", *extra],
                "size": extra[0].removeprefix("output_at_") if extra else None}

    def training_curves(self) -> dict:
        recipe = self.params.get("resnet") or {}
        keys = ["epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "precision", "input_size", "stem"]
        out = {"dataset": self.inputs.json("metrics/dataset.json"),
               "recipe": [(k, recipe[k]) for k in keys if k in recipe] if recipe else None, "variants": []}
        for variant in self.variants():
            summary = self.inputs.json(f"metrics/train_resnet_{variant}.json")
            base = f"runs/resnet/{variant}/dvclive/plots/metrics"
            curves = {}
            for split in ("train", "val"):
                for metric in ("loss", "acc1", "acc5"):
                    table = self.inputs.tsv(f"{base}/{split}/{metric}.tsv")
                    if table is not None:
                        curves[f"{split}/{metric}"] = table
            entry = {"name": variant, "base": base, "summary": summary, "curves": bool(curves)}
            out["variants"].append(entry)
            if summary is None:
                continue
            if summary.get("status") != "trained":
                entry["skipped"] = self.not_trained(variant, summary)
                continue
            if not curves:
                continue
            entry["figure"] = self.figure(f"resnet_curves_{variant}.png", resnet_curves_figure, curves, variant)
            log = None
            for key, table in curves.items():
                part = table.rename(columns={table.columns[1]: key}).set_index("step")
                log = part if log is None else log.join(part, how="outer")
            for extra in ("lr", "epoch_seconds", "images_per_second"):
                table = self.inputs.tsv(f"{base}/{extra}.tsv")
                if table is not None:
                    log = log.join(table.set_index("step"), how="outer")
            entry["log"] = [{"epoch": int(step), **{k: num(v, ".4g" if k == "lr" else ".2f") for k, v in row.items()}}
                            for step, row in log.sort_index().iterrows()]
            entry["columns"] = ["epoch"] + list(log.columns)
        return out

    def device_comparison(self) -> dict | None:
        table = self.inputs.csv("reports/device_comparison.csv")
        if table is None:
            return None
        trained = {r["variant"]: r for r in table.to_dict("records")}
        rows = []
        for variant in self.variants():
            e = trained.get(variant)
            if e is None:
                summary = self.inputs.json(f"metrics/train_resnet_{variant}.json") or {}
                rows.append({"variant": variant,
                             "status": f"{summary.get('status', 'missing')}: {self.not_trained(variant, summary)}"})
                continue
            rows.append({"variant": variant, "status": "trained", "device": e["device"], "GPUs": e["gpus"],
                         "processes": e["processes"], "s/epoch": num(e["seconds_per_epoch"]),
                         "images/s": num(e["images_per_second"], ".1f"), "total s": num(e["total_seconds"]),
                         "speedup over CPU": num(e["speedup_over_cpu"]),
                         "scaling efficiency": num(e["scaling_efficiency"])})
        return {"rows": rows, "any_gpu": any(e["gpus"] for e in trained.values())}

    def checkpoints(self) -> dict | None:
        ev = self.inputs.json("metrics/eval.json")
        if ev is None:
            return None
        first, last, change = ev["first"], ev["last"], ev["change"]
        out = {"run": ev.get("run"), "first": first["epoch"], "last": last["epoch"], "folder": "reports/diff_predictions",
               "rows": [{"checkpoint": f"epoch {first['epoch']}", "Acc@1 (%)": num(first["acc1"]),
                         "Acc@5 (%)": num(first["acc5"]), "loss": num(first["loss"], ".4f")},
                        {"checkpoint": f"epoch {last['epoch']}", "Acc@1 (%)": num(last["acc1"]),
                         "Acc@5 (%)": num(last["acc5"]), "loss": num(last["loss"], ".4f")},
                        {"checkpoint": "difference (last - first)", "Acc@1 (%)": num(change["acc1"], "+.2f"),
                         "Acc@5 (%)": num(change["acc5"], "+.2f"), "loss": num(change["loss"], "+.4f")}]}
        diff = out["diff"] = self.inputs.json(f"{out['folder']}/summary.json")
        if diff is None:
            return out
        out["agreement"], out["acc1_change"] = num(100 * diff["agreement"]), num(diff["acc1_change"], "+.2f")
        out["p"], out["discordant"] = num(diff["mcnemar_p"], ".4g"), diff["only_a_right"] + diff["only_b_right"]
        grid = self.inputs.path(f"{out['folder']}/diff_grid.png")
        if grid is not None:
            out["grid"] = self.copy(grid, "diff_grid.png")
            out["shown"] = min((self.params.get("diff") or {}).get("grid_images") or diff["differing"], diff["differing"])
        table = self.inputs.csv(f"{out['folder']}/diff_predictions.csv")
        out["listed"] = None if table is None else [
            {"file": r.file, "true class": f"{r.true_index} {r.true_name}", f"epoch {diff['epoch_a']}":
             f"{r.pred_a_index} {r.pred_a_name}", f"epoch {diff['epoch_b']}": f"{r.pred_b_index} {r.pred_b_name}",
             "right": r.right} for r in table.itertuples()]
        return out

    def language_models(self) -> dict:
        out = {"summaries": {}, "absent": []}
        curves = {}
        for name in self.lm_models():
            rel = f"metrics/train_wordlm_{name}.json"
            summary = self.inputs.json(rel)
            base = f"runs/wordlm/{name}/dvclive/plots/metrics"
            tables = {key: self.inputs.tsv(f"{base}/{key}.tsv") for key in ("train/ppl", "valid/ppl", "valid/loss")}
            if summary is None:
                out["absent"].append(rel)
                continue
            out["summaries"][name], curves[name] = summary, tables
        if not out["summaries"]:
            return out
        train = (self.params.get("wordlm") or {}).get("train") or {}
        entries = (self.params.get("wordlm") or {}).get("models") or {}
        out["train"] = [(k, train[k]) for k in ("epochs", "batch_size", "bptt", "clip", "eval_context", "eval_stride")
                        if k in train] if train else None
        out["own"] = {name: [(k, v) for k, v in (entries.get(name) or {}).items() if k in train] for name in out["summaries"]}
        if any(t.get("train/ppl") is not None or t.get("valid/ppl") is not None for t in curves.values()):
            out["figure"] = self.figure("wordlm_curves.png", lm_curves_figure, curves)
        out["rows"] = [{"model": n, "type": (entries.get(n) or {}).get("type"),
                        "parameters": f"{s['parameters']:,}" if s.get("parameters") else None,
                        "epochs": (entries.get(n) or {}).get("epochs", train.get("epochs")), "best epoch": best_epoch(curves[n]),
                        "valid ppl": num(s.get("best_valid_ppl")), "test ppl": num(s.get("test_ppl")),
                        "tokens/s": num(s.get("tokens_per_s"), ".0f"), "seconds": num(s.get("seconds")),
                        "trained context": s.get("trained_context"), "receptive field": s.get("receptive_field")}
                       for n, s in out["summaries"].items()]
        out["log"] = []  # per model: its epochs' validation loss and perplexity, and the test perplexity
        for name, summary in out["summaries"].items():
            valid, ppl = curves[name].get("valid/loss"), curves[name].get("valid/ppl")
            if valid is None:
                continue
            out["log"].append({"model": name, "test_ppl": summary.get("test_ppl"), "test_loss": math.log(
                summary["test_ppl"]) if summary.get("test_ppl") is not None else None, "epochs": [
                (int(row.step), row.loss, num(ppl.loc[ppl.step == row.step, "ppl"].iloc[0] if ppl is not None else None))
                for row in valid.itertuples()]})
        generated = self.inputs.text("reports/generated.txt")
        if generated is not None:
            gen = self.params.get("generate") or {}
            text = generated.splitlines()
            out["generated"] = {"words": len(" ".join(text).split()), "lines": text[:EXCERPT_LINES],
                                "about": [(k, gen[k]) for k in ("model", "temperature", "seed") if gen.get(k) is not None]}
        return out

    def context_study(self) -> dict | None:
        folder = "reports/context_probe"
        probe = self.inputs.json(f"{folder}/summary.json")
        if probe is None or not probe.get("models"):
            return None
        models = probe["models"]
        curves = {"perplexity": self.inputs.csv(f"{folder}/perplexity.csv"),
                  "extrapolation": self.inputs.csv(f"{folder}/perplexity_extrapolation.csv"),
                  "shuffle": self.inputs.csv(f"{folder}/shuffle_increase.csv"),
                  "random": self.inputs.csv(f"{folder}/random_increase.csv")}
        cfg = self.params.get("context_probe") or {}
        reference = cfg.get("reference_context", 35)
        out = {"folder": folder, "split": cfg.get("split", "?"), "targets": probe.get("targets"), "reference": reference}
        if curves["perplexity"] is not None:
            out["figure"] = self.figure("context_probe.png", context_figure, curves,
                                        {m: r["effective_context"] for m, r in models.items()})
        gain = f"gain_beyond_{reference}"
        lm = (self.params.get("wordlm") or {}).get("models") or {}
        out["rows"] = [{"model": model, "type": lm.get(model, {}).get("type", "-"), "trained context": r.get("trained_context"),
                        "effective context": f"{r['effective_context']} [{r.get('effective_context_low')}, "
                                             f"{r.get('effective_context_high')}]",
                        "best ppl": num(r.get("best_ppl")),
                        f"gain beyond {reference} tokens (nats)": (
                            f"{r[gain]:.3f} [{r[gain + '_low']:.3f}, {r[gain + '_high']:.3f}]" if gain in r else "-"),
                        "receptive field": r.get("receptive_field") or "-"} for model, r in models.items()]
        out["cnns"] = [{"model": model, "receptive_field": r["receptive_field"], "effective": r["effective_context"],
                        "low": r.get("effective_context_low"), "high": r.get("effective_context_high"),
                        "inside": r["effective_context"] < r["receptive_field"]}
                       for model, r in models.items() if r.get("receptive_field")]
        findings = self.inputs.text(f"{folder}/findings.md")
        out["findings"] = None if findings is None else [
            line for line in findings.splitlines() if not line.startswith("# ")]
        return out

    def cost(self) -> str | None:
        """C13's measurement: time and memory against sequence length (the lm_cost stage's figure)."""
        figure = self.inputs.path("reports/lm_cost/cost.png")
        return None if figure is None else self.copy(figure, "lm_cost.png")

    def claims(self) -> list[str]:
        """The report's verdict line (tools/rejudge_result.py rewrites it in a recorded report)."""
        return [render_template("verdicts.md.j2", counts=self.inputs.json("metrics/claims.json")).rstrip("\n")]

    def provenance(self) -> dict:
        root = self.inputs.root
        out = {"commit": git(root, "rev-parse", "HEAD")}
        head = git(root, "show", "HEAD:params.yaml")
        try:
            committed = read_yaml(head) if head is not None else None
        except YAMLError:  # a broken committed file: the workspace's was checked, this one cannot be compared
            committed = None
        out["changed"] = None if committed is None else [
            {"param": k, "committed": json.dumps(a), "this run": json.dumps(b)}
            for k, a, b in params_diff(committed, self.params)]
        tiny, lm = self.params.get("tinyimagenet") or {}, self.params.get("wordlm") or {}
        out["tinyimagenet"] = tiny and {"source": tiny.get("source"), "md5": tiny.get("md5"),
                                        "hash": lock_hash(root, "download_tinyimagenet", "datasets/tiny-imagenet-200")}
        out["corpus"] = lm and {"corpus": lm.get("corpus"), "md5": lm.get("data_md5"),
                                "hash": lock_hash(root, "prepare_corpus", "datasets/corpus")}
        out["cpu"], out["cores"], out["gpus"], out["versions"] = cpu_name(), os.cpu_count(), gpu_names(), versions()
        return out

    def render(self) -> str:
        """The report: each section's values (in the order they are read and drawn), worded by the template."""
        return render_template("report.md.j2", plots_page=PLOTS_PAGE, counts=self.inputs.json("metrics/claims.json"),
                               layers=self.layer_sizes(), training=self.training_curves(),
                               devices=self.device_comparison(), checkpoints=self.checkpoints(),
                               lm=self.language_models(), context=self.context_study(), cost=self.cost(),
                               provenance=self.provenance())


def best_epoch(tables: dict[str, pd.DataFrame | None]) -> int | None:
    """The epoch of the lowest validation loss (the model train_wordlm keeps)."""
    valid = tables.get("valid/loss")
    return None if valid is None or valid.empty else int(valid.loc[valid["loss"].idxmin(), "step"])


# ---------------------------------------------------------------------------------------------
# Provenance helpers

def git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def params_diff(committed: dict, current: dict) -> list[tuple[str, Any, Any]]:
    a, b = flatten(committed), flatten(current)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def lock_hash(root: Path, stage: str, path: str) -> str | None:
    try:
        lock = read_yaml((root / "dvc.lock").read_text())
        outs = lock["stages"][stage]["outs"]
    except (OSError, KeyError, TypeError, YAMLError):
        return None
    return next((o.get("md5") for o in outs if o.get("path") == path), None)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "dvc", "dvclive", "matplotlib", "pandas"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------

def build_report(root: str | Path, out: str | Path, params: dict | None = None) -> dict:
    """Write ``out``/report.md and its figures from the outputs below ``root``.

    Returns the report text, the figure files and every input path it asked for (relative to root).
    """
    inputs = Inputs(root)
    if params is None:
        params_file = Path(root) / "params.yaml"
        params = read_params(params_file) if params_file.exists() else {}
    with atomic_dir(out) as tmp:
        report = Report(inputs, params, tmp)
        text = report.render()
        (tmp / "report.md").write_text(text)
    return {"text": text, "figures": report.figures, "inputs": inputs.asked}
