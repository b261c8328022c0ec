"""Images/s of our ResNet-18 training step against the PyTorch ImageNet example's recipe.

Both train the same ResNet-18 (200 classes) at the same resolution and batch size on the same
images. The reference is the example's data path: torchvision ImageFolder, PIL decoding and
transforms in DataLoader worker processes, fp32 NCHW. Ours is the pipeline's: images decoded
once into a uint8 tensor, crop/flip as batched tensor ops, channels_last, and bf16 autocast
where the hardware runs it fast (resnet.precision: auto).

    python benchmarks/bench_resnet_input.py                      # on the pipeline's outputs
    python benchmarks/bench_resnet_input.py --steps 20 --batch-size 128

It needs datasets/tiny-imagenet-200 and datasets/tinyimagenet-prepared (dvc repro relabel_val).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlreport import training  # noqa: E402
from dlreport.models import build_resnet18  # noqa: E402
from dlreport.tinyimagenet import load_split  # noqa: E402


def timed_steps(model, optimizer, batches, steps: int, warmup: int, amp) -> float:
    """Images/s over ``steps`` optimizer steps after ``warmup`` untimed ones (data included)."""
    seen, start = 0, None
    for i, (images, target) in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            seen += len(target)
        if i + 1 == warmup + steps:
            break
    return seen / (time.perf_counter() - start)


def reference(root: Path, batch_size: int, workers: int, steps: int, warmup: int) -> float:
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose([T.RandomCrop(64, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    dataset = ImageFolder(str(root / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0)

    def batches():
        while True:
            yield from loader

    torch.manual_seed(0)
    model = build_resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return timed_steps(model.train(), optimizer, batches(), steps, warmup, None)


def ours(prepared: Path, batch_size: int, steps: int, warmup: int) -> tuple[float, str]:
    table, images = load_split(prepared, "train")
    images = torch.from_numpy(np.array(images))  # read the memory-mapped file once
    labels = torch.from_numpy(table.class_index.to_numpy(np.int64))
    amp = training.autocast_dtype("auto", torch.device("cpu"))

    def batches():
        epoch = 0
        while True:
            epoch += 1
            aug = training.EpochAugmentation.draw(len(images), 0, epoch)
            order = torch.randperm(len(images))
            for s in range(0, len(order) - batch_size + 1, batch_size):
                index = order[s:s + batch_size]
                yield training.augment(images[index], index, aug, 64), labels[index]

    torch.manual_seed(0)
    model = build_resnet18().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return timed_steps(model.train(), optimizer, batches(), steps, warmup, amp), str(amp or torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="datasets/tiny-imagenet-200")
    parser.add_argument("--prepared", default="datasets/tinyimagenet-prepared")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    print(f"ResNet-18, 64x64, batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers for the reference")
    ref = reference(Path(args.data), args.batch_size, args.workers, args.steps, args.warmup)
    print(f"reference (ImageFolder + PIL in DataLoader workers, fp32 NCHW): {ref:8.1f} img/s")
    our, precision = ours(Path(args.prepared), args.batch_size, args.steps, args.warmup)
    print(f"ours (decoded uint8 tensors, batched crop/flip, channels_last, {precision}): {our:8.1f} img/s")
    print(f"ratio ours/reference: {our / ref:.2f}x")


if __name__ == "__main__":
    main()
