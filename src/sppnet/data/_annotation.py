"""The annotation dict every detection dataset here holds per image, and the target of an item.

One format for VOC (:func:`~sppnet.data.voc.parse_voc_xml`) and COCO
(:class:`~sppnet.data.coco.CocoDetection`), so the engine reads both the same way.

Shape shorthand:
    K   number of objects in one image
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["make_annotation", "make_target"]


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
