"""Where the test views of a classifier lie in an image (Sec. 3.1.2, 3.1.5): pure geometry.

Shape shorthand: V views; boxes are ``Tensor[V, 4]`` float ``(x1, y1, x2, y2)`` in the
project's convention (0-based, continuous: a crop of pixels ``0..c-1`` is ``(0, 0, c, c)``).

Both functions take the size of the image AFTER the caller resized it (shorter side 256 for
the standard 10-view, shorter side ``s`` for multi-view testing on feature maps) and return
integer pixel positions, so a box is also an exact PIL crop. Rounding: a window that is
centred along an axis of length ``a`` starts at ``floor((a - crop) / 2)`` (one pixel nearer
the left/top edge when ``a - crop`` is odd); corner and side windows touch the image border.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["feature_map_view_boxes", "ten_view_boxes"]


def _check_size(width: object, height: object, crop: object) -> tuple[int, int, int]:
    for name, value in (("width", width), ("height", height), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int number of pixels, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1 pixel, got {value}")
    if width < crop or height < crop:  # type: ignore[operator]
        raise ValueError(
            f"a {crop}x{crop} view does not fit in a {width}x{height} (width x height) image; "
            f"resize the image so that its shorter side is at least {crop} first"
        )
    return width, height, crop  # type: ignore[return-value]


def _positions(size: int, crop: int) -> tuple[int, int, int]:
    """Start of the (first, centred, last) window along an axis of ``size`` pixels."""
    return 0, (size - crop) // 2, size - crop


def _view_starts(
    width: object, height: object, crop: object
) -> tuple[tuple[int, int, int], tuple[int, int, int], int]:
    """Check the sizes; the window starts along x and along y (as :func:`_positions`)."""
    width, height, crop = _check_size(width, height, crop)
    return _positions(width, crop), _positions(height, crop), crop


def _boxes(starts: list[tuple[int, int]], crop: int) -> Tensor:
    xy = torch.tensor(starts, dtype=torch.float32).reshape(-1, 2)  # [V, 2] top-left corners
    return torch.cat([xy, xy + crop], dim=1)  # [V, 4]


def ten_view_boxes(width: int, height: int, crop: int = 224) -> tuple[Tensor, Tensor]:
    """The standard 10 views (Sec. 3.1.2): center and 4 corners, each with and without flip.

    The corners are those of the ENTIRE image (as in training, Sec. 3.1), not of a central
    square. The image is expected to be resized already (shorter side 256 in the paper).

    Args:
        width: image width in pixels (after resizing).
        height: image height in pixels (after resizing).
        crop: side of the square views (224 in the paper).

    Returns:
        ``(boxes, flipped)``: ``Tensor[10, 4]`` float boxes and ``BoolTensor[10]``. Order:
        center, top-left, top-right, bottom-left, bottom-right, unflipped; then the same five
        boxes with ``flipped`` True, meaning the crop of that box is mirrored horizontally
        (equivalently, the mirrored box ``(W - x2, y1, W - x1, y2)`` of the flipped image).

    Raises:
        TypeError: non-integer sizes.
        ValueError: sizes below 1, or an image smaller than ``crop`` along either side.
    """
    (x0, xc, x1), (y0, yc, y1), crop = _view_starts(width, height, crop)
    five = _boxes([(xc, yc), (x0, y0), (x1, y0), (x0, y1), (x1, y1)], crop)  # [5, 4]
    flipped = torch.tensor([False] * 5 + [True] * 5)
    return torch.cat([five, five]), flipped


def feature_map_view_boxes(width: int, height: int, crop: int = 224) -> Tensor:
    """The distinct windows of multi-view testing on feature maps, at one scale (Sec. 3.1.5).

    The paper takes ``crop x crop`` windows "at the center, four at the corners, and four on
    the middle of each side" of the image resized to shorter side ``s``, each with and
    without flipping: 18 views per scale, "6 when s = 224". With one side equal to ``crop``
    some of the 9 positions coincide; identical boxes are returned once, so a 224 x L image
    (L > 224) gives 3 windows (6 with flips) and a square image of side ``crop`` gives 1.
    Flips are left to the caller: the flipped view of box ``(x1, y1, x2, y2)`` is the
    mirrored box ``(W - x2, y1, W - x1, y2)`` on the conv map of the flipped image.

    Args:
        width: image width in pixels at this scale.
        height: image height in pixels at this scale.
        crop: side of the square views (224 in the paper).

    Returns:
        ``Tensor[V, 4]`` float boxes, ``1 <= V <= 9``, in the order center, top-left,
        top-right, bottom-left, bottom-right, top-middle, bottom-middle, left-middle,
        right-middle, duplicates removed (the first occurrence is kept).

    Raises:
        TypeError: non-integer sizes.
        ValueError: sizes below 1, or an image smaller than ``crop`` along either side.
    """
    (x0, xc, x1), (y0, yc, y1), crop = _view_starts(width, height, crop)
    starts = [
        (xc, yc),
        (x0, y0),
        (x1, y0),
        (x0, y1),
        (x1, y1),
        (xc, y0),
        (xc, y1),
        (x0, yc),
        (x1, yc),
    ]
    return _boxes(list(dict.fromkeys(starts)), crop)
