"""Top-k error against a plain Python loop, ties counted pessimistically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet.evaluation.classification import topk_error, topk_errors


def _reference(scores: list[list[float]], labels: list[int], k: int) -> float:
    """Sort classes by score, the true label after every class tied with it; is it in the top k?"""
    wrong = 0
    for row, y in zip(scores, labels, strict=True):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == y))
        if order.index(y) >= k:
            wrong += 1
    return wrong / len(labels)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 5])
def test_against_loop_with_many_ties(seed, k):
    g = torch.Generator().manual_seed(seed)
    n, num_classes = 37, 7
    scores = torch.randint(0, 4, (n, num_classes), generator=g).float()  # many ties
    labels = torch.randint(0, num_classes, (n,), generator=g)
    want = _reference(scores.tolist(), labels.tolist(), k)
    assert topk_error(scores, labels, k) == pytest.approx(want, abs=1e-12)


def test_continuous_scores_and_numpy_inputs():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 10))
    labels = rng.integers(0, 10, size=50)
    for k in (1, 3, 5):
        want = _reference(scores.tolist(), labels.tolist(), k)
        assert topk_error(scores, labels, k) == pytest.approx(want)
    out = topk_errors(scores, labels)
    assert set(out) == {"top1_error", "top5_error"}
    assert out["top5_error"] == pytest.approx(_reference(scores.tolist(), labels.tolist(), 5))
    assert isinstance(out["top1_error"], float)


def test_hand_examples_and_pessimistic_ties():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.3, 0.3, 0.3]])
    labels = torch.tensor([1, 0, 2])
    # row 0 correct at k=1; row 1 tied with class 1: wrong at k=1, right at k=2;
    # row 2 all tied: wrong at k=1 and k=2, right only at k=3 = K.
    assert topk_error(scores, labels, 1) == pytest.approx(2 / 3)
    assert topk_error(scores, labels, 2) == pytest.approx(1 / 3)
    assert topk_error(scores, labels, 3) == 0.0


def test_k_larger_than_classes_is_clamped():
    scores = torch.tensor([[0.0, 1.0, 2.0]])
    assert topk_error(scores, torch.tensor([0]), 5) == 0.0
    assert topk_errors(scores, torch.tensor([0]), ks=(1, 5)) == {
        "top1_error": 1.0,
        "top5_error": 0.0,
    }


def test_infinite_scores_are_ranked():
    scores = torch.tensor([[-float("inf"), 0.0], [float("inf"), 0.0]])
    assert topk_error(scores, torch.tensor([0, 0]), 1) == 0.5


def test_validation():
    scores = torch.zeros(4, 3)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="NaN"):
        topk_error(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), 1)
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        topk_error(torch.zeros(4), labels, 1)
    with pytest.raises(ValueError, match="N=4"):
        topk_error(scores, torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        topk_error(scores, torch.tensor([0, 1, 2, 3]), 1)
    with pytest.raises(ValueError, match="at least one"):
        topk_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="integers"):
        topk_error(scores, labels.float(), 1)
    with pytest.raises(TypeError, match="k must be"):
        topk_error(scores, labels, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_error(scores, labels, 0)
    with pytest.raises(TypeError, match="scores"):
        topk_error("0.0 1.0", [0], 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ks"):
        topk_errors(scores, labels, ks=())
