"""ResNet-18 training on decoded Tiny-ImageNet tensors: one loop for CPU, one GPU and many.

One code path covers every variant: a single process, or several launched by torchrun
(gloo on CPU, NCCL on GPUs, one or several nodes) under DistributedDataParallel. The global
batch stays as configured and is split across processes; the per-epoch sample order and
augmentation come from ``(seed, epoch)`` alone, so several processes see exactly the images a
single process would and a resumed run replays the epochs it lost exactly.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from dlreport.errors import PipelineError
from dlreport.models import build_resnet18, use_gemm_weight_grad
from dlreport.tinyimagenet import load_classes, load_split_tensors

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
CROP_PADDING = 4  # RandomCrop(64, padding=4), the usual recipe for 64px inputs

# Recipe keys that change the trained weights: a checkpoint resumes only if these match.
RESULT_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "input_size", "stem",
               "schedule", "warmup_epochs", "step_size", "gamma", "label_smoothing", "seed",
               "precision", "sync_bn")


# --------------------------------------------------------------------------------------
# Processes and devices
# --------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> Dist:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        # Share the cores between the processes on this node instead of oversubscribing them.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, device)


def all_reduce_sum(values: list[float], ctx: Dist) -> list[float]:
    if ctx.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64,
                          device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware runs it fast (CUDA, or CPUs with native bf16); else fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise PipelineError(f"resnet.precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On CPUs without native bf16 (AVX2 only) autocast is ~10x slower than fp32 (measured: 7 vs
    # 86 img/s for this ResNet-18 at 64px on a 2-core AVX2 EPYC), so use it only where supported.
    try:
        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native_bf16 = False
    return torch.bfloat16 if native_bf16 else None


# --------------------------------------------------------------------------------------
# Batched input pipeline on uint8 tensors
# --------------------------------------------------------------------------------------
def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) to normalised float, channels_last for the convolutions."""
    images = images.float()
    out = (images - MEAN.to(images.device)) / STD.to(images.device)
    return out.contiguous(memory_format=torch.channels_last)


@dataclass
class EpochAugmentation:
    """Random crop/flip parameters for every training image of one epoch, drawn from
    ``(seed, epoch)`` so that any number of processes, and a resumed run, agree on them."""
    flips: torch.Tensor          # (N,) bool
    offsets: torch.Tensor        # (N, 2) int: 64px crop origin in the padded image
    boxes: torch.Tensor          # (N, 4) float: RandomResizedCrop (x0, y0, w, h), fractions

    @classmethod
    def draw(cls, n: int, seed: int, epoch: int) -> "EpochAugmentation":
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        flips = torch.rand(n, generator=gen) < 0.5
        offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=gen)
        # RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)); torchvision retries
        # out-of-range draws, we clamp them instead (one draw per image, no Python loop).
        area = torch.empty(n).uniform_(0.08, 1.0, generator=gen)
        log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        x0 = torch.rand(n, generator=gen) * (1 - w)
        y0 = torch.rand(n, generator=gen) * (1 - h)
        return cls(flips, offsets, torch.stack([x0, y0, w, h], 1))


def augment(images: torch.Tensor, index: torch.Tensor, aug: EpochAugmentation, input_size: int) -> torch.Tensor:
    """Training batch: uint8 images of the dataset rows ``index`` -> augmented float input."""
    flips = aug.flips[index].to(images.device)
    if input_size == images.shape[-1]:
        # RandomCrop(size, padding) + horizontal flip as two gathers.
        size = images.shape[-1]
        padded = F.pad(images, (CROP_PADDING,) * 4)
        offsets = aug.offsets[index].to(images.device)
        span = torch.arange(size, device=images.device)
        rows = (offsets[:, 0:1] + span)[:, None, :, None].expand(-1, 3, -1, padded.shape[-1])
        cols = (offsets[:, 1:2] + span)
        cols = torch.where(flips[:, None], cols.flip(1), cols)[:, None, None, :].expand(-1, 3, size, -1)
        return normalize(padded.gather(2, rows).gather(3, cols))
    # RandomResizedCrop(input_size) + flip as one affine resampling of the whole batch.
    x0, y0, w, h = aug.boxes[index].to(images.device).unbind(1)
    theta = torch.zeros(len(index), 2, 3, device=images.device)
    theta[:, 0, 0] = torch.where(flips, -w, w)
    theta[:, 0, 2] = 2 * x0 + w - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    grid = F.affine_grid(theta, [len(index), 3, input_size, input_size], align_corners=False)
    source = normalize(images).contiguous()
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False).contiguous(
        memory_format=torch.channels_last)


def eval_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    batch = normalize(images)
    if input_size != images.shape[-1]:  # the report's main.py upsampled 64px images to 224
        batch = F.interpolate(batch, size=(input_size, input_size), mode="bilinear",
                              align_corners=False).contiguous(memory_format=torch.channels_last)
    return batch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[int]:
    top = logits.topk(max(ks), dim=1).indices
    hits = top == target[:, None]
    return [int(hits[:, :k].any(1).sum()) for k in ks]


# --------------------------------------------------------------------------------------
# Learning-rate schedules (per step, so warmup is smooth)
# --------------------------------------------------------------------------------------
def lr_factor(recipe: dict, step: int, steps_per_epoch: int) -> float:
    epoch = step / steps_per_epoch
    total = recipe["epochs"]
    warmup = recipe.get("warmup_epochs", 0) or 0
    name = recipe.get("schedule", "constant")
    if warmup and epoch < warmup:
        return (epoch + 1 / steps_per_epoch) / warmup
    if name == "constant":
        return 1.0
    if name == "step":
        return recipe.get("gamma", 0.1) ** (int(epoch) // recipe.get("step_size", 30))
    if name == "cosine":
        progress = (epoch - warmup) / max(1e-8, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if name == "onecycle":  # linear up over warmup (default 30%), linear down to zero
        warmup = warmup or 0.3 * total
        if epoch < warmup:
            return (epoch + 1 / steps_per_epoch) / warmup
        return max(0.0, (total - epoch) / max(1e-8, total - warmup))
    raise PipelineError(f"resnet.schedule must be constant, step, cosine or onecycle, not {name!r}")


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------
def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:02d}.pt"


def saved_epochs(run_dir: Path) -> list[int]:
    folder = Path(run_dir) / "checkpoints"
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_*.pt")) if folder.is_dir() else []


def save_checkpoint(state: dict, path: Path) -> None:
    """Write atomically: a checkpoint file is complete or absent, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint as data only (weights_only=True): unpickling never runs code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such checkpoint.") from None
    except Exception as error:
        raise PipelineError(f"{path}: not a readable checkpoint ({error}). Delete it and re-run "
                            f"the training stage to recreate it.") from None


def recipe_differences(saved: dict, current: dict) -> list[str]:
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in RESULT_KEYS
            if saved.get(k) != current.get(k)]


def find_resume_point(run_dir: Path, recipe: dict, log=print) -> tuple[dict | None, int]:
    """The newest complete checkpoint made with the same recipe, and the epoch to start at.

    Checkpoints made under other params are never resumed: they are moved aside to a
    sibling ``.<run>-stale-<time>`` folder (nothing is deleted) and training starts afresh.
    """
    epochs = saved_epochs(run_dir)
    if not epochs:
        return None, 1
    state = load_checkpoint(checkpoint_path(run_dir, epochs[-1]))
    differences = recipe_differences(state.get("recipe", {}), recipe)
    if differences:
        stale = Path(run_dir).parent / f".{Path(run_dir).name}-stale-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.move(str(Path(run_dir) / "checkpoints"), str(stale))
        log(f"=> checkpoints in {run_dir} were made with other params ({'; '.join(differences)}); "
            f"not resuming them. Moved to {stale}; training from epoch 1.")
        return None, 1
    if state["epoch"] >= recipe["epochs"]:
        log(f"=> {run_dir}: all {recipe['epochs']} epochs already trained (epoch_{state['epoch']:02d}.pt)")
    else:
        log(f"=> resuming {run_dir} from epoch_{state['epoch']:02d}.pt")
    return state, state["epoch"] + 1


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------
# Logging: DVCLive + TensorBoard, rank 0 only
# --------------------------------------------------------------------------------------
EPOCH_METRICS = ("train/loss", "train/acc1", "train/acc5", "val/loss", "val/acc1", "val/acc5",
                 "lr", "epoch_seconds", "images_per_second", "data_wait_fraction")


class RunLogger:
    """Per-epoch scalars to DVCLive (``<run>/dvclive``) and TensorBoard (``<run>/tensorboard``).

    On resume both logs are rebuilt from the checkpoints' stored metrics, so they hold exactly
    one row per completed epoch however the previous run ended.
    """

    def __init__(self, run_dir: Path, history: list[dict]):
        from dvclive import Live
        from torch.utils.tensorboard import SummaryWriter

        for name in ("dvclive", "tensorboard"):
            shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
        self.live = Live(str(Path(run_dir) / "dvclive"), dvcyaml=False, save_dvc_exp=False, report=None)
        self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        for metrics in history:
            self.log(metrics)

    def log(self, metrics: dict) -> None:
        epoch = int(metrics["epoch"])
        self.live.step = epoch
        for name in EPOCH_METRICS:
            self.live.log_metric(name, metrics[name])
            self.tb.add_scalar(name, metrics[name], epoch)
        self.live.log_metric("epoch", epoch, plot=False)
        self.live.make_summary()
        self.tb.flush()

    def close(self) -> None:
        self.live.end()
        self.tb.close()


class AverageMeter:
    def __init__(self, fmt: str = ":.3f"):
        self.fmt, self.val, self.sum, self.count = fmt, 0.0, 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.val, self.sum, self.count = val, self.sum + val * n, self.count + n

    @property
    def avg(self) -> float:
        return self.sum / max(1, self.count)

    def __str__(self) -> str:
        return ("{val" + self.fmt + "} ({avg" + self.fmt + "})").format(val=self.val, avg=self.avg)


# --------------------------------------------------------------------------------------
# The loop
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


def train_one_epoch(model, optimizer, scheduler, scaler, data: Data, epoch: int, recipe: dict,
                    amp, ctx: Dist, criterion, log) -> dict:
    model.train()
    n = len(data.train_images)
    per_rank = recipe["batch_size"] // ctx.world
    sampler = DistributedSampler(range(n), num_replicas=ctx.world, rank=ctx.rank, shuffle=True,
                                 seed=recipe["seed"])
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler))
    aug = EpochAugmentation.draw(n, recipe["seed"], epoch)
    steps = math.ceil(len(order) / per_rank)
    batch_time, data_time, losses = AverageMeter(), AverageMeter(), AverageMeter(":.4e")
    top1, top5 = AverageMeter(":6.2f"), AverageMeter(":6.2f")
    sums = [0.0, 0.0, 0.0, 0.0]  # loss*n, correct@1, correct@5, n
    data_seconds = 0.0
    start = end = time.perf_counter()
    for step in range(steps):
        index = order[step * per_rank:(step + 1) * per_rank]
        device_index = index.to(data.train_images.device)
        images = augment(data.train_images[device_index].to(ctx.device, non_blocking=True), index, aug,
                         recipe["input_size"])
        target = data.train_labels[device_index].to(ctx.device, non_blocking=True)
        data_seconds += time.perf_counter() - end
        data_time.update(time.perf_counter() - end)
        with torch.autocast(ctx.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            output = model(images)
            loss = criterion(output, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        b = len(index)
        c1, c5 = topk_correct(output.detach().float(), target)
        loss_value = float(loss.detach())
        sums = [sums[0] + loss_value * b, sums[1] + c1, sums[2] + c5, sums[3] + b]
        losses.update(loss_value, b)
        top1.update(100 * c1 / b, b)
        top5.update(100 * c5 / b, b)
        batch_time.update(time.perf_counter() - end)
        end = time.perf_counter()
        if ctx.main and (step % recipe["print_freq"] == 0 or step == steps - 1):
            log(f"Epoch: [{epoch}][{step + 1:>{len(str(steps))}}/{steps}]\tTime {batch_time}\t"
                f"Data {data_time}\tLoss {losses}\tAcc@1 {top1}\tAcc@5 {top5}")
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_sum, c1, c5, count, wait = all_reduce_sum(sums + [data_seconds], ctx)
    return {"train/loss": loss_sum / count, "train/acc1": 100 * c1 / count,
            "train/acc5": 100 * c5 / count, "train_seconds": seconds,
            "images_per_second": count / seconds, "data_wait_fraction": wait / ctx.world / seconds}


@torch.no_grad()
def evaluate_images(model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, input_size: int,
                    amp, device: torch.device, print_freq: int, log=None) -> torch.Tensor:
    """Float32 logits for ``images`` (uint8), printing main.py-style ``Test:`` lines as it goes."""
    model.eval()
    steps = math.ceil(len(images) / batch_size)
    batch_time = AverageMeter()
    sums = [0.0, 0, 0, 0]
    out = []
    end = time.perf_counter()
    for step, s in enumerate(range(0, len(images), batch_size)):
        batch = eval_input(images[s:s + batch_size].to(device, non_blocking=True), input_size)
        target = labels[s:s + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            output = model(batch).float()
        out.append(output)
        c1, c5 = topk_correct(output, target)
        sums = [sums[0] + float(F.cross_entropy(output, target, reduction="sum")), sums[1] + c1,
                sums[2] + c5, sums[3] + len(target)]
        batch_time.update(time.perf_counter() - end)
        end = time.perf_counter()
        if log and (step % print_freq == 0 or step == steps - 1):
            log(f"Test: [{step + 1:>{len(str(steps))}}/{steps}]\tTime {batch_time}\t"
                f"Loss {sums[0] / sums[3]:.4e}\tAcc@1 {100 * sums[1] / sums[3]:6.2f}\t"
                f"Acc@5 {100 * sums[2] / sums[3]:6.2f}")
    return torch.cat(out) if out else torch.empty(0, device=device)


def validate(model, data: Data, recipe: dict, amp, ctx: Dist, log) -> dict:
    """Loss/Acc@1/Acc@5 on the whole validation set, sharded across processes."""
    n = len(data.val_images)
    lo, hi = n * ctx.rank // ctx.world, n * (ctx.rank + 1) // ctx.world
    target = data.val_labels[lo:hi].to(ctx.device)
    logits = evaluate_images(model, data.val_images[lo:hi], target, batch_size=recipe["eval_batch_size"],
                             input_size=recipe["input_size"], amp=amp, device=ctx.device,
                             print_freq=recipe["print_freq"], log=log if ctx.main else None)
    c1, c5 = topk_correct(logits, target)
    loss, c1, c5, count = all_reduce_sum([float(F.cross_entropy(logits, target, reduction="sum")),
                                          c1, c5, len(target)], ctx)
    result = {"val/loss": loss / count, "val/acc1": 100 * c1 / count, "val/acc5": 100 * c5 / count}
    if ctx.main:
        log(f" * Acc@1 {result['val/acc1']:.3f} Acc@5 {result['val/acc5']:.3f}")
    return result


def to_training_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as it trains fastest on ``device``: channels_last (what oneDNN and cuDNN prefer
    for convolutions) and, on CPUs, GEMM weight gradients for the small late layers."""
    if device.type == "cpu":
        use_gemm_weight_grad(model)
    return model.to(device, memory_format=torch.channels_last)


def check_recipe(recipe: dict, world: int) -> None:
    if recipe["batch_size"] % world:
        raise PipelineError(f"resnet.batch_size={recipe['batch_size']} does not split evenly over "
                            f"{world} processes; choose a multiple of {world}.")
    if recipe["input_size"] < 32:
        raise PipelineError(f"resnet.input_size={recipe['input_size']} is too small; use 64 or 224.")


def train(recipe: dict, prepared: Path, run_dir: Path, *, use_cuda: bool, log=print) -> dict | None:
    """Train (or resume) one run; returns the run summary on rank 0, None on other ranks."""
    ctx = init_distributed(use_cuda)
    check_recipe(recipe, ctx.world)
    run_dir = Path(run_dir)
    quiet = (lambda *a, **k: None)
    say = log if ctx.main else quiet
    data = load_data(Path(prepared), ctx.device)
    num_classes = len(load_classes(prepared))

    torch.manual_seed(recipe["seed"])
    model = build_resnet18(num_classes, recipe["stem"])
    if recipe.get("sync_bn") and ctx.world > 1:
        if use_cuda:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # torch's SyncBatchNorm runs on GPUs only
            say("=> resnet.sync_bn ignored: SyncBatchNorm needs GPUs; each CPU process normalises its own batch")
    model = to_training_device(model, ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                                weight_decay=recipe["weight_decay"])
    steps_per_epoch = math.ceil(math.ceil(len(data.train_images) / ctx.world) / (recipe["batch_size"] // ctx.world))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(recipe, step, steps_per_epoch))
    amp = autocast_dtype(recipe["precision"], ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])

    # Every rank reads the same checkpoint (the run folder must be shared across nodes to resume).
    if ctx.world > 1:
        dist.barrier()  # rank 0 may move stale checkpoints aside; let it finish first
    state, start_epoch = find_resume_point(run_dir, recipe, say) if ctx.main else (None, None)
    if ctx.world > 1:
        box = [start_epoch]
        dist.broadcast_object_list(box, src=0)
        start_epoch = box[0]
        if not ctx.main and start_epoch > 1:
            state = load_checkpoint(checkpoint_path(run_dir, start_epoch - 1))
    history: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        if ctx.main:
            history = [load_checkpoint(checkpoint_path(run_dir, e))["metrics"]
                       for e in range(1, start_epoch) if checkpoint_path(run_dir, e).exists()]
    train_model = model
    if ctx.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if use_cuda else None)

    logger = RunLogger(run_dir, history) if ctx.main else None
    say(f"=> training {recipe['epochs']} epochs on {ctx.world} process(es), "
        f"{'cuda' if use_cuda else 'cpu'}, precision {amp or torch.float32}, "
        f"{len(data.train_images)} train / {len(data.val_images)} val images")
    try:
        for epoch in range(start_epoch, recipe["epochs"] + 1):
            lr = optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            metrics = train_one_epoch(train_model, optimizer, scheduler, scaler, data, epoch, recipe,
                                      amp, ctx, criterion, say)
            metrics.update(validate(model, data, recipe, amp, ctx, say))
            metrics.update(epoch=epoch, lr=lr, epoch_seconds=time.perf_counter() - tic)
            if ctx.main:
                save_checkpoint({"epoch": epoch, "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "scaler": scaler.state_dict(), "rng": rng_state(), "recipe": dict(recipe),
                                 "metrics": metrics, "world_size": ctx.world,
                                 "num_classes": num_classes},
                                checkpoint_path(run_dir, epoch))
                logger.log(metrics)
                history.append(metrics)
            if ctx.world > 1:
                dist.barrier()
    finally:
        if logger:
            logger.close()
    if ctx.world > 1:
        dist.destroy_process_group()
    if not ctx.main:
        return None
    return summarize(history, recipe, ctx, use_cuda)


def summarize(history: list[dict], recipe: dict, ctx: Dist, use_cuda: bool) -> dict:
    last = history[-1] if history else {}
    # The first epoch pays one-off costs (allocator, cudnn autotuning); leave it out of speed.
    timed = history[1:] if len(history) > 1 else history
    device = torch.cuda.get_device_name(ctx.local_rank) if use_cuda else _cpu_name()
    return {
        "status": "trained",
        "processes": ctx.world,
        "gpus": ctx.world if use_cuda else 0,
        "device": device,
        "epochs": len(history),
        "val_acc1": last.get("val/acc1"), "val_acc5": last.get("val/acc5"), "val_loss": last.get("val/loss"),
        "best_val_acc1": max((h["val/acc1"] for h in history), default=None),
        "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in timed])) if timed else None,
        "images_per_second": float(np.mean([h["images_per_second"] for h in timed])) if timed else None,
        "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in timed])) if timed else None,
        "total_seconds": float(sum(h["epoch_seconds"] for h in history)),
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or "cpu"
