"""Axis-aligned boxes: area, IoU, non-maximum suppression, R-CNN box coding.

Box convention (every module uses it): float ``(x1, y1, x2, y2)``, 0-based, continuous image
coordinates, so a box covering pixels ``0..9`` is ``(0, 0, 10, 10)`` and its area is
``(x2 - x1) * (y2 - y1)`` with no ``+ 1``. Zero-area boxes (``x2 == x1`` or ``y2 == y1``)
are degenerate but legal; ``x2 < x1`` or ``y2 < y1`` is an error.

Shape shorthand:
    N, M  number of boxes
    K     number of kept boxes (NMS) or of classes (box deltas ``Tensor[N, 4*K]``)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sppnet._validate import check_int, check_real

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "check_boxes",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "nms",
    "remove_small_boxes",
]

# Decoding caps dw, dh at log(1000 / 16): a box may grow at most 62.5x its proposal, about
# a 16-px proposal becoming a 1000-px image (the clamp of Fast R-CNN / Detectron). Without
# it a wild dw makes exp() overflow to inf (float32 above ~88) and the box inf/NaN.
_DELTA_WH_CLAMP = math.log(1000.0 / 16.0)

# NMS takes the undecided boxes (by score) in blocks of _NMS_BLOCK and compares a block's
# kept boxes with the remaining candidates in chunks of _NMS_CHUNK columns, so no IoU
# matrix holds more than 128 * 1024 values (1 MB in float64, cache-sized) whatever N is.
_NMS_BLOCK = 128
_NMS_CHUNK = 1024


def check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    """Check that ``boxes`` is a valid ``Tensor[N, 4]`` of ``(x1, y1, x2, y2)`` boxes.

    Args:
        boxes: ``Tensor[N, 4]``, floating point; ``N`` may be 0.
        name: how the argument is called in error messages.

    Raises:
        TypeError: if ``boxes`` is not a floating-point tensor.
        ValueError: if the shape is not ``[N, 4]``, a coordinate is NaN or infinite, or a
            box has ``x2 < x1`` or ``y2 < y1`` (the message names the first such row).
    """
    if not isinstance(boxes, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape [N, 4], got {type(boxes).__name__}"
        )
    if not boxes.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    values = boxes.detach()
    finite_rows = torch.isfinite(values).all(dim=1)
    if not bool(finite_rows.all()):
        row = int(torch.nonzero(~finite_rows)[0, 0])
        raise ValueError(
            f"{name} must hold finite coordinates, but row {row} is {values[row].tolist()}"
        )
    bad_x = values[:, 2] < values[:, 0]
    bad_y = values[:, 3] < values[:, 1]
    bad = bad_x | bad_y
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0, 0])
        axis = "x" if bool(bad_x[row]) else "y"
        raise ValueError(
            f"{name} must have {axis}2 >= {axis}1, but row {row} is {values[row].tolist()} "
            f"({axis}2 < {axis}1)"
        )


def _check_iou_threshold(iou_threshold: object) -> float:
    thr = check_real("iou_threshold", iou_threshold)
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {thr}")
    return thr


def _check_scores(scores: Tensor, n: int) -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor of shape [N], got {type(scores).__name__}")
    if not scores.dtype.is_floating_point:
        raise TypeError(f"scores must be a floating-point tensor, got dtype {scores.dtype}")
    if scores.shape != (n,):
        raise ValueError(
            f"scores must have shape [N] = [{n}] to match boxes, got {list(scores.shape)}"
        )
    # NaN has no place in a descending order; the greedy result would be arbitrary.
    nan = torch.isnan(scores.detach())
    if bool(nan.any()):
        raise ValueError(f"scores must not be NaN, but scores[{int(torch.nonzero(nan)[0, 0])}] is")


def _check_labels(labels: Tensor, n: int) -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor of shape [N], got {type(labels).__name__}")
    dtype = labels.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {dtype}")
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape [N] = [{n}] to match boxes, got {list(labels.shape)}"
        )


def _area(boxes: Tensor) -> Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU ``Tensor[N, M]`` of already validated boxes (no checks)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2] top-left of intersection
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2] bottom-right
    wh = (rb - lt).clamp(min=0)  # disjoint boxes: negative extent means no overlap
    inter = wh[..., 0] * wh[..., 1]
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    # union == 0 only for two zero-area boxes, whose inter is 0 too: define IoU = 0 there.
    # Dividing by 1 instead of masking a 0/0 afterwards keeps NaN out of gradients as well.
    return inter / torch.where(union > 0, union, torch.ones_like(union))


def box_area(boxes: Tensor) -> Tensor:
    """Area ``(x2 - x1) * (y2 - y1)`` of each box.

    Args:
        boxes: ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)``.

    Returns:
        ``Tensor[N]`` of areas, same dtype and device as ``boxes``.

    Raises:
        TypeError, ValueError: see :func:`check_boxes`.
    """
    check_boxes(boxes)
    return _area(boxes)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)``.
        b: ``Tensor[M, 4]`` in ``(x1, y1, x2, y2)``.

    Returns:
        ``Tensor[N, M]`` with values in ``[0, 1]``; the IoU of two zero-area boxes is 0.
        Empty (``N == 0`` or ``M == 0``) inputs give an empty ``[N, M]`` matrix.

    Raises:
        TypeError, ValueError: see :func:`check_boxes`.
    """
    check_boxes(a, "a")
    check_boxes(b, "b")
    return _pairwise_iou(a, b)


def _over_threshold(a: np.ndarray, b: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``IoU(a, b) > iou_threshold`` as a bool array ``[P, Q]`` (numpy, no checks).

    The arithmetic is that of :func:`_pairwise_iou` in the same order, so for float32 and
    float64 it gives bit for bit the IoU that :func:`box_iou` returns.
    """
    w = np.minimum(a[:, None, 2], b[None, :, 2])  # [P, Q]
    w -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(w, 0, out=w)
    h = np.minimum(a[:, None, 3], b[None, :, 3])
    h -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(h, 0, out=h)
    inter = w
    inter *= h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :]
    union -= inter
    # union == 0 only for two zero-area boxes: 0 / 0 = NaN, and NaN > thr is False, which
    # is what IoU = 0 gives too (thr >= 0).
    with np.errstate(invalid="ignore", divide="ignore"):
        inter /= union
    return inter > iou_threshold


def _greedy_nms_sorted(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS over boxes already sorted by decreasing score.

    Args:
        boxes: numpy ``[N, 4]``, sorted, validated.
        iou_threshold: suppress a box whose IoU with a kept box is ``> iou_threshold``.

    Returns:
        numpy bool array ``[N]``, True where the box is kept.
    """
    keep = np.zeros(boxes.shape[0], dtype=bool)
    # Undecided candidates: every box not yet kept nor suppressed, in score order. Each
    # round decides the first block of them and drops what its kept boxes suppress, so a
    # suppressed box stops costing work (a pairwise loop would be O(N^2) in Python).
    idx = np.arange(boxes.shape[0])
    rest = boxes
    while idx.size > 0:
        block_idx, block = idx[:_NMS_BLOCK], rest[:_NMS_BLOCK]  # [B], [B, 4]
        idx, rest = idx[_NMS_BLOCK:], rest[_NMS_BLOCK:]
        # Inside the block order matters: row i can only be suppressed by kept rows
        # before it, so resolve it sequentially on a small [B, B] boolean matrix.
        over = _over_threshold(block, block, iou_threshold)  # [B, B]
        alive = np.ones(block.shape[0], dtype=bool)
        for i in range(block.shape[0]):
            if alive[i]:
                alive[i + 1 :] &= ~over[i, i + 1 :]
        keep[block_idx[alive]] = True
        kept = block[alive]  # [Kb, 4]
        if kept.shape[0] == 0 or idx.size == 0:
            continue
        suppressed = np.empty(idx.size, dtype=bool)
        for c in range(0, idx.size, _NMS_CHUNK):
            suppressed[c : c + _NMS_CHUNK] = _over_threshold(
                kept, rest[c : c + _NMS_CHUNK], iou_threshold
            ).any(axis=0)
        idx, rest = idx[~suppressed], rest[~suppressed]
    return keep


def _first_kept_sorted(
    boxes: np.ndarray, labels: np.ndarray, iou_threshold: float, max_keep: int
) -> np.ndarray:
    """Positions of the first ``max_keep`` boxes that per-label greedy NMS keeps.

    Args:
        boxes: numpy ``[N, 4]`` sorted by decreasing score over all labels, validated.
        labels: numpy ``int64[N]`` in the same order.
        iou_threshold: suppress a box whose IoU with a kept box of its label is larger.
        max_keep: stop once this many are kept.

    Returns:
        numpy ``int64[M]`` ascending positions, ``M <= max_keep``.

    A box is kept exactly when no kept box of its label ranked above it overlaps it by more
    than the threshold: what NMS per label decides. Walking all labels in one score order
    in blocks, the walk can stop at the ``max_keep``-th kept box.
    """
    kept = np.zeros(0, dtype=np.int64)
    for start in range(0, boxes.shape[0], _NMS_BLOCK):
        if kept.size >= max_keep:
            break
        block = boxes[start : start + _NMS_BLOCK]  # [B, 4]
        lab = labels[start : start + _NMS_BLOCK]  # [B]
        alive = np.ones(block.shape[0], dtype=bool)
        if kept.size:  # suppressed by a kept box of an earlier block
            over = _over_threshold(boxes[kept], block, iou_threshold)  # [M, B]
            alive &= ~(over & (labels[kept][:, None] == lab[None, :])).any(axis=0)
        over = _over_threshold(block, block, iou_threshold)  # [B, B]
        over &= lab[:, None] == lab[None, :]
        room = max_keep - kept.size
        for i in range(block.shape[0]):
            if not alive[i]:
                continue
            room -= 1
            if room == 0:
                alive[i + 1 :] = False
                break
            alive[i + 1 :] &= ~over[i, i + 1 :]
        kept = np.concatenate([kept, start + np.flatnonzero(alive)])
    return kept


def _to_int_numpy(labels: Tensor) -> np.ndarray:
    return labels.detach().cpu().to(torch.int64).numpy()


def _to_numpy(boxes: Tensor) -> np.ndarray:
    # NMS runs in numpy on the CPU: one thread, no per-op overhead, in-place buffers.
    # Half precision is widened to float32 (exact), as numpy has no bfloat16.
    if boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    return boxes.detach().cpu().numpy()


def _sort_by_score(scores: Tensor) -> Tensor:
    # Stable, so equal scores keep the lower index first (deterministic NMS).
    return torch.sort(scores.detach(), descending=True, stable=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression.

    Visit boxes by decreasing score (ties: lower index first) and keep a box unless its
    IoU with an already kept box is strictly greater than ``iou_threshold``.

    Args:
        boxes: ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)``; float16/bfloat16 boxes are
            compared in float32. Work is chunked: no ``[N, N]`` matrix is built.
        scores: ``Tensor[N]``, floating point, no NaN.
        iou_threshold: in ``[0, 1]``; the paper uses 0.3 per class (Sec. 4).

    Returns:
        ``LongTensor[K]`` indices into ``boxes`` of the kept boxes, by decreasing score.

    Raises:
        TypeError: if ``boxes``/``scores`` are not floating tensors or the threshold is
            not a real number.
        ValueError: for bad boxes (see :func:`check_boxes`), ``scores`` not of shape
            ``[N]`` or holding NaN, or a threshold that is not finite or not in ``[0, 1]``.
    """
    check_boxes(boxes)
    _check_scores(scores, boxes.shape[0])
    thr = _check_iou_threshold(iou_threshold)
    with torch.no_grad():
        order = _sort_by_score(scores).to(boxes.device)
        keep = _greedy_nms_sorted(_to_numpy(boxes[order]), thr)
        return order[torch.from_numpy(keep).to(boxes.device)]


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float,
    *,
    max_keep: int | None = None,
) -> Tensor:
    """Non-maximum suppression done independently for each label.

    Boxes of different labels never suppress each other. Each label is handled exactly
    (no coordinate-offset trick, which loses precision at large coordinates).

    Args:
        boxes: ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)``.
        scores: ``Tensor[N]``, floating point, no NaN.
        labels: ``LongTensor[N]`` (any integer dtype), e.g. class indices.
        iou_threshold: in ``[0, 1]``.
        max_keep: return only the first ``max_keep`` kept boxes (the best-scored ones):
            the same as ``batched_nms(...)[:max_keep]``, but boxes ranked below the last
            of them are never compared (a detector's cap on detections per image).
            ``None``: all.

    Returns:
        ``LongTensor[K]`` indices of the kept boxes over all labels, by decreasing score
        (ties: lower index first).

    Raises:
        TypeError, ValueError: as :func:`nms`, plus ``labels`` not an integer tensor
            (``TypeError``) or not of shape ``[N]`` (``ValueError``), or ``max_keep`` not
            an int ``>= 0``.
    """
    check_boxes(boxes)
    n = boxes.shape[0]
    _check_scores(scores, n)
    _check_labels(labels, n)
    thr = _check_iou_threshold(iou_threshold)
    if max_keep is not None:
        max_keep = check_int("max_keep", max_keep, min=0)
    with torch.no_grad():
        # Sort once over all labels: the boxes of one label, taken in this global order,
        # are in that label's own stable order, and the merged result needs no re-sort.
        order = _sort_by_score(scores).to(boxes.device)  # [N]
        sorted_boxes = _to_numpy(boxes[order])  # [N, 4]
        sorted_labels = labels.to(boxes.device)[order]
        if max_keep is not None:
            keep_pos = _first_kept_sorted(sorted_boxes, _to_int_numpy(sorted_labels), thr, max_keep)
            return order[torch.from_numpy(keep_pos).to(boxes.device)]
        keep = np.zeros(n, dtype=bool)  # over sorted positions
        for label in torch.unique(sorted_labels):
            pos = torch.nonzero(sorted_labels == label).flatten()  # ascending positions
            pos_np = pos.cpu().numpy()
            keep[pos_np[_greedy_nms_sorted(sorted_boxes[pos_np], thr)]] = True
        return order[torch.from_numpy(keep).to(boxes.device)]


def _check_weights(weights: tuple[float, float, float, float]) -> tuple[float, ...]:
    if not isinstance(weights, (tuple, list)) or len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
    out = tuple(check_real("every box coding weight", w) for w in weights)
    if any(w <= 0 for w in out):
        raise ValueError(f"box coding weights must be > 0, got {out}")
    return out


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def _require_positive_size(boxes: Tensor, name: str) -> None:
    small = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).detach()
    if bool(small.any()):
        row = int(torch.nonzero(small)[0, 0])
        raise ValueError(
            f"{name} must have positive width and height for box coding (it divides by "
            f"them and takes their log), but row {row} is {boxes[row].detach().tolist()}"
        )


def encode_boxes(
    proposals: Tensor,
    targets: Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> Tensor:
    """Regression targets that move ``proposals`` onto ``targets`` (R-CNN, appendix C).

    With ``w = x2 - x1``, ``h = y2 - y1`` and centre ``cx = x1 + w / 2`` (``cy`` alike):
    ``dx = (gx - px) / pw``, ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``,
    ``dh = log(gh / ph)``, each multiplied by its weight.

    Args:
        proposals: ``Tensor[N, 4]`` boxes ``P``, positive width and height.
        targets: ``Tensor[N, 4]`` boxes ``G``, positive width and height.
        weights: ``(wx, wy, ww, wh)``, all ``> 0``; they rescale the deltas, e.g. to unit
            variance.

    Returns:
        ``Tensor[N, 4]`` deltas ``(dx, dy, dw, dh)``.

    Raises:
        TypeError, ValueError: see :func:`check_boxes`; also ``ValueError`` if the two
            do not have the same number of boxes, a box has zero width or height, or a
            weight is not a positive finite number.
    """
    check_boxes(proposals, "proposals")
    check_boxes(targets, "targets")
    if proposals.shape != targets.shape:
        raise ValueError(
            f"proposals and targets must have the same shape, got {list(proposals.shape)} "
            f"and {list(targets.shape)}"
        )
    wx, wy, ww, wh = _check_weights(weights)
    _require_positive_size(proposals, "proposals")
    _require_positive_size(targets, "targets")
    px, py, pw, ph = _centre_size(proposals)
    gx, gy, gw, gh = _centre_size(targets)
    return torch.stack(
        (
            wx * (gx - px) / pw,
            wy * (gy - py) / ph,
            ww * torch.log(gw / pw),
            wh * torch.log(gh / ph),
        ),
        dim=1,
    )


def decode_boxes(
    proposals: Tensor,
    deltas: Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> Tensor:
    """Apply regression deltas to ``proposals``; the inverse of :func:`encode_boxes`.

    ``gx = px + pw * dx / wx``, ``gw = pw * exp(min(dw / ww, log(1000 / 16)))`` and
    alike for ``y``/``h``. The clamp keeps ``exp`` from overflowing to inf on a wild
    prediction (no box grows more than 62.5x its proposal).

    Args:
        proposals: ``Tensor[N, 4]`` boxes ``P``.
        deltas: ``Tensor[N, 4]`` or ``Tensor[N, 4*K]`` (one ``(dx, dy, dw, dh)`` per
            class), floating point and finite.
        weights: ``(wx, wy, ww, wh)`` used when encoding.

    Returns:
        Boxes of the same shape as ``deltas`` (``Tensor[N, 4*K]``), in ``(x1, y1, x2, y2)``,
        dtype promoted from ``proposals`` and ``deltas``.

    Raises:
        TypeError: if ``deltas`` is not a floating-point tensor; see :func:`check_boxes`.
        ValueError: if ``deltas`` is not ``[N, 4*K]`` with the proposals' ``N``, holds
            NaN/inf, or a weight is not a positive finite number.
    """
    check_boxes(proposals, "proposals")
    if not isinstance(deltas, Tensor):
        raise TypeError(f"deltas must be a torch.Tensor, got {type(deltas).__name__}")
    if not deltas.dtype.is_floating_point:
        raise TypeError(f"deltas must be a floating-point tensor, got dtype {deltas.dtype}")
    n = proposals.shape[0]
    if (
        deltas.dim() != 2
        or deltas.shape[0] != n
        or deltas.shape[1] % 4 != 0
        or deltas.shape[1] == 0
    ):
        raise ValueError(f"deltas must have shape [N, 4*K] with N = {n}, got {list(deltas.shape)}")
    if not bool(torch.isfinite(deltas.detach()).all()):
        raise ValueError("deltas must be finite, got NaN or inf")
    wx, wy, ww, wh = _check_weights(weights)
    d = deltas.reshape(n, deltas.shape[1] // 4, 4)  # [N, K, 4]; -1 fails for N = 0
    px, py, pw, ph = (t[:, None] for t in _centre_size(proposals))  # each [N, 1]
    cx = px + pw * (d[..., 0] / wx)
    cy = py + ph * (d[..., 1] / wy)
    w = pw * torch.exp((d[..., 2] / ww).clamp(max=_DELTA_WH_CLAMP))
    h = ph * torch.exp((d[..., 3] / wh).clamp(max=_DELTA_WH_CLAMP))
    out = torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=2)
    return out.reshape(deltas.shape)  # [N, K, 4] -> [N, 4*K]


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """Clip boxes to the image ``[0, width] x [0, height]``.

    In continuous coordinates the image of width ``W`` spans ``[0, W]`` (not ``W - 1``).

    Args:
        boxes: ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)``.
        height: image height, ``> 0``.
        width: image width, ``> 0``.

    Returns:
        ``Tensor[N, 4]`` clipped copy; boxes outside the image become zero-area.

    Raises:
        TypeError, ValueError: see :func:`check_boxes`; also for a height or width that
            is not a positive finite number.
    """
    check_boxes(boxes)
    h = check_real("height", height)
    w = check_real("width", width)
    if h <= 0 or w <= 0:
        raise ValueError(f"height and width must be > 0, got height={h}, width={w}")
    x = boxes[:, 0::2].clamp(min=0.0, max=w)  # [N, 2] x1, x2
    y = boxes[:, 1::2].clamp(min=0.0, max=h)  # [N, 2] y1, y2
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both ``>= min_size``.

    Args:
        boxes: ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)``.
        min_size: smallest allowed side, ``>= 0``.

    Returns:
        ``LongTensor[K]`` indices into ``boxes``, ascending.

    Raises:
        TypeError, ValueError: see :func:`check_boxes`; also for a ``min_size`` that is
            not a finite number ``>= 0``.
    """
    check_boxes(boxes)
    s = check_real("min_size", min_size)
    if s < 0:
        raise ValueError(f"min_size must be >= 0, got {s}")
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return torch.nonzero((w >= s) & (h >= s)).flatten()
