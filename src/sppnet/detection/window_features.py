"""Conv maps of a whole image, computed once, and the pyramid of every window (Sec. 4.1).

The detector's feature path: resize the image so its shorter side is ``s`` (1 or 5 scales),
run the trunk once per scale, choose for each window the scale at which its area is
closest to 224x224, map the window onto that conv map (Appendix A) and pool the spatial
pyramid inside it. The result is the ``C * L`` vector fc6 takes, for every window, at the
cost of a handful of trunk passes instead of one per window (R-CNN).

Shape shorthand:
    R  number of windows
    C  conv5 channels
    L  pyramid bins, ``sum(n * n)`` over the levels (50 for ``(6, 3, 2, 1)``)
    S  number of scales
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sppnet.data.transforms import check_mean, resize_tensor, subtract_mean
from sppnet.detection.scales import DETECTION_SCALES_1, choose_window_scales, image_scale_factors
from sppnet.ops.boxes import check_boxes
from sppnet.ops.pyramid_bins import check_levels
from sppnet.ops.window_mapping import _map_checked_windows
from sppnet.ops.window_pyramid_pool import window_pyramid_pool

__all__ = [
    "ConvMaps",
    "assign_window_cells",
    "compute_conv_maps",
    "pool_checked_windows",
    "pool_windows",
    "window_levels",
]

# The no-SPP baseline's fc6 takes pool5's 6x6 grid: pooling a window with one 6x6 level
# gives exactly that layout (C, 6, 6).
_NO_SPP_LEVELS = (6,)


@dataclass
class ConvMaps:
    """Conv maps of one image at S scales.

    Attributes:
        image_size: ``(height, width)`` of the original image.
        factors: nominal resize factor per scale (``s / shorter side``).
        sizes: ``(height, width)`` of the resized image per scale (rounded).
        maps: ``Tensor[1, C, h, w]`` per scale, the trunk's last conv map.
    """

    image_size: tuple[int, int]
    factors: list[float]
    sizes: list[tuple[int, int]]
    maps: list[Tensor]


def window_levels(model: torch.nn.Module) -> tuple[int, ...]:
    """Pyramid levels matching ``model.fc6``: its SPP levels, or ``(6,)`` for no-SPP pool5."""
    levels = getattr(model, "spp_levels", None)
    return _NO_SPP_LEVELS if levels is None else tuple(levels)


def _pool_mode(model: torch.nn.Module) -> str:
    return getattr(model, "pool_mode", "max")


def compute_conv_maps(
    model: torch.nn.Module,
    image: Tensor,
    scales: Sequence[float] = DETECTION_SCALES_1,
    mean: float | Tensor = 128.0,
    max_long_side: float | None = None,
) -> ConvMaps:
    """Run the trunk once per scale on the whole image (Sec. 4.1).

    Args:
        model: an :class:`~sppnet.models.SPPNet` (anything with ``forward_features`` and
            ``min_input_size``).
        image: ``Tensor[3, H, W]`` float pixels 0..255 (see
            :func:`~sppnet.data.transforms.to_tensor`), on the model's device.
        scales: shorter-side lengths ``s`` (688, or 480..1200 for five scales).
        mean: the constant (or ``Tensor[3]``) subtracted after resizing, as in training.
        max_long_side: optional cap on the resized longer side (memory), see
            :func:`~sppnet.detection.image_scale_factors`.

    Returns:
        :class:`ConvMaps`; gradients flow into the maps when enabled (end-to-end training).

    Raises:
        TypeError: ``image`` is not a floating tensor.
        ValueError: ``image`` is not ``Tensor[3, H, W]``, or a resized image is smaller than
            the network's minimum input.
    """
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise TypeError(
            f"image must be a floating Tensor[3, H, W] of 0..255 pixels, got "
            f"{image.dtype if isinstance(image, Tensor) else type(image).__name__}"
        )
    if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"image must be Tensor[3, H, W], got shape {tuple(image.shape)}")
    mean = check_mean(mean)
    height, width = int(image.shape[1]), int(image.shape[2])
    factors = image_scale_factors(height, width, scales, max_long_side)
    minimum = int(getattr(model, "min_input_size", 1))
    sizes, maps = [], []
    for s, f in zip(scales, factors, strict=True):
        size = (max(1, round(height * f)), max(1, round(width * f)))
        if min(size) < minimum:
            raise ValueError(
                f"image of {height}x{width} resized for scale {s} is {size[0]}x{size[1]}, "
                f"smaller than the network's minimum input {minimum}x{minimum}"
            )
        x = subtract_mean(resize_tensor(image, size), mean)  # [3, h', w']
        maps.append(model.forward_features(x.unsqueeze(0)))  # [1, C, h, w]
        sizes.append(size)
    return ConvMaps((height, width), factors, sizes, maps)


def assign_window_cells(
    model: torch.nn.Module,
    image_size: tuple[int, int],
    factors: Sequence[float],
    sizes: Sequence[tuple[int, int]],
    map_sizes: Sequence[tuple[int, int]],
    boxes: Tensor,
) -> tuple[Tensor, Tensor]:
    """The scale of each window and its conv-map cells there (Sec. 4.1, Appendix A).

    Each window goes to the scale whose resized window area is closest to 224x224
    (:func:`~sppnet.detection.choose_window_scales`), is scaled into that resized image
    (per axis, by the rounded size) and mapped to conv cells with the model's stride and
    offset (:func:`~sppnet.ops.map_windows_to_features`). This is the geometry of
    :func:`pool_windows`; a cache of conv maps stores its result to pool windows later.

    Args:
        model: the network (``feature_stride``, ``feature_offset``).
        image_size: ``(height, width)`` of the original image.
        factors: nominal resize factor per scale (:class:`ConvMaps`).
        sizes: ``(height, width)`` of the resized image per scale.
        map_sizes: ``(h, w)`` of the conv map per scale.
        boxes: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)`` in original image pixels.

    Returns:
        ``(scale LongTensor[R], cells LongTensor[R, 4])``: the index into ``factors`` and
        the end-exclusive cells ``(x0, y0, x1, y1)`` on that scale's map, on the device of
        ``boxes``.

    Raises:
        TypeError, ValueError: bad boxes (see :func:`~sppnet.ops.check_boxes`).
    """
    check_boxes(boxes, "boxes")
    return _assign_checked_cells(model, (image_size, factors, sizes, map_sizes), boxes)


def _assign_checked_cells(
    model: torch.nn.Module, geometry: tuple[Any, Any, Any, Any], boxes: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`assign_window_cells` of boxes the caller already checked; ``geometry`` is
    ``(image_size, factors, sizes, map_sizes)``."""
    (height, width), factors, sizes, map_sizes = geometry
    b = boxes.detach().to(torch.float64)
    which = choose_window_scales(b, list(factors))  # [R]
    cells = torch.zeros((b.shape[0], 4), dtype=torch.long, device=b.device)
    for s, ((h, w), map_size) in enumerate(zip(sizes, map_sizes, strict=True)):
        rows = torch.nonzero(which == s).flatten()
        if rows.numel() == 0:
            continue
        scale = torch.tensor([w / width, h / height] * 2, dtype=torch.float64, device=b.device)
        cells[rows] = _map_checked_windows(
            b[rows] * scale, model.feature_stride, tuple(map_size), model.feature_offset
        )  # [R_s, 4]
    return which, cells


def pool_windows(
    model: torch.nn.Module,
    conv_maps: ConvMaps,
    boxes: Tensor,
    levels: Sequence[int] | None = None,
) -> Tensor:
    """Spatial pyramid of every window on its best scale's conv map (Sec. 4.1, App. A).

    Each window goes to its scale and cells (:func:`assign_window_cells`) and is pooled
    there (:func:`~sppnet.ops.window_pyramid_pool`).

    Args:
        model: the network the maps came from (``feature_stride``, ``feature_offset``).
        conv_maps: from :func:`compute_conv_maps`.
        boxes: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)`` in original image pixels.
        levels: pyramid levels; default :func:`window_levels` of the model.

    Returns:
        ``Tensor[R, C * L]`` in the row order of ``boxes``, differentiable with respect to
        the maps.

    Raises:
        TypeError, ValueError: bad boxes (see :func:`~sppnet.ops.check_boxes`) or levels.
    """
    check_boxes(boxes, "boxes")
    return pool_checked_windows(model, conv_maps, boxes, levels)


def pool_checked_windows(
    model: torch.nn.Module,
    conv_maps: ConvMaps,
    boxes: Tensor,
    levels: Sequence[int] | None = None,
) -> Tensor:
    """:func:`pool_windows` of boxes the caller already checked with
    :func:`~sppnet.ops.check_boxes` (a detector checks its proposals once, where they come
    in; the pooling and cell mapping below do not check them again)."""
    levels = check_levels(window_levels(model) if levels is None else levels)
    mode = _pool_mode(model)
    first = conv_maps.maps[0]
    n_win = boxes.shape[0]
    channels = first.shape[1]
    if n_win == 0:
        return first.new_zeros((0, channels * sum(n * n for n in levels)))
    map_sizes = [tuple(m.shape[-2:]) for m in conv_maps.maps]
    geometry = (conv_maps.image_size, conv_maps.factors, conv_maps.sizes, map_sizes)
    which, cells = _assign_checked_cells(model, geometry, boxes.detach().to(first.device))
    parts, order = [], []
    for s, fmap in enumerate(conv_maps.maps):
        rows = torch.nonzero(which == s).flatten()
        if rows.numel() == 0:
            continue
        parts.append(window_pyramid_pool(fmap, cells[rows], None, levels, mode))  # [R_s, C*L]
        order.append(rows)
    pooled = torch.cat(parts) if len(parts) > 1 else parts[0]
    rows = torch.cat(order) if len(order) > 1 else order[0]
    if len(parts) == 1:
        return pooled
    # Back to the row order of ``boxes`` (a gather, so autograd follows it).
    inverse = torch.empty_like(rows)
    inverse[rows] = torch.arange(n_win, device=rows.device)
    return pooled.index_select(0, inverse)
