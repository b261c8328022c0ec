"""The input pipeline as batched tensor ops on decoded uint8 images, on whichever device holds them.

Two recipes, chosen by ``resnet.input_size``:

- at the images' own size (64): RandomCrop(64, padding=4) + flip for training, the whole image for
  evaluation - a faster recipe than the report's;
- at any other size (224): the PyTorch ImageNet example's main.py, which the report ran -
  RandomResizedCrop(224) + flip for training, Resize(256) + CenterCrop(224) for evaluation (the
  64-px images are upsampled, then their border cropped away).

The parameters of every training image of an epoch are drawn at once from ``(seed, epoch)`` (on
the CPU, so every device and every number of processes draws the same) and moved to the images'
device once per epoch.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
CROP_PADDING = 4  # RandomCrop(64, padding=4), the usual recipe for 64px inputs


@functools.cache
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Copied to a GPU once: a host-to-device copy per batch would make the host wait for the GPU.
    return MEAN.to(device), STD.to(device)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) to normalised float, channels_last for the convolutions."""
    mean, std = _mean_std(images.device)
    out = (images.float() - mean) / std
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

    def to(self, device: torch.device) -> "EpochAugmentation":
        return EpochAugmentation(self.flips.to(device), self.offsets.to(device), self.boxes.to(device))


def augment(images: torch.Tensor, index: torch.Tensor, aug: EpochAugmentation, input_size: int) -> torch.Tensor:
    """Training batch: uint8 images of the dataset rows ``index`` -> augmented float input.

    ``index`` and ``aug`` live on the images' device, so a batch costs no host-device transfer."""
    flips = aug.flips[index]
    if input_size == images.shape[-1]:
        # RandomCrop(size, padding) + horizontal flip as two gathers.
        size = images.shape[-1]
        padded = F.pad(images, (CROP_PADDING,) * 4)
        offsets = aug.offsets[index]
        span = torch.arange(size, device=images.device)
        rows = (offsets[:, 0:1] + span)[:, None, :, None].expand(-1, 3, -1, padded.shape[-1])
        cols = (offsets[:, 1:2] + span)
        cols = torch.where(flips[:, None], cols.flip(1), cols)[:, None, None, :].expand(-1, 3, size, -1)
        return normalize(padded.gather(2, rows).gather(3, cols))
    # RandomResizedCrop(input_size) + flip as one affine resampling of the whole batch.
    x0, y0, w, h = aug.boxes[index].unbind(1)
    theta = torch.zeros(len(index), 2, 3, device=images.device)
    theta[:, 0, 0] = torch.where(flips, -w, w)
    theta[:, 0, 2] = 2 * x0 + w - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    grid = F.affine_grid(theta, [len(index), 3, input_size, input_size], align_corners=False)
    source = normalize(images).contiguous()
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False).contiguous(
        memory_format=torch.channels_last)


# main.py's evaluation resizes to 256 and crops the central 224: the crop keeps 224/256 of the side.
CENTER_CROP_FRACTION = 224 / 256


def resize_size(input_size: int) -> int:
    """Resize(N) of main.py's evaluation for CenterCrop(input_size): 256 for 224."""
    return round(input_size / CENTER_CROP_FRACTION)


def describe(input_size: int, image_size: int = 64) -> tuple[str, str]:
    """The training and evaluation transforms of ``input_size``, named as torchvision names them."""
    if input_size == image_size:
        return (f"RandomCrop({image_size}, padding={CROP_PADDING}) + flip", f"the whole {image_size}-px image")
    return (f"RandomResizedCrop({input_size}) + flip", f"Resize({resize_size(input_size)}) + CenterCrop({input_size})")


def eval_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """Evaluation batch: uint8 images -> normalised float input of ``input_size`` pixels.

    At the images' own size, the image itself. Otherwise main.py's Resize(256) + CenterCrop(224):
    bilinear upsampling (as PIL's, which weighs the same two neighbours when enlarging), then the
    central crop. Normalising first is the same as after: both are linear per pixel."""
    batch = normalize(images)
    if input_size == images.shape[-1]:
        return batch
    resized = resize_size(input_size)
    batch = F.interpolate(batch, size=(resized, resized), mode="bilinear", align_corners=False)
    top = int(round((resized - input_size) / 2.0))  # torchvision's CenterCrop offset
    return batch[:, :, top:top + input_size, top:top + input_size].contiguous(memory_format=torch.channels_last)
