"""COCO JSON detection data: a dataset over an annotation file, and a COCO dict from any
detection dataset (the ground truth of COCO evaluation, and ``sppnet convert voc2coco``).

COCO (``instances_*.json``)::

    {"images": [{"id": 397133, "file_name": "000000397133.jpg", "width": 640, "height": 427}],
     "annotations": [{"id": 1, "image_id": 397133, "category_id": 18, "iscrowd": 0,
                      "bbox": [x, y, w, h], "area": ...}],
     "categories": [{"id": 18, "name": "dog"}]}

Box convention: COCO's ``[x, y, w, h]`` are continuous pixel coordinates with
the origin at the image's top-left corner, the project's own convention, so
``(x1, y1, x2, y2) = (x, y, x + w, y + h)`` with nothing added or subtracted (unlike VOC's
1-based inclusive pixels). ``iscrowd`` regions play the part of VOC's ``difficult`` objects:
neither a hit nor a miss in evaluation, left out of the fine-tuning positives.

Category ids (1..90 with gaps in COCO) are mapped to contiguous labels ``0..K-1`` in the order
of the ids (or of the ``classes`` given), and back with :attr:`CocoDetection.category_ids`.

Shape shorthand:
    K   number of objects in one image
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sppnet.data._annotation import (
    AnnotatedImages,
    fit_sizes,
    make_annotation,
)
from sppnet.data._paths import inside_root

__all__ = ["CocoDetection", "coco_ground_truth"]

# A box may stick out of the image by at most this many pixels; it is then clipped (as VOC).
_OUTSIDE_TOLERANCE = 1.0


def _err(path: Path, what: str) -> ValueError:
    return ValueError(f"invalid COCO annotation file {path}: {what}")


def _int(entry: dict, key: str, path: Path, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(path, f"{where} needs an integer {key!r}, got {value!r}")
    return value


def _records(data: object, key: str, path: Path) -> list[dict]:
    if not isinstance(data, dict):
        raise _err(path, f"the top level must be a JSON object, got {type(data).__name__}")
    records = data.get(key)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _err(path, f"{key!r} must be a list of objects (got {type(records).__name__})")
    return records


def _load(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no COCO annotation file {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise _err(path, f"cannot be read ({err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _err(path, f"not valid JSON ({err})") from None


def _read_categories(cats: list[dict], path: Path) -> dict[int, str]:
    """COCO category id -> name (distinct ids, distinct non-empty names)."""
    category_names: dict[int, str] = {}
    for i, cat in enumerate(cats):
        cid = _int(cat, "id", path, f"categories[{i}]")
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _err(path, f"categories[{i}] (id {cid}) needs a non-empty 'name'")
        if cid in category_names:
            raise _err(path, f"category id {cid} appears twice")
        category_names[cid] = name.strip()
    if len(set(category_names.values())) != len(category_names):
        raise _err(path, f"category names must be distinct, got {list(category_names.values())}")
    return category_names


def _read_images(images: list[dict], path: Path) -> dict[int, dict[str, Any]]:
    """Image id -> ``{file_name, width, height, objects: []}``, in file order."""
    records: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(images):
        iid = _int(img, "id", path, f"images[{i}]")
        where = f"images[{i}] (id {iid})"
        name = img.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise _err(path, f"{where} needs a 'file_name'")
        width, height = _int(img, "width", path, where), _int(img, "height", path, where)
        if width <= 0 or height <= 0:
            raise _err(path, f"{where} must have a positive size, got {width} x {height}")
        if iid in records:
            raise _err(path, f"image id {iid} appears twice")
        records[iid] = {"file_name": name, "width": width, "height": height, "objects": []}
    return records


class CocoDetection(AnnotatedImages, torch.utils.data.Dataset):
    """A COCO-format detection dataset: one annotation file and a folder of images.

    The file is read and checked when the dataset is built. Images without annotations are
    kept (no objects: every detection on them is a false positive).

    Bad-file policy (``skip_bad``): with ``skip_bad=False`` a bad annotation or a missing image
    raises at construction, naming the annotation id / image; with ``skip_bad=True`` the
    images concerned are dropped (their ids in ``skipped_ids``), and an image that cannot be
    decoded is replaced by the next one in ``__getitem__``. A malformed file (not JSON,
    missing lists, bad image or category records, an annotation of an unknown image id) is
    always an error.

    Attributes:
        ids: image ids as strings (``str`` of the COCO id: file names of caches), file order.
        coco_ids: the COCO image id (int) of each item.
        class_names: class names; label ``i`` is ``class_names[i]``.
        class_to_idx: name -> label.
        category_ids: the COCO category id of each label (``None`` for a class the file has
            no category of, possible only with ``classes``).
        category_to_label: COCO category id -> label.
        annotations: per item, the dict :func:`~sppnet.data.voc.parse_voc_xml` returns
            (``filename``, ``width``, ``height``, ``boxes``, ``labels``, ``difficult`` =
            ``iscrowd``, ``truncated`` (all False), ``names``, ``num_skipped`` 0).
        sizes: ``(height, width)`` of each image.
        skipped, skipped_ids: see the policy above.
        resized: how many annotations ``fix_sizes`` rescaled to their image's real size. An
            image whose decoded size differs from its record is otherwise an error when it
            is read.

    ``dataset[i]`` returns ``(image, target)`` as :class:`~sppnet.data.voc.VOCDetection`.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        *,
        classes: Sequence[str] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        skip_bad: bool = False,
        fix_sizes: bool = False,
    ) -> None:
        """Read and check a COCO annotation file.

        Args:
            annotation_file: the ``.json`` file.
            image_dir: the folder the ``file_name`` of each image is relative to.
            classes: class names in label order; ``None``: the category names in the
                order of their ids. Every category an annotation uses must be among them.
            transform: applied to the PIL image only.
            skip_bad: the bad-file policy of the class docstring.
            fix_sizes: read each image's header now and rescale the boxes of an image whose
                ``width`` / ``height`` differ from it, with a warning. Without it, an image
                whose decoded size differs is an error when it is read.

        Raises:
            FileNotFoundError: no annotation file, no image folder, or (without
                ``skip_bad``) an image file that is not there, naming it.
            ValueError: naming the file and the record: not JSON, no ``images`` /
                ``annotations`` / ``categories`` list, an image without an integer id,
                a ``file_name`` or a positive size, repeated ids, a category outside
                ``classes``, an annotation of an image id not in ``images``, and (without
                ``skip_bad``) an annotation of an unknown category, a ``bbox`` that is not 4
                finite numbers, of zero or negative width or height, or outside the image by
                more than a pixel.
            sppnet.data.OutsideRootError: (a ``ValueError``, even with ``skip_bad``) a
                ``file_name`` that leads outside ``image_dir`` (absolute, ``..``, a symbolic
                link), naming the image id.
        """
        path = Path(annotation_file)
        self.annotation_file = path
        self.root = Path(image_dir)
        self.split = path.stem
        self.transform = transform
        self.skip_bad = skip_bad
        if not self.root.is_dir():
            raise FileNotFoundError(f"no image folder {self.root} (for {path})")
        data = _load(path)
        images, anns, cats = (
            _records(data, k, path) for k in ("images", "annotations", "categories")
        )
        category_names = _read_categories(cats, path)
        self._set_classes(category_names, classes)
        records = _read_images(images, path)
        bad = self._read_objects(anns, records, category_names, path)
        self._keep_images(records, bad, path)
        self.resized = 0  # annotations whose boxes fix_sizes rescaled
        if fix_sizes:
            paths = [self.image_path(i) for i in range(len(self))]
            self.resized = fit_sizes(self.annotations, paths, path)
        self.skipped = len(self.skipped_ids)
        self.sizes = [(a["height"], a["width"]) for a in self.annotations]

    def _set_classes(self, category_names: dict[int, str], classes: Sequence[str] | None) -> None:
        """``class_names``, ``class_to_idx``, ``category_ids`` and ``category_to_label``."""
        if classes is None:
            self.class_names = [category_names[c] for c in sorted(category_names)]
        else:
            self.class_names = list(classes)
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"classes must be distinct and non-empty, got {self.class_names}")
        self.class_to_idx = {name: i for i, name in enumerate(self.class_names)}
        by_name = {name: cid for cid, name in category_names.items()}
        self.category_ids: list[int | None] = [by_name.get(n) for n in self.class_names]
        self.category_to_label = {
            cid: self.class_to_idx[n] for cid, n in category_names.items() if n in self.class_to_idx
        }

    def _read_objects(
        self,
        anns: list[dict],
        records: dict[int, dict[str, Any]],
        category_names: dict[int, str],
        path: Path,
    ) -> dict[int, str]:
        """Append each annotation's object to its image's record.

        Returns:
            Image id -> the first problem found in its annotations (``skip_bad`` only).
        """
        bad: dict[int, str] = {}
        for i, ann in enumerate(anns):
            where = f"annotations[{i}] (id {ann.get('id')!r})"
            iid = ann.get("image_id")
            if isinstance(iid, bool) or iid not in records:
                raise _err(path, f"{where} names image_id {iid!r}, which is not in 'images'")
            try:
                records[iid]["objects"].append(self._object(ann, records[iid], category_names))
            except ValueError as err:
                if not self.skip_bad:
                    raise _err(path, f"{where} of image {iid}: {err}") from None
                bad.setdefault(iid, str(err))
        return bad

    def _keep_images(
        self, records: dict[int, dict[str, Any]], bad: dict[int, str], path: Path
    ) -> None:
        """``ids``, ``coco_ids``, ``annotations`` of the good images (their files exist),
        ``skipped_ids`` of the others."""
        self.ids: list[str] = []
        self.coco_ids: list[int] = []
        self.annotations: list[dict[str, Any]] = []
        self.skipped_ids: list[str] = []
        for iid, rec in records.items():
            file = inside_root(
                self.root, rec["file_name"], source=path, record=f"image id {iid}'s file_name"
            )
            if iid not in bad and not file.is_file():
                if not self.skip_bad:
                    raise FileNotFoundError(f"no image {file} (image id {iid} of {path})")
                bad[iid] = "missing image"
            if iid in bad:
                self.skipped_ids.append(str(iid))
                continue
            objects = [
                {"box": box, "label": label, "difficult": crowd, "truncated": False,
                 "name": self.class_names[label]}
                for box, label, crowd in rec["objects"]
            ]  # fmt: skip
            self.ids.append(str(iid))
            self.coco_ids.append(iid)
            self.annotations.append(
                make_annotation(rec["file_name"], rec["width"], rec["height"], objects)
            )

    def _object(
        self, ann: dict, image: dict[str, Any], category_names: dict[int, str]
    ) -> tuple[list[float], int, bool]:
        """``(box xyxy, label, iscrowd)`` of one annotation record; ValueError if bad."""
        cid = ann.get("category_id")
        if isinstance(cid, bool) or cid not in category_names:
            raise ValueError(f"category_id {cid!r} is not in 'categories'")
        if cid not in self.category_to_label:
            raise ValueError(
                f"category {category_names[cid]!r} (id {cid}) is not one of the classes "
                f"{self.class_names}"
            )
        box = ann.get("bbox")
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            or not all(math.isfinite(v) for v in box)
        ):
            raise ValueError(f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}")
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0:
            raise ValueError(f"bbox {box} has zero or negative width or height")
        # COCO's [x, y, w, h] is already continuous, origin at the corner: no shift (module doc)
        x1, y1, x2, y2 = x, y, x + w, y + h
        width, height, tol = image["width"], image["height"], _OUTSIDE_TOLERANCE
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            raise ValueError(
                f"bbox {box} lies outside the {width} x {height} image by more than {tol:g} pixel"
            )
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"bbox {box} has zero area inside the image")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            raise ValueError(f"iscrowd must be 0 or 1, got {crowd!r}")
        return [x1, y1, x2, y2], self.category_to_label[cid], bool(crowd)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(annotation_file={str(self.annotation_file)!r}, "
            f"image_dir={str(self.root)!r}, images={len(self)}, "
            f"classes={len(self.class_names)}, skipped={self.skipped})"
        )


def coco_ground_truth(dataset: Any, indices: Sequence[int] | None = None) -> dict[str, Any]:
    """A COCO annotation dict of a detection dataset (VOC layout or COCO).

    Image ids are the dataset's COCO ids (:class:`CocoDetection`) or ``1..N`` in dataset order
    (VOC layout); category ids are the dataset's (``category_ids``) or ``label + 1``. VOC's
    ``difficult`` becomes ``iscrowd: 1``; ``area`` is the box's area (COCO's own files store
    the segment's area: only the small / medium / large split, not AP, AP50 or AP75, uses it).
    Coordinates are rounded to 1/1000 pixel.

    Args:
        dataset: a :class:`CocoDetection` or :class:`~sppnet.data.voc.VOCDetection` (anything
            with ``ids``, ``annotations`` and ``class_names``).
        indices: only these items (default all), e.g. the images evaluated.

    Returns:
        ``{"images", "annotations", "categories"}``, ready for ``json.dump`` or pycocotools.
    """
    n = len(dataset.ids)
    indices = range(n) if indices is None else indices
    coco_ids = getattr(dataset, "coco_ids", None) or list(range(1, n + 1))
    cat_ids = getattr(dataset, "category_ids", None) or list(range(1, len(dataset.class_names) + 1))
    images, anns = [], []
    for i in indices:
        ann = dataset.annotations[i]
        images.append(
            {
                "id": coco_ids[i],
                "file_name": ann["filename"],
                "width": ann["width"],
                "height": ann["height"],
            }
        )
        for box, label, crowd in zip(
            ann["boxes"].tolist(), ann["labels"].tolist(), ann["difficult"].tolist(), strict=True
        ):
            x1, y1, x2, y2 = (round(v, 3) for v in box)
            w, h = round(x2 - x1, 3), round(y2 - y1, 3)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": coco_ids[i],
                    "category_id": cat_ids[label],
                    "bbox": [x1, y1, w, h],
                    "area": round(w * h, 3),
                    "iscrowd": int(crowd),
                }
            )
    categories = [
        {"id": cid, "name": name}
        for cid, name in zip(cat_ids, dataset.class_names, strict=True)
        if cid is not None
    ]
    return {"images": images, "annotations": anns, "categories": categories}
