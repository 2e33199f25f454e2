"""conv + activation fused into one oneDNN call: bit-equal to the separate layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sppnet.models import conv2d_activation, create_model, fused_conv_allowed


def _reference(x: torch.Tensor, conv: nn.Conv2d, activation: str) -> torch.Tensor:
    y = conv(x)
    return {"relu": torch.relu, "relu6": lambda t: t.clamp(0, 6), "none": lambda t: t}[activation](
        y
    )


@pytest.mark.parametrize("activation", ["relu", "relu6", "none"])
@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "padding", "groups", "size"),
    [
        (3, 8, 7, 2, 3, 1, (23, 31)),
        (8, 8, 3, 1, 1, 8, (13, 9)),
        (6, 4, 5, 2, 1, 2, (17, 20)),
        (8, 8, 3, 1, 1, 1, (5, 7)),  # small: ATen's own kernel, so no fusion
        (16, 24, 1, 1, 0, 1, (9, 11)),  # 1 x 1
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_activation_bit_equal(
    activation, cin, cout, kernel, stride, padding, groups, size, threads
):
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # ATen's choice of conv kernel depends on it
    try:
        _check_bit_equal(activation, cin, cout, kernel, stride, padding, groups, size)
    finally:
        torch.set_num_threads(old_threads)


def _check_bit_equal(activation, cin, cout, kernel, stride, padding, groups, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups).eval()
    conv = conv.to(memory_format=torch.channels_last)
    x = (torch.randn(2, cin, *size) * 3).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert fused_conv_allowed(x) == torch.backends.mkldnn.is_available()
        assert not fused_conv_allowed(x.double())
        out = conv2d_activation(x, conv, activation)
        ref = _reference(x, conv, activation)
        assert torch.equal(out, ref)
        assert out.is_contiguous(memory_format=torch.channels_last)
        w, b = conv.weight * 0.5, conv.bias + 1
        swapped = conv2d_activation(x, conv, activation, weight=w, bias=b)
        ref = _reference(x, nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups), "none")
    conv2 = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups).eval()
    conv2.weight.data, conv2.bias.data = w.clone(), b.clone()
    with torch.inference_mode():
        assert torch.equal(swapped, _reference(x, conv2, activation))


def test_fused_conv_not_used_under_autograd():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    assert not fused_conv_allowed(x)
    out = conv2d_activation(x, conv, "relu")
    out.sum().backward()  # the plain path: differentiable
    assert x.grad is not None and torch.equal(out, torch.relu(conv(x)))


def test_conv2d_activation_validation():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="activation must be one of"):
        conv2d_activation(x, conv, "gelu")
    with pytest.raises(ValueError, match="only together with weight"):
        conv2d_activation(x, conv, "relu", bias=torch.zeros(4))
    with pytest.raises(ValueError, match="zero padding"):
        conv2d_activation(x, nn.Conv2d(3, 4, 3, padding="same"), "relu")
    with pytest.raises(ValueError, match="zero padding"):
        conv2d_activation(x, nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), "relu")


@pytest.mark.parametrize("name", ["zf5", "overfeat7"])
def test_trunk_fused_equals_layer_by_layer(name, threads):
    torch.manual_seed(0)
    model = create_model(name, width=0.25).eval()
    x = torch.randn(2, 3, 131, 157) * 50
    with torch.inference_mode():
        fused = model.forward_features(x)
        plain = model.features(x.contiguous(memory_format=torch.channels_last))
        assert torch.equal(fused, plain)
        assert fused.is_contiguous(memory_format=torch.channels_last)
        # a hook anywhere in the trunk turns fusion off, so the hook sees its layer run
        seen = []
        handle = model.features.relu1.register_forward_hook(lambda m, i, o: seen.append(1))
        assert torch.equal(model.forward_features(x), plain) and seen
        handle.remove()


@pytest.fixture(params=[1, 2])
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)  # ATen's choice of conv kernel depends on it
    yield request.param
    torch.set_num_threads(old)


def test_lite_trunk_fused_equals_unfused(monkeypatch, threads):
    import sppnet.models.efficientnet_lite as lite

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, so folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 75, 94) * 50
    with torch.inference_mode():
        fused = model.forward_features(x)
        monkeypatch.setattr(lite, "fused_conv_allowed", lambda x: False)
        plain = model.forward_features(x)
    assert torch.equal(fused, plain)
