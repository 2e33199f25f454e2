"""Mapping image windows onto conv feature-map cells (Appendix A, "Mapping a Window").

A conv-map cell ``x'`` responds to an image region centred at ``offset + S * x'``, where
``S`` is the product of all strides before the map. With the paper's padding of
``floor(p / 2)`` for every layer of filter size ``p``, ``offset = 0``; other paddings
shift the centres, and the model says by how much (``SPPNet.feature_offset``).

A window's left (top) edge ``x1`` maps to the first cell whose centre lies right of it,
``floor((x1 - offset) / S) + 1``; its right (bottom) edge ``x2`` maps to the last cell whose
centre lies left of it, ``ceil((x2 - offset) / S) - 1``. A window narrower than ``S``
can contain no centre at all (first > last): it then gets the single cell nearest its
centre, ``round(((x1 + x2) / 2 - offset) / S)`` (halves round up). Cells are finally
clipped to the map, so every window maps to a non-empty rectangle of cells.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sppnet.ops.boxes import check_boxes

__all__ = ["map_windows_to_features"]


def _check_geometry(stride: float, feature_size: tuple[int, int], offset: float) -> tuple[int, int]:
    if isinstance(stride, bool) or not isinstance(stride, (int, float)) or not stride > 0:
        raise ValueError(f"stride must be a positive number (e.g. 16 for ZF-5), got {stride!r}")
    if not math.isfinite(stride):
        raise ValueError(f"stride must be finite, got {stride!r}")
    if (
        isinstance(offset, bool)
        or not isinstance(offset, (int, float))
        or not math.isfinite(offset)
    ):
        raise ValueError(f"offset must be a finite number of pixels, got {offset!r}")
    try:
        height, width = (int(v) for v in feature_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"feature_size must be (height, width) of the feature map, got {feature_size!r}"
        ) from None
    if (height, width) != tuple(feature_size) or height < 1 or width < 1:
        raise ValueError(
            f"feature_size must be two integers >= 1 (height, width), got {feature_size!r}"
        )
    return height, width


def _map_side(
    lo: Tensor, hi: Tensor, stride: float, offset: float, size: int
) -> tuple[Tensor, Tensor]:
    """First and last cell (inclusive) along one axis for edges ``lo <= hi`` (float64)."""
    first = torch.floor((lo - offset) / stride) + 1
    last = torch.ceil((hi - offset) / stride) - 1
    centre = torch.floor(((lo + hi) / 2 - offset) / stride + 0.5)
    narrow = first > last
    first = torch.where(narrow, centre, first).clamp(0, size - 1)
    last = torch.where(narrow, centre, last).clamp(0, size - 1)
    return first.long(), last.long()


def map_windows_to_features(
    boxes: Tensor,
    stride: float,
    feature_size: tuple[int, int],
    offset: float = 0.0,
) -> Tensor:
    """Map image windows to the feature-map cells they cover (Appendix A).

    Args:
        boxes: ``Tensor[R, 4]`` float ``(x1, y1, x2, y2)``, continuous 0-based image
            coordinates at the scale the features were computed.
        stride: ``S``, the product of the strides before the feature map (16 for ZF-5).
        feature_size: ``(height, width)`` of the feature map, in cells.
        offset: image position of the centre of cell 0 (0 for the paper's ``floor(p/2)``
            padding; the models give theirs as ``feature_offset``).

    Returns:
        ``LongTensor[R, 4]`` cells ``(x0, y0, x1, y1)``, end-exclusive, each a non-empty
        rectangle inside the map: ready for :func:`window_pyramid_pool`.
        Example: ``S = 16``, ``offset = 0``, image x from 100 to 300 gives cells 7..18,
        i.e. ``x0 = 7, x1 = 19``.

    Raises:
        TypeError: boxes are not a floating tensor.
        ValueError: boxes of the wrong shape, with NaN/inf or ``x2 < x1``; a non-positive
            stride; a bad feature size or offset.
    """
    check_boxes(boxes, "boxes")
    return _map_checked_windows(boxes, stride, feature_size, offset)


def _map_checked_windows(
    boxes: Tensor, stride: float, feature_size: tuple[int, int], offset: float = 0.0
) -> Tensor:
    """:func:`map_windows_to_features` of boxes the caller already checked (the detection
    path checks its proposals once, where they come in, not again for every scale)."""
    height, width = _check_geometry(stride, feature_size, offset)
    b = boxes.to(torch.float64)  # float64: x / S must not round across an integer
    x0, x1 = _map_side(b[:, 0], b[:, 2], float(stride), float(offset), width)
    y0, y1 = _map_side(b[:, 1], b[:, 3], float(stride), float(offset), height)
    return torch.stack([x0, y0, x1 + 1, y1 + 1], dim=1)
