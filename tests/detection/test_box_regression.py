"""Box regression: ridge against the textbook normal equations, decoding against a loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sppnet.detection.box_regression import apply_box_regression, fit_ridge


def _ridge_reference(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ||[X 1][W; b] - Y||^2 + lam ||W||^2 by the augmented normal equations."""
    n, d = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    penalty = lam * np.eye(d + 1)
    penalty[d, d] = 0.0  # the intercept is not regularised
    sol = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return sol[:d], sol[d]


@pytest.mark.parametrize(("n", "d"), [(7, 13), (40, 5), (9, 9)])
@pytest.mark.parametrize("lam", [0.5, 1000.0])
def test_fit_ridge_matches_normal_equations(n, d, lam):
    rng = np.random.default_rng(n * 100 + d)
    x = rng.normal(size=(n, d)) * 3 + 1
    y = rng.normal(size=(n, 4))
    w, b = fit_ridge(torch.from_numpy(x), torch.from_numpy(y), lam)
    w_ref, b_ref = _ridge_reference(x, y, lam)
    assert w.shape == (d, 4) and b.shape == (4,)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-4, atol=1e-5)


def test_fit_ridge_recovers_a_linear_map_with_small_lambda():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    w_true = rng.normal(size=(6, 4))
    y = x @ w_true + np.array([0.1, -0.2, 0.3, 0.0])
    w, b = fit_ridge(torch.from_numpy(x), torch.from_numpy(y), 1e-6)
    np.testing.assert_allclose(w.numpy(), w_true, atol=1e-4)
    np.testing.assert_allclose(b.numpy(), [0.1, -0.2, 0.3, 0.0], atol=1e-4)


def test_fit_ridge_validation():
    with pytest.raises(ValueError, match=r"features must be Tensor\[N, D\]"):
        fit_ridge(torch.zeros(0, 3), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="same rows"):
        fit_ridge(torch.zeros(3, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="lam"):
        fit_ridge(torch.zeros(3, 3), torch.zeros(3, 4), lam=0.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_ridge(torch.tensor([[math.nan]]), torch.zeros(1, 4))


def _decode_one(box, delta):
    """R-CNN appendix C for one box, written out."""
    x1, y1, x2, y2 = box
    pw, ph = x2 - x1, y2 - y1
    px, py = x1 + pw / 2, y1 + ph / 2
    gx, gy = px + pw * delta[0], py + ph * delta[1]
    gw, gh = pw * math.exp(delta[2]), ph * math.exp(delta[3])
    return [gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2]


def test_apply_box_regression_matches_a_loop():
    g = torch.Generator().manual_seed(3)
    r, d, k = 5, 7, 3
    boxes = torch.rand(r, 2, generator=g) * 50
    boxes = torch.cat([boxes, boxes + 5 + torch.rand(r, 2, generator=g) * 40], dim=1)
    feats = torch.randn(r, d, generator=g)
    weight = torch.randn(k, d, 4, generator=g) * 0.05
    bias = torch.randn(k, 4, generator=g) * 0.05
    out = apply_box_regression(boxes, feats, weight, bias)
    assert out.shape == (r, k, 4)
    for i in range(r):
        for c in range(k):
            delta = [
                sum(float(feats[i, j]) * float(weight[c, j, t]) for j in range(d))
                + float(bias[c, t])
                for t in range(4)
            ]
            np.testing.assert_allclose(
                out[i, c].numpy(), _decode_one(boxes[i].tolist(), delta), rtol=1e-4, atol=1e-3
            )
    labels = torch.tensor([2, 0, 1, 1, 2])
    one = apply_box_regression(boxes, feats, weight, bias, labels)
    torch.testing.assert_close(one, out[torch.arange(r), labels])


def test_apply_box_regression_zero_weights_keep_boxes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 6.0, 9.0]])
    out = apply_box_regression(boxes, torch.randn(2, 3), torch.zeros(2, 3, 4), torch.zeros(2, 4))
    torch.testing.assert_close(out, boxes[:, None].expand(2, 2, 4))


def test_apply_box_regression_validation():
    boxes = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"weight must be Tensor\[K, D, 4\]"):
        apply_box_regression(boxes, torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"features must be Tensor\[R, 3\]"):
        apply_box_regression(boxes, torch.zeros(2, 5), torch.zeros(1, 3, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"boxes must be Tensor\[2, 4\]"):
        apply_box_regression(
            torch.zeros(3, 4), torch.zeros(2, 3), torch.zeros(1, 3, 4), torch.zeros(1, 4)
        )
