"""dlreport.transforms: the batched crop/flip and RandomResizedCrop against their definitions."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_ZIP, TINY_ZIP_MD5
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


def test_describe_names_both_recipes():
    assert transforms.describe(64) == ("RandomCrop(64, padding=4) + flip", "the whole 64-px image")
    assert transforms.describe(224) == ("RandomResizedCrop(224) + flip", "Resize(256) + CenterCrop(224)")


@pytest.fixture(scope="module")
def mini_prepared(tmp_path_factory) -> Path:
    """The real mini archive, relabelled and decoded by the pipeline's own relabel_val code."""
    if not TINY_ZIP.exists():
        pytest.skip(f"real test data {TINY_ZIP} is absent (it lives in ../shared/data beside the checkout)")
    from dlreport import tinyimagenet as ti
    base = tmp_path_factory.mktemp("mini")
    root = ti.download_archive(TINY_ZIP.as_uri(), base / "tiny-imagenet-200", TINY_ZIP_MD5)
    ti.relabel(root, base / "prepared")
    return base


def test_evaluation_at_224_is_main_py_transform(mini_prepared: Path):
    """A checkpoint trained at 224 on real images gives, through our batched evaluation, the same
    top-1 class as through torchvision's own PIL pipeline of main.py (Resize(256) +
    CenterCrop(224) + ToTensor + Normalize) on at least 98% of the real validation images; the
    whole image upsampled to 224 (this project's evaluation before) does not."""
    import torchvision.transforms as T
    from PIL import Image

    from dlreport.devices import autocast_dtype
    from dlreport.models import build_resnet18
    from dlreport.tinyimagenet import load_split_tensors
    from dlreport.training import evaluate_images

    prepared, root = mini_prepared / "prepared", mini_prepared / "tiny-imagenet-200"
    _, train_images, train_labels = load_split_tensors(prepared, "train")
    val_table, val_images, val_labels = load_split_tensors(prepared, "val")
    amp, cpu = autocast_dtype("auto", torch.device("cpu")), torch.device("cpu")

    # The checkpoint: one epoch of the 224 recipe (RandomResizedCrop + flip) on 1,000 of the real
    # training images at a gentle lr - enough for predictions that depend on the image (at lr 0.1
    # one epoch predicts one class for every image, and any two transforms would agree).
    torch.manual_seed(0)
    model = build_resnet18(200).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    aug = transforms.EpochAugmentation.draw(len(train_images), seed=0, epoch=1)
    order = torch.randperm(len(train_images))[:1000]
    model.train()
    for start in range(0, len(order), 64):
        index = order[start:start + 64]
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(transforms.augment(train_images[index], index, aug, 224)).float(),
                                   train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # Evaluated in fp32: bf16 rounding adds near-tie flips of its own (98.2% agreement in bf16 on an
    # AMX Xeon, 99.4% in fp32; whole-image upsampling 74%).
    amp = None
    ours = evaluate_images(model, val_images, val_labels, batch_size=250, input_size=224, amp=amp, device=cpu,
                           print_freq=100).argmax(1)
    main_py = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                         T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    reference_input = torch.stack([main_py(Image.open(root / p).convert("RGB")) for p in val_table.path])
    upsampled_input = F.interpolate(transforms.normalize(val_images), size=224, mode="bilinear", align_corners=False)

    def top1(batch: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            return torch.cat([model(batch[s:s + 250].contiguous(memory_format=torch.channels_last)).float().argmax(1)
                              for s in range(0, len(batch), 250)])

    reference, upsampled = top1(reference_input), top1(upsampled_input)
    assert reference.unique().numel() >= 3, "the checkpoint predicts (almost) one class: agreement would be trivial"
    agree = (ours == reference).double().mean().item()
    agree_upsampled = (upsampled == reference).double().mean().item()
    assert agree >= 0.98, f"our evaluation agrees with main.py's on {agree:.1%} of the images"
    assert agree_upsampled < 0.98, f"whole-image upsampling agrees on {agree_upsampled:.1%}: the test cannot tell them apart"
