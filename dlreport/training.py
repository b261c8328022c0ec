"""ResNet-18 training on decoded Tiny-ImageNet tensors: one loop for CPU, one GPU and many.

One code path covers every variant: a single process, or several launched by torchrun (gloo on
CPUs, NCCL on GPUs, one or several nodes) under DistributedDataParallel. The global batch stays as
configured and is split across processes; the per-epoch sample order and augmentation come from
``(seed, epoch)`` alone, so several processes see exactly the images a single process would and a
resumed run replays the epochs it lost exactly - on a GPU the same images, but the same arithmetic
only with ``resnet.deterministic`` (see ``devices.configure_kernels``).

On a GPU the images live in device memory, augmentation runs there as batched ops, and a training
step never makes the host wait for the device (the meters are read at log lines and epoch ends).
The pieces: ``devices`` (processes, devices, precision), ``transforms`` (batched augmentation),
``checkpoints`` (save, keep, resume), ``runlog`` (meters, DVCLive + TensorBoard).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from dlreport import checkpoints
from dlreport.devices import (Dist, all_reduce_sum, autocast_dtype, configure_kernels, gpus_used, hardware,
                              init_distributed)
from dlreport.errors import PipelineError
from dlreport.faults import Fault, Stopped, ensure_space, size_text, where_stopped, writing
from dlreport.models import build_resnet18, use_gemm_convolutions
from dlreport.progress import eta_line
from dlreport.runlog import DeviceMeters, RunLogger, StepTimer
from dlreport.tinyimagenet import load_classes, load_split_tensors
from dlreport.transforms import EpochAugmentation, augment, eval_input

if TYPE_CHECKING:  # annotations only: the GPU check (benchmarks/gpu_check.py) runs without pydantic
    from dlreport.params import ResnetParams

LOGS = "the DVCLive and TensorBoard logs"  # what a failed write of the run's logs was writing


# --------------------------------------------------------------------------------------
# The recipe: checks, learning-rate schedule, the optimizer step
# --------------------------------------------------------------------------------------
def check_recipe(recipe: ResnetParams, world: int, processes: str = "processes") -> None:
    if recipe.batch_size % world:
        raise PipelineError(f"resnet.batch_size={recipe.batch_size} does not split evenly over "
                            f"{world} {processes}; choose a multiple of {world}.")
    # (every value's type and range was checked against dlreport/params.py before the launch;
    # the number of processes is known only here, across nodes)


def lr_factor(recipe: ResnetParams, step: int, steps_per_epoch: int) -> float:
    """The learning rate's multiplier at optimizer step ``step`` (per step, so warmup is smooth)."""
    epoch = step / steps_per_epoch
    total = recipe.epochs
    warmup = recipe.warmup_epochs
    name = recipe.schedule
    if warmup and epoch < warmup:
        return (epoch + 1 / steps_per_epoch) / warmup
    if name == "constant":
        return 1.0
    if name == "step":
        return recipe.gamma ** (int(epoch) // recipe.step_size)
    if name == "cosine":
        progress = (epoch - warmup) / max(1e-8, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    # onecycle: linear up over warmup (default 30%), linear down to zero
    warmup = warmup or 0.3 * total
    if epoch < warmup:
        return (epoch + 1 / steps_per_epoch) / warmup
    return max(0.0, (total - epoch) / max(1e-8, total - warmup))


@dataclass
class TrainStep:
    """One optimizer step of the recipe: forward and loss under autocast, backward, SGD, schedule.
    Returns the logits and the loss as device tensors (reading them is the caller's choice)."""
    forward: nn.Module            # the model as trained: wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp: torch.dtype | None

    @classmethod
    def for_recipe(cls, model: nn.Module, recipe: ResnetParams, steps_per_epoch: int, amp: torch.dtype | None,
                   forward: nn.Module | None = None) -> "TrainStep":
        # fused: weight decay, momentum and update in one pass over each parameter (on the 2-core
        # AMX Xeon 5.3 ms a step against 14.0 for the per-tensor loop, the same weights to the bit).
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(recipe, step, steps_per_epoch))
        device = next(model.parameters()).device
        # fp16 needs loss scaling, and GradScaler reads its overflow check on the host every step;
        # bf16 (what precision: auto picks) and fp32 need neither.
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        return cls(model if forward is None else forward, optimizer, scheduler, scaler, criterion, amp)

    def load_optimizer_state(self, saved: dict) -> None:
        """A checkpoint's optimizer state: momentum buffers and learning rates. How the step is
        computed (fused, foreach) stays this code's - a checkpoint saved before the step was fused
        would otherwise turn fusing off for the rest of the run (torch restores every group key)."""
        implementation = [{key: group[key] for key in ("fused", "foreach") if key in group}
                          for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(saved)
        for group, keys in zip(self.optimizer.param_groups, implementation):
            group.update(keys)

    def __call__(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(images.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            output = self.forward(images)
            loss = self.criterion(output, target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return output, loss


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    """How many rows have the target among the top k logits, for each k (a device tensor)."""
    hits = logits.topk(max(ks), dim=1).indices == target[:, None]
    return torch.stack([hits[:, :k].any(1).sum() for k in ks])


def to_training_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as it trains fastest on ``device``: channels_last (what oneDNN and cuDNN prefer
    for convolutions) and, on CPUs, GEMM weight gradients for the small late layers."""
    if device.type == "cpu":
        use_gemm_convolutions(model)
    return model.to(device, memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
@dataclass
class Data:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor


def load_data(prepared: Path, device: torch.device) -> Data:
    """The decoded images, read once; on a GPU the whole set lives in device memory."""
    tensors = []
    for split in ("train", "val"):
        tensors += load_split_tensors(prepared, split)[1:]
    if device.type == "cuda":
        tensors = [t.to(device) for t in tensors]
    return Data(*tensors)


def epoch_order(n: int, recipe: ResnetParams, epoch: int, ctx: Dist) -> torch.Tensor:
    """This process's share of the epoch's shuffled sample order (DistributedSampler's)."""
    sampler = DistributedSampler(range(n), num_replicas=ctx.world, rank=ctx.rank, shuffle=True,
                                 seed=recipe.seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler))


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------
def train_one_epoch(step_fn: TrainStep, data: Data, epoch: int, recipe: ResnetParams, ctx: Dist, log) -> dict:
    step_fn.forward.train()
    images_on = data.train_images.device
    n = len(data.train_images)
    per_rank = recipe.batch_size // ctx.world
    # One host-to-device copy per epoch: each step then only indexes device tensors.
    order = epoch_order(n, recipe, epoch, ctx).to(images_on)
    aug = EpochAugmentation.draw(n, recipe.seed, epoch).to(images_on)
    steps = math.ceil(len(order) / per_rank)
    timer = StepTimer(ctx.device)
    meters = DeviceMeters([":.4e", ":6.2f", ":6.2f"], ctx.device)  # loss, Acc@1, Acc@5
    start = time.perf_counter()
    for step in range(steps):
        index = order[step * per_rank:(step + 1) * per_rank]
        images = augment(data.train_images[index], index, aug, recipe.input_size)
        target = data.train_labels[index]
        timer.data_ready()
        output, loss = step_fn(images, target)
        batch = len(index)
        correct = topk_correct(output.detach().float(), target).double()
        meters.update(torch.cat([loss.detach().double().reshape(1), correct * (100.0 / batch)]), batch)
        timer.step_done()
        if step % recipe.print_freq == 0 or step == steps - 1:
            timer.read()
            losses, top1, top5 = meters.read()
            if ctx.main:
                log(f"Epoch: [{epoch}][{step + 1:>{len(str(steps))}}/{steps}]\tTime {timer.batch_time}\t"
                    f"Data {timer.data_time}\tLoss {losses}\tAcc@1 {top1}\tAcc@5 {top5}")
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    timer.read()
    loss_sum, acc1_sum, acc5_sum, count, wait = all_reduce_sum(
        torch.cat([meters.sums.cpu(), torch.tensor([meters.count, timer.data_seconds], dtype=torch.float64)]), ctx)
    return {"train/loss": loss_sum / count, "train/acc1": acc1_sum / count, "train/acc5": acc5_sum / count,
            "train_seconds": seconds, "images_per_second": count / seconds,
            "data_wait_fraction": wait / ctx.world / seconds}


@torch.no_grad()
def evaluate_images(model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, input_size: int,
                    amp, device: torch.device, print_freq: int, log=None) -> torch.Tensor:
    """Float32 logits for ``images`` (uint8), printing main.py-style ``Test:`` lines as it goes."""
    model.eval()
    steps = math.ceil(len(images) / batch_size)
    timer = StepTimer(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct@1, correct@5
    count = 0
    out = []
    for step, s in enumerate(range(0, len(images), batch_size)):
        batch = eval_input(images[s:s + batch_size].to(device, non_blocking=True), input_size)
        target = labels[s:s + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            output = model(batch).float()
        out.append(output)
        sums += torch.cat([F.cross_entropy(output, target, reduction="sum").reshape(1),
                           topk_correct(output, target)]).to(torch.float64)
        count += len(target)
        timer.step_done()
        if log and (step % print_freq == 0 or step == steps - 1):
            timer.read()
            loss, c1, c5 = sums.tolist()
            log(f"Test: [{step + 1:>{len(str(steps))}}/{steps}]\tTime {timer.batch_time}\t"
                f"Loss {loss / count:.4e}\tAcc@1 {100 * c1 / count:6.2f}\tAcc@5 {100 * c5 / count:6.2f}")
    return torch.cat(out) if out else torch.empty(0, device=device)


def validate(model, data: Data, recipe: ResnetParams, amp, ctx: Dist, log) -> dict:
    """Loss/Acc@1/Acc@5 on the whole validation set, sharded across processes."""
    n = len(data.val_images)
    lo, hi = n * ctx.rank // ctx.world, n * (ctx.rank + 1) // ctx.world
    target = data.val_labels[lo:hi].to(ctx.device)
    logits = evaluate_images(model, data.val_images[lo:hi], target, batch_size=recipe.eval_batch_size,
                             input_size=recipe.input_size, amp=amp, device=ctx.device,
                             print_freq=recipe.print_freq, log=log if ctx.main else None)
    loss = F.cross_entropy(logits, target, reduction="sum").reshape(1)
    totals = torch.cat([loss, topk_correct(logits, target)]).cpu().double()
    loss, c1, c5, count = all_reduce_sum(torch.cat([totals, torch.tensor([float(len(target))], dtype=torch.float64)]), ctx)
    result = {"val/loss": loss / count, "val/acc1": 100 * c1 / count, "val/acc5": 100 * c5 / count}
    if ctx.main:
        log(f" * Acc@1 {result['val/acc1']:.3f} Acc@5 {result['val/acc5']:.3f}")
    return result


def train(recipe: ResnetParams, prepared: Path, run_dir: Path, *, use_cuda: bool, backend: str = "auto",
          log=print) -> dict | None:
    """Train (or resume) one run; returns the run summary on rank 0, None on other ranks."""
    configure_kernels(recipe.deterministic, use_cuda)  # before any GPU work (cuBLAS reads it once)
    ctx = init_distributed(use_cuda, backend)
    check_recipe(recipe, ctx.world)
    run_dir = Path(run_dir)
    say = log if ctx.main else (lambda *a, **k: None)
    data = load_data(Path(prepared), ctx.device)
    num_classes = len(load_classes(prepared))

    torch.manual_seed(recipe.seed)
    model = build_resnet18(num_classes, recipe.stem)
    if recipe.sync_bn and ctx.world > 1:
        if use_cuda:
            # Not free for the host: each SyncBatchNorm forward drops the gathered statistics of
            # empty batches with a boolean mask whose result size the host must read, so with
            # sync_bn the host waits for the GPU once per BatchNorm layer per step (20 in ResNet-18;
            # torch/nn/modules/_functions.py, pytorch issue 78549).
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # torch's SyncBatchNorm runs on GPUs only
            say("=> resnet.sync_bn ignored: SyncBatchNorm needs GPUs; each CPU process normalises its own batch")
    model = to_training_device(model, ctx.device)
    forward = model
    if ctx.world > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if use_cuda else None)
    if recipe.compile:
        # Only the training forward/backward is compiled; validation runs the plain model.
        forward = torch.compile(forward, mode=recipe.compile)
    steps_per_epoch = math.ceil(math.ceil(len(data.train_images) / ctx.world) / (recipe.batch_size // ctx.world))
    amp = autocast_dtype(recipe.precision, ctx.device)
    step_fn = TrainStep.for_recipe(model, recipe, steps_per_epoch, amp, forward)

    # Every rank reads the same resume state (the run folder must be shared across nodes to resume).
    if ctx.world > 1:
        dist.barrier()  # rank 0 may move stale checkpoints aside; let it finish first
    state, start_epoch = checkpoints.find_resume_point(run_dir, recipe, say) if ctx.main else (None, None)
    if ctx.world > 1:
        box = [start_epoch]
        dist.broadcast_object_list(box, src=0)
        start_epoch = box[0]
        if not ctx.main and start_epoch > 1:
            state = checkpoints.load_checkpoint(checkpoints.resume_path(run_dir), checkpoints.training_stage(run_dir))
    history: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        if "cut_from" not in state:  # (a run cut from a longer one has no optimizer state: it is finished)
            step_fn.load_optimizer_state(state["optimizer"])
            step_fn.scheduler.load_state_dict(state["scheduler"])
            step_fn.scaler.load_state_dict(state["scaler"])
            checkpoints.set_rng_state(state["rng"])
        history = list(state["history"])

    if ctx.main:
        ensure_training_space(run_dir, recipe, model, step_fn.optimizer, start_epoch)
    # A finished run's logs are rebuilt only where they are missing: a re-run that trains nothing
    # writes nothing but its summary (so a full disk then costs no output).
    rebuild = start_epoch <= recipe.epochs or not all((run_dir / name).is_dir() for name in ("dvclive", "tensorboard"))
    with writing(run_dir, LOGS):
        logger = RunLogger(run_dir, history, say) if ctx.main and rebuild else None
    say(f"=> training {recipe.epochs} epochs on {ctx.world} process(es), "
        f"{'cuda' if use_cuda else 'cpu'}, precision {amp or torch.float32}, "
        f"{len(data.train_images)} train / {len(data.val_images)} val images"
        + (", deterministic kernels" if torch.are_deterministic_algorithms_enabled() else ""))
    timed: list[float] = []  # the epochs this process trains (a resumed run's earlier ones ran elsewhere)
    epoch, saved, finished = start_epoch, start_epoch - 1, False
    try:
        for epoch in range(start_epoch, recipe.epochs + 1):
            lr = step_fn.optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            metrics = train_one_epoch(step_fn, data, epoch, recipe, ctx, say)
            metrics.update(validate(model, data, recipe, amp, ctx, say))
            metrics.update(epoch=epoch, lr=lr, epoch_seconds=time.perf_counter() - tic)
            if use_cuda:
                metrics["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
            if ctx.main:
                history.append(metrics)
                # The weights as CPU tensors: a CPU-only user loads them with a plain
                # torch.load(path, weights_only=True) (CUDA tensors would need map_location).
                state_dict = {name: value.detach().cpu() for name, value in model.state_dict().items()}
                weights = {"epoch": epoch, "model": state_dict, "recipe": recipe.recipe(),
                           "metrics": metrics, "num_classes": num_classes, "world_size": ctx.world}
                checkpoints.save_epoch(run_dir, recipe, weights, {
                    **weights, "optimizer": step_fn.optimizer.state_dict(),
                    "scheduler": step_fn.scheduler.state_dict(), "scaler": step_fn.scaler.state_dict(),
                    "rng": checkpoints.rng_state(), "history": history})
                saved = epoch
                with writing(run_dir, LOGS):
                    logger.log(metrics)
                timed.append(metrics["epoch_seconds"])
                say(f"=> {eta_line(epoch, recipe.epochs, timed)}")
            if ctx.world > 1:
                dist.barrier()
        finished = True
    except (Stopped, Fault) as fault:
        raise fault.add(where_stopped(epoch, saved, recipe.epochs, f"{run_dir}/checkpoints"))
    finally:
        if logger:
            close_logs(logger, run_dir, report=finished)
    if ctx.world > 1:
        dist.destroy_process_group()
    if not ctx.main:
        return None
    checkpoints.finish(run_dir, recipe)
    return summarize(history, ctx, amp)


def ensure_training_space(run_dir: Path, recipe: ResnetParams, model: nn.Module, optimizer, start_epoch: int) -> None:
    """Stop before the first epoch when the disk cannot hold the checkpoints this run will write:
    the kept epochs' weights, and the resume state written beside the last one before it is
    replaced (hard links into the progress folder and into DVC's cache take no space)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    momentum = sum(p.numel() * p.element_size() for p in model.parameters()) if recipe.momentum > 0 else 0
    resume = weights + momentum  # (SGD keeps one momentum buffer a parameter)
    kept = [e for e in range(start_epoch, recipe.epochs + 1) if checkpoints.keeps_weights(recipe, e)]
    if not kept and start_epoch > recipe.epochs:
        return
    need = len(kept) * weights + resume
    ensure_space(run_dir, need, f"training epochs {start_epoch}-{recipe.epochs} ({len(kept)} kept checkpoint(s) of "
                                f"{size_text(weights)} and a resume state of {size_text(resume)})",
                 "free space, or keep fewer epochs' weights (e.g. dvc exp run -S 'resnet.keep_epochs=[7,18]'), and re-run")


def close_logs(logger: RunLogger, run_dir: Path, report: bool) -> None:
    """Close the logs; a failure to (a full disk) is reported only if nothing else failed first."""
    try:
        with writing(run_dir, LOGS):
            logger.close()
    except (Exception, Stopped):
        if report:
            raise


def summarize(history: list[dict], ctx: Dist, amp) -> dict:
    """The run's headline figures (metrics/train_resnet_<variant>.json, shown by dvc metrics show)."""
    last = history[-1] if history else {}
    # The first epoch pays one-off costs (allocator, cudnn autotuning, compiling); leave it out of speed.
    timed = history[1:] if len(history) > 1 else history
    summary = {
        "status": "trained",
        "processes": ctx.world,
        "gpus": gpus_used(ctx),
        **hardware(ctx.device, amp),
        "epochs": len(history),
        "val_acc1": last.get("val/acc1"), "val_acc5": last.get("val/acc5"), "val_loss": last.get("val/loss"),
        "best_val_acc1": max((h["val/acc1"] for h in history), default=None),
        "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in timed])) if timed else None,
        "images_per_second": float(np.mean([h["images_per_second"] for h in timed])) if timed else None,
        "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in timed])) if timed else None,
        "total_seconds": float(sum(h["epoch_seconds"] for h in history)),
    }
    if ctx.device.type == "cuda":
        summary["peak_gpu_memory_gb"] = max(h.get("peak_gpu_memory_gb", 0.0) for h in history) if history else None
    return summary
