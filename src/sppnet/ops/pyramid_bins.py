"""Bin geometry of a spatial pyramid (Appendix A, "Implementation of Pooling Bins").

For a level with ``n x n`` bins over a map (or a window) of width ``w`` and height ``h``,
bin ``(i, j)`` covers columns ``[floor(i * w / n), ceil((i + 1) * w / n))`` and rows
``[floor(j * h / n), ceil((j + 1) * h / n))``: floor on the left/top edge, ceiling on the
right/bottom edge. Every bin is non-empty for every ``w, h >= 1`` and bins may overlap.

Two consequences the pooling ops rely on:

* the rule equals PyTorch's adaptive pooling (``adaptive_max_pool2d``), which uses the
  same integer floor/ceil start and end indices;
* when ``n`` divides ``m``, every bin of level ``n`` is the exact union of ``m / n``
  consecutive bins of level ``m`` (consecutive bins touch or overlap), so a max-pooled
  coarse level can be built from a finer one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["bin_edges", "check_levels", "num_pyramid_bins"]


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """Validate a pyramid description and return it as a tuple.

    Args:
        levels: bins per side of each level, e.g. ``(6, 3, 2, 1)``.

    Returns:
        ``tuple[int, ...]`` of the same levels, in the same order.

    Raises:
        TypeError: if ``levels`` is not a sequence of integers.
        ValueError: if it is empty or holds a level ``< 1``.
    """
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
        raise TypeError(f"levels must be a sequence of ints like (6, 3, 2, 1), got {levels!r}")
    if len(levels) == 0:
        raise ValueError("levels must hold at least one pyramid level, got an empty sequence")
    out = []
    for n in levels:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"every pyramid level must be an int, got {n!r} in {tuple(levels)}")
        if n < 1:
            raise ValueError(
                f"every pyramid level must be >= 1 bin per side, got {n} in {tuple(levels)}"
            )
        out.append(n)
    return tuple(out)


def num_pyramid_bins(levels: Sequence[int]) -> int:
    """Number of bins ``L = sum(n * n)`` of a pyramid (50 for ``(6, 3, 2, 1)``).

    The pooled vector of a ``C``-channel map has ``C * L`` values.
    """
    return sum(n * n for n in check_levels(levels))


def bin_edges(size: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start (inclusive) and end (exclusive) offsets of the ``n`` bins along one side.

    Args:
        size: ``LongTensor[...]`` side lengths (each ``>= 1``).
        n: bins per side.

    Returns:
        ``(start, end)``, each ``LongTensor[..., n]``: bin ``i`` covers
        ``[floor(i * size / n), ceil((i + 1) * size / n))``, relative to the side's origin.
    """
    i = torch.arange(n, device=size.device, dtype=torch.long)
    s = size.unsqueeze(-1)
    start = torch.div(i * s, n, rounding_mode="floor")
    end = -torch.div(-(i + 1) * s, n, rounding_mode="floor")  # ceil for non-negative ints
    return start, end
