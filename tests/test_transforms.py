"""dlreport.transforms: the batched crop/flip and RandomResizedCrop against their definitions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dlreport import transforms


def test_crop_and_flip_are_exact_tensor_ops():
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    index = torch.arange(4)
    aug = transforms.EpochAugmentation.draw(4, seed=0, epoch=1)
    aug.offsets[:] = transforms.CROP_PADDING  # the centre crop of the padded image is the image
    aug.flips[:] = torch.tensor([False, True, False, True])
    out = transforms.augment(images, index, aug, 64)
    expected = transforms.normalize(images)
    expected[1::2] = expected[1::2].flip(3)
    assert torch.allclose(out, expected)
    aug.offsets[:] = 0  # shifted by the padding: the top-left 4 rows/cols are zero padding
    shifted = transforms.augment(images, index, aug, 64)
    zero = transforms.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0, :, 0, 0]
    assert torch.allclose(shifted[0, :, :4, 10], zero[:, None].expand(3, 4))
    assert torch.allclose(shifted[0, :, 4:, 4:], expected[0, :, :60, :60])


def test_random_resized_crop_at_224():
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    aug = transforms.EpochAugmentation.draw(3, seed=0, epoch=1)
    aug.boxes[:] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    aug.flips[:] = False
    out = transforms.augment(images, torch.arange(3), aug, 224)
    assert out.shape == (3, 3, 224, 224)
    resized = F.interpolate(transforms.normalize(images), size=224, mode="bilinear", align_corners=False)
    assert (out - resized).abs().max() < 1e-3  # the whole image: a plain upsampling


def test_epoch_augmentation_depends_on_seed_and_epoch_only():
    a, b = transforms.EpochAugmentation.draw(50, 0, 3), transforms.EpochAugmentation.draw(50, 0, 3)
    c = transforms.EpochAugmentation.draw(50, 0, 4)
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.flips, b.flips)
    assert not torch.equal(a.offsets, c.offsets)
    assert ((a.boxes[:, 2:] > 0) & (a.boxes[:, :2] + a.boxes[:, 2:] <= 1 + 1e-6)).all()
