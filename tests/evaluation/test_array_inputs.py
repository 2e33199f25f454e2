"""Every metric takes torch tensors, numpy arrays and plain lists alike: the
same inputs in the three forms give the same numbers, bad inputs the same errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sppnet.evaluation import (
    mean_class_accuracy,
    topk_error,
    topk_errors,
    voc_ap,
    voc_classification_ap,
    voc_detection_map,
)

FORMS = {
    "tensor": torch.tensor,
    "numpy": np.asarray,
    "list": lambda x: np.asarray(x).tolist(),
}


def _forms(value):
    return {name: make(value) for name, make in FORMS.items()}


def test_voc_ap_three_forms() -> None:
    rec, prec = [0.25, 0.5, 0.5, 0.75], [1.0, 1.0, 2 / 3, 0.75]
    for metric in (True, False):
        values = {
            name: voc_ap(FORMS[name](rec), FORMS[name](prec), use_07_metric=metric)
            for name in FORMS
        }
        assert len(set(values.values())) == 1
    # 11-point by hand: t <= 0.5 -> 1.0 (6 points), 0.6, 0.7 -> 0.75 (2 points), 0.8.. -> 0
    assert voc_ap(rec, prec) == pytest.approx((6 * 1.0 + 2 * 0.75) / 11)
    assert voc_ap([], []) == 0.0


def test_classification_metrics_three_forms() -> None:
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]
    labels = [1, 1, 2, 2]
    for name, make in FORMS.items():
        s, y = make(scores), make(labels)
        assert topk_error(s, y, 1) == 0.5, name  # rows 1 and 3 miss
        assert topk_errors(s, y, (1, 2)) == {"top1_error": 0.5, "top2_error": 0.25}, name
        # class 1: 1 of 2 right, class 2: 1 of 2 right
        assert mean_class_accuracy(make([1, 0, 2, 0]), y) == 0.5, name
    truth = [[1, -1], [-1, 1], [1, 0]]
    cls_scores = [[0.9, 0.1], [0.2, 0.8], [0.3, 0.5]]
    results = {n: voc_classification_ap(m(cls_scores), m(truth)) for n, m in FORMS.items()}
    assert results["tensor"] == results["numpy"] == results["list"]
    assert results["list"]["map"] == 1.0


def test_classification_metrics_reject_bad_lists() -> None:
    with pytest.raises(ValueError, match="rectangular"):
        topk_error([[0.1, 0.2], [0.3]], [0, 1], 1)
    with pytest.raises(TypeError, match="numbers"):
        topk_error([["a", "b"]], [0], 1)
    with pytest.raises(TypeError, match="integers"):
        mean_class_accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(TypeError, match="integers"):
        voc_classification_ap([[0.5]], [[1.0]])


def _detection_inputs():
    # image a: a hit on class 0 (score 0.9), a false positive (0.8); image b: a miss of class
    # 1 with a difficult one beside it; b has a class-1 detection of IoU 0.25 (a false positive)
    dets = {
        "a": {
            "boxes": [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]],
            "scores": [0.9, 0.8],
            "labels": [0, 0],
        },
        "b": {"boxes": [[0.0, 0.0, 10.0, 5.0]], "scores": [0.7], "labels": [1]},
    }
    anns = {
        "a": {"boxes": [[0.0, 0.0, 10.0, 10.0]], "labels": [0], "difficult": [False]},
        "b": {
            "boxes": [[0.0, 0.0, 20.0, 10.0], [30.0, 30.0, 40.0, 40.0]],
            "labels": [1, 1],
            "difficult": [False, True],
        },
        "c": {"boxes": [], "labels": [], "difficult": []},
    }
    return dets, anns


def _convert(tree, make):
    return {
        i: {k: (make(v) if len(v) else make(np.zeros((0, 4)) if k == "boxes" else v))
            for k, v in entry.items()}
        for i, entry in tree.items()
    }  # fmt: skip


def test_voc_detection_map_three_forms() -> None:
    dets, anns = _detection_inputs()

    def as_tensors(x):
        arr = np.asarray(x)
        if arr.dtype.kind == "f":
            return torch.tensor(arr, dtype=torch.float32)
        return torch.tensor(arr) if arr.size else torch.zeros(0, dtype=torch.int64)

    results = {}
    for name, make in {"tensor": as_tensors, "numpy": np.asarray, "list": lambda x: x}.items():
        if name == "tensor":
            a = _convert(anns, make)
            a["c"] = {
                "boxes": torch.zeros(0, 4),
                "labels": torch.zeros(0, dtype=torch.int64),
                "difficult": torch.zeros(0, dtype=torch.bool),
            }
        else:
            a = _convert(anns, make)
        results[name] = voc_detection_map(_convert(dets, make), a, class_names=["x", "y"])
    ap = {name: r["ap"] for name, r in results.items()}
    # class x: tp then fp, one positive -> 11-point AP 1; class y: one fp, one positive -> 0
    assert ap["tensor"] == ap["numpy"] == ap["list"] == {"x": 1.0, "y": 0.0}
    assert results["list"]["num_positives"] == {"x": 1, "y": 1}
    assert math.isclose(results["numpy"]["map"], 0.5)


def test_voc_detection_map_bad_arrays() -> None:
    dets, anns = _detection_inputs()
    bad = {**dets, "a": {**dets["a"], "labels": [0.0, 1.0]}}
    with pytest.raises(TypeError, match="labels must be an integer"):
        voc_detection_map(bad, anns)
    bad = {**dets, "a": {**dets["a"], "scores": ["x", "y"]}}
    with pytest.raises(TypeError, match="numbers"):
        voc_detection_map(bad, anns)
    bad_anns = {**anns, "a": {**anns["a"], "difficult": [0]}}
    with pytest.raises(TypeError, match="difficult must be a BoolTensor"):
        voc_detection_map(dets, bad_anns)
    bad = {**dets, "a": {**dets["a"], "boxes": [[0.0, 0.0, 10.0], [1.0, 1.0, 2.0]]}}
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        voc_detection_map(bad, anns)
