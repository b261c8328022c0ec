"""dlreport.models: the ResNet-18 and its CPU training convolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlreport.models import (GEMM_CONV_MAX_OUTPUT_PIXELS, GEMM_GRAD_MAX_OUTPUT_PIXELS, GemmConv2d, build_resnet18,
                             use_gemm_convolutions)


def conv_pair(in_channels, out_channels, kernel, stride, padding, bias, memory_format):
    torch.manual_seed(0)
    plain = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    fast = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    fast.load_state_dict(plain.state_dict())
    use_gemm_convolutions(fast)
    return plain.to(memory_format=memory_format), fast.to(memory_format=memory_format)


# (in, out, kernel, stride, padding, input size): ResNet-18's layer3/layer4 shapes at 64px, and odd
# ones; outputs of 2x2 or less take the GEMM forward and input gradient too, 4x4 the weight gradient only.
SMALL_OUTPUT_CONVS = [(256, 512, 3, 2, 1, 4), (64, 64, 3, 1, 1, 2), (16, 32, 1, 2, 0, 8), (8, 12, 5, 1, 2, 4),
                      (6, 10, 3, 2, 0, 9), (5, 7, (3, 1), (1, 2), (1, 0), 3), (12, 8, 3, 2, 1, 3),
                      (4, 6, 2, 1, 0, 2)]


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", SMALL_OUTPUT_CONVS, ids=lambda s: "x".join(map(str, s[:2])) + f"-k{s[2]}s{s[3]}")
def test_gemm_convolution_matches_the_plain_convolution(shape, bias, memory_format):
    cin, cout, kernel, stride, padding, size = shape
    plain, fast = conv_pair(cin, cout, kernel, stride, padding, bias, memory_format)
    x = torch.randn(6, cin, size, size).contiguous(memory_format=memory_format)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outputs = [plain(inputs[0]), fast(inputs[1])]
    pixels = fast._gemm_output_pixels(x)
    assert pixels <= GEMM_GRAD_MAX_OUTPUT_PIXELS, "this shape should take the GEMM path"
    assert type(outputs[1].grad_fn).__name__ == "_GemmConvBackward"
    assert outputs[1].grad_fn.gemm_forward == (pixels <= GEMM_CONV_MAX_OUTPUT_PIXELS)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    upstream = torch.randn_like(outputs[0])
    for out in outputs:
        out.backward(upstream)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(inputs[1].grad, inputs[0].grad, rtol=1e-4, atol=1e-4)
    assert fast.weight.grad.stride() == fast.weight.stride(), "the gradient keeps the parameter's layout"
    if bias:
        torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(256, 512, 3, 2, 1, 4), (512, 512, 3, 1, 1, 2), (128, 256, 3, 2, 1, 8)],
                         ids=["layer4.0", "layer4", "layer3.0"])
def test_gemm_convolution_under_bf16_autocast_matches_onednn(shape):
    """How the CPU trains: bf16 autocast, channels_last, ResNet-18's small-output shapes at batch 32.
    Both sides round to bf16, so they agree to bf16's precision, not bit for bit."""
    cin, cout, kernel, stride, padding, size = shape
    plain, fast = conv_pair(cin, cout, kernel, stride, padding, False, torch.channels_last)
    x = torch.randn(32, cin, size, size).contiguous(memory_format=torch.channels_last)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = [plain(inputs[0]), fast(inputs[1])]
    assert outputs[1].dtype == outputs[0].dtype == torch.bfloat16
    assert type(outputs[1].grad_fn).__name__ == "_GemmConvBackward"
    assert outputs[1].grad_fn.gemm_forward == (shape[-1] == 2 or shape[3] == 2 and shape[-1] == 4)
    upstream = torch.randn_like(outputs[0])
    for out in outputs:
        out.backward(upstream)
    scale = lambda t: t.float().abs().max().item()
    for mine, theirs in [(outputs[1], outputs[0]), (fast.weight.grad, plain.weight.grad), (inputs[1].grad, inputs[0].grad)]:
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        assert (mine.float() - theirs.float()).abs().max().item() <= 2e-2 * scale(theirs)


def test_plain_path_where_the_gemm_does_not_pay_or_does_not_apply():
    _, conv = conv_pair(8, 8, 3, 1, 1, False, torch.contiguous_format)
    side = int(GEMM_GRAD_MAX_OUTPUT_PIXELS ** 0.5)
    assert conv._gemm_output_pixels(torch.zeros(1, 8, side, side)) == GEMM_GRAD_MAX_OUTPUT_PIXELS
    assert GEMM_CONV_MAX_OUTPUT_PIXELS < GEMM_GRAD_MAX_OUTPUT_PIXELS
    assert type(conv(torch.randn(1, 8, 9, 9)).grad_fn).__name__ == "ConvolutionBackward0", "large outputs: oneDNN"
    with torch.no_grad():
        assert conv._gemm_output_pixels(torch.zeros(1, 8, 2, 2)) is None, "no backward, nothing to speed up"
    grouped = GemmConv2d(8, 8, 3, padding=1, groups=2)
    dilated = GemmConv2d(8, 8, 3, padding=2, dilation=2)
    assert grouped._gemm_output_pixels(torch.zeros(1, 8, 2, 2)) is None
    assert dilated._gemm_output_pixels(torch.zeros(1, 8, 2, 2)) is None
    assert type(conv(torch.randn(1, 8, 9, 9)).grad_fn).__name__ == "ConvolutionBackward0"


def test_resnet_with_gemm_grads_is_the_same_model_with_the_same_gradients():
    torch.manual_seed(0)
    plain = build_resnet18().to(memory_format=torch.channels_last)
    fast = build_resnet18()
    fast.load_state_dict(plain.state_dict())
    use_gemm_convolutions(fast).to(memory_format=torch.channels_last)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert all(type(m) is not nn.Conv2d for m in fast.modules()), "every convolution converted"
    build_resnet18().load_state_dict(fast.state_dict())  # checkpoints load into the plain model

    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    target = torch.arange(4)
    for model in (plain, fast):
        F.cross_entropy(model(x), target).backward()
    fast_params = dict(fast.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(fast_params[name].grad, param.grad, rtol=1e-3, atol=1e-5, msg=name)
