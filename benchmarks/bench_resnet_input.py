"""Images/s of our ResNet-18 training step against the PyTorch ImageNet example's recipe.

Both train the same ResNet-18 (200 classes) at the same resolution and batch size on the same
images. The reference is the example's recipe: torchvision ImageFolder, PIL decoding and
transforms in DataLoader worker processes, an fp32 NCHW model. Ours is what train_resnet runs:
images decoded once into a uint8 tensor, crop/flip as batched tensor ops, the model prepared by
``training.to_training_device`` (channels_last; on CPUs, GEMM weight gradients for the small
late layers) and bf16 autocast where the hardware runs it fast (resnet.precision: auto).

The variants are timed in alternating rounds (machines with shared cores drift by 10-20%
within a minute), and the summary gives each variant's median and the median of the per-round
ratios to the reference. --ablation adds the steps in between, to show what each one buys.

    dvc repro relabel_val                                  # the images both sides read
    python benchmarks/bench_resnet_input.py
    python benchmarks/bench_resnet_input.py --ablation --rounds 7 --batch-size 256
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlreport import training  # noqa: E402
from dlreport.models import build_resnet18  # noqa: E402
from dlreport.tinyimagenet import load_split_tensors  # noqa: E402


class Variant:
    """One training setup: a model, its optimizer and an endless stream of (input, target)."""

    def __init__(self, name: str, model, batches, amp=None):
        torch.manual_seed(0)
        self.name, self.model, self.batches, self.amp = name, model.train(), batches, amp
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.rates: list[float] = []

    def step(self) -> int:
        images, target = next(self.batches)
        with torch.autocast("cpu", dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss = F.cross_entropy(self.model(images), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return len(target)

    def timed(self, steps: int) -> float:
        """Images/s over ``steps`` optimizer steps, data loading included."""
        start, seen = time.perf_counter(), 0
        for _ in range(steps):
            seen += self.step()
        self.rates.append(seen / (time.perf_counter() - start))
        return self.rates[-1]


def reference_batches(root: Path, batch_size: int, workers: int):
    """The ImageNet example's data path: ImageFolder + PIL transforms in DataLoader workers."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose([T.RandomCrop(64, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    dataset = ImageFolder(str(root / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0)
    while True:
        yield from loader


def decoded_batches(prepared: Path, batch_size: int, memory_format=torch.channels_last):
    """train_resnet's data path: decoded uint8 images, batched crop/flip (training.augment)."""
    _, images, labels = load_split_tensors(prepared, "train")
    epoch = 0
    while True:
        epoch += 1
        aug = training.EpochAugmentation.draw(len(images), 0, epoch)
        order = torch.randperm(len(images))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            index = order[s:s + batch_size]
            batch = training.augment(images[index], index, aug, images.shape[-1])
            yield batch.contiguous(memory_format=memory_format), labels[index]


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
    args = parser.parse_args()
    prepared, cpu = Path(args.prepared), torch.device("cpu")
    amp = training.autocast_dtype("auto", cpu)
    print(f"ResNet-18, 64x64, batch {args.batch_size}, {args.rounds} rounds of {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers for the reference")

    variants = [Variant("reference: ImageFolder + PIL workers, fp32 NCHW", build_resnet18(),
                        reference_batches(Path(args.data), args.batch_size, args.workers))]
    if args.ablation:
        variants += [
            Variant("decoded uint8 + batched crop/flip, fp32 NCHW", build_resnet18(),
                    decoded_batches(prepared, args.batch_size, torch.contiguous_format)),
            Variant("  + channels_last", build_resnet18().to(memory_format=torch.channels_last),
                    decoded_batches(prepared, args.batch_size)),
        ]
    variants.append(Variant(f"ours (train_resnet): + GEMM weight grads, {str(amp or torch.float32)[6:]}",
                            training.to_training_device(build_resnet18(), cpu),
                            decoded_batches(prepared, args.batch_size), amp))

    for variant in variants:  # warm-up: workers started, allocator and oneDNN primitives ready
        variant.step()
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        rates = {v.name: v.timed(args.steps) for v in order}
        print(f"round {r + 1}: " + "  ".join(f"{rates[v.name]:6.1f}" for v in variants) + "  img/s")

    ref = variants[0].rates
    width = max(len(v.name) for v in variants)
    print(f"\n{'variant':{width}s}  median img/s  ratio to reference (median of rounds)")
    for v in variants:
        ratio = statistics.median(ours / base for ours, base in zip(v.rates, ref))
        print(f"{v.name:{width}s}  {statistics.median(v.rates):12.1f}  {ratio:5.2f}x")


if __name__ == "__main__":
    main()
