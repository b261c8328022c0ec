"""ResNet-18 for Tiny-ImageNet and the report's layer-size table."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

STEMS = ("torchvision", "cifar")


def build_resnet18(num_classes: int = 200, stem: str = "torchvision") -> nn.Module:
    """torchvision's ResNet-18 with ``Linear(512, num_classes)`` as the classifier, randomly initialised.

    ``stem="cifar"`` swaps the 7x7 stride-2 convolution and max-pool for one 3x3 stride-1
    convolution, the usual choice for 64px inputs (4x the spatial size in every block).
    """
    if stem not in STEMS:
        raise ValueError(f"resnet.stem must be one of {STEMS}, not {stem!r}")
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


# The blocks the report tabulates, in forward order.
TABLE_LAYERS = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")


def layer_shapes(model: nn.Module, input_size: int = 64) -> list[dict]:
    """Each tabulated block's output shape for one ``input_size`` x ``input_size`` RGB image,
    measured with forward hooks on the real model (so a changed stem shows up here)."""
    shapes: list[dict] = []
    hooks = []
    for name in TABLE_LAYERS:
        module = model.get_submodule(name)

        def hook(_module, _inputs, output, name=name):
            dims = tuple(output.shape[1:])
            # H x W x C as the report writes it; the classifier output is a plain vector.
            text = f"{dims[1]}x{dims[2]}x{dims[0]}" if len(dims) == 3 else "x".join(map(str, dims))
            shapes.append({"layer": name, "shape": text, "dims": list(dims)})

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    return shapes
