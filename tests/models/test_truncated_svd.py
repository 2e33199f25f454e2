"""Truncated SVD of fc layers: exactness at full rank, Eckart-Young error, model surgery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sppnet.models.truncated_svd import LowRankLinear, compress_fc, truncated_svd_linear


def _linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    torch.manual_seed(in_features * 100 + out_features)
    return nn.Linear(in_features, out_features, bias=bias).double()


@pytest.mark.parametrize(("n_in", "n_out"), [(37, 23), (23, 37), (16, 16)])
def test_full_rank_reproduces_the_layer(n_in, n_out):
    layer = _linear(n_in, n_out)
    low = truncated_svd_linear(layer, min(n_in, n_out))
    x = torch.randn(9, n_in, dtype=torch.float64)
    torch.testing.assert_close(low(x), layer(x), rtol=1e-10, atol=1e-10)
    assert isinstance(low, nn.Sequential)
    assert low[0].bias is None
    torch.testing.assert_close(low[1].bias, layer.bias)


@pytest.mark.parametrize(("n_in", "n_out"), [(37, 23), (23, 37)])
@pytest.mark.parametrize("rank", [1, 4, 11])
def test_rank_r_error_is_eckart_young(n_in, n_out, rank):
    layer = _linear(n_in, n_out)
    low = truncated_svd_linear(layer, rank)
    assert (low.in_features, low.out_features, low.rank) == (n_in, n_out, rank)
    assert low[0].weight.shape == (rank, n_in)
    assert low[1].weight.shape == (n_out, rank)
    weight = layer.weight.detach().numpy()
    product = (low[1].weight @ low[0].weight).detach().numpy()
    sigma = np.linalg.svd(weight, compute_uv=False)
    expected = np.sqrt(np.sum(sigma[rank:] ** 2))
    assert np.linalg.norm(weight - product) == pytest.approx(expected, rel=1e-9)
    # U_r has orthonormal columns; Sigma_r V_r^T has the top singular values as row norms
    u = low[1].weight.detach().numpy()
    np.testing.assert_allclose(u.T @ u, np.eye(rank), atol=1e-9)
    np.testing.assert_allclose(
        np.linalg.norm(low[0].weight.detach().numpy(), axis=1), sigma[:rank], rtol=1e-9
    )


def test_rank_deficient_and_no_bias():
    layer = _linear(12, 20, bias=False)
    with torch.no_grad():
        layer.weight[:, 3:] = 0.0  # rank 3
    low = truncated_svd_linear(layer, 6)
    assert low[1].bias is None
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.testing.assert_close(low(x), layer(x), rtol=1e-10, atol=1e-10)
    assert torch.isfinite(low[1].weight).all()


def test_float32_layer_keeps_dtype():
    layer = nn.Linear(30, 10)
    low = truncated_svd_linear(layer, 10)
    assert low[0].weight.dtype == torch.float32
    x = torch.randn(4, 30)
    torch.testing.assert_close(low(x), layer(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("rank", "error"), [(0, ValueError), (24, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_rank_validation(rank, error):
    with pytest.raises(error, match="rank"):
        truncated_svd_linear(_linear(30, 23), rank)


def test_linear_validation():
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        truncated_svd_linear(nn.Conv2d(3, 3, 1), 1)


@pytest.fixture(scope="module")
def model(tiny_zf5):
    return tiny_zf5(4, fc_dim=48)


def test_compress_fc_equals_forward_through_the_product(model):
    out = compress_fc(model, 20, 8)
    assert isinstance(out.fc6, LowRankLinear) and isinstance(out.fc7, LowRankLinear)
    assert isinstance(model.fc6, nn.Linear) and isinstance(model.fc7, nn.Linear)  # untouched
    assert not out.training
    pooled = torch.randn(6, model.fc6.in_features)
    w6 = out.fc6[1].weight @ out.fc6[0].weight  # [D, C*L]
    w7 = out.fc7[1].weight @ out.fc7[0].weight  # [D, D]
    with torch.no_grad():
        x = torch.relu(pooled @ w6.T + model.fc6.bias)
        x = torch.relu(x @ w7.T + model.fc7.bias)
        torch.testing.assert_close(out.forward_pooled(pooled, pre_logits=True), x)
        torch.testing.assert_close(out.forward_pooled(pooled), model.fc8(x))


def test_compress_fc_keeps_layers(model):
    only6 = compress_fc(model, 20, None)
    assert isinstance(only6.fc6, LowRankLinear) and isinstance(only6.fc7, nn.Linear)
    full = compress_fc(model, None, 48)
    pooled = torch.randn(3, model.fc6.in_features)
    with torch.no_grad():
        torch.testing.assert_close(
            full.forward_pooled(pooled), model.forward_pooled(pooled), rtol=1e-4, atol=1e-5
        )


def test_compress_fc_validation(model):
    with pytest.raises(ValueError, match="rank7"):
        compress_fc(model, None, 49)
    with pytest.raises(ValueError, match="rank6"):
        compress_fc(model, 0, None)
    with pytest.raises(TypeError, match="fc6"):
        compress_fc(compress_fc(model, 4, None), 4, None)
    with pytest.raises(TypeError):
        compress_fc("model", 4, 4)
