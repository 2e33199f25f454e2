"""VOC classification AP (devkit rules) and the Caltech101 mean per-class accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sppnet.evaluation.voc_classification import (
    mean_class_accuracy,
    voc_classification_ap,
    voc_image_labels,
)


def _target(objects: list[tuple[int, bool]]) -> dict[str, torch.Tensor]:
    return {
        "labels": torch.tensor([c for c, _ in objects], dtype=torch.int64),
        "difficult": torch.tensor([d for _, d in objects], dtype=torch.bool),
    }


# 5 images, 3 classes; image 2 holds only difficult objects (classes 0 and 1), image 3 mixes a
# difficult and a non-difficult object of the same class, images 1 and 4 hold nothing.
ANNOTATIONS = [
    _target([(0, False), (2, False)]),
    _target([]),
    _target([(0, True), (1, True)]),
    _target([(0, False), (0, True), (2, False), (2, True)]),
    _target([]),
]
TRUTH = [[1, -1, 1], [-1, -1, -1], [0, 0, -1], [1, -1, 1], [-1, -1, -1]]
SCORES = [
    [0.9, 0.1, 0.5],
    [0.8, 0.2, 0.5],  # class 2: tied with image 0, a negative
    [0.95, 0.3, 0.2],  # class 0: the top score, but ignored (difficult only)
    [0.3, 0.4, 0.7],
    [0.5, 0.5, 0.1],
]


def test_image_labels_by_devkit_rule():
    truth = voc_image_labels(ANNOTATIONS, num_classes=3)
    assert truth.dtype == torch.int64
    assert truth.tolist() == TRUTH


def test_hand_computed_case():
    out = voc_classification_ap(
        torch.tensor(SCORES), torch.tensor(TRUTH), class_names=("a", "b", "c")
    )
    ap = out["ap"]
    assert list(ap) == ["a", "b", "c"]
    # Class a without image 2: ranked +, -, -, + -> rec .5 .5 .5 1, prec 1 .5 1/3 .5;
    # 11-point: 6 thresholds at 1, 5 at .5.
    assert ap["a"] == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    # Had image 2 counted as a negative: -, +, -, -, + -> (6 * .5 + 5 * .4) / 11. It must not.
    assert ap["a"] != pytest.approx((6 * 0.5 + 5 * 0.4) / 11)
    # Class b: no positive image -> NaN, left out of the mean.
    assert math.isnan(ap["b"])
    # Class c: image 3 (+) first, then the tie at 0.5 in input order: image 0 (+), image 1 (-).
    assert ap["c"] == 1.0
    assert out["map"] == pytest.approx((ap["a"] + ap["c"]) / 2)


def test_ties_keep_input_order():
    # Swap images 0 and 1: the tied negative now comes first -> + - + ... for class c.
    perm = [1, 0, 2, 3, 4]
    scores = np.array(SCORES)[perm]
    truth = np.array(TRUTH)[perm]
    out = voc_classification_ap(scores, truth)
    assert out["ap"][2] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert out["ap"][0] == pytest.approx((6 * 1 + 5 * 0.5) / 11)  # no ties there: unchanged


def test_area_metric():
    out = voc_classification_ap(np.array(SCORES), np.array(TRUTH), use_07_metric=False)
    # Class 0: recall .5 at precision 1, then .5 -> 1 at precision .5.
    assert out["ap"][0] == pytest.approx(0.5 + 0.25)
    assert out["ap"][2] == 1.0


def _devkit_loop(scores: list[float], truth: list[int], eleven: bool) -> float:
    """VOCevalcls.m literally: stable sort by -score, ignored images kept in the ranking but
    counted as neither tp nor fp (precision 0/0 = NaN there, skipped by max)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    n_pos = sum(1 for g in truth if g > 0)
    rec, prec, tp, fp = [], [], 0, 0
    for i in order:
        tp += truth[i] > 0
        fp += truth[i] < 0
        rec.append(tp / n_pos)
        prec.append(tp / (tp + fp) if tp + fp else math.nan)
    if eleven:
        total = 0.0
        for k in range(11):
            ps = [p for r, p in zip(rec, prec, strict=True) if r >= k / 10 and not math.isnan(p)]
            total += max(ps, default=0.0)
        return total / 11
    area, prev = 0.0, 0.0
    for j, r in enumerate(rec):
        if r > prev:
            area += (r - prev) * max(p for p in prec[j:] if not math.isnan(p))
            prev = r
    return area


@pytest.mark.parametrize("eleven", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_against_devkit_loop_with_ties_and_ignored(seed, eleven):
    g = torch.Generator().manual_seed(seed)
    n, k = 41, 6
    scores = torch.randint(0, 5, (n, k), generator=g).float()  # many ties
    truth = torch.randint(-1, 2, (n, k), generator=g)
    truth[:, -1] = torch.where(truth[:, -1] > 0, -1, truth[:, -1])  # a class without positives
    out = voc_classification_ap(scores, truth, use_07_metric=eleven)
    for c in range(k - 1):
        want = _devkit_loop(scores[:, c].tolist(), truth[:, c].tolist(), eleven)
        assert out["ap"][c] == pytest.approx(want, abs=1e-12)
    assert math.isnan(out["ap"][k - 1])
    assert out["map"] == pytest.approx(np.mean([out["ap"][c] for c in range(k - 1)]))


def test_all_classes_without_positives_give_nan_map():
    out = voc_classification_ap(np.zeros((3, 2)), -np.ones((3, 2), dtype=np.int64))
    assert math.isnan(out["map"])


def test_classification_ap_validation():
    s, t = np.zeros((3, 2)), np.ones((3, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        voc_classification_ap(s, t[:2])
    with pytest.raises(ValueError, match="2 dims"):
        voc_classification_ap(s[:, 0], t[:, 0])
    with pytest.raises(ValueError, match=r"\{1, 0, -1\}"):
        voc_classification_ap(s, t * 2)
    with pytest.raises(ValueError, match="NaN"):
        voc_classification_ap(np.full((3, 2), np.nan), t)
    with pytest.raises(TypeError, match="integers"):
        voc_classification_ap(s, t.astype(np.float64))
    with pytest.raises(TypeError, match="Tensor, ndarray or list"):
        voc_classification_ap({"scores": s}, t)
    with pytest.raises(ValueError, match="K=2 names"):
        voc_classification_ap(s, t, class_names=["a"])
    with pytest.raises(ValueError, match="at least one image"):
        voc_classification_ap(np.zeros((0, 2)), np.zeros((0, 2), dtype=np.int64))


def test_image_labels_validation():
    with pytest.raises(ValueError, match=r"label 3 is outside 0..2"):
        voc_image_labels([_target([(3, False)])], num_classes=3)
    with pytest.raises(ValueError, match="one entry per object"):
        voc_image_labels([{"labels": torch.tensor([0]), "difficult": torch.tensor([])}], 3)
    with pytest.raises(ValueError, match="difficult"):
        voc_image_labels([{"labels": torch.tensor([0])}], 3)
    with pytest.raises(ValueError, match="num_classes"):
        voc_image_labels(ANNOTATIONS, 0)
    with pytest.raises(TypeError, match="sequence"):
        voc_image_labels(ANNOTATIONS[0], 3)
    with pytest.raises(ValueError, match="image 007"):
        voc_image_labels([{**_target([(-1, False)]), "image_id": "007"}], 3)
    assert voc_image_labels([], 3).shape == (0, 3)
    # Plain lists work too, an empty one included (an image without objects).
    empty = voc_image_labels(
        [{"labels": [], "difficult": []}, {"labels": [1], "difficult": [1]}], 2
    )
    assert empty.tolist() == [[-1, -1], [-1, 0]]


def test_bfloat16_scores():
    out = voc_classification_ap(torch.tensor(SCORES, dtype=torch.bfloat16), torch.tensor(TRUTH))
    assert out["ap"][2] == 1.0


def _mean_class_accuracy_loop(pred: list[int], labels: list[int]) -> float:
    accs = []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        accs.append(sum(pred[i] == c for i in idx) / len(idx))
    return sum(accs) / len(accs)


@pytest.mark.parametrize("seed", range(4))
def test_mean_class_accuracy_against_loop(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, size=60)  # unbalanced classes
    pred = np.where(rng.random(60) < 0.6, labels, rng.integers(0, 7, size=60))
    want = _mean_class_accuracy_loop(pred.tolist(), labels.tolist())
    assert mean_class_accuracy(pred, labels) == pytest.approx(want)
    assert mean_class_accuracy(torch.from_numpy(pred), torch.from_numpy(labels), 7) == (
        pytest.approx(want)
    )


def test_mean_class_accuracy_is_not_overall_accuracy():
    # Class 0: 9 of 9 right; class 1: 0 of 1 -> mean per class 0.5, overall 0.9.
    labels = np.array([0] * 9 + [1])
    pred = np.zeros(10, dtype=np.int64)
    assert mean_class_accuracy(pred, labels) == pytest.approx(0.5)


def test_mean_class_accuracy_validation():
    with pytest.raises(ValueError, match="same length"):
        mean_class_accuracy(np.zeros(3, dtype=int), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="at least one"):
        mean_class_accuracy(np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"pred\[1\] = 5 is outside 0..2"):
        mean_class_accuracy(np.array([0, 5]), np.array([0, 1]), num_classes=3)
    with pytest.raises(TypeError, match="integers"):
        mean_class_accuracy(np.zeros(2), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="1-D"):
        mean_class_accuracy(np.zeros((2, 2), dtype=int), np.zeros((2, 2), dtype=int))
