"""VOC AP (11-point and area) against hand-computed curves and plain Python loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet.evaluation.voc_ap import voc_ap


def _eleven_point_loop(rec: list[float], prec: list[float]) -> float:
    """VOC 2007: for t = 0, 0.1, ..., 1 the best precision at recall >= t (0 if none)."""
    total = 0.0
    for k in range(11):
        t = k / 10
        best = 0.0
        for r, p in zip(rec, prec, strict=True):
            if r >= t and p > best:
                best = p
        total += best
    return total / 11


def _area_loop(rec: list[float], prec: list[float]) -> float:
    """VOC 2010+: each recall step times the best precision at this point or later."""
    area, prev = 0.0, 0.0
    for i, r in enumerate(rec):
        area += (r - prev) * max(prec[i:])
        prev = r
    return area


def _curve(truth: list[int], n_pos: int) -> tuple[list[float], list[float]]:
    """Recall/precision after each ranked item (truth 1 = hit, else miss)."""
    rec, prec, tp = [], [], 0
    for i, g in enumerate(truth, start=1):
        tp += g
        rec.append(tp / n_pos)
        prec.append(tp / i)
    return rec, prec


def test_hand_computed_hit_miss_hit_miss():
    rec, prec = _curve([1, 0, 1, 0], n_pos=2)  # rec .5 .5 1 1, prec 1 .5 2/3 .5
    # 11-point: t = 0..0.5 reach precision 1 (6 points), t = 0.6..1 reach 2/3 (5 points).
    assert voc_ap(rec, prec) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # Area: recall 0 -> .5 at precision 1, .5 -> 1 at 2/3.
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_perfect_and_empty_and_missed_positives():
    rec, prec = _curve([1, 1, 0, 0], n_pos=2)
    assert voc_ap(rec, prec) == 1.0
    assert voc_ap(rec, prec, use_07_metric=False) == 1.0
    assert voc_ap([], []) == 0.0
    assert voc_ap([], [], use_07_metric=False) == 0.0
    # Half the positives are never ranked: recall stops at 0.5.
    rec, prec = _curve([1, 0], n_pos=2)
    assert voc_ap(rec, prec) == pytest.approx(6 / 11)
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5)


def test_recall_exactly_on_a_threshold_counts():
    # 3 of 10 positives found: recall 3/10 reaches t = 0.3 (4 thresholds 0, .1, .2, .3).
    rec, prec = _curve([1, 1, 1], n_pos=10)
    assert rec[-1] == 3 / 10
    assert voc_ap(rec, prec) == pytest.approx(4 / 11)
    # 6/20 is the same float as 3/10.
    rec, prec = _curve([1] * 6, n_pos=20)
    assert voc_ap(rec, prec) == pytest.approx(4 / 11)


@pytest.mark.parametrize("seed", range(6))
def test_against_loops_on_random_rankings(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    truth = rng.integers(0, 2, size=n).tolist()
    n_pos = sum(truth) + int(rng.integers(0, 3))  # some positives may be missed
    if n_pos == 0:
        n_pos = 1
    rec, prec = _curve(truth, n_pos)
    assert voc_ap(rec, prec) == pytest.approx(_eleven_point_loop(rec, prec), abs=1e-12)
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(_area_loop(rec, prec), abs=1e-12)


def test_tensor_and_ndarray_inputs_agree():
    rec, prec = _curve([0, 1, 1, 0, 1], n_pos=4)
    want = voc_ap(rec, prec)
    assert voc_ap(np.array(rec), np.array(prec, dtype=np.float32)) == pytest.approx(want)
    assert voc_ap(torch.tensor(rec), torch.tensor(prec)) == pytest.approx(want)
    assert isinstance(voc_ap(torch.tensor(rec), torch.tensor(prec)), float)


def test_validation():
    with pytest.raises(ValueError, match="same length"):
        voc_ap([0.5, 1.0], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        voc_ap(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        voc_ap([0.5, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        voc_ap([0.5, 1.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        voc_ap([1.0, 0.5], [1.0, 1.0], use_07_metric=False)
    with pytest.raises(TypeError, match="recall"):
        voc_ap("0.5", [1.0])
    with pytest.raises(TypeError, match="precision"):
        voc_ap([0.5], np.array(["a"]))
