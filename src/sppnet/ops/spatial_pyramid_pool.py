"""Spatial pyramid pooling of whole feature maps (Sec. 2.2, Appendix A).

Shape shorthand: N images, C channels, H x W map, L = sum(n * n) bins of the pyramid.

The output of one sample is the concatenation, level by level in the order given, of that
level's ``(C, n, n)`` pooled map flattened in C order. For ``levels=(6, 3, 2, 1)`` and
``C=256`` that is ``256*36`` values of the 6x6 level, then ``256*9``, ``256*4`` and
``256*1``: 12,800 in all. The weights of fc6 depend on this order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet.ops.compiled_pyramid_pool import compiled_pool_available, compiled_window_pool
from sppnet.ops.pyramid_bins import check_levels, num_pyramid_bins

__all__ = ["SpatialPyramidPool", "check_extents", "check_feature_map", "spatial_pyramid_pool"]

_MODES = ("max", "avg")


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    return mode


def check_feature_map(x: Tensor, name: str) -> None:
    """Raise unless ``x`` is a floating-point ``Tensor[N, C, H, W]``.

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: not 4-D.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be Tensor[N, C, H, W] (4 dims), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_extents(
    extents: Tensor, n_img: int, height: int, width: int, minimum: int = 1, note: str = ""
) -> Tensor:
    """Validate per-sample extents of a padded batch; return them as CPU ``LongTensor[N, 2]``.

    Args:
        extents: ``LongTensor[N, 2]`` valid ``(height, width)`` of each sample.
        n_img: N, the batch size they must match.
        height, width: size of the padded batch, the largest extent allowed.
        minimum: smallest extent allowed (1 cell for pooling, the trunk's minimum input
            for a network).
        note: words to add after the allowed range in the error message.

    Raises:
        TypeError: ``extents`` is not an integer tensor.
        ValueError: wrong shape, or an extent outside ``minimum..height`` x ``minimum..width``.
    """
    if not isinstance(extents, Tensor) or extents.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"extents must be an integer LongTensor[N, 2], got {extents!r}")
    if extents.shape != (n_img, 2):
        raise ValueError(
            f"extents must be LongTensor[N, 2] = [{n_img}, 2] (height, width), "
            f"got shape {tuple(extents.shape)}"
        )
    ext = extents.to(device="cpu", dtype=torch.long)
    if n_img and (
        int(ext.min()) < minimum or int(ext[:, 0].max()) > height or int(ext[:, 1].max()) > width
    ):
        raise ValueError(
            f"extents must lie in {minimum}..{height} (height) x {minimum}..{width} (width)"
            f"{note}, got {ext.tolist()}"
        )
    return ext


def _divisor_plan(levels: tuple[int, ...], mode: str) -> dict[int, int]:
    """Map each level to the level it is built from (itself when pooled directly).

    Under the floor/ceil rule a level-``n`` bin is the union of ``m / n`` consecutive
    level-``m`` bins when ``n`` divides ``m`` (see ``pyramid_bins``), so in max mode its max
    is the max of those bins' maxima. Each level is built from the smallest such finer
    level (fewest bins to merge: 6 -> 3 -> 1, 6 -> 2). Avg levels are always pooled
    directly: overlapping bins make the mean of a union differ from the mean of means.
    """
    plan = {}
    for n in levels:
        finer = [m for m in levels if m > n and m % n == 0] if mode == "max" else []
        plan[n] = min(finer) if finer else n
    return plan


def _pool_levels(x: Tensor, levels: tuple[int, ...], mode: str) -> Tensor:
    """Pool ``x: Tensor[N, C, H, W]`` (no padding) -> ``Tensor[N, C * L]``."""
    n_img = x.shape[0]
    direct = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    # channels_last makes CPU pooling 5-20x faster; adaptive pooling's start/end indices are
    # exactly Appendix A's floor/ceil rule.
    x = x.contiguous(memory_format=torch.channels_last)
    plan = _divisor_plan(levels, mode)
    pooled: dict[int, Tensor] = {}
    for n in sorted(set(levels), reverse=True):  # finer levels first: they feed coarser ones
        src = plan[n]
        if src == n:
            pooled[n] = direct(x, n)
        else:
            pooled[n] = F.max_pool2d(pooled[src], kernel_size=src // n)
    return torch.cat([pooled[n].reshape(n_img, -1) for n in levels], dim=1)


def _compiled_pool(x: Tensor, ext: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Max SPP of each sample's ``ext = (h, w)`` top-left region, one compiled call.

    Each sample is one window of the window-pooling kernel: the same values as
    ``_pool_levels`` on each crop (max is exact), the gradient to each bin's first maximal
    cell, and no grouping of the batch by extent (1.6x faster forward+backward on
    benchmarks/spp_speed.py). Avg mode stays on adaptive pooling, whose sums it matches.
    """
    n_img = x.shape[0]
    zeros = torch.zeros(n_img, dtype=torch.long)
    windows = torch.stack([zeros, zeros, ext[:, 1], ext[:, 0]], dim=1)  # (x0, y0, x1, y1)
    return compiled_window_pool(x, windows, torch.arange(n_img), levels, "max")


def spatial_pyramid_pool(
    x: Tensor,
    levels: Sequence[int] = (6, 3, 2, 1),
    mode: str = "max",
    extents: Tensor | None = None,
) -> Tensor:
    """Pool a feature map of any size into a fixed-length vector (Sec. 2.2).

    Bin ``(i, j)`` of an ``n x n`` level over an ``h x w`` map covers columns
    ``[floor(i*w/n), ceil((i+1)*w/n))`` and rows ``[floor(j*h/n), ceil((j+1)*h/n))``
    (Appendix A): every bin is non-empty for every ``h, w >= 1``, even when ``h < n``.

    Args:
        x: ``Tensor[N, C, H, W]``, any ``H, W >= 1``.
        levels: bins per side of each pyramid level, in output order.
        mode: ``"max"`` (the paper) or ``"avg"``.
        extents: optional ``LongTensor[N, 2]`` of each sample's valid ``(height, width)``,
            anchored at the top-left corner (a padded batch of different-size images).
            Each sample is then pooled over its own region only, so the result equals
            pooling each sample's cropped map alone (beyond the paper).

    Returns:
        ``Tensor[N, C * L]`` with ``L = sum(n * n)``, ordered level by level, each level
        flattened as ``(C, n, n)``.

    Raises:
        TypeError: ``x`` is not a floating tensor, or ``extents`` is not an integer tensor.
        ValueError: wrong ranks or shapes, bad levels or mode, an empty map, or extents
            outside ``1..H`` x ``1..W``.
    """
    check_feature_map(x, "x")
    levels = check_levels(levels)
    mode = _check_mode(mode)
    n_img, channels, height, width = x.shape
    if height < 1 or width < 1:
        raise ValueError(f"x must have H, W >= 1 to be pooled, got shape {tuple(x.shape)}")
    if extents is None:
        if n_img == 0 or channels == 0:
            return x.new_zeros((n_img, channels * num_pyramid_bins(levels)))
        # Not the compiled window kernel: on 64 x 256 x 13 x 13 it took 2x longer than
        # adaptive pooling, forward and forward+backward (benchmarks/spp_speed.py).
        return _pool_levels(x, levels, mode)

    ext = check_extents(extents, n_img, height, width, note=" of the padded map")
    if n_img == 0:
        return x.new_empty((0, channels * num_pyramid_bins(levels)))
    if channels and mode == "max" and compiled_pool_available(x, mode):
        return _compiled_pool(x, ext, levels)
    # Samples sharing an extent are pooled together on their common crop. Sorting by extent
    # once and splitting into contiguous groups keeps backward cheap: split's gradient is
    # one concatenation, where indexing each group would add a batch-size zero gradient
    # per group.
    groups, inverse, counts = torch.unique(ext, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    grouped = x.index_select(0, order.to(x.device)).split(counts.tolist())
    pooled = [
        _pool_levels(part[:, :, :h, :w], levels, mode)
        for part, (h, w) in zip(grouped, groups.tolist(), strict=True)
    ]
    # back to batch order: row k of the sorted result is sample order[k]
    restore = torch.empty_like(order)
    restore[order] = torch.arange(n_img)
    return torch.cat(pooled, dim=0).index_select(0, restore.to(x.device))


class SpatialPyramidPool(nn.Module):
    """Module form of :func:`spatial_pyramid_pool`; it only stores the settings.

    Args:
        levels: bins per side of each level, in output order (default ``(6, 3, 2, 1)``).
        mode: ``"max"`` or ``"avg"``.
    """

    def __init__(self, levels: Sequence[int] = (6, 3, 2, 1), mode: str = "max") -> None:
        super().__init__()
        self.levels = check_levels(levels)
        self.mode = _check_mode(mode)

    @property
    def num_bins(self) -> int:
        """``L = sum(n * n)``: the output has ``C * L`` values per sample."""
        return num_pyramid_bins(self.levels)

    def forward(self, x: Tensor, extents: Tensor | None = None) -> Tensor:
        """``Tensor[N, C, H, W]`` -> ``Tensor[N, C * L]`` (see :func:`spatial_pyramid_pool`)."""
        return spatial_pyramid_pool(x, self.levels, self.mode, extents)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"
