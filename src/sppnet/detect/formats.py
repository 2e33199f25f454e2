"""The files ``sppnet detect --format`` and ``sppnet eval-det --format`` write: detections of
many images in common formats.

Boxes are in each original image's pixels (``(x1, y1, x2, y2)``, continuous, 0-based), the
score is the detector's (the SVM margin), ``prob`` the fc8 softmax where the detector has it.

- ``json``: ``OUT/<name>.json`` per image (:func:`~sppnet.detect.images.save_image_detections`;
  from ``eval-det``, the same record without the windows and timings);
- ``coco``: ``OUT/detections_coco.json``, one file: ``images`` (``id``, ``file_name``,
  ``width``, ``height``), ``categories`` (``id`` = label + 1) and ``annotations`` (COCO
  results: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``; plus ``id``,
  ``area`` and ``iscrowd`` 0, so pycocotools' ``COCO()`` opens the file as is and its
  ``annotations`` list is what ``COCO.loadRes`` takes);
- ``voc``: ``OUT/comp4_det_<split>_<class>.txt`` per class, the devkit's result files
  (``image_id score x1 y1 x2 y2``, 1-based inclusive pixels; the id is the output name,
  whitespace replaced by ``_``);
- ``yolo``: ``OUT/<name>.txt`` per image, a line ``class cx cy w h score`` per detection,
  centre and size divided by the image's width and height (the Ultralytics layout of
  predictions saved with confidences), class = label;
- ``csv``: ``OUT/detections.csv``, a row per detection: ``image, width, height, label,
  name, score, prob, x1, y1, x2, y2`` (``prob`` empty without one).

Shape shorthand: M detections of one image.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sppnet._atomic import atomic_write_text
from sppnet.detect.images import ImageDetections, detection_record

__all__ = ["FORMATS", "DetectionsWriter", "format_files", "write_dataset_detections"]

FORMATS = ("json", "coco", "voc", "yolo", "csv")
COCO_FILE = "detections_coco.json"
CSV_FILE = "detections.csv"
CSV_HEADER = ("image", "width", "height", "label", "name", "score", "prob", "x1", "y1", "x2", "y2")


def format_files(
    fmt: str, out: Path, names: Sequence[str], class_names: Sequence[str], split: str
) -> list[Path]:
    """The data files ``fmt`` writes into ``out`` for images of output ``names``."""
    if fmt == "json":
        return [out / f"{n}.json" for n in names]
    if fmt == "yolo":
        return [out / f"{n}.txt" for n in names]
    if fmt == "voc":
        return [out / f"comp4_det_{split}_{c}.txt" for c in class_names]
    return [out / (COCO_FILE if fmt == "coco" else CSV_FILE)]


def _original_boxes(result: ImageDetections) -> Tensor:
    """``Tensor[M, 4]``: the detections in the original image's pixels."""
    return result.detections["boxes"] / result.factor


class DetectionsWriter:
    """Collects each image's detections and writes them in one format (module docstring).

    Per-image formats (``yolo``) are written as each image arrives; whole-set formats
    (``coco``, ``voc``, ``csv``) by :meth:`close`, atomically. ``json`` is written by the
    caller with the picture (:func:`~sppnet.detect.images.save_image_detections`).

    Args:
        fmt: one of :data:`FORMATS`.
        out: the output folder (created when needed).
        class_names: the detector's K classes.
        split: the ``<split>`` of VOC's file names.
    """

    def __init__(
        self, fmt: str, out: Path, class_names: Sequence[str], split: str = "test"
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.fmt, self.out, self.split = fmt, Path(out), split
        self.class_names = list(class_names)
        self.images: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.voc: dict[str, dict[str, Tensor]] = {}

    def add(self, result: ImageDetections) -> list[Path]:
        """Take one image's detections; returns the files written now (``yolo``)."""
        height, width = result.original_size
        boxes = _original_boxes(result)
        dets = result.detections
        probs = dets.get("probs")
        image_id, first = len(self.images) + 1, len(self.rows)
        self.images.append({"id": image_id, "file_name": str(result.path), "width": width,
                            "height": height, "name": result.name})  # fmt: skip
        for i in range(len(dets["scores"])):
            self.rows.append({
                "image_id": image_id, "box": [float(v) for v in boxes[i]],
                "label": int(dets["labels"][i]), "score": float(dets["scores"][i]),
                "prob": None if probs is None else float(probs[i]),
            })  # fmt: skip
        if self.fmt == "voc":
            voc_id = "_".join(result.name.split())
            self.voc[voc_id] = {**{k: dets[k] for k in ("scores", "labels")}, "boxes": boxes}
        if self.fmt == "yolo":
            return [self._write_yolo(result.name, self.rows[first:], width, height)]
        return []

    def _write_yolo(self, name: str, rows: list[dict[str, Any]], width: int, height: int) -> Path:
        lines = []
        for row in rows:
            x1, y1, x2, y2 = row["box"]
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            w, h = (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{row['label']} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {row['score']:.6g}\n")
        path = self.out / f"{name}.txt"
        atomic_write_text(path, "".join(lines))
        return path

    def close(self) -> list[Path]:
        """Write the whole-set files; returns them."""
        if self.fmt == "voc":
            from sppnet.detect.voc_results import write_voc_results

            prefix = f"comp4_det_{self.split}_"
            return write_voc_results(self.voc, self.out, self.class_names, prefix=prefix)
        if self.fmt == "coco":
            path = self.out / COCO_FILE
            atomic_write_text(path, json.dumps(self._coco()) + "\n")
            return [path]
        if self.fmt == "csv":
            path = self.out / CSV_FILE
            atomic_write_text(path, self._csv())
            return [path]
        return []

    def _coco(self) -> dict[str, Any]:
        annotations = []
        for k, row in enumerate(self.rows, start=1):
            x1, y1, x2, y2 = row["box"]
            annotations.append({
                "id": k, "image_id": row["image_id"], "category_id": row["label"] + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": row["score"],
                **({} if row["prob"] is None else {"prob": row["prob"]}),
            })  # fmt: skip
        return {
            "info": {"description": "sppnet detect"},
            "images": [{k: v for k, v in im.items() if k != "name"} for im in self.images],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
            "annotations": annotations,
        }

    def _csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for row in self.rows:
            image = self.images[row["image_id"] - 1]
            writer.writerow([
                image["file_name"], image["width"], image["height"], row["label"],
                self.class_names[row["label"]], f"{row['score']:.6g}",
                "" if row["prob"] is None else f"{row['prob']:.6f}",
                *(f"{v:.2f}" for v in row["box"]),
            ])  # fmt: skip
        return buffer.getvalue()


def write_dataset_detections(
    detections: dict[str, dict[str, Tensor]],
    images: dict[str, tuple[Path, tuple[int, int]]],
    out: Path,
    fmt: str,
    class_names: Sequence[str],
    split: str,
) -> list[Path]:
    """``eval-det --format``: the detections of the evaluated images, in one format.

    Args:
        detections: ``{image_id: {"boxes": Tensor[M, 4], "scores", "labels"[, "probs"]}}``
            with boxes in the image's own pixels (what :func:`evaluate_detector` returns).
        images: ``{image_id: (image file, (height, width))}``.
        out: the folder to write (created).
        fmt: one of :data:`FORMATS`.
        class_names: the detector's K classes.
        split: the ``<split>`` of VOC's file names.

    Returns:
        The files written, in image order (per-image formats) or one per file.
    """
    from sppnet.visualize import save_json

    out.mkdir(parents=True, exist_ok=True)
    writer = DetectionsWriter(fmt, out, class_names, split)
    files: list[Path] = []
    for image_id, dets in detections.items():
        path, size = images[image_id]
        if fmt == "json":
            target = out / f"{image_id}.json"
            save_json(detection_record(dets, class_names, path, size), target)
            files.append(target)
            continue
        result = ImageDetections(
            path=Path(path), name=image_id, image=None, original_size=size,
            factor=torch.ones(4), detections=dets, windows=0, timing={},
        )  # fmt: skip
        files += writer.add(result)
    return files + writer.close()
