"""The demo's pictures: training curves, precision-recall, detections, the pyramid's bins."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sppnet._atomic import atomic_write_bytes
from sppnet.demo.config import DemoConfig
from sppnet.detect.data import keep_first_images
from sppnet.engine.json_io import read_json


def _draw_detections(root: Path, voc: str, n: int, pictures: Path) -> list[str]:
    """The first ``n`` test scenes with their detections and ground truth; the file names."""
    from sppnet.data.voc import VOCDetection
    from sppnet.visualize import draw_detections

    test_dir = root / "detection" / "test"
    test = keep_first_images(VOCDetection(voc, "test"), n)
    stored = read_json(test_dir / "detections.json")
    by_id = {entry["image"]: entry for entry in stored["images"]}
    names = stored["class_names"]
    drawn = []
    for i, image_id in enumerate(test.ids):
        image, target = test[i]
        rows = by_id[image_id]["detections"]
        dets = {
            "boxes": np.asarray([r["box"] for r in rows], dtype=np.float64).reshape(-1, 4),
            "scores": np.asarray([r["score"] for r in rows], dtype=np.float64),
            "labels": np.asarray([r["label"] for r in rows], dtype=np.int64),
        }
        gt = {"boxes": target["boxes"], "labels": target["labels"] + 1}
        path = pictures / f"detections_{image_id}.png"
        # Every detection on the SVM's "object" side (score > 0), and at least the best
        # three: a weak detector's picture should still show what it ranks first.
        ranked = np.sort(dets["scores"])[::-1]
        threshold = min(0.0, float(ranked[min(2, len(ranked) - 1)])) if len(ranked) else 0.0
        draw_detections(
            image, dets, names, path, score_threshold=threshold, max_boxes=10, ground_truth=gt
        )
        drawn.append(path.name)
    return drawn


def _pictures_stage(
    root: Path,
    voc: str,
    data: str,
    config: DemoConfig,
    train_runs: Mapping[str, Mapping[str, Any]],
    detection: Mapping[str, Any],
) -> dict[str, Any]:
    """Write every picture under ``root/pictures``; their file names, by kind."""
    from sppnet.data import ImageFolder
    from sppnet.engine.checkpoint import load_classifier
    from sppnet.visualize import draw_pyramid_bins, plot_training_curves

    pictures = root / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}

    loss_file = root / "detection" / "train" / "finetune" / "loss.json"
    finetune_loss = read_json(loss_file) if loss_file.is_file() else []
    curves = pictures / "training_curves.png"
    plot_training_curves(
        curves, {name: run["history"] for name, run in train_runs.items()}, finetune_loss
    )
    written["training_curves"] = curves.name

    test_dir = root / "detection" / "test"
    pr = pictures / "precision_recall.png"
    atomic_write_bytes(pr, (test_dir / "pr_curves.png").read_bytes())
    written["precision_recall"] = pr.name

    written["detections"] = _draw_detections(root, voc, config.detection_pictures, pictures)

    model, _ = load_classifier(root / train_runs["SPP"]["run"], "best")
    image, _ = ImageFolder(data, split="test")[0]
    bins = pictures / "pyramid_bins.png"
    draw_pyramid_bins(image, model, path=bins, sizes=(config.small_crop, config.crop))
    written["pyramid_bins"] = bins.name
    # Each run's own curves (train / val error and loss per epoch) are kept beside it.
    for name, run in train_runs.items():
        own = root / run["run"] / "curves.png"
        if own.is_file():
            copy = pictures / f"curves_{name.replace(' ', '_').replace('-', '_').lower()}.png"
            shutil.copyfile(own, copy)
            written[f"curves_{name}"] = copy.name
    return written
