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
from dlreport.fileio import atomic_dir
from dlreport.params import read_params, read_yaml
from dlreport.reporting import markdown_table

NOT_AVAILABLE = "Not available"
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


def missing(*paths: str) -> str:
    return f"*{NOT_AVAILABLE}: {', '.join(f'`{p}`' for p in paths)} absent.*"


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
# Sections: each returns Markdown lines

class Report:
    def __init__(self, inputs: Inputs, params: dict, out: Path):
        self.inputs, self.params, self.out = inputs, params or {}, out
        self.figures: list[str] = []

    def figure(self, name: str, draw, *args) -> str:
        draw(*args, self.out / name)
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

    # -- 1 --------------------------------------------------------------------------------
    def layer_sizes(self) -> list[str]:
        lines = ["## 1. ResNet-18 layer sizes", ""]
        table = self.inputs.csv("reports/layer_shapes.csv")
        if table is None:
            return lines + [missing("reports/layer_shapes.csv") + " (stage `layer_shapes`)"]
        recipe = self.params.get("resnet") or {}
        stem = recipe.get("stem", "?")
        extra = [c for c in table.columns if c.startswith("output_at_")]
        lines += [f"Output of each block for one 64x64 input image ({stem} stem), as the report tabulated it, "
                  f"measured with forward hooks on the model the pipeline trains (height x width x channels)"
                  + (f"; `{extra[0]}`: at the {extra[0].removeprefix('output_at_')}-px input this run trains on"
                     if extra else "") + ":", "",
                  markdown_table(table.astype(str), ["layer", "output", *extra])]
        return lines

    # -- 2 --------------------------------------------------------------------------------
    def training_curves(self) -> list[str]:
        lines = ["## 2. ResNet-18 training curves", ""]
        recipe = self.params.get("resnet") or {}
        dataset = self.inputs.json("metrics/dataset.json")
        if dataset:
            lines.append(f"Dataset: {dataset.get('classes')} classes, {dataset.get('train_images')} training "
                         f"and {dataset.get('val_images')} validation images (`metrics/dataset.json`).")
        if recipe:
            keys = ["epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "precision",
                    "input_size", "stem"]
            lines.append("Recipe (params.yaml `resnet`): " + ", ".join(f"{k} {recipe[k]}" for k in keys if k in recipe)
                         + ".")
        lines.append("")
        for variant in self.variants():
            lines += [f"### Variant `{variant}`", ""]
            summary = self.inputs.json(f"metrics/train_resnet_{variant}.json")
            base = f"runs/resnet/{variant}/dvclive/plots/metrics"
            curves = {}
            for split in ("train", "val"):
                for metric in ("loss", "acc1", "acc5"):
                    table = self.inputs.tsv(f"{base}/{split}/{metric}.tsv")
                    if table is not None:
                        curves[f"{split}/{metric}"] = table
            if summary is None:
                lines += [missing(f"metrics/train_resnet_{variant}.json"), ""]
                continue
            if summary.get("status") != "trained":
                lines += [f"Skipped: {self.not_trained(variant, summary)}", ""]
                continue
            if not curves:
                lines += [missing(f"{base}/{{train,val}}/*.tsv"), ""]
                continue
            name = self.figure(f"resnet_curves_{variant}.png", resnet_curves_figure, curves, variant)
            lines += [f"![ResNet-18 {variant}: loss, Acc@1 and Acc@5 by epoch, train and val]({name})", ""]
            log = None
            for key, table in curves.items():
                part = table.rename(columns={table.columns[1]: key}).set_index("step")
                log = part if log is None else log.join(part, how="outer")
            for extra in ("lr", "epoch_seconds", "images_per_second"):
                table = self.inputs.tsv(f"{base}/{extra}.tsv")
                if table is not None:
                    log = log.join(table.set_index("step"), how="outer")
            rows = [{"epoch": int(step), **{k: num(v, ".4g" if k == "lr" else ".2f") for k, v in row.items()}}
                    for step, row in log.sort_index().iterrows()]
            lines += [f"Training log ({summary.get('device', 'device unknown')}, "
                      f"{summary.get('processes', 1)} process(es)):", "",
                      markdown_table(rows, ["epoch"] + list(log.columns)), ""]
        return lines

    # -- 3 --------------------------------------------------------------------------------
    def device_comparison(self) -> list[str]:
        lines = ["## 3. CPU, 1-GPU and 8-GPU training time", ""]
        table = self.inputs.csv("reports/device_comparison.csv")
        if table is None:
            return lines + [missing("reports/device_comparison.csv") + " (stage `compare_devices`)"]
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
        columns = ["variant", "status", "device", "GPUs", "processes", "s/epoch", "images/s", "total s",
                   "speedup over CPU", "scaling efficiency"]
        lines += [markdown_table(rows, columns), "",
                  "Speedup = CPU seconds per epoch / variant seconds per epoch; scaling efficiency = "
                  "(1-GPU seconds per epoch / variant seconds per epoch) / GPUs (`reports/device_comparison.csv`)."]
        if not any(e["gpus"] for e in trained.values()):
            lines += ["", "No GPU variant trained in this run, so there is no GPU timing or scaling "
                          "efficiency to report; the skipped variants above say how to run them."]
        return lines

    # -- 4 --------------------------------------------------------------------------------
    def checkpoints(self) -> list[str]:
        lines = ["## 4. Two checkpoints compared", ""]
        ev = self.inputs.json("metrics/eval.json")
        if ev is None:
            return lines + [missing("metrics/eval.json") + " (stage `eval_epochs`)"]
        first, last, change = ev["first"], ev["last"], ev["change"]
        lines.append(f"Run `{ev.get('run')}`, full validation set, checkpoints of epoch {first['epoch']} "
                     f"and epoch {last['epoch']} (`metrics/eval.json`):")
        if first["epoch"] == last["epoch"]:
            lines.append(f"(only epoch {first['epoch']} was evaluated: params `eval.epochs` lists one epoch)")
        rows = [{"checkpoint": f"epoch {first['epoch']}", "Acc@1 (%)": num(first["acc1"]),
                 "Acc@5 (%)": num(first["acc5"]), "loss": num(first["loss"], ".4f")},
                {"checkpoint": f"epoch {last['epoch']}", "Acc@1 (%)": num(last["acc1"]),
                 "Acc@5 (%)": num(last["acc5"]), "loss": num(last["loss"], ".4f")},
                {"checkpoint": "difference (last - first)", "Acc@1 (%)": num(change["acc1"], "+.2f"),
                 "Acc@5 (%)": num(change["acc5"], "+.2f"), "loss": num(change["loss"], "+.4f")}]
        lines += ["", markdown_table(rows), ""]
        folder = "reports/diff_predictions"
        diff = self.inputs.json(f"{folder}/summary.json")
        if diff is None:
            return lines + [missing(f"{folder}/summary.json") + " (stage `diff_predictions`)"]
        a, b = diff["epoch_a"], diff["epoch_b"]
        counts = [("both right", "both_right"), (f"only A (epoch {a}) right", "only_a_right"),
                  (f"only B (epoch {b}) right", "only_b_right"), ("both wrong, same prediction", "both_wrong_same"),
                  ("both wrong, different predictions", "both_wrong_different"),
                  ("differing top-1 predictions", "differing"), ("images", "images")]
        lines += [f"Top-1 predictions of epoch {a} (A) and epoch {b} (B) on the same {diff['images']} images "
                  f"(`{folder}/summary.json`):", "",
                  markdown_table([{"images": label, "count": diff[key]} for label, key in counts]), "",
                  f"Agreement {num(100 * diff['agreement'])} %; Acc@1 change {num(diff['acc1_change'], '+.2f')} "
                  f"points; exact McNemar test on the {diff['only_a_right'] + diff['only_b_right']} images only "
                  f"one checkpoint gets right: p = {num(diff['mcnemar_p'], '.4g')}.", ""]
        grid = self.inputs.path(f"{folder}/diff_grid.png")
        if grid is not None:
            shutil.copyfile(grid, self.out / "diff_grid.png")
            self.figures.append("diff_grid.png")
            shown = (self.params.get("diff") or {}).get("grid_images") or diff["differing"]
            caption = (f"*The first {min(shown, diff['differing'])} of the {diff['differing']} differing images; "
                       f"each caption: file, true class, the prediction of epoch {a} (A), of epoch {b} (B), and "
                       f"which one is right.*" if diff["differing"] else
                       "*No image is judged differently: the grid is empty.*")
            lines += [f"![Validation images judged differently by epoch {a} (A) and epoch {b} (B)](diff_grid.png)", "",
                      caption, ""]
        else:
            lines += [missing(f"{folder}/diff_grid.png"), ""]
        table = self.inputs.csv(f"{folder}/diff_predictions.csv")
        if table is None:
            return lines + [missing(f"{folder}/diff_predictions.csv")]
        if table.empty:
            return lines + ["The two checkpoints agree on every image: the list is empty."]
        rows = [{"file": r.file, "true class": f"{r.true_index} {r.true_name}",
                 f"epoch {a}": f"{r.pred_a_index} {r.pred_a_name}", f"epoch {b}": f"{r.pred_b_index} {r.pred_b_name}",
                 "right": r.right} for r in table.itertuples()]
        lines += [f"<details><summary>All {len(rows)} images judged differently (file, true class, "
                  f"both predictions)</summary>", "", markdown_table(rows), "", "</details>"]
        return lines

    # -- 5 --------------------------------------------------------------------------------
    def language_models(self) -> list[str]:
        lines = ["## 5. Word-level language models", ""]
        summaries, curves, absent = {}, {}, []
        for name in self.lm_models():
            rel = f"metrics/train_wordlm_{name}.json"
            summary = self.inputs.json(rel)
            base = f"runs/wordlm/{name}/dvclive/plots/metrics"
            tables = {key: self.inputs.tsv(f"{base}/{key}.tsv") for key in ("train/ppl", "valid/ppl", "valid/loss")}
            if summary is None:
                absent.append(rel)
                continue
            summaries[name], curves[name] = summary, tables
        if not summaries:
            return lines + [missing(*absent) + " The language-model stages (`train_wordlm`) have not run "
                            "in this pipeline."]
        if absent:
            lines += [missing(*absent), ""]
        train = (self.params.get("wordlm") or {}).get("train") or {}
        entries = (self.params.get("wordlm") or {}).get("models") or {}
        if train:
            own = {name: {k: v for k, v in (entries.get(name) or {}).items() if k in train} for name in summaries}
            lines += ["Shared recipe (params.yaml `wordlm.train`): " +
                      ", ".join(f"{k} {train[k]}" for k in ("epochs", "batch_size", "bptt", "clip", "eval_context",
                                                            "eval_stride") if k in train) + "."
                      + "".join(f" `{name}` sets {', '.join(f'{k} {v}' for k, v in keys.items())}." for name, keys
                                in own.items() if keys), ""]
        if any(t.get("train/ppl") is not None or t.get("valid/ppl") is not None for t in curves.values()):
            name = self.figure("wordlm_curves.png", lm_curves_figure, curves)
            lines += [f"![Word LMs: training perplexity per log interval and validation perplexity per epoch]({name})", ""]
        else:
            lines += [missing("runs/wordlm/<model>/dvclive/plots/metrics/*.tsv"), ""]
        rows = [{"model": n, "type": (entries.get(n) or {}).get("type"),
                 "parameters": f"{s['parameters']:,}" if s.get("parameters") else None,
                 "epochs": (entries.get(n) or {}).get("epochs", train.get("epochs")), "best epoch": best_epoch(curves[n]),
                 "valid ppl": num(s.get("best_valid_ppl")), "test ppl": num(s.get("test_ppl")),
                 "tokens/s": num(s.get("tokens_per_s"), ".0f"), "seconds": num(s.get("seconds")),
                 "trained context": s.get("trained_context"), "receptive field": s.get("receptive_field")}
                for n, s in summaries.items()]
        lines += ["Perplexity on the validation set (best epoch) and on the test set (that epoch's model):", "",
                  markdown_table(rows), ""]
        log = []
        for name, summary in summaries.items():
            valid = curves[name].get("valid/loss")
            if valid is None:
                continue
            log.append(f"| model {name}")
            for row in valid.itertuples():
                ppl = curves[name].get("valid/ppl")
                value = ppl.loc[ppl.step == row.step, "ppl"].iloc[0] if ppl is not None else None
                log.append(f"| end of epoch {int(row.step):3d} | valid loss {row.loss:5.2f} | valid ppl {num(value):>8}")
            if summary.get("test_ppl") is not None:
                log.append(f"| End of training | test loss {math.log(summary['test_ppl']):5.2f} | "
                           f"test ppl {summary['test_ppl']:8.2f}")
        if log:
            lines += ["Training log (per epoch, from the DVCLive files):", "", "```", *log, "```", ""]
        generated = self.inputs.text("reports/generated.txt")
        if generated is None:
            lines.append(missing("reports/generated.txt") + " (stage `generate_text`)")
        else:
            gen = self.params.get("generate") or {}
            text = generated.splitlines()
            about = ", ".join(f"{k} {gen[k]}" for k in ("model", "temperature", "seed") if gen.get(k) is not None)
            lines += [f"Generated text (`reports/generated.txt`, {len(' '.join(text).split())} words"
                      + (f"; {about}" if about else "") + f"), the first {min(EXCERPT_LINES, len(text))} lines:", "",
                      "```", *text[:EXCERPT_LINES], "```"]
        return lines

    # -- 6 --------------------------------------------------------------------------------
    def context_study(self) -> list[str]:
        lines = ["## 6. Context in CNNs, RNNs and Transformers", ""]
        folder = "reports/context_probe"
        probe = self.inputs.json(f"{folder}/summary.json")
        if probe is None or not probe.get("models"):
            return lines + [missing(f"{folder}/summary.json") + " (stage `context_probe`): no context "
                            "measurements to report."]
        models = probe["models"]
        curves = {"perplexity": self.inputs.csv(f"{folder}/perplexity.csv"),
                  "extrapolation": self.inputs.csv(f"{folder}/perplexity_extrapolation.csv"),
                  "shuffle": self.inputs.csv(f"{folder}/shuffle_increase.csv"),
                  "random": self.inputs.csv(f"{folder}/random_increase.csv")}
        cfg = self.params.get("context_probe") or {}
        reference = cfg.get("reference_context", 35)
        lines += [f"Split `{cfg.get('split', '?')}`, {probe.get('targets')} target tokens, the same for every model "
                  f"and setting. Each model is probed inside the context it was trained on (its trained context: "
                  f"bptt, or the CNN's receptive field); longer contexts are extrapolation, drawn dotted and kept "
                  f"out of the table. Brackets: 95% bootstrap intervals over the target tokens "
                  f"(`{folder}/summary.json`, `{folder}/*.csv`).", ""]
        if curves["perplexity"] is None:
            lines += [missing(f"{folder}/perplexity.csv"), ""]
        else:
            name = self.figure("context_probe.png", context_figure, curves,
                               {m: r["effective_context"] for m, r in models.items()})
            lines += [f"![Perplexity against context length; loss increase when far tokens are perturbed]({name})", ""]
        gain = f"gain_beyond_{reference}"
        rows = []
        for model, r in models.items():
            rows.append({"model": model, "type": ((self.params.get("wordlm") or {}).get("models") or {}).get(model, {})
                         .get("type", "-"), "trained context": r.get("trained_context"),
                         "effective context": f"{r['effective_context']} [{r.get('effective_context_low')}, "
                                              f"{r.get('effective_context_high')}]",
                         "best ppl": num(r.get("best_ppl")),
                         f"gain beyond {reference} tokens (nats)": (
                             f"{r[gain]:.3f} [{r[gain + '_low']:.3f}, {r[gain + '_high']:.3f}]" if gain in r else "-"),
                         "receptive field": r.get("receptive_field") or "-"})
        lines += [markdown_table(rows), ""]
        for model, r in models.items():
            rf = r.get("receptive_field")
            if rf:
                where = "inside" if r["effective_context"] < rf else "at"
                lines.append(f"- The CNN `{model}` sees at most {rf} tokens (its receptive field); its measured "
                             f"effective context, {r['effective_context']} [{r.get('effective_context_low')}, "
                             f"{r.get('effective_context_high')}] tokens, lies {where} it.")
        findings = self.inputs.text(f"{folder}/findings.md")
        if findings is None:
            lines += ["", missing(f"{folder}/findings.md")]
        else:
            body = [line for line in findings.splitlines() if not line.startswith("# ")]
            lines += ["", f"Findings of the `context_probe` stage (`{folder}/findings.md`), claim by claim:", "",
                      *("> " + line if line else ">" for line in body)]
        return lines

    def cost(self) -> list[str]:
        """C13's measurement: time and memory against sequence length (the lm_cost stage's figure)."""
        lines = ["### Cost against sequence length", ""]
        figure = self.inputs.path("reports/lm_cost/cost.png")
        if figure is None:
            return lines + [missing("reports/lm_cost/cost.png") + " (stage `lm_cost`)"]
        shutil.copyfile(figure, self.out / "lm_cost.png")
        self.figures.append("lm_cost.png")
        return lines + ["Time and peak memory of a forward pass and a training step against the sequence length "
                        "(batch 1; `reports/lm_cost/`), log-log; the exponents fitted over the shaded lengths are "
                        "judged in the claims ledger (C13).", "", "![Cost against sequence length](lm_cost.png)"]

    def claims(self) -> list[str]:
        counts = self.inputs.json("metrics/claims.json")
        if counts is None:
            return [missing("metrics/claims.json") + " (stage `claims`): no claims ledger."]
        return [f"**Was the report right?** Of its {counts['claims']} claims, {counts['supported']} are supported, "
                f"{counts['contradicted']} contradicted, {counts.get('not_comparable', 0)} not comparable (another recipe "
                f"or data than the report's) and {counts['not_measurable']} not measurable in this run: "
                f"see [the claims ledger](../claims.md) for each claim, the report's figure, ours, the rule and "
                f"the verdict."]

    # -- 7 --------------------------------------------------------------------------------
    def provenance(self) -> list[str]:
        root = self.inputs.root
        lines = ["## 7. Provenance", "",
                 "Read when this report was written (not DVC dependencies).", ""]
        commit = git(root, "rev-parse", "HEAD")
        lines.append(f"- git commit: `{commit or 'unknown'}`")
        head = git(root, "show", "HEAD:params.yaml")
        try:
            committed = read_yaml(head) if head is not None else None
        except YAMLError:  # a broken committed file: the workspace's was checked, this one cannot be compared
            committed = None
        if committed is None:
            lines.append("- params: unknown whether they differ from the committed ones (no git, or params.yaml "
                         "not committed or not valid YAML there)")
        else:
            changed = params_diff(committed, self.params)
            if changed:
                lines += ["- params that differ from the committed params.yaml (`git show HEAD:params.yaml`):", "",
                          markdown_table([{"param": k, "committed": json.dumps(a), "this run": json.dumps(b)}
                                          for k, a, b in changed]), ""]
            else:
                lines.append("- params: as committed (params.yaml equals `git show HEAD:params.yaml`)")
        tiny = self.params.get("tinyimagenet") or {}
        if tiny:
            lines.append(f"- Tiny-ImageNet: source `{tiny.get('source')}`, expected archive md5 "
                         f"`{tiny.get('md5') or 'none (not checked)'}`, DVC hash of `datasets/tiny-imagenet-200` "
                         f"`{lock_hash(root, 'download_tinyimagenet', 'datasets/tiny-imagenet-200') or 'unknown'}`")
        lm = self.params.get("wordlm") or {}
        if lm:
            lines.append(f"- language-model corpus: `{lm.get('corpus')}`"
                         + (f", expected WikiText-2 md5 `{lm['data_md5']}`" if lm.get("corpus") == "data" else "")
                         + f", DVC hash of `datasets/corpus` "
                           f"`{lock_hash(root, 'prepare_corpus', 'datasets/corpus') or 'unknown'}`")
        cpu, gpus = cpu_name(), gpu_names()
        lines.append(f"- hardware: CPU {cpu}, {os.cpu_count()} logical cores; "
                     + (f"{len(gpus)} GPU(s): {', '.join(gpus)}" if gpus else "no CUDA GPU"))
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
        return lines

    def render(self) -> str:
        sections = [self.claims, self.layer_sizes, self.training_curves, self.device_comparison, self.checkpoints,
                    self.language_models, self.context_study, self.cost, self.provenance]
        out = ["# ResNet-18 on Tiny-ImageNet and word-level language models", "",
               "Regenerated by the `report` stage (`dvc repro report`) from this pipeline's outputs.", "",
               "The figures below are static. For the interactive plots (every curve overlaid, the timing "
               "bar chart, the context probe; zoom and tooltips), run `dvc plots show` in the project "
               f"root and open [`dvc_plots/index.html`]({PLOTS_PAGE}) in a browser; `dvc plots diff "
               "<exp1> <exp2>` writes the same page for two experiments. The page carries its own copy "
               "of the Vega libraries, so it works offline.", ""]
        for section in sections:
            out += section() + [""]
        return "\n".join(out)


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
