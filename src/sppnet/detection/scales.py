"""Image scales for detection and the per-window choice of scale (Sec. 4.1).

The conv maps of a whole image are computed once per scale: the image is resized so that
its shorter side is ``s``, with ``s = 688`` for the single-scale detector or
``s in {480, 576, 688, 864, 1200}`` for the 5-scale one. Each candidate window is then
pooled at the single scale whose resized window has an area closest to ``224 x 224``
(Sec. 4.1, "we choose a single scale s such that the scaled candidate window has a number
of pixels closest to 224x224").

Shape shorthand:
    R  number of candidate windows
    S  number of scales
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sppnet._validate import check_real
from sppnet.limits import check_resized_size
from sppnet.ops.boxes import check_boxes

__all__ = [
    "DETECTION_SCALES_1",
    "DETECTION_SCALES_5",
    "check_dataset_scales",
    "choose_window_scales",
    "image_scale_factors",
]

# Sec. 4.1: the single-scale detector resizes the shorter side to 688; the 5-scale one
# uses {480, 576, 688, 864, 1200}.
DETECTION_SCALES_1: tuple[int, ...] = (688,)
DETECTION_SCALES_5: tuple[int, ...] = (480, 576, 688, 864, 1200)

# Sec. 4.1: the pre-training input size; a window pooled near this size resembles the
# 224x224 crops the network was trained on.
_TARGET_AREA = 224 * 224


def image_scale_factors(
    height: int,
    width: int,
    scales: Sequence[float] = DETECTION_SCALES_1,
    max_long_side: float | None = None,
) -> list[float]:
    """Resize factor of an image for each detection scale (Sec. 4.1).

    The factor for scale ``s`` is ``s / min(height, width)``, so the resized shorter side
    is ``s``. With ``max_long_side`` set, a factor that would make the longer side exceed
    it is lowered to ``max_long_side / max(height, width)`` (a memory cap for very
    elongated images; the paper has none, so the default is ``None``). Factors keep the
    order of ``scales``. A resized image over the memory cap
    (:func:`~sppnet.limits.check_resized_size`) is refused here, before any pixel is
    resized.

    Args:
        height: image height in pixels, ``> 0``.
        width: image width in pixels, ``> 0``.
        scales: shorter-side lengths ``s``, each ``> 0``; at least one.
        max_long_side: optional cap on the resized longer side, ``> 0``.

    Returns:
        ``list[float]`` of ``len(scales)`` factors; the resized image is
        ``round(height * f) x round(width * f)`` (rounding is the caller's choice).

    Raises:
        TypeError: if a size, scale or the cap is not a real number.
        ValueError: if a size, scale or the cap is not positive and finite, or ``scales``
            is empty.
        sppnet.limits.ImageTooLargeError: (a ``ValueError``) a resized image over
            the memory cap.
    """
    h = check_real("height", height, positive=True)
    w = check_real("width", width, positive=True)
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
        raise TypeError(f"scales must be a sequence of numbers, got {type(scales).__name__}")
    if len(scales) == 0:
        raise ValueError("scales must hold at least one scale, got an empty sequence")
    values = [check_real("every scale", s, positive=True) for s in scales]
    cap = (
        None if max_long_side is None else check_real("max_long_side", max_long_side, positive=True)
    )
    short, long = min(h, w), max(h, w)
    factors = []
    for s in values:
        f = s / short
        if cap is not None and f * long > cap:
            f = cap / long
        resized = (max(1, round(h * f)), max(1, round(w * f)))
        check_resized_size(
            (round(h), round(w)), resized, f"resized for scale {s:g}",
            "use smaller --scales, or crop the image to a less elongated shape",
        )  # fmt: skip
        factors.append(f)
    return factors


def check_dataset_scales(
    dataset: Any,
    scales: Sequence[float],
    max_long_side: float | None = None,
    n: int | None = None,
) -> None:
    """Refuse, before any work, an image of ``dataset`` too large at one of ``scales``.

    Reads only the sizes the annotations give (``dataset.sizes``), nothing is decoded.

    Args:
        dataset: a detection dataset with ``sizes`` (``(height, width)`` per image) and
            ``image_path(i)``.
        scales: the detector's shorter-side scales.
        max_long_side: its cap on the resized longer side, if any.
        n: check only the first ``n`` images (all: None).

    Raises:
        sppnet.limits.ImageTooLargeError: an image over the memory cap at a scale;
            the message names its file.
    """
    from sppnet.limits import ImageTooLargeError

    sizes = list(dataset.sizes)[:n]
    for i, (height, width) in enumerate(sizes):
        try:
            image_scale_factors(height, width, scales, max_long_side)
        except ImageTooLargeError as err:
            raise err.at(dataset.image_path(i)) from None


def choose_window_scales(
    boxes: Tensor,
    factors: Sequence[float],
    target_area: float = _TARGET_AREA,
) -> Tensor:
    """Index of the scale at which each window's resized area is closest to ``target_area``.

    A window of area ``A`` (original image pixels) has area ``A * f**2`` in the image
    resized by ``f``; the chosen scale minimises ``|A * f**2 - target_area|`` (Sec. 4.1).
    Ties go to the smaller factor (the cheaper, coarser map), and between equal factors to
    the lower index. A zero-area window is equally far from the target at every scale and
    so gets the smallest factor.

    Args:
        boxes: ``Tensor[R, 4]`` windows in ORIGINAL image coordinates, ``(x1, y1, x2, y2)``;
            ``R`` may be 0.
        factors: ``S >= 1`` resize factors, e.g. from :func:`image_scale_factors`, each
            positive and finite; any order.
        target_area: the area to approach, in pixels; default ``224 * 224``.

    Returns:
        ``LongTensor[R]`` of indices into ``factors``, on the device of ``boxes``.

    Raises:
        TypeError, ValueError: see :func:`~sppnet.ops.check_boxes`; also for ``factors``
            empty or not positive finite numbers, or ``target_area`` not positive finite.
    """
    check_boxes(boxes)
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence):
        raise TypeError(f"factors must be a sequence of numbers, got {type(factors).__name__}")
    if len(factors) == 0:
        raise ValueError("factors must hold at least one factor, got an empty sequence")
    fs = [check_real("every factor", f, positive=True) for f in factors]
    target = check_real("target_area", target_area, positive=True)
    # float64: areas near 1e6 px times factors squared lose ties in float32.
    b = boxes.detach().to(torch.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # [R]
    # Visit factors in ascending order (stable), so argmin's first minimum is the smallest.
    order = sorted(range(len(fs)), key=lambda i: fs[i])
    f_sorted = torch.tensor([fs[i] for i in order], dtype=torch.float64, device=boxes.device)
    dist = (area[:, None] * f_sorted[None, :] ** 2 - target).abs()  # [R, S]
    if dist.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    best = torch.argmin(dist, dim=1)  # [R] position in the sorted order; first minimum
    lookup = torch.tensor(order, dtype=torch.long, device=boxes.device)
    return lookup[best]
