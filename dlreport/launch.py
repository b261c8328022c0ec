"""The train_resnet variants: which may run on this host, and how they are launched.

A variant (``resnet_runs.<name>``) asks for ``gpus`` (0 = CPU, with ``procs`` gloo processes).
The top-level ``devices`` param says how many GPUs this experiment may use. A variant that
needs more than that is recorded as skipped; ``devices`` beyond the GPUs actually present is
an error before any training, so timings are never silently measured on other hardware.
A GPU variant leases the GPUs it runs on (``gpulease``): runs started together (``dvc queue
start -j 8``) take distinct GPUs, and wait while none are free.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import torch

from dlreport.devices import choose_backend
from dlreport.errors import PipelineError
from dlreport.faults import Stopped
from dlreport.fileio import read_json, write_json
from dlreport.gpulease import host_gpu_count, leased_gpus
from dlreport.params import ResnetParams, ResnetRunParams, TinyImageNetParams
from dlreport.recipe import data_record, resnet_recipe
from dlreport.runlog import write_empty_curves
from dlreport.training import check_recipe, train


def variant_of(runs: dict[str, ResnetRunParams], name: str) -> ResnetRunParams:
    """resnet_runs.<name>, for the stage's --variant (dvc.yaml passes a key of resnet_runs)."""
    if name not in runs:
        close = difflib.get_close_matches(name, list(runs), n=1)
        raise PipelineError(f"--variant {name!r} is not a key of resnet_runs in params.yaml (known: {', '.join(runs)}"
                            + (f"; did you mean {close[0]}?)." if close else ")."))
    return runs[name]


def skip_reason(variant: ResnetRunParams, devices: int) -> str | None:
    """Why this variant does not train here, or None if it does. Raises on impossible params."""
    if variant.gpus == 0:
        return None
    present = host_gpu_count()
    if devices > present:
        raise PipelineError(f"devices={devices} in params.yaml, but this host has {present} CUDA GPU(s). "
                            f"Set devices to at most {present} (dvc exp run -S devices={present}); "
                            f"timings on other hardware would be mislabelled.")
    if variant.gpus > devices:
        return (f"needs {variant.gpus} GPU(s) but this experiment may use devices={devices}; "
                f"on a host with {variant.gpus} GPUs run: dvc exp run -S devices={variant.gpus}")
    return None


def launch_or_skip(recipe: ResnetParams, name: str, variant: ResnetRunParams, devices: int, dataset: TinyImageNetParams,
                   prepared: str, out: str, summary: str, params_path: str, script: str) -> None:
    reason = skip_reason(variant, devices)
    if reason:
        # The run folder is the stage's output, so it must exist; earlier checkpoints stay.
        Path(out).mkdir(parents=True, exist_ok=True)
        write_empty_curves(Path(out))
        write_json(Path(out) / "status.json", {"status": "skipped", "reason": reason})
        # (the reason stays in status.json: a sentence would make `dvc metrics show` very wide)
        write_json(summary, {"status": "skipped", "gpus": variant.gpus})
        print(f"train_resnet@{name}: skipped, {reason}")
        return
    nproc = variant.gpus or variant.procs
    launch = recipe.launch
    nnodes = int(os.environ.get("NNODES", launch.nnodes))
    # before torchrun starts any process
    check_recipe(recipe, nproc * nnodes, f"processes (resnet_runs.{name}.{'gpus' if variant.gpus else 'procs'} = "
                                         f"{nproc}" + (f" x {nnodes} nodes)" if nnodes > 1 else ")"))
    if nproc * nnodes > 1:
        choose_backend(launch.backend, variant.gpus > 0)
    with leased_gpus(variant.gpus) if variant.gpus else contextlib.nullcontext() as lease:
        if lease is not None:
            print(f"=> train_resnet@{name} leased GPU(s) {lease.visible_devices} (CUDA_VISIBLE_DEVICES)", flush=True)
        if nproc == 1 and nnodes == 1:
            # In this process: CUDA is not initialised yet (device_count() asks NVML and caches
            # nothing before), so it reads the CUDA_VISIBLE_DEVICES the lease set.
            train_worker(recipe, name, variant, dataset, prepared, out, summary)
        else:
            run_torchrun(recipe, name, nproc, nnodes, lease.handles if lease else [], prepared, out, summary,
                         params_path, script)


def run_torchrun(recipe: ResnetParams, name: str, nproc: int, nnodes: int, lease_handles: list[int], prepared: str,
                 out: str, summary: str, params_path: str, script: str) -> None:
    launch = recipe.launch
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        command.append("--standalone")
    else:
        endpoint = os.environ.get("RDZV_ENDPOINT", launch.rdzv_endpoint)
        if not endpoint:
            raise PipelineError("resnet.launch.nnodes > 1 needs resnet.launch.rdzv_endpoint "
                                "(host:port of node 0) or the RDZV_ENDPOINT environment variable.")
        command += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}",
                    "--rdzv_id=train_resnet"]
    command += [script, "--variant", name, "--params", params_path, "--prepared", prepared,
                "--out", out, "--summary", summary]
    print("=> " + " ".join(command), flush=True)
    # torchrun holds the lease's lock files too, so the GPUs stay leased while it runs even if this
    # process is killed first. It runs in its own session, so a Ctrl-C at the terminal reaches this
    # process only, which stops torchrun and its workers in order (``stop_torchrun``).
    torchrun = subprocess.Popen(command, pass_fds=lease_handles, stderr=subprocess.PIPE, start_new_session=True)
    relay = StderrRelay(torchrun.stderr)
    try:
        status = torchrun.wait()
    except Stopped as stopped:
        stop_torchrun(torchrun, relay, stopped.signum)
        stopped.said = relay.said > 0
        raise
    relay.join()
    if status:
        raise PipelineError(f"torchrun for train_resnet@{name} exited with status {status} "
                            f"(see its output above); checkpoints of completed epochs are kept in "
                            f"{out}/checkpoints/resume.pt and the next run resumes from it.")


class StderrRelay(threading.Thread):
    """Copies torchrun's stderr (its workers' too) to ours, line by line, so that a failed launch
    still ends with one `error:` line, the stage's own:

    * a worker's `error: ...` line (every rank may print the same one) passes once, as
      `worker: ...`; after it only other workers' reasons pass - not torchrun's traceback about the
      failed child, nor the other ranks' complaints that rank 0 left;
    * once ``stopping`` (a stop signal is being passed on), only the workers' `error:` lines pass,
      unchanged: rank 0's says where the run was, and is the stage's line.
    """

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.stopping, self.said, self.failed = stream, False, 0, False
        self.seen: set[bytes] = set()
        self.start()

    def run(self) -> None:
        for line in self.stream:
            reason = line.startswith(b"error: ")
            if reason and line in self.seen or not reason and (self.stopping or self.failed):
                continue
            if reason:
                self.seen.add(line)
                self.said += self.stopping
                if not self.stopping:
                    self.failed, line = True, b"worker: " + line.removeprefix(b"error: ")
            sys.stderr.write(line.decode(errors="replace"))
            sys.stderr.flush()


def stop_torchrun(torchrun: subprocess.Popen, relay: StderrRelay, signum: int) -> None:
    """Pass the stop signal to torchrun, which passes it to every worker and waits for them (SIGKILL
    after 30 s); each worker removes its temporaries and rank 0 says where the run was."""
    relay.stopping = True
    torchrun.send_signal(signum)
    try:
        torchrun.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(torchrun.pid, signal.SIGKILL)
        torchrun.wait()
    relay.join(timeout=10)


def train_worker(recipe: ResnetParams, name: str, variant: ResnetRunParams, dataset: TinyImageNetParams,
                 prepared: str, out: str, summary: str) -> None:
    """One training process (rank 0 writes the summary, with the recipe the run trained with)."""
    use_cuda = variant.gpus > 0
    if use_cuda and not torch.cuda.is_available():
        raise PipelineError(f"train_resnet@{name} needs CUDA, but torch sees no GPU on this host.")
    result = train(recipe, Path(prepared), Path(out), use_cuda=use_cuda, backend=recipe.launch.backend)
    if result is not None:
        write_json(Path(out) / "status.json", {"status": "trained"})
        counts = read_json(Path(prepared) / "summary.json")
        data = data_record(dataset.source, dataset.md5, counts["train_images"], counts["val_images"])
        write_json(summary, {**result, "recipe": resnet_recipe(recipe, data)})
