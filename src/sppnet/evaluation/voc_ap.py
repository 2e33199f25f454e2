"""Pascal VOC average precision from a precision/recall curve: arrays in, numbers out.

Shared by the classification task (Sec. 3.2, Table 6: VOC 2007 classification mAP) and the
detection task (Sec. 4, Tables 9-12: VOC 2007 detection mAP). Both follow the VOC devkit:

- VOC 2007 (``use_07_metric=True``, the paper's numbers): the 11-point interpolated AP,
  ``AP = 1/11 * sum_{t in 0, 0.1, ..., 1} max{p(r) : r >= t}`` (0 where no point has
  ``r >= t``), as in the 2007 devkit's ``VOCevalcls.m`` / ``VOCevaldet.m``; ``t`` is the
  float nearest to k/10, so a recall of exactly 3/10 reaches ``t = 0.3``.
- VOC 2010 and later (``use_07_metric=False``): the area under the monotone precision
  envelope, ``mpre[i] = max(p[j] : j >= i)``, summed over the recall steps, as in the devkit's
  ``VOCap.m``.

Shape shorthand: M points of the curve (one per ranked item).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["voc_ap"]


def _as_curve(values: Tensor | np.ndarray | list[float], name: str) -> np.ndarray:
    """Validate one curve coordinate and return it as a float64 ndarray[M]."""
    if isinstance(values, Tensor):
        arr = values.detach().cpu().to(torch.float64).numpy()
    elif isinstance(values, (np.ndarray, list, tuple)):
        arr = np.asarray(values)
        if arr.size == 0:
            arr = arr.astype(np.float64)  # an empty list: no points
        if arr.dtype == bool or arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must be a Tensor, ndarray or list of floats [M], got {type(values).__name__}"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [M], got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN (first at index {int(np.isnan(arr).argmax())})")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{arr.min():.6g}, {arr.max():.6g}]"
        )
    return arr


def voc_ap(
    recall: Tensor | np.ndarray | list[float],
    precision: Tensor | np.ndarray | list[float],
    use_07_metric: bool = True,
) -> float:
    """Average precision of one class from its precision/recall curve, by the VOC devkit.

    The curve is given point by point in ranking order (the i-th point after the i-th highest
    scored item), as ``recall = cumsum(tp) / n_pos`` and ``precision = cumsum(tp) /
    (cumsum(tp) + cumsum(fp))``. Only the set of points matters for the 11-point metric; the
    area metric expects recall to be non-decreasing, as a ranking gives.

    Args:
        recall: ``Tensor[M]``, ndarray or list of recalls in ``[0, 1]``.
        precision: ``Tensor[M]``, ndarray or list of precisions in ``[0, 1]``, same length.
        use_07_metric: ``True`` for the VOC 2007 11-point interpolated AP (the paper's
            metric), ``False`` for the VOC 2010+ area under the monotone precision envelope.

    Returns:
        The AP in ``[0, 1]``. An empty curve (nothing ranked) gives 0.

    Raises:
        TypeError: inputs that are not arrays of real numbers.
        ValueError: not 1-D, different lengths, NaN, values outside ``[0, 1]``, or (area
            metric) recall that decreases.
    """
    rec = _as_curve(recall, "recall")
    prec = _as_curve(precision, "precision")
    if rec.shape != prec.shape:
        raise ValueError(
            f"recall and precision must have the same length, got {rec.size} and {prec.size}"
        )
    if use_07_metric:
        # VOC 2007 devkit: for t = 0:0.1:1, p = max(prec(rec >= t)), 0 if empty; mean of 11.
        # The thresholds are k / 10 by division, the floats nearest to 0.0, 0.1, ..., 1.0, so a
        # recall of exactly 3/10 (also 6/20, ...: the same float) reaches t = 0.3.
        # np.arange(0, 1.1, 0.1) would give 0.30000000000000004 there and miss it.
        total = 0.0
        for t in (k / 10 for k in range(11)):
            above = prec[rec >= t]
            total += float(above.max()) if above.size else 0.0
        return total / 11.0  # sum first, so a perfect ranking gives exactly 1.0
    if rec.size > 1 and bool((np.diff(rec) < 0).any()):
        i = int((np.diff(rec) < 0).argmax())
        raise ValueError(
            f"recall must be non-decreasing (points in ranking order) for the area metric, "
            f"got recall[{i}] = {rec[i]:.6g} > recall[{i + 1}] = {rec[i + 1]:.6g}"
        )
    # VOCap.m: pad with sentinels, make precision monotone from the right, then sum the
    # rectangles at the points where recall changes.
    mrec = np.concatenate(([0.0], rec, [1.0]))  # [M + 2]
    mpre = np.concatenate(([0.0], prec, [0.0]))  # [M + 2]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))
