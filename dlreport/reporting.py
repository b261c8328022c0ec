"""Tables and comparisons built from stage outputs: the layer-size table, the device comparison,
Markdown tables for the report."""
from __future__ import annotations

import pandas as pd

from dlreport.models import build_resnet18, layer_shapes


def layer_table(stem: str, input_size: int, num_classes: int = 200) -> pd.DataFrame:
    """The report's table: each block's output size for one input image, measured by hooks."""
    rows = layer_shapes(build_resnet18(num_classes, stem), input_size)
    return pd.DataFrame([{"layer": r["layer"], "output": r["shape"]} for r in rows])


def compare_devices(summaries: dict[str, dict]) -> tuple[dict, pd.DataFrame]:
    """Speed of every train_resnet variant against the CPU run and the 1-GPU run.

    speedup = CPU seconds per epoch / variant seconds per epoch;
    scaling efficiency (GPU variants) = (1-GPU seconds per epoch / variant seconds per epoch) / GPUs.
    """
    def spe(name):
        s = summaries.get(name, {})
        return s.get("seconds_per_epoch") if s.get("status") == "trained" else None

    cpu_spe = spe("cpu")
    one_gpu = next((n for n, s in summaries.items() if s.get("status") == "trained" and s.get("gpus") == 1), None)
    metrics, rows = {}, []
    for name, s in summaries.items():
        if s.get("status") != "trained":
            metrics[name] = {"status": s.get("status", "missing"), "reason": s.get("reason", "")}
            continue
        entry = {
            "status": "trained",
            "device": s.get("device"),
            "gpus": s.get("gpus", 0),
            "processes": s.get("processes", 1),
            "seconds_per_epoch": s["seconds_per_epoch"],
            "images_per_second": s["images_per_second"],
            "total_seconds": s["total_seconds"],
            "speedup_over_cpu": cpu_spe / s["seconds_per_epoch"] if cpu_spe and s["seconds_per_epoch"] else None,
        }
        if s.get("gpus") and one_gpu:
            entry["scaling_efficiency"] = spe(one_gpu) / s["seconds_per_epoch"] / s["gpus"]
        metrics[name] = entry
        rows.append({"variant": name, **{k: entry[k] for k in ("images_per_second", "seconds_per_epoch",
                                                               "total_seconds", "speedup_over_cpu")}})
    columns = ["variant", "images_per_second", "seconds_per_epoch", "total_seconds", "speedup_over_cpu"]
    return metrics, pd.DataFrame(rows, columns=columns)


def markdown_table(rows: list[dict] | pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; cells are written as given (format numbers first)."""
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    columns = columns or (list(rows[0]) if rows else [])

    def cell(value) -> str:
        return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
