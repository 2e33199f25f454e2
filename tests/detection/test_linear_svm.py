"""Linear SVMs: liblinear's solution against the primal objective minimised independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sppnet.detection.linear_svm import feature_norm_scale, fit_linear_svm


def _objective(w, b, x, y, c, pos_weight, bias_feature):
    """0.5 ||[w, b/B]||^2 + C sum c_i hinge: the problem liblinear solves with a bias feature."""
    v = b / bias_feature
    margins = y * (x @ w + b)
    weights = np.where(y > 0, pos_weight, 1.0)
    return 0.5 * (w @ w + v * v) + c * np.sum(weights * np.maximum(0.0, 1.0 - margins))


def _subgradient_reference(x, y, c, pos_weight, bias_feature, steps=20000):
    """Plain subgradient descent on the same primal (slow, obviously correct)."""
    xa = np.hstack([x, np.full((len(x), 1), bias_feature)])
    u = np.zeros(xa.shape[1])
    weights = np.where(y > 0, pos_weight, 1.0)
    best, best_u = math.inf, u.copy()
    for t in range(1, steps + 1):
        margins = y * (xa @ u)
        active = margins < 1
        grad = u - c * ((weights * y * active)[:, None] * xa).sum(0)
        u = u - grad / (t**0.5 * 10)
        obj = 0.5 * u @ u + c * np.sum(weights * np.maximum(0, 1 - y * (xa @ u)))
        if obj < best:
            best, best_u = obj, u.copy()
    return best_u[:-1], best_u[-1] * bias_feature, best


@pytest.mark.parametrize("c", [1e-3, 0.1])
def test_fit_linear_svm_minimises_the_weighted_hinge_objective(c):
    rng = np.random.default_rng(1)
    pos = rng.normal(size=(15, 4)) * 5 + 4
    neg = rng.normal(size=(40, 4)) * 5 - 2
    w, b = fit_linear_svm(torch.from_numpy(pos), torch.from_numpy(neg), c=c, positive_weight=2.0)
    x = np.vstack([pos, neg])
    y = np.concatenate([np.ones(15), -np.ones(40)])
    ours = _objective(w.double().numpy(), b, x, y, c, 2.0, 10.0)
    _, _, ref = _subgradient_reference(x, y, c, 2.0, 10.0)
    # liblinear's optimum cannot be worse than a subgradient run, and is close to it.
    assert ours <= ref * (1 + 1e-3) + 1e-9
    assert ours >= ref * 0.97


def test_fit_linear_svm_separates_and_weights_positives():
    rng = np.random.default_rng(2)
    pos = torch.from_numpy(rng.normal(size=(30, 3)) + np.array([8, 0, 0])).float()
    neg = torch.from_numpy(rng.normal(size=(60, 3)) - np.array([8, 0, 0])).float()
    w, b = fit_linear_svm(pos, neg, c=1.0)
    assert bool(((pos @ w + b) > 0).all()) and bool(((neg @ w + b) < 0).all())
    assert w.dtype == torch.float32 and w.shape == (3,)


def test_feature_norm_scale():
    x = torch.tensor([[3.0, 4.0], [0.0, 10.0]])  # norms 5 and 10, mean 7.5
    assert feature_norm_scale(x) == pytest.approx(20 / 7.5)
    assert feature_norm_scale(x, target=1.0) == pytest.approx(1 / 7.5)
    assert feature_norm_scale(torch.zeros(3, 2)) == 1.0
    with pytest.raises(ValueError, match="N >= 1"):
        feature_norm_scale(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        feature_norm_scale(torch.tensor([[math.inf]]))
    with pytest.raises(ValueError, match="target"):
        feature_norm_scale(x, target=-1.0)


def test_fit_linear_svm_validation():
    ok = torch.ones(2, 3)
    with pytest.raises(ValueError, match="positives must be"):
        fit_linear_svm(torch.zeros(0, 3), ok)
    with pytest.raises(ValueError, match="negatives must be"):
        fit_linear_svm(ok, torch.zeros(3))
    with pytest.raises(ValueError, match="same width"):
        fit_linear_svm(ok, torch.ones(2, 4))
    with pytest.raises(ValueError, match="c must be"):
        fit_linear_svm(ok, -ok, c=0.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_linear_svm(ok * math.nan, -ok)


def test_fit_linear_svm_does_not_depend_on_numpy_global_state():
    # liblinear shuffles samples; a fixed random_state keeps the result run-independent
    gen = torch.Generator().manual_seed(3)
    pos = torch.randn(40, 12, generator=gen) + 0.3
    neg = torch.randn(300, 12, generator=gen)
    results = []
    for seed in (0, 12345):
        np.random.seed(seed)
        results.append(fit_linear_svm(pos, neg, c=1.0, max_iter=50))
    (w0, b0), (w1, b1) = results
    assert torch.equal(w0, w1) and b0 == b1
