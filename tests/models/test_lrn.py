"""LocalResponseNorm against torch.nn.LocalResponseNorm: values, gradients, layouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sppnet.models import LocalResponseNorm, local_response_norm
from sppnet.models import lrn as lrn_module

CASES = [
    # (channels, size, beta, k)
    (7, 5, 0.75, 2.0),
    (1, 5, 0.75, 2.0),
    (2, 5, 0.75, 1.0),
    (3, 1, 0.75, 2.0),
    (7, 2, 0.75, 2.0),
    (7, 4, 0.5, 1.5),
    (9, 3, 1.0, 2.0),
    (5, 9, 0.6, 2.0),
    (16, 6, 0.75, 0.5),
]


def _input(channels: int, channels_last: bool, n: int = 2, h: int = 5, w: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(channels * 31 + h)
    # Large values so the sum of squares, not k, dominates the denominator.
    x = torch.randn(n, channels, h, w, generator=gen, dtype=torch.float64) * 40
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("channels", "size", "beta", "k"), CASES)
def test_matches_torch_values(channels, size, beta, k, channels_last):
    x = _input(channels, channels_last)
    ref = nn.LocalResponseNorm(size, alpha=1e-3, beta=beta, k=k)(x)
    with torch.no_grad():
        out = local_response_norm(x, size, 1e-3, beta, k)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out.stride() == x.stride()  # memory format kept
    # The autograd path gives the same values.
    out_grad = local_response_norm(x.clone().requires_grad_(), size, 1e-3, beta, k)
    torch.testing.assert_close(out_grad.detach(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("channels", "size", "beta", "k"), CASES)
def test_matches_torch_gradients(channels, size, beta, k, channels_last):
    x = _input(channels, channels_last)
    grad_out = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    x_ref = x.clone().requires_grad_()
    nn.LocalResponseNorm(size, 1e-3, beta, k)(x_ref).backward(grad_out)
    x_ours = x.clone().requires_grad_()
    local_response_norm(x_ours, size, 1e-3, beta, k).backward(grad_out)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_gradcheck():
    x = _input(7, True, n=1, h=3, w=2).div_(40).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, 5, 0.3, 0.75, 1.0), (x,))


@pytest.mark.parametrize("channels_last", [False, True])
def test_blocked_path_many_blocks(monkeypatch, channels_last):
    # Blocks of one row: several blocks per image, several images, a short last block.
    monkeypatch.setattr(lrn_module, "_BLOCK_ELEMENTS", 1)
    x = _input(7, channels_last, n=3, h=4, w=5).float()
    ref = nn.LocalResponseNorm(5, 1e-2, 0.75, 2.0)(x)
    with torch.no_grad():
        out = local_response_norm(x, 5, 1e-2, 0.75, 2.0)
    torch.testing.assert_close(out, ref)
    monkeypatch.setattr(lrn_module, "_BLOCK_ELEMENTS", 7 * 5 * 3)  # 3 rows, last block 1
    with torch.no_grad():
        out = local_response_norm(x, 5, 1e-2, 0.75, 2.0)
    torch.testing.assert_close(out, ref)


def test_float32_default_parameters_match_alexnet_lrn():
    x = torch.randn(2, 96, 9, 11).relu_().mul_(50).contiguous(memory_format=torch.channels_last)
    ref = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x)
    with torch.no_grad():
        torch.testing.assert_close(local_response_norm(x), ref)
        torch.testing.assert_close(LocalResponseNorm()(x), ref)


def test_inplace_without_grad_overwrites_input():
    x = _input(7, True)
    ref = nn.LocalResponseNorm(5, 1e-3, 0.75, 2.0)(x)
    with torch.no_grad():
        out = local_response_norm(x, 5, 1e-3, 0.75, 2.0, inplace=True)
    assert out is x
    torch.testing.assert_close(x, ref, rtol=1e-12, atol=1e-12)


def test_inplace_is_ignored_under_autograd():
    x = _input(7, True).requires_grad_()
    before = x.detach().clone()
    out = local_response_norm(x, 5, 1e-3, 0.75, 2.0, inplace=True)
    assert out is not x
    out.sum().backward()
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0)


def test_empty_input():
    x = torch.zeros(0, 4, 3, 3)
    assert local_response_norm(x).shape == (0, 4, 3, 3)


def test_module_repr_and_settings():
    module = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    assert repr(module) == "LocalResponseNorm(size=5, alpha=0.0001, beta=0.75, k=2.0)"
    inplace = LocalResponseNorm(3, 1e-3, 0.5, 1.0, inplace=True)
    assert repr(inplace) == "LocalResponseNorm(size=3, alpha=0.001, beta=0.5, k=1.0, inplace=True)"


def test_validation_errors():
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        local_response_norm([[1.0]])
    with pytest.raises(ValueError, match=r"Tensor\[N, C, H, W\] \(4 dims\), got shape \(2, 3, 4\)"):
        local_response_norm(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match=r"floating-point tensor, got dtype torch\.int64"):
        local_response_norm(torch.zeros(1, 3, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        local_response_norm(torch.zeros(1, 3, 2, 2), size=0)
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        local_response_norm(torch.zeros(1, 3, 2, 2), size=2.5)
    with pytest.raises(TypeError, match="beta must be a number"):
        local_response_norm(torch.zeros(1, 3, 2, 2), beta="0.75")
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        LocalResponseNorm(size=-1)
    # the module refuses at construction what the function refuses at the first call
    with pytest.raises(TypeError, match=r"alpha must be a number, got '0\.1'"):
        LocalResponseNorm(alpha="0.1")
    with pytest.raises(TypeError, match="k must be a number, got True"):
        LocalResponseNorm(k=True)
