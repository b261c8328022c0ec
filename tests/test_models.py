"""dlreport.models: the ResNet-18 and its CPU training convolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlreport.models import GEMM_GRAD_MAX_OUTPUT_PIXELS, GemmGradConv2d, build_resnet18, use_gemm_weight_grad


def conv_pair(in_channels, out_channels, kernel, stride, padding, bias, memory_format):
    torch.manual_seed(0)
    plain = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    fast = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    fast.load_state_dict(plain.state_dict())
    use_gemm_weight_grad(fast)
    return plain.to(memory_format=memory_format), fast.to(memory_format=memory_format)


# (in, out, kernel, stride, padding, input size): ResNet-18's layer3/layer4 shapes at 64px, and odd ones.
SMALL_OUTPUT_CONVS = [(256, 512, 3, 2, 1, 4), (64, 64, 3, 1, 1, 2), (16, 32, 1, 2, 0, 8), (8, 12, 5, 1, 2, 4),
                      (6, 10, 3, 2, 0, 9), (5, 7, (3, 1), (1, 2), (1, 0), 3)]


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", SMALL_OUTPUT_CONVS, ids=lambda s: "x".join(map(str, s[:2])) + f"-k{s[2]}s{s[3]}")
def test_gemm_weight_grad_matches_the_plain_convolution(shape, bias, memory_format):
    cin, cout, kernel, stride, padding, size = shape
    plain, fast = conv_pair(cin, cout, kernel, stride, padding, bias, memory_format)
    x = torch.randn(6, cin, size, size).contiguous(memory_format=memory_format)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outputs = [plain(inputs[0]), fast(inputs[1])]
    assert fast._gemm_grad_applies(x), "this shape should take the GEMM path"
    assert type(outputs[1].grad_fn).__name__ == "_GemmWeightGradConvBackward"
    torch.testing.assert_close(outputs[1], outputs[0])
    upstream = torch.randn_like(outputs[0])
    for out in outputs:
        out.backward(upstream)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(inputs[1].grad, inputs[0].grad, rtol=1e-4, atol=1e-4)
    assert fast.weight.grad.stride() == fast.weight.stride(), "the gradient keeps the parameter's layout"
    if bias:
        torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-4)


def test_plain_path_where_the_gemm_does_not_pay_or_does_not_apply():
    _, conv = conv_pair(8, 8, 3, 1, 1, False, torch.contiguous_format)
    side = int(GEMM_GRAD_MAX_OUTPUT_PIXELS ** 0.5)
    assert conv._gemm_grad_applies(torch.zeros(1, 8, side, side))
    assert not conv._gemm_grad_applies(torch.zeros(1, 8, side + 1, side + 1)), "large outputs: oneDNN"
    with torch.no_grad():
        assert not conv._gemm_grad_applies(torch.zeros(1, 8, 2, 2)), "no backward, nothing to speed up"
    grouped = GemmGradConv2d(8, 8, 3, padding=1, groups=2)
    dilated = GemmGradConv2d(8, 8, 3, padding=2, dilation=2)
    assert not grouped._gemm_grad_applies(torch.zeros(1, 8, 2, 2))
    assert not dilated._gemm_grad_applies(torch.zeros(1, 8, 2, 2))
    assert type(conv(torch.randn(1, 8, 9, 9)).grad_fn).__name__ == "ConvolutionBackward0"


def test_resnet_with_gemm_grads_is_the_same_model_with_the_same_gradients():
    torch.manual_seed(0)
    plain = build_resnet18().to(memory_format=torch.channels_last)
    fast = build_resnet18()
    fast.load_state_dict(plain.state_dict())
    use_gemm_weight_grad(fast).to(memory_format=torch.channels_last)
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
