"""Tables and comparisons built from stage outputs: the layer-size table, the device comparison,
Markdown tables for the report, and the templates (templates/) that word the report and the ledger."""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from dlreport.models import build_resnet18, layer_shapes


def layer_table(stem: str, input_size: int, num_classes: int = 200) -> pd.DataFrame:
    """The report's table: each block's output size for one input image, measured by hooks."""
    rows = layer_shapes(build_resnet18(num_classes, stem), input_size)
    return pd.DataFrame([{"layer": r["layer"], "output": r["shape"]} for r in rows])


def compare_devices(summaries: dict[str, dict]) -> tuple[dict, pd.DataFrame]:
    """Speed of every train_resnet variant against the CPU run and the 1-GPU run: the headline
    metrics (speedups and scaling efficiencies; None where a variant did not train) and the full
    table of the variants that trained.

    speedup = CPU seconds per epoch / variant seconds per epoch;
    scaling efficiency (variants of several GPUs) = (1-GPU seconds per epoch / variant seconds
    per epoch) / GPUs.
    """
    trained = {n: s for n, s in summaries.items() if s.get("status") == "trained"}
    cpu = trained.get("cpu", {}).get("seconds_per_epoch")
    one_gpu = next((s["seconds_per_epoch"] for s in trained.values() if s.get("gpus") == 1), None)
    rows = []
    for name, s in trained.items():
        seconds = s["seconds_per_epoch"]
        rows.append({"variant": name, "device": s.get("device"), "gpus": s.get("gpus", 0),
                     "processes": s.get("processes", 1), "seconds_per_epoch": seconds,
                     "images_per_second": s["images_per_second"], "total_seconds": s["total_seconds"],
                     "speedup_over_cpu": cpu / seconds if cpu and seconds else None,
                     "scaling_efficiency": one_gpu / seconds / s["gpus"] if one_gpu and s.get("gpus", 0) > 1 else None})
    table = pd.DataFrame(rows, columns=["variant", "device", "gpus", "processes", "seconds_per_epoch",
                                        "images_per_second", "total_seconds", "speedup_over_cpu",
                                        "scaling_efficiency"])
    by_name = {r["variant"]: r for r in rows}
    metrics = {
        "speedup_over_cpu": {n: by_name.get(n, {}).get("speedup_over_cpu") for n in summaries if n != "cpu"},
        "scaling_efficiency": {n: by_name.get(n, {}).get("scaling_efficiency") for n, s in summaries.items()
                               if s.get("gpus", 0) > 1},
    }
    return metrics, table


def cell(value) -> str:
    """A Markdown table cell: "-" for none, a | escaped, on one line."""
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict] | pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; cells are written as given (format numbers first)."""
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    columns = columns or (list(rows[0]) if rows else [])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# The templates: Markdown worded around the values the code computes. Read from the package folder
# (the stages run from the repository; dvc.yaml lists each template as a dep of its stage).
TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    # StrictUndefined: a value the code did not hand over is an error, not an empty string in the page
    environment = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters["cell"] = cell
    environment.filters["table"] = markdown_table  # rows | table(columns): the columns, in order, are the layout
    return environment


def render_template(name: str, **values) -> str:
    """templates/``name`` filled with ``values`` (plain numbers, strings, lists and dicts)."""
    return _environment().get_template(name).render(**values)
