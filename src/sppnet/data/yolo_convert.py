"""Conversions between the YOLO layout and VOC / COCO (``sppnet convert yolo2voc`` ...).

``voc2yolo`` / ``coco2yolo``: a VOC split or a COCO file becomes one split of a YOLO root:
``images/<split>/`` (hard links where the file system allows, else copies),
``labels/<split>/<stem>.txt`` and ``data.yaml`` (``names``; a root that already has a
``data.yaml`` keeps it and gains the split, if its names are the same). Split ``all`` writes
a flat root (``images/``, ``labels/``). Boxes are written as fractions with 10 significant
digits, so reading them back gives the same pixels to far below a millionth of one. YOLO
has no ``difficult`` flag: VOC's difficult objects and COCO's crowd regions are written as
ordinary objects.

``yolo2voc``: a YOLO split becomes a VOC-layout root (``Annotations/<stem>.xml``,
``ImageSets/Main/<split>.txt``, ``classes.txt``, ``JPEGImages``); VOC stores whole pixels,
so a fractional box grows to the smallest pixel box holding it (by < 1 px a side).
``yolo2coco``: a YOLO split becomes a COCO annotation file whose ``file_name`` values are
relative to the YOLO root (pass the root as ``--images``).

So VOC -> YOLO -> VOC gives back every box (to the pixel) and every class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sppnet._atomic import atomic_link_or_copy, atomic_write_json, atomic_write_text
from sppnet.data.coco import CocoDetection, coco_ground_truth
from sppnet.data.voc import VOCDetection, write_voc_xml
from sppnet.data.yolo import (
    ALL_SPLIT,
    YoloDetection,
    read_yolo_names,
    yolo_label_lines,
    yolo_names_yaml,
)
from sppnet.errors import UserError

__all__ = ["coco_to_yolo", "voc_to_yolo", "write_voc_root", "write_yolo_split", "yolo_to_coco",
           "yolo_to_voc"]  # fmt: skip


def _check_split(split: str) -> str:
    if not split or Path(split).name != split or split.startswith("."):
        raise UserError(f"--split {split!r} must be a plain name such as 'train'")
    return split


def _unique_stems(dataset: Any, source: str) -> list[str]:
    stems: dict[str, str] = {}
    for ann in dataset.annotations:
        stem = Path(ann["filename"]).stem
        if stem in stems:
            raise UserError(
                f"{source}: images {stems[stem]!r} and {ann['filename']!r} have the same file "
                f"stem {stem!r}; the written layout names each image by its stem alone"
            )
        stems[stem] = ann["filename"]
    return list(stems)


def _place_image(src: Path, dst: Path) -> None:
    if dst.exists() and src.resolve() == dst.resolve():
        return
    atomic_link_or_copy(src, dst)


def _summary(dataset: Any, objects: int, where: Path) -> dict[str, Any]:
    return {"images": len(dataset), "objects": objects, "classes": list(dataset.class_names),
            "root": str(where)}  # fmt: skip


def write_yolo_split(dataset: Any, out_root: str | Path, split: str, source: str) -> dict[str, Any]:
    """Write a detection dataset as one split of a YOLO root (module docstring).

    Args:
        dataset: a VOC, COCO or YOLO dataset (``annotations``, ``class_names``,
            ``image_path(i)``).
        out_root: the YOLO root (created).
        split: the split folder; ``"all"`` writes a flat root.
        source: what the data came from, for error messages.

    Returns:
        ``{"images", "objects", "classes", "root"}``.

    Raises:
        UserError: two images with the same stem, a bad split name, or a ``data.yaml``
            there already with other class names.
    """
    root = Path(out_root)
    sub = "" if _check_split(split) == ALL_SPLIT else f"/{split}"
    if (root / "data.yaml").is_file():
        names = read_yolo_names(root)
        if names is not None and names != list(dataset.class_names):
            raise UserError(
                f"{root / 'data.yaml'} names the classes {names}, the data converted has "
                f"{list(dataset.class_names)}; write to another --out"
            )
    _unique_stems(dataset, source)
    objects = 0
    for i, ann in enumerate(dataset.annotations):
        name = Path(ann["filename"]).name
        lines = yolo_label_lines(
            ann["boxes"].tolist(), ann["labels"].tolist(), ann["width"], ann["height"]
        )
        objects += len(lines)
        label_file = root / f"labels{sub}" / f"{Path(name).stem}.txt"
        atomic_write_text(label_file, "".join(f"{line}\n" for line in lines))
        _place_image(dataset.image_path(i), root / f"images{sub}" / name)
    splits = {} if split == ALL_SPLIT else {split: f"images/{split}"}
    if (root / "data.yaml").is_file():
        import yaml

        old = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8")) or {}
        splits = {k: v for k, v in old.items() if k not in ("path", "nc", "names")} | splits
    atomic_write_text(root / "data.yaml", yolo_names_yaml(dataset.class_names, splits))
    return _summary(dataset, objects, root)


def write_voc_root(dataset: Any, out_root: str | Path, split: str, source: str) -> dict[str, Any]:
    """Write a detection dataset as a VOC-layout root (module docstring of ``yolo2voc``).

    Args:
        dataset: a detection dataset (``annotations``, ``class_names``, ``image_path(i)``).
        out_root: the VOC root (created; files of the same names are replaced).
        split: the split file written (``ImageSets/Main/<split>.txt``).
        source: what the data came from, for error messages.

    Returns:
        ``{"images", "objects", "classes", "root"}``.

    Raises:
        UserError: two images with the same stem, or a bad split name.
    """
    root = Path(out_root)
    _check_split(split)
    stems = _unique_stems(dataset, source)
    objects = 0
    for i, ann in enumerate(dataset.annotations):
        name = Path(ann["filename"]).name
        objs = [
            {"name": dataset.class_names[label], "box": box, "difficult": crowd}
            for box, label, crowd in zip(
                ann["boxes"].tolist(), ann["labels"].tolist(), ann["difficult"].tolist(),
                strict=True,
            )
        ]  # fmt: skip
        objects += len(objs)
        write_voc_xml(root / "Annotations" / f"{Path(name).stem}.xml", filename=name,
                      width=ann["width"], height=ann["height"], objects=objs)  # fmt: skip
        _place_image(dataset.image_path(i), root / "JPEGImages" / name)
    atomic_write_text(
        root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{s}\n" for s in stems)
    )
    atomic_write_text(root / "classes.txt", "".join(f"{c}\n" for c in dataset.class_names))
    return _summary(dataset, objects, root)


def voc_to_yolo(root: str | Path, split: str, out_root: str | Path, *,
                classes: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """One VOC split -> one split (same name) of a YOLO root. See :func:`write_yolo_split`."""
    dataset = VOCDetection(root, split, classes=classes)
    return write_yolo_split(dataset, out_root, split, f"{root} ({split})")


def coco_to_yolo(annotation_file: str | Path, image_dir: str | Path, out_root: str | Path, *,
                 split: str = ALL_SPLIT) -> dict[str, Any]:  # fmt: skip
    """A COCO file -> one split of a YOLO root. See :func:`write_yolo_split`."""
    dataset = CocoDetection(annotation_file, image_dir)
    return write_yolo_split(dataset, out_root, split, str(annotation_file))


def yolo_to_voc(root: str | Path, split: str, out_root: str | Path, *,
                classes: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """One YOLO split -> a VOC-layout root (split file of the same name; ``all`` for a flat
    root). See :func:`write_voc_root`."""
    dataset = YoloDetection(root, split, classes=classes)
    return write_voc_root(dataset, out_root, split, f"{root} ({split})")


def yolo_to_coco(root: str | Path, split: str, out_file: str | Path, *,
                 classes: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """One YOLO split -> a COCO annotation file (``file_name`` relative to the YOLO root).

    Returns:
        ``{"images", "objects", "classes", "root"}`` (``root``: the file written).
    """
    dataset = YoloDetection(root, split, classes=classes)
    coco = coco_ground_truth(dataset)
    info = {"description": f"{Path(root).name} {split}, converted by sppnet from YOLO labels"}
    atomic_write_json(out_file, {"info": info, **coco}, indent=1)
    return _summary(dataset, len(coco["annotations"]), Path(out_file))
