"""COCO AP through pycocotools on hand-made cases whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sppnet.evaluation import coco_detection_metrics, coco_results

pytest.importorskip("pycocotools")


def _gt(boxes, crowd=None):
    crowd = crowd or [0] * len(boxes)
    return {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 200}],
        "annotations": [
            {"id": i + 1, "image_id": 7, "category_id": 3, "bbox": b, "area": b[2] * b[3],
             "iscrowd": c}
            for i, (b, c) in enumerate(zip(boxes, crowd, strict=True))
        ],
        "categories": [{"id": 3, "name": "thing"}],
    }  # fmt: skip


def test_half_recall_at_full_precision() -> None:
    # two objects; a perfect hit ranked first, a false positive second, the other object
    # missed: precision 1 up to recall 0.5, so 51 of COCO's 101 recall points have
    # precision 1 at every IoU threshold -> AP = AP50 = AP75 = 51/101
    gt = _gt([[0, 0, 100, 100], [120, 120, 50, 50]])
    dets = {"a": {"boxes": [[0.0, 0.0, 100.0, 100.0], [150.0, 0.0, 190.0, 40.0]],
                  "scores": [0.9, 0.8], "labels": [0, 0]}}  # fmt: skip
    results = coco_results(dets, {"a": 7}, [3])
    assert results[0] == {"image_id": 7, "category_id": 3, "bbox": [0.0, 0.0, 100.0, 100.0],
                          "score": 0.9}  # fmt: skip
    m = coco_detection_metrics(gt, results)
    for key in ("AP", "AP50", "AP75"):
        assert m[key] == pytest.approx(51 / 101), key


def test_iou_062_counts_at_three_of_ten_thresholds() -> None:
    # one object, one detection of IoU 0.62: a hit at IoU 0.50, 0.55, 0.60, a miss above
    gt = _gt([[0, 0, 100, 100]])
    dets = {"a": {"boxes": torch.tensor([[0.0, 0.0, 100.0, 62.0]]),
                  "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}}  # fmt: skip
    m = coco_detection_metrics(gt, coco_results(dets, {"a": 7}, [3]))
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == 0.0
    assert m["AP"] == pytest.approx(0.3)


def test_crowd_is_ignored_and_no_results() -> None:
    # a detection on a crowd region is neither a hit nor a false positive (VOC's difficult)
    gt = _gt([[0, 0, 100, 100], [120, 120, 50, 50]], crowd=[0, 1])
    dets = {"a": {"boxes": np.array([[120.0, 120.0, 170.0, 170.0], [0.0, 0.0, 100.0, 100.0]]),
                  "scores": np.array([0.9, 0.8]), "labels": np.array([0, 0])}}  # fmt: skip
    m = coco_detection_metrics(gt, coco_results(dets, {"a": 7}, [3]))
    assert m["AP50"] == pytest.approx(1.0)
    assert coco_detection_metrics(gt, [])["AP"] == 0.0
    assert math.isnan(coco_detection_metrics({**gt, "annotations": []}, [])["AP"])


def test_results_leave_out_classes_without_a_category_and_check_inputs() -> None:
    dets = {"a": {"boxes": [[0.0, 0.0, 1.0, 1.0]], "scores": [0.5], "labels": [1]}}
    assert coco_results(dets, {"a": 7}, [3, None]) == []
    with pytest.raises(ValueError, match="no COCO image id"):
        coco_results(dets, {"b": 7}, [3, None])
    with pytest.raises(ValueError, match="outside"):
        coco_results(dets, {"a": 7}, [3])
