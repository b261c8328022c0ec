"""ResNet-18 for Tiny-ImageNet and the report's layer-size table."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


def build_resnet18(num_classes: int = 200, stem: str = "torchvision") -> nn.Module:
    """torchvision's ResNet-18 with ``Linear(512, num_classes)`` as the classifier, randomly initialised.

    ``stem="cifar"`` swaps the 7x7 stride-2 convolution and max-pool for one 3x3 stride-1
    convolution, the usual choice for 64px inputs (4x the spatial size in every block).
    """
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


# Largest convolution output (H x W) whose weight gradient GemmGradConv2d computes as one GEMM.
# Measured on a 2-core AVX2 CPU, batch 128, weight gradient by oneDNN / by the GEMM below:
# 512->512 3x3 at 2x2: 128 / 22 ms; 256->512 3x3/2 to 2x2: 28 / 11; 256->256 at 4x4: 30 / 21;
# 128->256 3x3/2 to 4x4: 17 / 11; but 128->128 at 8x8: 27 / 45, so 8x8 stays with oneDNN.
GEMM_GRAD_MAX_OUTPUT_PIXELS = 16


def conv_weight_grad_gemm(grad_out: torch.Tensor, x: torch.Tensor, weight_shape, stride, padding) -> torch.Tensor:
    """The weight gradient of a (groups=1, dilation=1) conv2d as one matrix product:
    grad_w[co, (kh, kw, ci)] = grad_out[(n, h, w), co]^T @ patches[(n, h, w), (kh, kw, ci)].

    The patches are gathered channels-last, so with channels_last tensors both operands are plain
    views plus one concatenation, and the result comes out in the channels_last weight layout."""
    out_channels, in_channels, kh, kw = weight_shape
    out_h, out_w = grad_out.shape[-2:]
    (sh, sw), (ph, pw) = stride, padding
    padded = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # N, H, W, C
    patches = torch.cat([padded[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
                         for i in range(kh) for j in range(kw)], dim=3)
    grad_w = grad_out.permute(0, 2, 3, 1).reshape(-1, out_channels).T @ patches.reshape(-1, kh * kw * in_channels)
    return grad_w.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)


class _GemmWeightGradConv(torch.autograd.Function):
    """conv2d whose backward takes the input gradient from aten's kernel and the weight gradient
    from :func:`conv_weight_grad_gemm`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0), 1,
                (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            grad_w = conv_weight_grad_gemm(grad_out, x, weight.shape, ctx.stride, ctx.padding)
            if grad_w.stride() != weight.stride():  # keep the parameter's layout (no copy if channels_last)
                grad_w = torch.empty_like(weight).copy_(grad_w)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


class GemmGradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state_dict) that trains faster on CPUs when its
    output is small, as in layer3 (4x4) and layer4 (2x2) of ResNet-18 at 64px: there oneDNN's
    weight-gradient kernel is up to 6x slower than its forward, and a GEMM is not. Everything else
    (GPUs, larger outputs, no grad, groups or dilation) is plain ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._gemm_grad_applies(x):
            return _GemmWeightGradConv.apply(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)

    def _gemm_grad_applies(self, x: torch.Tensor) -> bool:
        if x.device.type != "cpu" or not (torch.is_grad_enabled() and self.weight.requires_grad):
            return False
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return False
        out_h, out_w = ((size + 2 * p - k) // s + 1 for size, p, k, s in
                        zip(x.shape[-2:], self.padding, self.kernel_size, self.stride))
        return out_h * out_w <= GEMM_GRAD_MAX_OUTPUT_PIXELS


def use_gemm_weight_grad(model: nn.Module) -> nn.Module:
    """Make every ``nn.Conv2d`` of ``model`` a :class:`GemmGradConv2d` in place, keeping its
    parameters (so optimizers, checkpoints and DDP see the same tensors). For CPU training."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = GemmGradConv2d  # a subclass adding no state: only forward differs
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
