"""Images/s of our ResNet-18 training step against the PyTorch ImageNet example's recipe.

Both train the same ResNet-18 (200 classes) at the same resolution and batch size on the same
images. The reference is the example's recipe: torchvision ImageFolder, PIL decoding and transforms
in DataLoader worker processes, an fp32 NCHW model. Ours is what train_resnet runs: images decoded
once into a uint8 tensor, crop/flip as batched tensor ops, the model prepared by
``training.to_training_device`` (channels_last; on CPUs, GEMM weight gradients for the small late
layers), bf16 autocast where the hardware runs it fast (resnet.precision: auto), and freed memory
kept for the next step (``devices.keep_freed_memory``; the reference runs with glibc's default
malloc settings). Both take train_resnet's optimizer step (``training.TrainStep``).
benchmarks/gpu_check.py times the same two on a GPU.

The variants are timed in alternating rounds (machines with shared cores drift by 10-20%
within a minute), and the summary gives each variant's median and the median of the per-round
ratios to the reference. --ablation adds the steps in between, to show what each one buys.

Then it puts our step against the hardware: the machine's own matrix-multiply peak in the
training precision (``perf.matmul_peak``: the best of torch.mm and oneDNN's convolutions, measured
in every round), the step's FLOPs (counted per operator) and so the fraction of that peak the step
reaches (each round's against its own round's peak), a per-operator profile (top 10), and the
projected time of the report's 20 real epochs (100,000 training and 10,000 validation images an
epoch) at this speed. --layers adds each convolution's three passes, by oneDNN and as GEMMs,
against the peak.

    dvc repro relabel_val                                  # the images both sides read
    python benchmarks/bench_resnet_input.py
    python benchmarks/bench_resnet_input.py --ablation --rounds 7 --batch-size 256
    python benchmarks/bench_resnet_input.py --batch-size 256 --layers
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlreport import perf, training  # noqa: E402
from dlreport.devices import autocast_dtype, keep_freed_memory, precision_name  # noqa: E402
from dlreport.models import build_resnet18  # noqa: E402
from dlreport.params import parse, read_params  # noqa: E402
from dlreport.tinyimagenet import load_split_tensors  # noqa: E402
from dlreport.transforms import EpochAugmentation, augment  # noqa: E402

# The report's optimizer settings (params.yaml's resnet); the constant schedule makes steps_per_epoch irrelevant.
RECIPE = parse("resnet", {**read_params(Path(__file__).resolve().parent.parent / "params.yaml")["resnet"],
                          "epochs": 1, "schedule": "constant"})


class Variant:
    """One training setup: a model, train_resnet's optimizer step and an endless stream of
    (input, target) batches, moved to ``device`` if they are not there already."""

    def __init__(self, name: str, model, batches, amp=None, device=torch.device("cpu"), keep_memory: bool = False):
        torch.manual_seed(0)
        self.name, self.batches, self.device = name, batches, device
        self.keep_memory = keep_memory  # train_resnet's allocator setting (devices.keep_freed_memory), or glibc's
        self.step_fn = training.TrainStep.for_recipe(model.to(device).train(), RECIPE, 1, amp)
        self.rates: list[float] = []

    def step(self) -> int:
        images, target = next(self.batches)
        self.step_fn(images.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True))
        return len(target)

    def timed(self, steps: int) -> float:
        """Images/s over ``steps`` optimizer steps, data loading included, after one untimed step
        in this variant's allocator setting (the heap settles to it)."""
        keep_freed_memory(self.keep_memory)
        self.step()
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start, seen = time.perf_counter(), 0
        for _ in range(steps):
            seen += self.step()
        sync()
        self.rates.append(seen / (time.perf_counter() - start))
        return self.rates[-1]


def reference_batches(root: Path, batch_size: int, workers: int, input_size: int = 64):
    """The ImageNet example's data path: ImageFolder + PIL transforms in DataLoader workers
    (pinned memory, as the example uses on GPUs)."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    crop = T.RandomCrop(64, padding=4) if input_size == 64 else T.RandomResizedCrop(input_size)
    transform = T.Compose([crop, T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    dataset = ImageFolder(str(root / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0,
                                         pin_memory=torch.cuda.is_available())
    while True:
        yield from loader


def decoded_batches(prepared: Path, batch_size: int, device=torch.device("cpu"),
                    memory_format=torch.channels_last, input_size: int = 64):
    """train_resnet's data path: decoded uint8 images in the device's memory, batched crop/flip there."""
    _, images, labels = load_split_tensors(prepared, "train")
    images, labels = images.to(device), labels.to(device)
    epoch = 0
    while True:
        epoch += 1
        aug = EpochAugmentation.draw(len(images), 0, epoch).to(device)
        order = torch.randperm(len(images)).to(device)
        for s in range(0, len(order) - batch_size + 1, batch_size):
            index = order[s:s + batch_size]
            batch = augment(images[index], index, aug, input_size)
            yield batch.contiguous(memory_format=memory_format), labels[index]


class PeakProbe:
    """The matrix-multiply peak (``perf.matmul_peak``) measured once a round, between the variants:
    a round's step is put against the same minute's peak, as the machine drifts."""

    def __init__(self, dtype: torch.dtype):
        self.dtype, self.values, self.kernels = dtype, [], []

    def measure(self) -> float:
        flops, kernel = perf.matmul_peak(self.dtype)
        self.values.append(flops)
        self.kernels.append(kernel)
        return flops


def compare(variants: list[Variant], rounds: int, steps: int, log=print, peak: PeakProbe | None = None) -> list[dict]:
    """Time the variants in alternating rounds; each one's median images/s and the median of its
    per-round ratios to the first (the reference). With ``peak``, the peak is measured every round too."""
    for variant in variants:  # warm-up: workers started, allocator, oneDNN/cuDNN primitives ready
        variant.step()
    for r in range(rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        rates = {v.name: v.timed(steps) for v in order}
        measured = f"  peak {peak.measure() / 1e12:.3f} TFLOP/s" if peak else ""
        log(f"round {r + 1}: " + "  ".join(f"{rates[v.name]:7.1f}" for v in variants) + "  img/s" + measured)
    ref = variants[0].rates
    return [{"variant": v.name, "images_per_second": statistics.median(v.rates),
             "ratio": statistics.median(ours / base for ours, base in zip(v.rates, ref))} for v in variants]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="datasets/tiny-imagenet-200")
    parser.add_argument("--prepared", default="datasets/tinyimagenet-prepared")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the reference")
    parser.add_argument("--ablation", action="store_true",
                        help="also time decoded tensors with an NCHW model, and with channels_last alone")
    parser.add_argument("--layers", action="store_true",
                        help="also time each convolution's forward and gradients, by oneDNN and as GEMMs")
    args = parser.parse_args()
    prepared, cpu = Path(args.prepared), torch.device("cpu")
    for folder in (Path(args.data) / "train", prepared):
        if not folder.exists():
            sys.exit(f"error: {folder} not found; run `dvc repro relabel_val` first (or pass --data/--prepared)")
    amp = autocast_dtype("auto", cpu)
    print(f"CPU: {perf.cpu_label()}")
    print(f"ResNet-18, 64x64, batch {args.batch_size}, {args.rounds} rounds of {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers for the reference")

    variants = [Variant("reference: ImageFolder + PIL workers, fp32 NCHW", build_resnet18(),
                        reference_batches(Path(args.data), args.batch_size, args.workers))]
    if args.ablation:
        variants += [
            Variant("decoded uint8 + batched crop/flip, fp32 NCHW", build_resnet18(),
                    decoded_batches(prepared, args.batch_size, memory_format=torch.contiguous_format)),
            Variant("  + channels_last", build_resnet18().to(memory_format=torch.channels_last),
                    decoded_batches(prepared, args.batch_size)),
            Variant(f"  + GEMM convolutions for small outputs, {precision_name(amp)}",
                    training.to_training_device(build_resnet18(), cpu),
                    decoded_batches(prepared, args.batch_size), amp),
        ]
    variants.append(Variant(f"ours (train_resnet): + freed memory kept for the next step, {precision_name(amp)}",
                            training.to_training_device(build_resnet18(), cpu),
                            decoded_batches(prepared, args.batch_size), amp, keep_memory=True))
    peak = PeakProbe(amp or torch.float32)
    results = compare(variants, args.rounds, args.steps, peak=peak)
    width = max(len(r["variant"]) for r in results)
    print(f"\n{'variant':{width}s}  median img/s  ratio to reference (median of rounds)")
    for r in results:
        print(f"{r['variant']:{width}s}  {r['images_per_second']:12.1f}  {r['ratio']:5.2f}x")
    against_the_hardware(variants[-1], results[-1]["images_per_second"], peak, amp, prepared, args)


def against_the_hardware(ours: Variant, images_per_second: float, peaks: PeakProbe, amp, prepared: Path,
                         args) -> None:
    """Our step's FLOP/s as a fraction of the machine's matrix-multiply peak (the median of the
    rounds' fractions, each against its own round's peak), where its time goes, and what that speed
    means for the report's 20 real epochs."""
    keep_freed_memory(ours.keep_memory)
    images, target = next(ours.batches)
    image_flops = perf.counted_flops(lambda: ours.step_fn(images, target)) / len(target)
    peak = statistics.median(peaks.values)
    fraction = statistics.median(image_flops * rate / flops for rate, flops in zip(ours.rates, peaks.values))
    kernel = statistics.mode(peaks.kernels)
    achieved = image_flops * images_per_second
    print(f"\nmatrix-multiply peak, {precision_name(amp)}: {peak / 1e12:.3f} TFLOP/s, median of the rounds (the best "
          f"of square products and convolutions, mostly {kernel}; {torch.get_num_threads()} threads)")
    print(f"our training step: {image_flops / 1e9:.3f} GFLOP an image (counted), {achieved / 1e12:.3f} TFLOP/s at "
          f"{images_per_second:.1f} img/s = {fraction:.1%} of the peak (median of the rounds' fractions)")

    _, val_images, val_labels = load_split_tensors(prepared, "val")
    model = ours.step_fn.forward
    eval_seconds = perf.best_seconds(lambda: training.evaluate_images(
        model, val_images, val_labels, batch_size=RECIPE.eval_batch_size, input_size=64, amp=amp,
        device=torch.device("cpu"), print_freq=10 ** 9), repeats=3, warmup=1)
    eval_rate = len(val_images) / eval_seconds
    epoch = 100_000 / images_per_second + 10_000 / eval_rate
    print(f"validation: {eval_rate:.1f} img/s; the report's 20 real epochs at these speeds: "
          f"{epoch:.0f} s an epoch, {20 * epoch / 3600:.2f} h (the report: 36 h 37 min on the CPU)")

    print(f"\nwhere our step's time goes (torch.profiler, 2 steps of {len(target)}):")
    print(perf.profile_table(lambda: ours.step_fn(images, target)))
    if args.layers:
        conv_table(model, images, amp, peak, image_flops * len(target), len(target) / images_per_second)


def conv_table(model, images: torch.Tensor, amp, peak: float, step_flops: int, step_seconds: float) -> None:
    """Each distinct convolution's passes by oneDNN and as GEMMs (ms, and % of the peak): the best
    kernel per pass is a floor under the step's convolution time, whatever else gets faster."""
    print("convolutions (ms a pass, % of the matrix-multiply peak; oneDNN | GEMM):")
    best_total = flops_total = 0.0
    for layer in perf.conv_layers(model, images):
        times = perf.time_conv_passes(layer, amp)
        count, flops = len(layer["layers"]), times["flops"]
        passes = ["forward", "input grad", "weight grad"] if layer["layers"][0] != "conv1" else ["forward", "weight grad"]
        cells = [f"{p} {times[p][0] * 1e3:6.2f} {flops / times[p][0] / peak:4.0%} | {times[p][1] * 1e3:6.2f} "
                 f"{flops / times[p][1] / peak:4.0%}" for p in passes]
        best_total += count * sum(min(times[p]) for p in passes)
        flops_total += count * flops * len(passes)
        co, ci, kh, kw = layer["weight"]
        print(f"  {layer['layers'][0]:>16s} x{count} {ci:>3d}->{co:<3d} {kh}x{kw}/{layer['stride'][0]} "
              f"out {times['output'][0]}x{times['output'][1]}: " + ";  ".join(cells))
    print(f"convolutions at their best kernel per pass: {best_total * 1e3:.0f} ms for {flops_total / 1e9:.1f} GFLOP "
          f"({flops_total / best_total / peak:.0%} of the peak); the whole step: {step_seconds * 1e3:.0f} ms, so "
          f"even with everything else free it could reach at most {step_flops / best_total / peak:.0%}")


if __name__ == "__main__":
    main()
