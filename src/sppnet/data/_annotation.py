"""The annotation dict every detection dataset here holds per image, and the target of an item.

One format for VOC (:func:`~sppnet.data.voc.parse_voc_xml`) and COCO
(:class:`~sppnet.data.coco.CocoDetection`), so the engine reads both the same way.

Shape shorthand:
    K   number of objects in one image
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sppnet.errors import UserError

__all__ = [
    "AnnotatedImages",
    "check_image_size",
    "fit_sizes",
    "make_annotation",
    "make_target",
]


def make_annotation(
    filename: str,
    width: int,
    height: int,
    objects: Sequence[Mapping[str, Any]],
    num_skipped: int = 0,
) -> dict[str, Any]:
    """The annotation dict of one image.

    Args:
        filename: the image file, relative to the dataset's image folder.
        width, height: the image size in pixels.
        objects: per object ``name`` (str), ``label`` (int), ``box`` (4 floats, our
            convention), ``difficult`` and ``truncated`` (bool).
        num_skipped: objects left out (degenerate boxes).

    Returns:
        ``filename``, ``width``, ``height``, ``boxes`` (``Tensor[K, 4]`` float32), ``labels``
        (``LongTensor[K]``), ``difficult``, ``truncated`` (``BoolTensor[K]``), ``names``
        (``list[str]``) and ``num_skipped``.
    """
    return {
        "filename": filename,
        "width": width,
        "height": height,
        "boxes": torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([o["label"] for o in objects], dtype=torch.int64),
        "difficult": torch.tensor([o["difficult"] for o in objects], dtype=torch.bool),
        "truncated": torch.tensor([o["truncated"] for o in objects], dtype=torch.bool),
        "names": [o["name"] for o in objects],
        "num_skipped": num_skipped,
    }


def make_target(annotation: Mapping[str, Any], image_id: str) -> dict[str, Any]:
    """The ``target`` of a dataset item: copies of the annotation's tensors, the id and the
    original ``size`` (``LongTensor[2]``, ``(height, width)``)."""
    return {
        "boxes": annotation["boxes"].clone(),
        "labels": annotation["labels"].clone(),
        "difficult": annotation["difficult"].clone(),
        "truncated": annotation["truncated"].clone(),
        "image_id": image_id,
        "size": torch.tensor([annotation["height"], annotation["width"]], dtype=torch.int64),
    }


def check_image_size(annotation: Mapping[str, Any], size: tuple[int, int], path: Path) -> None:
    """The decoded image must have the size its annotation records.

    Args:
        annotation: the image's annotation dict (``width``, ``height``).
        size: the decoded image's ``(width, height)`` (PIL's ``image.size``).
        path: the image file (named in the error).

    Raises:
        UserError: the sizes differ: the boxes were drawn on another picture.
    """
    width, height = size
    if (width, height) != (annotation["width"], annotation["height"]):
        raise UserError(
            f"{path} is {width} x {height} pixels but its annotation says "
            f"{annotation['width']} x {annotation['height']}: its boxes would not lie on this "
            "picture. Fix the annotation, or pass --fix-sizes (fix_sizes=True) to rescale "
            "the boxes to the real size"
        )


def fit_sizes(annotations: list[dict[str, Any]], paths: Sequence[Path], source: object) -> int:
    """Rescale each annotation whose recorded size differs from its image's header to the
    real size (boxes scaled by real / recorded per axis), with one warning.

    Args:
        annotations: annotation dicts, changed in place.
        paths: the image file of each.
        source: the dataset (named in the warning).

    Returns:
        How many annotations were rescaled.

    Raises:
        ImageDecodeError: an image header that cannot be read.
    """
    from sppnet.data.image_folder import read_image_size

    fixed = []
    for ann, path in zip(annotations, paths, strict=True):
        height, width = read_image_size(path)
        if (width, height) == (ann["width"], ann["height"]):
            continue
        scale = torch.tensor([width / ann["width"], height / ann["height"]] * 2)
        fixed.append(f"{path.name} {ann['width']}x{ann['height']} -> {width}x{height}")
        ann["boxes"] = ann["boxes"] * scale
        ann["width"], ann["height"] = width, height
    if fixed:
        shown = "; ".join(fixed[:3]) + ("; ..." if len(fixed) > 3 else "")
        warnings.warn(
            f"{source}: {len(fixed)} annotation(s) recorded another size than their image; "
            f"boxes rescaled to the real size ({shown})",
            stacklevel=3,
        )
    return len(fixed)


class AnnotatedImages:
    """What the detection datasets (VOC, COCO, YOLO) share: their length, each item's image
    file, and items ``(image, target)`` read with the same checks.

    A subclass sets ``root``, ``ids``, ``annotations`` (one :func:`make_annotation` dict per
    image), ``transform``, ``skip_bad`` and ``skipped``, and may override
    :meth:`image_folder` (where ``filename`` is relative to) and :meth:`check_item`.
    """

    root: Path
    ids: list[str]
    annotations: list[dict[str, Any]]
    transform: Any
    skip_bad: bool
    skipped: int

    def __len__(self) -> int:
        return len(self.ids)

    def image_folder(self) -> Path:
        """The folder every annotation's ``filename`` is relative to (``root``)."""
        return self.root

    def image_path(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self.image_folder() / self.annotations[index]["filename"]

    def check_item(self, index: int, size: tuple[int, int]) -> None:
        """Check the decoded image of item ``index`` (``size`` = (W, H)) against its
        annotation: the recorded size must be the file's (:func:`check_image_size`)."""
        check_image_size(self.annotations[index], size, self.image_path(index))

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        from sppnet.data.decode import ImageDecodeError, load_image

        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                image = load_image(self.image_path(i))
            except ImageDecodeError:
                if not self.skip_bad:
                    raise
                self.skipped += 1  # skip_bad: the next image takes its place
                continue
            self.check_item(i, image.size)
            target = make_target(self.annotations[i], self.ids[i])
            return (self.transform(image) if self.transform else image), target
        raise ImageDecodeError(self.image_folder(), "no readable image in the dataset")
