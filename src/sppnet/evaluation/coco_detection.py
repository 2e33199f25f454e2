"""COCO detection AP (AP over IoU 0.50:0.95, AP50, AP75) by the reference implementation,
``pycocotools`` (the ``coco`` extra: ``pip install 'sppnet[coco]'``), not by our own code.

Detections in the project's form (per image ``{"boxes" [D, 4] xyxy, "scores", "labels"}``)
become COCO result records (``bbox`` ``[x, y, w, h]``, the same continuous coordinates; see
:mod:`sppnet.data.coco`), labels become category ids.

Shape shorthand: D detections of one image.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sppnet.evaluation._arrays import ArrayLike, as_array

__all__ = ["coco_detection_metrics", "coco_results"]

# pycocotools' summary order (COCOeval.stats).
_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_results(
    detections: Mapping[object, Mapping[str, ArrayLike]],
    image_ids: Mapping[object, int],
    category_ids: Sequence[int | None],
) -> list[dict[str, Any]]:
    """COCO result records (the ``loadRes`` / results-JSON format) of per-image detections.

    Args:
        detections: image id -> ``{"boxes": [D, 4] xyxy, "scores": [D], "labels": [D]}``
            (tensors, arrays or lists).
        image_ids: our image id -> COCO image id.
        category_ids: the COCO category id of each label; detections of a label whose id is
            ``None`` are left out (a class the ground truth has no category for).

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``, coordinates rounded
        to 1/1000 pixel, scores to 6 significant digits.

    Raises:
        ValueError: an image id without a COCO id, a label outside ``category_ids``, boxes,
            scores and labels of different lengths.
    """
    out: list[dict[str, Any]] = []
    for key, det in detections.items():
        if key not in image_ids:
            raise ValueError(f"detections for image {key!r}, which has no COCO image id")
        boxes = as_array(det["boxes"], "boxes", "[D, 4]").astype(np.float64).reshape(-1, 4)
        scores = as_array(det["scores"], "scores", "[D]").astype(np.float64).reshape(-1)
        labels = as_array(det["labels"], "labels", "[D]").astype(np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"image {key!r}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
            )
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels, strict=True):
            if not 0 <= label < len(category_ids):
                raise ValueError(f"image {key!r}: label {label} outside 0..{len(category_ids) - 1}")
            cid = category_ids[label]
            if cid is None:
                continue
            out.append(
                {
                    "image_id": int(image_ids[key]),
                    "category_id": int(cid),
                    "bbox": [round(float(v), 3) for v in (x1, y1, x2 - x1, y2 - y1)],
                    "score": float(f"{score:.6g}"),
                }
            )
    return out


def coco_detection_metrics(
    ground_truth: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """COCO box AP by pycocotools' ``COCOeval`` (its printed summary is swallowed).

    Args:
        ground_truth: a COCO annotation dict (``images``, ``annotations`` with ``bbox``,
            ``area``, ``iscrowd``, ``categories``), e.g. from
            :func:`~sppnet.data.coco_ground_truth`. Not modified.
        results: result records (:func:`coco_results`); may be empty.
        image_ids: evaluate only these images (default: every image of ``ground_truth``).

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
        "ARl"}`` in ``[0, 1]``; NaN where pycocotools has no value (-1: no ground truth of
        that kind). No results at all give 0 where there is ground truth.

    Raises:
        ModuleNotFoundError: pycocotools is not installed (the message says how to install).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ModuleNotFoundError(
            "COCO AP needs pycocotools: pip install 'sppnet[coco]' (or pycocotools)"
        ) from None
    gt_dict = copy.deepcopy(dict(ground_truth))
    gt_dict.setdefault("info", {})
    has_gt = bool(gt_dict.get("annotations"))
    if not results:
        value = 0.0 if has_gt else math.nan
        return {name: value for name in _STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(list(results)))
        evaluator = COCOeval(gt, dt, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {
        name: (float(v) if v >= 0 else math.nan)
        for name, v in zip(_STATS, evaluator.stats, strict=True)
    }
