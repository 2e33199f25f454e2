"""Spatial pyramid pooling written for graph export (ONNX) with dynamic sizes (Appendix A).

Shape shorthand: N images, C channels, H x W map, R windows, L = sum(n * n) bins,
K table levels.

:func:`~sppnet.ops.spatial_pyramid_pool` and :func:`~sppnet.ops.window_pyramid_pool` are
fast in eager PyTorch but do not export to a graph that is right at every size: PyTorch's
``adaptive_max_pool2d`` exports only when the output size divides the input size (the legacy
exporter refuses, the ``torch.export``-based one bakes the traced windows in), and the window
op reads tensor values in Python. The two functions here compute the same Appendix-A bins
(bin ``i`` of ``n`` over a side ``a``: ``[floor(i * a / n), ceil((i + 1) * a / n))``) with
integer arithmetic on the traced shapes and values, plus slices, gathers and max / mean
reductions, so an exported graph is exact for every map size and window count.

* Whole maps (:func:`traceable_spatial_pyramid_pool`): per level, ``n`` row slices reduced
  over rows, then ``n`` column slices reduced over columns. Both max and mean are separable
  over a rectangle, so that is ``2n`` slices per level instead of ``n * n``.
* Windows (:func:`traceable_window_pyramid_pool`, max only): a 2-D sparse table of the map
  (``T[a, b, y, x]`` = max over the ``2**a x 2**b`` block at ``(y, x)``) with a fixed number
  ``K`` of doublings per axis, then four gathered corners per bin (a range-maximum query),
  like the eager op. ``K`` is fixed when the graph is built, so the graph is exact for bins
  up to ``2**K - 1`` cells per side; :func:`table_levels_for` gives the ``K`` that covers
  every window of maps up to a given side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sppnet.ops.pyramid_bins import check_levels
from sppnet.ops.spatial_pyramid_pool import _check_mode, _divisor_plan

__all__ = [
    "table_levels_for",
    "traceable_spatial_pyramid_pool",
    "traceable_window_pyramid_pool",
]


def _edges(size, i: int, n: int):
    """Bin ``i`` of ``n`` over ``size`` cells: ``floor(i*size/n)``, ``ceil((i+1)*size/n)``.

    Integer arithmetic on non-negative values only (``ceil(a / n) = (a + n - 1) // n``), so
    it traces to the same integer ops whatever the exporter does with negative division.
    """
    return (i * size) // n, ((i + 1) * size + n - 1) // n


def traceable_spatial_pyramid_pool(
    x: Tensor, levels: Sequence[int] = (6, 3, 2, 1), mode: str = "max"
) -> Tensor:
    """Spatial pyramid pooling of whole maps that exports with dynamic ``N, H, W``.

    Equal to :func:`~sppnet.ops.spatial_pyramid_pool` (no ``extents``) for every map size,
    including maps smaller than a level (``H < n``: bins overlap, none is empty).

    Args:
        x: ``Tensor[N, C, H, W]``, ``H, W >= 1``.
        levels: bins per side of each level, in output order.
        mode: ``"max"`` or ``"avg"``.

    Returns:
        ``Tensor[N, C * L]``, level by level, each level flattened as ``(C, n, n)``.

    Raises:
        ValueError: bad levels or mode, or ``x`` not 4-D.
    """
    levels = check_levels(levels)
    mode = _check_mode(mode)
    if x.dim() != 4:
        raise ValueError(f"x must be Tensor[N, C, H, W] (4 dims), got shape {tuple(x.shape)}")
    height, width = x.shape[2], x.shape[3]  # symbolic under export

    def reduce(t: Tensor, dim: int) -> Tensor:
        return t.amax(dim, keepdim=True) if mode == "max" else t.mean(dim, keepdim=True)

    out = []
    for n in levels:
        rows = []
        for j in range(n):
            start, end = _edges(height, j, n)
            rows.append(reduce(x[:, :, start:end, :], 2))
        by_rows = torch.cat(rows, dim=2)  # [N, C, n, W]
        cols = []
        for i in range(n):
            start, end = _edges(width, i, n)
            cols.append(reduce(by_rows[:, :, :, start:end], 3))
        out.append(torch.cat(cols, dim=3).flatten(1))  # [N, C * n * n] in (C, n, n) order
    return torch.cat(out, dim=1)


def table_levels_for(max_side: int, levels: Sequence[int]) -> int:
    """``K`` such that :func:`traceable_window_pyramid_pool` is exact on maps up to ``max_side``.

    A window of ``a <= max_side`` cells split into ``n`` bins has bins of at most
    ``ceil(a / n) + 1`` cells; the table must hold blocks up to half that, i.e.
    ``2**K > ceil(max_side / n) + 1`` for every level pooled from the table directly.

    Args:
        max_side: the longest map side (in cells) the graph must handle.
        levels: the pyramid levels.

    Returns:
        ``K >= 1``.

    Raises:
        ValueError: ``max_side < 1`` or bad levels.
    """
    levels = check_levels(levels)
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be an int >= 1 (cells), got {max_side!r}")
    direct = [n for n, src in _divisor_plan(levels, "max").items() if src == n]
    longest = max(-(-max_side // n) + 1 for n in direct)
    return max(1, longest.bit_length())


def _sparse_table(fmap: Tensor, k: int) -> Tensor:
    """``Tensor[K * K * H * W, C]``: row ``((a * K + b) * H + y) * W + x`` holds the max over
    ``fmap[:, y : y + 2**a, x : x + 2**b]`` (blocks running off the map see ``-inf``).
    """
    channels = fmap.shape[0]
    t = fmap.permute(1, 2, 0)  # [H, W, C]
    height, width = t.shape[0], t.shape[1]
    far = 1 << (k - 1)
    fill_rows = torch.full((far, 1, 1), float("-inf"), dtype=t.dtype, device=t.device)
    row_tables = [t]
    for a in range(1, k):
        prev, s = row_tables[-1], 1 << (a - 1)
        pad = fill_rows.expand(far, width, channels)
        shifted = torch.cat([prev, pad], dim=0)[s : s + height]  # rows y + s, -inf beyond
        row_tables.append(torch.maximum(prev, shifted))
    tables = []
    for rt in row_tables:
        pad = fill_rows.reshape(1, far, 1).expand(height, far, channels)
        col_tables = [rt]
        for b in range(1, k):
            prev, s = col_tables[-1], 1 << (b - 1)
            shifted = torch.cat([prev, pad], dim=1)[:, s : s + width]
            col_tables.append(torch.maximum(prev, shifted))
        tables.append(torch.stack(col_tables))  # [K, H, W, C]
    return torch.stack(tables).reshape(-1, channels)  # [K*K*H*W, C]


def _floor_log2(v: Tensor, k: int) -> Tensor:
    """``min(floor(log2(v)), K - 1)`` for integer ``v >= 1``, by comparisons (exact)."""
    out = torch.zeros_like(v)
    for a in range(1, k):
        out = out + (v >= (1 << a)).to(v.dtype)
    return out


def traceable_window_pyramid_pool(
    fmap: Tensor, windows: Tensor, levels: Sequence[int] = (6, 3, 2, 1), table_levels: int = 5
) -> Tensor:
    """Max-pooled spatial pyramid of every window of one map; exports with dynamic ``R, H, W``.

    Equal to :func:`~sppnet.ops.window_pyramid_pool` (max mode, one map) for windows whose
    bins are at most ``2**table_levels - 1`` cells per side (see :func:`table_levels_for`).
    Windows are not checked (a graph cannot raise): pass rectangles inside the map, as
    :func:`~sppnet.ops.map_windows_to_features` makes them.

    Args:
        fmap: ``Tensor[1, C, H, W]``.
        windows: ``LongTensor[R, 4]`` cells ``(x0, y0, x1, y1)``, end-exclusive, non-empty,
            inside the map; ``R`` may be 0.
        levels: bins per side of each level, in output order.
        table_levels: ``K``, doublings per axis of the sparse table (memory ``K * K`` maps).

    Returns:
        ``Tensor[R, C * L]``, each window's levels in order, each flattened as ``(C, n, n)``.

    Raises:
        ValueError: bad levels, ``table_levels < 1``, or ``fmap`` not ``Tensor[1, C, H, W]``.
    """
    levels = check_levels(levels)
    if isinstance(table_levels, bool) or not isinstance(table_levels, int) or table_levels < 1:
        raise ValueError(f"table_levels must be an int >= 1, got {table_levels!r}")
    if fmap.dim() != 4 or fmap.shape[0] != 1:
        raise ValueError(f"fmap must be Tensor[1, C, H, W], got shape {tuple(fmap.shape)}")
    k = table_levels
    channels, height, width = fmap.shape[1], fmap.shape[2], fmap.shape[3]
    table = _sparse_table(fmap[0], k)  # [K*K*H*W, C]
    x0, y0, x1, y1 = windows.unbind(1)  # [R] each
    bins = torch.arange(max(levels) + 1, dtype=windows.dtype, device=windows.device)
    # 2**a by lookup: ONNX's BitShift and integer Pow are not run everywhere
    powers = torch.tensor([1 << a for a in range(k)], dtype=windows.dtype, device=windows.device)
    plan = _divisor_plan(levels, "max")
    pooled: dict[int, Tensor] = {}
    for n in sorted(set(levels), reverse=True):  # finer levels first: they feed coarser ones
        src = plan[n]
        if src != n:
            r = src // n
            fine = pooled[src]  # [R, C, src, src]
            pooled[n] = fine.reshape(-1, channels, n, r, n, r).amax(dim=(3, 5))
            continue
        i = bins[:n]
        # Appendix A bins of each window, in map cells: [R, n]
        ys = y0[:, None] + (i * (y1 - y0)[:, None]) // n
        ye = y0[:, None] + ((i + 1) * (y1 - y0)[:, None] + n - 1) // n
        xs = x0[:, None] + (i * (x1 - x0)[:, None]) // n
        xe = x0[:, None] + ((i + 1) * (x1 - x0)[:, None] + n - 1) // n
        ka, kb = _floor_log2(ye - ys, k), _floor_log2(xe - xs, k)  # [R, n]
        top, bottom = ys, ye - powers[ka]  # two row blocks of 2**a covering [ys, ye)
        left, right = xs, xe - powers[kb]
        # flat table rows for bin (j, i): [R, n(rows), n(cols)]
        base = (ka[:, :, None] * k + kb[:, None, :]) * height
        corners = [
            ((base + ry[:, :, None]) * width + rx[:, None, :]).reshape(-1)
            for ry in (top, bottom)
            for rx in (left, right)
        ]
        vals = [table.index_select(0, c) for c in corners]  # [R*n*n, C] each
        best = torch.maximum(torch.maximum(vals[0], vals[1]), torch.maximum(vals[2], vals[3]))
        pooled[n] = best.reshape(-1, n, n, channels).permute(0, 3, 1, 2)  # [R, C, n, n]
    return torch.cat([pooled[n].reshape(-1, channels * n * n) for n in levels], dim=1)
