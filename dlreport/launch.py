"""The train_resnet variants: which may run on this host, and how they are launched.

A variant (``resnet_runs.<name>``) asks for ``gpus`` (0 = CPU, with ``procs`` gloo processes).
The top-level ``devices`` param says how many GPUs this experiment may use. A variant that
needs more than that is recorded as skipped; ``devices`` beyond the GPUs actually present is
an error before any training, so timings are never silently measured on other hardware.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from dlreport.devices import choose_backend
from dlreport.errors import PipelineError
from dlreport.fileio import write_json
from dlreport.runlog import write_empty_curves
from dlreport.training import check_recipe, train


def run_config(params: dict, run: str) -> dict:
    runs = params["resnet_runs"]
    if run not in runs:
        raise PipelineError(f"--variant {run!r} is not a key of resnet_runs in params.yaml "
                            f"(known: {', '.join(runs)}).")
    return runs[run]


def recipe_of(params: dict) -> dict:
    """The training recipe: params.resnet without the launch settings."""
    return {k: v for k, v in params["resnet"].items() if k != "launch"}


def skip_reason(params: dict, run: str) -> str | None:
    """Why this variant does not train here, or None if it does. Raises on impossible params."""
    gpus = int(run_config(params, run).get("gpus", 0))
    if gpus == 0:
        return None
    devices = int(params.get("devices", 0))
    present = torch.cuda.device_count()
    if devices > present:
        raise PipelineError(f"devices={devices} in params.yaml, but this host has {present} CUDA GPU(s). "
                            f"Set devices to at most {present} (dvc exp run -S devices={present}); "
                            f"timings on other hardware would be mislabelled.")
    if gpus > devices:
        return (f"needs {gpus} GPU(s) but this experiment may use devices={devices}; "
                f"on a host with {gpus} GPUs run: dvc exp run -S devices={gpus}")
    return None


def launch_or_skip(params: dict, run: str, prepared: str, out: str, summary: str,
                   params_path: str, script: str) -> None:
    reason = skip_reason(params, run)
    if reason:
        # The run folder is the stage's output, so it must exist; earlier checkpoints stay.
        Path(out).mkdir(parents=True, exist_ok=True)
        write_empty_curves(Path(out))
        write_json(Path(out) / "status.json", {"status": "skipped", "reason": reason})
        # (the reason stays in status.json: a sentence would make `dvc metrics show` very wide)
        write_json(summary, {"status": "skipped", "gpus": int(run_config(params, run).get("gpus", 0))})
        print(f"train_resnet@{run}: skipped, {reason}")
        return
    cfg = run_config(params, run)
    gpus = int(cfg.get("gpus", 0))
    nproc = gpus or int(cfg.get("procs", 1))
    launch = params["resnet"].get("launch", {}) or {}
    nnodes = int(os.environ.get("NNODES", launch.get("nnodes", 1)))
    # before torchrun starts any process
    check_recipe(recipe_of(params), nproc * nnodes, f"processes (resnet_runs.{run}.{'gpus' if gpus else 'procs'} = "
                                                     f"{nproc}" + (f" x {nnodes} nodes)" if nnodes > 1 else ")"))
    if nproc * nnodes > 1:
        choose_backend(launch.get("backend", "auto"), gpus > 0)
    if nproc == 1 and nnodes == 1:
        train_worker(params, run, prepared, out, summary)
        return
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        command.append("--standalone")
    else:
        endpoint = os.environ.get("RDZV_ENDPOINT", launch.get("rdzv_endpoint"))
        if not endpoint:
            raise PipelineError("resnet.launch.nnodes > 1 needs resnet.launch.rdzv_endpoint "
                                "(host:port of node 0) or the RDZV_ENDPOINT environment variable.")
        command += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}",
                    f"--rdzv_id={launch.get('rdzv_id', 'train_resnet')}"]
    command += [script, "--variant", run, "--params", params_path, "--prepared", prepared,
                "--out", out, "--summary", summary]
    print("=> " + " ".join(command), flush=True)
    result = subprocess.run(command)
    if result.returncode:
        raise PipelineError(f"torchrun for train_resnet@{run} exited with status {result.returncode} "
                            f"(see its output above); checkpoints of completed epochs are kept in "
                            f"{out}/checkpoints/resume.pt and the next run resumes from it.")


def train_worker(params: dict, run: str, prepared: str, out: str, summary: str) -> None:
    """One training process (rank 0 writes the summary)."""
    cfg = run_config(params, run)
    use_cuda = int(cfg.get("gpus", 0)) > 0
    if use_cuda and not torch.cuda.is_available():
        raise PipelineError(f"train_resnet@{run} needs CUDA, but torch sees no GPU on this host.")
    backend = (params["resnet"].get("launch") or {}).get("backend", "auto")
    result = train(recipe_of(params), Path(prepared), Path(out), use_cuda=use_cuda, backend=backend)
    if result is not None:
        write_json(Path(out) / "status.json", {"status": "trained"})
        write_json(summary, result)
