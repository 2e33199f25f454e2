"""Detector evaluation on a VOC-layout split or a COCO file: VOC07 mAP, COCO AP (AP, AP50,
AP75 by pycocotools, when installed), per-stage time, R-CNN baseline.

Run as ``sppnet eval-det --detector DIR --data VOC_ROOT --split test`` (or ``--data
instances.json --images DIR``). Per image the
detector runs its stages (conv, pooling, fc, SVM + box regression, NMS) and their times
are summed; with ``rcnn_images > 0`` the first images are also run the R-CNN way (every
window warped to the network's input and passed through the whole network, Sec. 4.3)
with the same fc layers, SVMs and regressors, for the accuracy and speed comparison of
Tables 9-10 on exactly the same model and windows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sppnet._atomic import atomic_write_json, atomic_write_text
from sppnet.data.coco import CocoDetection, coco_ground_truth
from sppnet.data.transforms import subtract_mean, to_tensor
from sppnet.data.voc import VOCDetection
from sppnet.detect.device import detector_device, postprocess_on_cpu
from sppnet.detect.voc_results import write_voc_results
from sppnet.detection.detector import Detector
from sppnet.engine.distributed import DistInfo, all_gather_objects, shard_indices
from sppnet.evaluation.coco_detection import coco_detection_metrics, coco_results
from sppnet.evaluation.voc_detection import per_class_ap_table, voc_detection_map
from sppnet.visualize import plot_precision_recall

__all__ = ["evaluate_detector"]


def _annotations(dataset: VOCDetection, ids: list[str]) -> dict[str, dict[str, Tensor]]:
    index = {image_id: i for i, image_id in enumerate(dataset.ids)}
    out = {}
    for image_id in ids:
        ann = dataset.annotations[index[image_id]]
        out[image_id] = {
            "boxes": ann["boxes"],
            "labels": ann["labels"],
            "difficult": ann["difficult"],
        }
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _coco(
    dataset: VOCDetection | CocoDetection,
    detections: dict[str, dict[str, Tensor]],
    n: int,
) -> tuple[list[dict[str, Any]], dict[str, float | None] | None]:
    """COCO result records of the first ``n`` images and their COCO AP (``None`` without
    pycocotools). A VOC-layout split is numbered ``1..N`` in split order."""
    gt = coco_ground_truth(dataset, range(n))
    image_ids = {dataset.ids[i]: image["id"] for i, image in enumerate(gt["images"])}
    category_ids = getattr(dataset, "category_ids", None) or list(
        range(1, len(dataset.class_names) + 1)
    )
    results = coco_results(detections, image_ids, category_ids)
    try:
        metrics = coco_detection_metrics(gt, results, list(image_ids.values()))
    except ModuleNotFoundError:
        return results, None
    return results, {k: _finite(v) for k, v in metrics.items()}


def evaluate_detector(
    detector: Detector,
    dataset: VOCDetection | CocoDetection,
    proposals: dict[str, Tensor],
    *,
    out: str | Path | None = None,
    rcnn_images: int = 0,
    rcnn_size: int = 224,
    max_images: int | None = None,
    progress: bool = False,
    info: DistInfo | None = None,
) -> dict[str, Any] | None:
    """Detect on every image of ``dataset``; score VOC07 mAP (11-point, IoU 0.5) and COCO AP.

    Under ``torchrun`` (``info``) rank r detects on images r, r + P, ...; rank 0 gathers
    the detections (each image's depend on that image alone), scores them, runs the R-CNN
    baseline and writes the files: the same numbers and files as one process.

    Args:
        detector: the trained detector (eval mode), on the device it is to run on
            (:func:`~sppnet.detect.io.load_detector`'s ``map_location``): the
            images go there, the detections come back to the CPU.
        dataset: the test split; its class names must be the detector's.
        proposals: ``{image_id: Tensor[R, 4]}`` for every image.
        out: optional folder for VOC result files (``results/``), COCO results
            (``coco_results.json``), the AP table (``ap_table.md``), the precision-recall
            plot (``pr_curves.png``).
        rcnn_images: run the R-CNN baseline on the first N images as well.
        rcnn_size: R-CNN's warped window size (the network's training input).
        max_images: evaluate only the first N images.
        progress: tqdm bars.
        info: the ``torchrun`` process group; ``None``: alone.

    Returns:
        On rank 0 (or alone): ``{"map", "ap" {class: AP or None}, "coco" {"AP", "AP50",
        "AP75", ...} (``None`` without pycocotools), "images", "timing" {stage: seconds per
        image}, "detections" {image_id: dict}}`` and, with R-CNN, ``"rcnn"`` holding ``"map"`` and
        ``"spp_map"`` on the same subset, ``"timing"`` per image for both and ``"speedup"``.
        ``None`` on the other ranks.

    Raises:
        ValueError: class names differ from the detector's, or an image lacks proposals.
    """
    if list(dataset.class_names) != list(detector.class_names):
        raise ValueError(
            f"dataset classes {dataset.class_names} differ from the detector's "
            f"{detector.class_names}"
        )
    info = info or DistInfo()
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    ids = list(dataset.ids[:n])
    missing = [image_id for image_id in ids if image_id not in proposals]
    if missing:  # on every rank, before any work
        raise ValueError(f"no proposals for image {missing[0]!r}")
    gathered = _detect_all(detector, dataset, proposals, n, progress, info)
    if gathered is None:
        return None
    mine, totals = gathered
    detections = {image_id: mine[image_id] for image_id in ids}  # in dataset order
    result = voc_detection_map(
        detections, _annotations(dataset, ids), class_names=dataset.class_names
    )
    timing = {stage: seconds / max(n, 1) for stage, seconds in totals.items()}
    timing["total"] = sum(timing.values())
    summary: dict[str, Any] = {
        "map": _finite(float(result["map"])),
        "ap": {k: _finite(float(v)) for k, v in result["ap"].items()},
        "images": n,
        "timing": timing,
        "detections": detections,
    }
    coco_records, summary["coco"] = _coco(dataset, detections, n)
    if rcnn_images > 0:
        summary["rcnn"] = _rcnn_baseline(
            detector, dataset, proposals, min(rcnn_images, n), rcnn_size, detections, progress
        )
    if out is not None:
        _write_outputs(Path(out), detections, dataset.class_names, coco_records, result)
    return summary


def _detect_all(
    detector: Detector,
    dataset: VOCDetection | CocoDetection,
    proposals: dict[str, Tensor],
    n: int,
    progress: bool,
    info: DistInfo,
) -> tuple[dict[str, dict[str, Tensor]], dict[str, float]] | None:
    """This rank's images r, r + P, ... of the first ``n``, gathered on rank 0:
    ``(detections by image id, summed seconds per stage)``; None on the other ranks."""
    mine: dict[str, dict[str, Tensor]] = {}
    totals: dict[str, float] = {}
    shown = progress and info.is_main
    device = detector_device(detector)
    for i in tqdm(
        shard_indices(n, info.rank, info.world_size), disable=not shown, desc="detect", unit="img"
    ):
        image_id = dataset.ids[i]
        image, _ = dataset[i]
        x = to_tensor(image).to(device)
        scored = detector.score_windows(x, proposals[image_id])
        t = time.perf_counter()
        mine[image_id] = postprocess_on_cpu(detector, scored, (x.shape[1], x.shape[2]))
        for stage, seconds in {**scored["timing"], "nms": time.perf_counter() - t}.items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    if info.distributed:
        gathered = all_gather_objects((mine, totals), info)
        if not info.is_main:
            return None
        for part, _ in gathered[1:]:
            mine.update(part)
        for _, part_totals in gathered[1:]:
            for stage, seconds in part_totals.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
    return mine, totals


def _write_outputs(
    out: Path,
    detections: dict[str, dict[str, Tensor]],
    class_names: Sequence[str],
    coco_records: list[dict[str, Any]],
    result: dict[str, Any],
) -> None:
    """VOC result files, COCO results, the AP table and the precision-recall plot."""
    write_voc_results(detections, out / "results", class_names)
    atomic_write_json(out / "coco_results.json", coco_records, indent=None)
    atomic_write_text(out / "ap_table.md", per_class_ap_table(result) + "\n")
    plot_precision_recall(result, out / "pr_curves.png")


def _rcnn_baseline(
    detector: Detector,
    dataset: VOCDetection,
    proposals: dict[str, Tensor],
    n: int,
    size: int,
    spp_detections: dict[str, dict[str, Tensor]],
    progress: bool,
) -> dict[str, Any]:
    """R-CNN on the first ``n`` images with the detector's own model, SVMs and regressors."""
    from sppnet.detection.rcnn import rcnn_pooled_features

    model = detector.model
    model.eval()
    device = detector_device(detector)
    dets: dict[str, dict[str, Tensor]] = {}
    rcnn_t = {"conv": 0.0, "fc": 0.0, "svm": 0.0, "nms": 0.0}
    spp_t = {"conv": 0.0, "pooling": 0.0, "fc": 0.0, "svm": 0.0, "nms": 0.0}
    for i in tqdm(range(n), disable=not progress, desc="R-CNN baseline", unit="img"):
        image_id = dataset.ids[i]
        image, _ = dataset[i]
        x = to_tensor(image).to(device)
        boxes = proposals[image_id].to(device)
        with torch.inference_mode():
            t0 = time.perf_counter()
            pooled = rcnn_pooled_features(model, subtract_mean(x, detector.mean), boxes, size=size)
            t1 = time.perf_counter()
            scored = detector.score_pooled(pooled, boxes)
            t2 = time.perf_counter()
            dets[image_id] = postprocess_on_cpu(detector, scored, (x.shape[1], x.shape[2]))
            t3 = time.perf_counter()
        rcnn_t["conv"] += t1 - t0
        rcnn_t["fc"] += scored["timing"]["fc"]
        rcnn_t["svm"] += scored["timing"]["svm"]
        rcnn_t["nms"] += t3 - t2
        # The SPP detector timed again on the same image, interleaved (fair on a VM
        # whose speed drifts).
        spp = detector.score_windows(x, boxes)
        t4 = time.perf_counter()
        postprocess_on_cpu(detector, spp, (x.shape[1], x.shape[2]))
        for stage, seconds in spp["timing"].items():
            spp_t[stage] += seconds
        spp_t["nms"] += time.perf_counter() - t4
    ids = list(dataset.ids[:n])
    annotations = _annotations(dataset, ids)
    rcnn_map = voc_detection_map(dets, annotations, class_names=dataset.class_names)["map"]
    spp_map = voc_detection_map(
        {k: spp_detections[k] for k in ids}, annotations, class_names=dataset.class_names
    )["map"]
    rcnn_t = {k: v / n for k, v in rcnn_t.items()}
    spp_t = {k: v / n for k, v in spp_t.items()}
    rcnn_t["total"], spp_t["total"] = sum(rcnn_t.values()), sum(spp_t.values())
    return {
        "images": n,
        "map": _finite(float(rcnn_map)),
        "spp_map": _finite(float(spp_map)),
        "timing": rcnn_t,
        "spp_timing": spp_t,
        "speedup": {
            "conv": rcnn_t["conv"] / max(spp_t["conv"], 1e-12),
            "total": rcnn_t["total"] / max(spp_t["total"], 1e-12),
        },
        "windows_per_image": float(np.mean([proposals[k].shape[0] for k in ids])),
    }
