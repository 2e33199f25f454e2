"""The R-CNN baseline on the same network: warp every window, run the trunk once per window.

SPP-net's detection speed is measured against R-CNN (Sec. 4.3, Tables 9-10), which crops
each candidate window out of the image, warps it anisotropically to a fixed size (224x224
for our networks, 227x227 in R-CNN) and runs the whole network on it. Here the same
:class:`~sppnet.models.SPPNet` serves both: :func:`rcnn_pooled_features` gives the ``C * L``
vector fc6 takes, exactly as :func:`~sppnet.detection.pool_windows` does for the shared
conv maps, so the two paths differ only in where the convolutions run.

Warping (as R-CNN): output sample ``(i, j)`` of a window ``(x1, y1, x2, y2)`` warped to
``size x size`` lies at the continuous image point

    x = x1 + (j + 0.5) * (x2 - x1) / size,    y = y1 + (i + 0.5) * (y2 - y1) / size,

i.e. at pixel-index coordinates ``(x - 0.5, y - 0.5)`` (pixel ``k`` covers ``[k, k + 1)``),
and takes the bilinear interpolation of the four nearest pixels there, with the index
clamped to the image (replicated border). With ``context_pad = p > 0`` the box is first
enlarged about its centre by ``size / (size - 2p)``, so that the original box fills the
central ``(size - 2p)^2`` of the output and ``p`` pixels of context surround it (R-CNN's
"padding" of 16 at 227); points of the enlarged box that fall outside the image,
``x < 0 or x >= W or y < 0 or y >= H``, take the value 0, the mean after mean subtraction
(R-CNN pastes the warped in-image part onto a mean-coloured canvas).

Shape shorthand:
    R  number of windows
    C  conv5 channels
    L  pyramid bins (50 for ``(6, 3, 2, 1)``; 36 for the no-SPP pool5)
    D  fc7 width
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sppnet._validate import check_int
from sppnet.ops.boxes import check_boxes

__all__ = ["rcnn_pooled_features", "rcnn_window_features", "warp_windows"]


def _check_warp_inputs(
    image: object, boxes: object, size: object, context_pad: object
) -> tuple[Tensor, int, int]:
    """The checks :func:`warp_windows` and :func:`rcnn_pooled_features` share, in order."""
    if not isinstance(image, Tensor) or not image.is_floating_point():
        got = image.dtype if isinstance(image, Tensor) else type(image).__name__
        raise TypeError(f"image must be a floating Tensor[3, H, W], got {got}")
    if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"image must be Tensor[3, H, W] with H, W >= 1, got {tuple(image.shape)}")
    check_boxes(boxes, "boxes")
    size = check_int("size", size, min=1)
    context_pad = check_int("context_pad", context_pad, min=0)
    if 2 * context_pad >= size:
        raise ValueError(
            f"context_pad must leave room for the box: 2 * context_pad < size, got "
            f"context_pad={context_pad} with size={size}"
        )
    return image, size, context_pad


def _sample_points(boxes: Tensor, size: int, context_pad: int) -> tuple[Tensor, Tensor]:
    """Continuous sample coordinates ``(Tensor[R, size] x, Tensor[R, size] y)``, float64."""
    b = boxes.to(torch.float64)
    x1, y1, x2, y2 = b.unbind(1)  # [R] each
    if context_pad > 0:
        # Enlarge about the centre so the box maps onto the central size - 2p samples.
        grow = size / (size - 2 * context_pad)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        hw, hh = (x2 - x1) / 2 * grow, (y2 - y1) / 2 * grow
        x1, x2, y1, y2 = cx - hw, cx + hw, cy - hh, cy + hh
    t = (torch.arange(size, dtype=torch.float64, device=b.device) + 0.5) / size  # [size]
    xs = x1[:, None] + t[None, :] * (x2 - x1)[:, None]  # [R, size]
    ys = y1[:, None] + t[None, :] * (y2 - y1)[:, None]  # [R, size]
    return xs, ys


def warp_windows(
    image: Tensor,
    boxes: Tensor,
    size: int = 224,
    context_pad: int = 0,
    chunk: int = 256,
) -> Tensor:
    """Crop and warp every window to ``size x size`` by bilinear resampling (R-CNN).

    See the module docstring for where the samples lie. Work is vectorised with
    :func:`torch.nn.functional.grid_sample` over ``chunk`` windows at a time (the sample
    grid of a chunk is ``chunk * size^2`` points; the image is never copied per window).
    Zero-area boxes are legal and give a constant (one-point) window.

    Args:
        image: ``Tensor[3, H, W]`` floating point; mean-subtracted when ``context_pad > 0``
            (points outside the image become 0).
        boxes: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)`` in continuous image
            coordinates; they may extend beyond the image (clamped, or 0 with context).
        size: output side (224 for our networks; R-CNN used 227).
        context_pad: ``p``, pixels of context around the box in the output, ``2p < size``.
        chunk: windows resampled per ``grid_sample`` call (memory), ``>= 1``.

    Returns:
        ``Tensor[R, 3, size, size]`` of ``image``'s dtype and device.

    Raises:
        TypeError: ``image`` is not a floating tensor, bad boxes, or non-int settings.
        ValueError: ``image`` is not ``[3, H, W]``, bad boxes (see
            :func:`~sppnet.ops.check_boxes`), ``size < 1``, ``chunk < 1`` or
            ``context_pad`` outside ``0 <= 2p < size``.
    """
    image, size, context_pad = _check_warp_inputs(image, boxes, size, context_pad)
    chunk = check_int("chunk", chunk, min=1)
    height, width = int(image.shape[1]), int(image.shape[2])
    n_win = boxes.shape[0]
    out = image.new_empty((n_win, 3, size, size))
    if n_win == 0:
        return out
    src = image.unsqueeze(0)  # [1, 3, H, W]
    boxes = boxes.detach().to(image.device)
    for start in range(0, n_win, chunk):
        xs, ys = _sample_points(boxes[start : start + chunk], size, context_pad)  # [r, size]
        r = xs.shape[0]
        # grid_sample, align_corners=False: g = -1 is the image's left edge, x = 0, and
        # g = 1 its right edge, x = W; so g = 2x / W - 1 maps continuous x exactly, and
        # "border" padding clamps the pixel index to 0..W-1 (replicated border).
        gx = (2.0 * xs / width - 1.0)[:, None, :].expand(r, size, size)  # [r, i, j]
        gy = (2.0 * ys / height - 1.0)[:, :, None].expand(r, size, size)  # [r, i, j]
        grid = torch.stack([gx, gy], dim=-1).reshape(1, r * size, size, 2)
        warped = F.grid_sample(
            src, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False
        )  # [1, 3, r * size, size]: all windows stacked along the rows
        warped = warped.view(3, r, size, size).transpose(0, 1)  # [r, 3, size, size]
        if context_pad > 0:
            inside_x = (xs >= 0) & (xs < width)  # [r, size]
            inside_y = (ys >= 0) & (ys < height)  # [r, size]
            inside = inside_y[:, None, :, None] & inside_x[:, None, None, :]  # [r, 1, i, j]
            warped = warped * inside.to(image.dtype)
        out[start : start + r] = warped
    return out


def rcnn_pooled_features(
    model: torch.nn.Module,
    image: Tensor,
    boxes: Tensor,
    size: int = 224,
    context_pad: int = 0,
    batch_size: int = 64,
) -> Tensor:
    """fc6's input for every window the R-CNN way: warp, run the trunk, pool (Sec. 4.3).

    Each window is warped to ``size x size`` (:func:`warp_windows`) and run through
    ``model.forward_features`` and ``model.forward_pool`` in batches of ``batch_size``: the
    convolutions run once per window, where SPP-net runs them once per image scale. Run
    ``model.forward_pooled(pooled, pre_logits=True)`` on the result for fc7 (or see
    :func:`rcnn_window_features`). Gradients follow the caller's grad mode.

    Args:
        model: an :class:`~sppnet.models.SPPNet` (``forward_features``, ``forward_pool``,
            ``fc6``); the no-SPP model needs ``size`` 224-like (its pool5 must give 6x6).
        image: ``Tensor[3, H, W]`` floating point, mean-subtracted, on the model's device.
        boxes: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)`` in image pixels.
        size: warp side, ``>= model.min_input_size`` (224 as in pre-training).
        context_pad: pixels of context around each box after warping (R-CNN: 16 of 227).
        batch_size: windows per trunk pass (memory), ``>= 1``.

    Returns:
        ``Tensor[R, C * L]`` in the row order of ``boxes``.

    Raises:
        TypeError, ValueError: as :func:`warp_windows`, a ``batch_size < 1``, or ``size``
            below the model's minimum input.
    """
    image, size, context_pad = _check_warp_inputs(image, boxes, size, context_pad)
    batch_size = check_int("batch_size", batch_size, min=1)
    minimum = int(getattr(model, "min_input_size", 1))
    if size < minimum:
        raise ValueError(f"size must be >= the network's minimum input {minimum}, got size={size}")
    n_win = boxes.shape[0]
    if n_win == 0:
        return image.new_zeros((0, model.pooled_dim))
    parts = []
    for start in range(0, n_win, batch_size):
        crops = warp_windows(image, boxes[start : start + batch_size], size, context_pad)
        parts.append(model.forward_pool(model.forward_features(crops)))  # [b, C*L]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def rcnn_window_features(
    model: torch.nn.Module,
    image: Tensor,
    boxes: Tensor,
    size: int = 224,
    context_pad: int = 0,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """fc6's input and fc7's output of every window, the R-CNN way.

    :func:`rcnn_pooled_features` followed by ``model.forward_pooled(pooled,
    pre_logits=True)`` (fc7 after its ReLU; dropout as the model's mode has it).

    Args:
        model, image, boxes, size, context_pad, batch_size: as
            :func:`rcnn_pooled_features`.

    Returns:
        ``(pooled, fc7)``: ``Tensor[R, C * L]`` and ``Tensor[R, D]``.

    Raises:
        TypeError, ValueError: as :func:`rcnn_pooled_features`.
    """
    pooled = rcnn_pooled_features(model, image, boxes, size, context_pad, batch_size)
    return pooled, model.forward_pooled(pooled, pre_logits=True)
