"""Top-k classification error (Sec. 3.1: ImageNet top-1 / top-5 error): arrays in, numbers out.

Shape shorthand: N samples, K classes.

Ties are counted pessimistically: a sample is correct at ``k`` only if fewer than ``k``
OTHER classes score at least as high as its label (``#{j != y : s_j >= s_y} < k``). So a
label tied with the k-th highest score counts as an error, and an all-equal score vector
is wrong at every ``k < K``. The result does not depend on the class order or on how a
sort breaks ties, and a degenerate model cannot look better than it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from sppnet.evaluation._arrays import ArrayLike, as_array

__all__ = ["topk_error", "topk_errors"]


def _as_tensors(scores: ArrayLike, labels: ArrayLike) -> tuple[Tensor, Tensor]:
    """Validate and return ``(scores float64 Tensor[N, K], labels LongTensor[N])`` on CPU."""
    s = torch.from_numpy(np.array(as_array(scores, "scores", "[N, K]")))
    y = torch.from_numpy(np.array(as_array(labels, "labels", "[N]")))
    if y.numel() == 0:
        y = y.long()  # an empty list is float to numpy
    if s.dim() != 2:
        raise ValueError(f"scores must be [N, K] (2 dims), got shape {tuple(s.shape)}")
    if y.dim() != 1 or y.shape[0] != s.shape[0]:
        raise ValueError(
            f"labels must be [N] with N={s.shape[0]} (one per row of scores), "
            f"got shape {tuple(y.shape)}"
        )
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"scores must have at least one sample and class, got {tuple(s.shape)}")
    if s.dtype == torch.bool or s.is_complex():
        raise TypeError(f"scores must be real numbers, got dtype {s.dtype}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    s = s.to(torch.float64)
    if bool(torch.isnan(s).any()):
        bad = int(torch.isnan(s).any(1).nonzero()[0])
        raise ValueError(f"scores contain NaN (first in row {bad}); cannot rank classes")
    y = y.long()
    outside = (y < 0) | (y >= s.shape[1])
    if bool(outside.any()):
        i = int(outside.nonzero()[0])
        raise ValueError(f"labels[{i}] = {int(y[i])} is outside 0..{s.shape[1] - 1} (K classes)")
    return s, y


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _errors(s: Tensor, y: Tensor, k: int) -> float:
    label_score = s.gather(1, y[:, None])  # [N, 1]
    ahead = (s >= label_score).sum(1) - 1  # [N]: other classes scoring >= the label
    return float((ahead >= min(k, s.shape[1])).double().mean())


def topk_error(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Fraction of samples whose label is not among the ``k`` highest scores.

    Args:
        scores: ``Tensor[N, K]``, ndarray or nested list of per-class scores (logits,
            probabilities or averaged softmax; any monotone score works). ``+-inf`` is
            allowed, NaN is not.
        labels: ``LongTensor[N]``, integer ndarray or list of true classes in ``0..K-1``.
        k: how many top classes count as a hit. ``k > K`` is computed as ``k = K`` (every
            sample is then correct), so top-5 of a 3-class problem is reported as 0.

    Returns:
        The error in ``[0, 1]``; ties count against the sample (module docstring).

    Raises:
        TypeError: non-array inputs, non-real scores, non-integer labels or ``k``.
        ValueError: wrong shapes, no samples, NaN scores, labels outside ``0..K-1``, ``k < 1``.
    """
    s, y = _as_tensors(scores, labels)
    return _errors(s, y, _check_k(k))


def topk_errors(
    scores: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k errors for several ``k`` at once (top-1 and top-5 by default, as in the paper).

    Args:
        scores: ``Tensor[N, K]``, ndarray or nested list (see :func:`topk_error`).
        labels: ``LongTensor[N]``, integer ndarray or list.
        ks: the values of ``k``; each ``k > K`` is computed as ``k = K`` but keeps its name.

    Returns:
        ``{"top{k}_error": float}`` for each ``k``, e.g. ``{"top1_error": 0.3,
        "top5_error": 0.1}``.

    Raises:
        TypeError / ValueError: as :func:`topk_error`; an empty ``ks``.
    """
    s, y = _as_tensors(scores, labels)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise ValueError(f"ks must be a non-empty sequence of ints, e.g. (1, 5), got {ks!r}")
    return {f"top{int(k)}_error": _errors(s, y, _check_k(k)) for k in ks}
