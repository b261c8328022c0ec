"""ResNet-18 for Tiny-ImageNet and the report's layer-size table."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def build_resnet18(num_classes: int = 200, stem: str = "torchvision") -> nn.Module:
    """torchvision's ResNet-18 with ``Linear(512, num_classes)`` as the classifier, randomly initialised.

    ``stem="cifar"`` swaps the 7x7 stride-2 convolution and max-pool for one 3x3 stride-1
    convolution, the usual choice for 64px inputs (4x the spatial size in every block).
    """
    # Imported here: torchvision's import (with torch._dynamo, ~2 s) is paid only by the stages that
    # build the model, not by every stage that reads a table or a helper from this package.
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


# CPU training of the small late layers. oneDNN's convolution kernels are slow where the output
# is only a few pixels, and a GEMM over gathered patches is not. Measured per layer with
# benchmarks/bench_resnet_input.py --layers (batch 256, channels_last, ms per pass, oneDNN / GEMM):
# - weight gradient, 2-core AVX2 CPU, fp32: 512->512 3x3 at 2x2 128 / 22; 256->256 at 4x4 30 / 21;
#   128->128 at 8x8 27 / 45, so 8x8 stays with oneDNN;
# - 2-core Intel Xeon with AMX, bf16: weight gradient 512->512 at 2x2 63 / 4.4, 256->256 at 4x4
#   15.2 / 5.2, 128->128 at 8x8 7.0 / 21.4; forward and input gradient 512->512 at 2x2 22.2 / 5.3 and
#   23.4 / 3.8, but 256->256 at 4x4 3.0 / 3.9 and 2.8 / 6.6, so only 2x2 outputs take all three.
GEMM_GRAD_MAX_OUTPUT_PIXELS = 16   # weight gradient as one GEMM (layer3 4x4, layer4 2x2 at 64px)
GEMM_CONV_MAX_OUTPUT_PIXELS = 4    # forward and input gradient as GEMMs too (layer4 2x2)


def _patches(x: torch.Tensor, kernel, stride, padding, out_size) -> torch.Tensor:
    """Every output pixel's receptive field, gathered channels-last: (N, H_out, W_out, kh*kw*C_in).
    With a channels_last ``x`` these are plain views plus one concatenation."""
    (kh, kw), (sh, sw), (ph, pw), (out_h, out_w) = kernel, stride, padding, out_size
    padded = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # N, H, W, C
    return torch.cat([padded[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
                      for i in range(kh) for j in range(kw)], dim=3)


def _weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The weight as (C_out, kh*kw*C_in), the patches' column order (a view if channels_last)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def conv_forward_gemm(x: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    """conv2d (groups=1, dilation=1, no bias) as one matrix product: patches @ weight^T.
    The result is channels_last."""
    out_channels, _, kh, kw = weight.shape
    out_size = [(size + 2 * p - k) // s + 1 for size, p, k, s in zip(x.shape[-2:], padding, (kh, kw), stride)]
    patches = _patches(x, (kh, kw), stride, padding, out_size)
    out = patches.reshape(-1, patches.shape[-1]) @ _weight_matrix(weight).T
    return out.view(x.shape[0], *out_size, out_channels).permute(0, 3, 1, 2)


def conv_input_grad_gemm(grad_out: torch.Tensor, input_shape, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    """The input gradient of :func:`conv_forward_gemm`: the patches' gradient as one matrix product
    (grad_out @ weight), added back onto the pixels each patch was gathered from."""
    n, in_channels, in_h, in_w = input_shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = grad_out.shape[-2:]
    (sh, sw), (ph, pw) = stride, padding
    grad_patches = (grad_out.permute(0, 2, 3, 1).reshape(-1, out_channels) @ _weight_matrix(weight))
    grad_patches = grad_patches.view(n, out_h, out_w, kh, kw, in_channels)
    grad_padded = grad_out.new_zeros(n, in_h + 2 * ph, in_w + 2 * pw, in_channels)
    for i in range(kh):
        for j in range(kw):
            grad_padded[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :] += grad_patches[:, :, :, i, j, :]
    return grad_padded[:, ph:ph + in_h, pw:pw + in_w, :].permute(0, 3, 1, 2)


def conv_weight_grad_gemm(grad_out: torch.Tensor, x: torch.Tensor, weight_shape, stride, padding) -> torch.Tensor:
    """The weight gradient of a (groups=1, dilation=1) conv2d as one matrix product:
    grad_w[co, (kh, kw, ci)] = grad_out[(n, h, w), co]^T @ patches[(n, h, w), (kh, kw, ci)].
    With channels_last tensors the result comes out in the channels_last weight layout."""
    out_channels, in_channels, kh, kw = weight_shape
    patches = _patches(x, (kh, kw), stride, padding, grad_out.shape[-2:])
    grad_w = grad_out.permute(0, 2, 3, 1).reshape(-1, out_channels).T @ patches.reshape(-1, kh * kw * in_channels)
    return grad_w.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)


class _GemmConv(torch.autograd.Function):
    """conv2d whose weight gradient is a GEMM and, with ``gemm_forward``, whose forward and input
    gradient are too; the rest comes from aten's kernels. Under autocast the GEMMs compute in its
    dtype, as F.conv2d does."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, gemm_forward):
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias, ctx.gemm_forward = stride, padding, bias is not None, gemm_forward
        if not gemm_forward:
            return F.conv2d(x, weight, bias, stride, padding)
        out = conv_forward_gemm(x, weight, stride, padding)
        return out if bias is None else out + bias.to(out.dtype)[:, None, None]

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if ctx.gemm_forward:
                grad_x = conv_input_grad_gemm(grad_out, x.shape, weight.to(grad_out.dtype), ctx.stride, ctx.padding)
            else:
                grad_x = torch.ops.aten.convolution_backward(
                    grad_out, x, weight, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0), 1,
                    (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            grad_w = conv_weight_grad_gemm(grad_out, x.to(grad_out.dtype), weight.shape, ctx.stride, ctx.padding)
            if grad_w.stride() != weight.stride():  # keep the parameter's layout (no copy if channels_last)
                grad_w = torch.empty_like(weight).copy_(grad_w)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


class GemmConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state_dict) that trains faster on CPUs when its
    output is small, as in layer3 (4x4) and layer4 (2x2) of ResNet-18 at 64px: see the measurements
    above ``GEMM_GRAD_MAX_OUTPUT_PIXELS``. Everything else (GPUs, larger outputs, no grad, groups or
    dilation) is plain ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = self._gemm_output_pixels(x)
        if pixels is not None and pixels <= GEMM_GRAD_MAX_OUTPUT_PIXELS:
            return _GemmConv.apply(x, self.weight, self.bias, self.stride, self.padding,
                                   pixels <= GEMM_CONV_MAX_OUTPUT_PIXELS)
        return super().forward(x)

    def _gemm_output_pixels(self, x: torch.Tensor) -> int | None:
        """The output's H x W where the GEMM path applies (CPU, training, plain convolution), else None."""
        if x.device.type != "cpu" or not (torch.is_grad_enabled() and self.weight.requires_grad):
            return None
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return None
        out_h, out_w = ((size + 2 * p - k) // s + 1 for size, p, k, s in
                        zip(x.shape[-2:], self.padding, self.kernel_size, self.stride))
        return out_h * out_w


def use_gemm_convolutions(model: nn.Module) -> nn.Module:
    """Make every ``nn.Conv2d`` of ``model`` a :class:`GemmConv2d` in place, keeping its
    parameters (so optimizers, checkpoints and DDP see the same tensors). For CPU training."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = GemmConv2d  # a subclass adding no state: only forward differs
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
