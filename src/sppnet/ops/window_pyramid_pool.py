"""Spatial pyramid pooling of many windows of shared feature maps (Sec. 4.1, Appendix A).

Shape shorthand: N images, C channels, H x W map, R windows, L = sum(n * n) bins.

The detector computes the conv maps of an image once and pools every candidate window
from them. A window is a rectangle of feature-map cells ``(x0, y0, x1, y1)``,
end-exclusive; its pyramid is exactly :func:`spatial_pyramid_pool` of the cropped map
``features[b, :, y0:y1, x0:x1]``, with the same output order.

How it is fast without a custom kernel. Max mode: a per-image 2-D sparse table holds the
max over every ``2**a x 2**b`` block of cells, so the max over any bin is the max of four
overlapping table entries (a range-maximum query). Only the finest level is looked up; a
coarser level whose size divides a finer one is the union of its bins (``pyramid_bins``).
Average mode: an integral image (summed-area table, accumulated in float64 against
cancellation) gives a bin's sum as four signed entries. Windows go in chunks so that the
temporaries stay small: fresh large buffers page-fault at a few GB/s on CPU.

Max-mode gradients skip autograd: the forward also records each output's argmax element
(an index table built alongside the sparse table) and the backward scatters the output
gradient there (``_WindowMaxPool``), 3x faster than differentiating the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sppnet.ops.compiled_pyramid_pool import (
    _grad_in_input_layout,
    _record_input_layout,
    compiled_pool_available,
    compiled_window_pool,
)
from sppnet.ops.pyramid_bins import bin_edges, check_levels, num_pyramid_bins
from sppnet.ops.spatial_pyramid_pool import _check_mode, _divisor_plan, check_feature_map

__all__ = ["window_pyramid_pool"]

# Bins looked up per chunk: 4 corner buffers of 1024 x C floats (4 MB for C=256).
_CHUNK_BINS = 1024


def _check_windows(
    windows: Tensor, batch_index: Tensor | None, n_img: int, height: int, width: int
) -> Tensor:
    """Validate windows and batch indices; return the batch indices as ``LongTensor[R]``."""
    if not isinstance(windows, Tensor) or windows.dtype not in (torch.int32, torch.int64):
        got = windows.dtype if isinstance(windows, Tensor) else type(windows).__name__
        raise TypeError(
            f"windows must be an integer LongTensor[R, 4] of cells (x0, y0, x1, y1), got {got}"
        )
    if windows.dim() != 2 or windows.shape[1] != 4:
        raise ValueError(
            f"windows must be LongTensor[R, 4] (x0, y0, x1, y1), got shape {tuple(windows.shape)}"
        )
    n_win = windows.shape[0]
    if batch_index is None:
        batch_index = torch.zeros(n_win, dtype=torch.long, device=windows.device)
    elif not isinstance(batch_index, Tensor) or batch_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"batch_index must be an integer LongTensor[R], got {batch_index!r}")
    elif batch_index.shape != (n_win,):
        raise ValueError(
            f"batch_index must be LongTensor[R] with R={n_win} (one per window), "
            f"got shape {tuple(batch_index.shape)}"
        )
    if n_win == 0:
        return batch_index.long()
    x0, y0, x1, y1 = windows.long().cpu().unbind(1)
    bad = (x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height) | (x1 <= x0) | (y1 <= y0)
    if bool(bad.any()):
        r = int(bad.nonzero()[0])
        raise ValueError(
            f"window {r} = {windows[r].tolist()} is not a non-empty rectangle of cells inside "
            f"the {height}x{width} feature map (need 0 <= x0 < x1 <= {width} and "
            f"0 <= y0 < y1 <= {height}); {int(bad.sum())} of {n_win} windows are invalid"
        )
    b = batch_index.long().cpu()
    outside = (b < 0) | (b >= n_img)
    if bool(outside.any()):
        r = int(outside.nonzero()[0])
        raise ValueError(
            f"batch_index[{r}] = {int(b[r])} is outside the batch of {n_img} feature maps"
        )
    return batch_index.long()


def _log2_floor(v: Tensor) -> Tensor:
    """``floor(log2(v))`` for integer ``v >= 1``, exact (frexp, no float rounding)."""
    return torch.frexp(v.double())[1].long() - 1


def _bin_edges_abs(windows: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Map coordinates ``(ys, ye, xs, xe)`` of an ``n x n`` level's bins: LongTensor[R, n] each."""
    x0, y0, x1, y1 = windows.unbind(1)
    ys, ye = bin_edges(y1 - y0, n)
    xs, xe = bin_edges(x1 - x0, n)
    return ys + y0[:, None], ye + y0[:, None], xs + x0[:, None], xe + x0[:, None]


def _max_sparse_table(fmap: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """``T[a, b, n, y, x] = max(fmap[n, y : y + 2**a, x : x + 2**b])`` over cells, per channel.

    Built in place, outside autograd (max mode's gradient comes from :class:`_WindowMaxPool`).

    Args:
        fmap: ``Tensor[N, H, W, C]`` (channels last).
        n_rows, n_cols: how many row / column doublings ``a``, ``b`` to build.

    Returns:
        ``Tensor[n_rows, n_cols, N, H, W, C]``. Only entries whose block lies inside the map
        are defined; a query of a bin inside the map never reads the others (its blocks
        lie inside the bin).
    """
    height, width = fmap.shape[1], fmap.shape[2]
    # One buffer, filled in place: fresh per-level tensors would page-fault on every call.
    table = fmap.new_empty((n_rows, n_cols, *fmap.shape))
    table[0, 0].copy_(fmap)
    for a in range(n_rows):
        rows_valid = height - (1 << a) + 1
        if a:
            s = 1 << (a - 1)
            prev = table[a - 1, 0]
            torch.maximum(
                prev[:, :rows_valid], prev[:, s : s + rows_valid], out=table[a, 0, :, :rows_valid]
            )
        for b in range(1, n_cols):
            s, cols_valid = 1 << (b - 1), width - (1 << b) + 1
            prev = table[a, b - 1, :, :rows_valid]
            torch.maximum(
                prev[:, :, :cols_valid],
                prev[:, :, s : s + cols_valid],
                out=table[a, b, :, :rows_valid, :cols_valid],
            )
    return table


def _corner_rows_max(
    windows: Tensor, bidx: Tensor, n: int, n_cols: int, shape: tuple[int, ...]
) -> Tensor:
    """Flat sparse-table rows of the four blocks that cover each bin: ``LongTensor[4, R, n, n]``."""
    n_img, height, width = shape[:3]
    ys, ye, xs, xe = _bin_edges_abs(windows, n)
    ka, kb = _log2_floor(ye - ys), _log2_floor(xe - xs)
    # Blocks of 2**ka x 2**kb cells anchored at a bin's four corners cover it exactly.
    ya, yb = ys[:, :, None], (ye - (1 << ka))[:, :, None]
    xa, xb = xs[:, None, :], (xe - (1 << kb))[:, None, :]
    table_level = (ka[:, :, None] * n_cols + kb[:, None, :]) * n_img + bidx[:, None, None]
    base = table_level * (height * width)
    rows = [base + y * width + x for y in (ya, yb) for x in (xa, xb)]
    return torch.stack(rows)


def _corner_rows_sum(windows: Tensor, bidx: Tensor, n: int, shape: tuple[int, ...]) -> Tensor:
    """Flat integral-image rows of each bin's corners: ``LongTensor[4, R, n, n]``.

    The bin sum is ``S[0] - S[1] - S[2] + S[3]`` of the four rows, in this order.
    """
    h1, w1 = shape[1], shape[2]
    ys, ye, xs, xe = _bin_edges_abs(windows, n)
    base = (bidx * (h1 * w1))[:, None, None]
    top, bottom = ys[:, :, None] * w1, ye[:, :, None] * w1
    left, right = xs[:, None, :], xe[:, None, :]
    return torch.stack(
        [base + bottom + right, base + top + right, base + bottom + left, base + top + left]
    )


def _index_dtype(n_elements: int) -> torch.dtype:
    """int32 argmax indices when they fit: the saved indices (R * C * L of them) halve."""
    return torch.int32 if n_elements < 2**31 else torch.int64


def _max_sparse_table_argmax(fmap: Tensor, n_rows: int, n_cols: int) -> tuple[Tensor, Tensor]:
    """:func:`_max_sparse_table` (untracked, same values) plus each entry's argmax.

    ``I[a, b, n, y, x, c]`` is the flat index ``((n * H + y') * W + x') * C + c`` of the
    element of ``fmap: [N', H, W, C]`` (contiguous) that holds ``T[a, b, n, y, x, c]``:
    indexing elements rather than cells lets backward scatter the gradient with one
    ``index_add_`` and no index arithmetic. Each doubling keeps the argmax of the larger
    half (the lower half on ties), so backward routes a bin's gradient to one element, as
    max pooling does.
    """
    height, width = fmap.shape[1], fmap.shape[2]
    table = _max_sparse_table(fmap, n_rows, n_cols)
    itable = torch.empty(table.shape, dtype=_index_dtype(fmap.numel()), device=fmap.device)
    torch.arange(fmap.numel(), out=itable[0, 0].view(-1))
    for a in range(n_rows):
        rows_valid = height - (1 << a) + 1
        if a:
            s = 1 << (a - 1)
            prev, iprev = table[a - 1, 0], itable[a - 1, 0]
            torch.where(
                prev[:, :rows_valid] >= prev[:, s : s + rows_valid],
                iprev[:, :rows_valid],
                iprev[:, s : s + rows_valid],
                out=itable[a, 0, :, :rows_valid],
            )
        for b in range(1, n_cols):
            s, cols_valid = 1 << (b - 1), width - (1 << b) + 1
            prev, iprev = table[a, b - 1, :, :rows_valid], itable[a, b - 1, :, :rows_valid]
            torch.where(
                prev[:, :, :cols_valid] >= prev[:, :, s : s + cols_valid],
                iprev[:, :, :cols_valid],
                iprev[:, :, s : s + cols_valid],
                out=itable[a, b, :, :rows_valid, :cols_valid],
            )
    return table, itable


class _MaxTables(NamedTuple):
    """How the max path looks bins up: the levels, the sparse table's row and column
    doublings, and the finest-level bins per chunk."""

    levels: tuple[int, ...]
    n_rows: int
    n_cols: int
    chunk_bins: int


def _table_depth(wins: Tensor, direct: Sequence[int], height: int, width: int) -> tuple[int, int]:
    """Row and column doublings of a sparse table that covers every bin of the ``direct``
    levels of every window."""
    # ceil(side / n) + 1 bounds every bin side of a level-n pyramid of that side.
    n_rows = n_cols = 1
    for n in direct:
        tall = torch.clamp(
            -torch.div(-(wins[:, 3] - wins[:, 1]), n, rounding_mode="floor") + 1, max=height
        )
        wide = torch.clamp(
            -torch.div(-(wins[:, 2] - wins[:, 0]), n, rounding_mode="floor") + 1, max=width
        )
        n_rows = max(n_rows, int(_log2_floor(tall).max()) + 1)
        n_cols = max(n_cols, int(_log2_floor(wide).max()) + 1)
    return n_rows, n_cols


def _write_levels(dst: Tensor, pooled: dict[int, Tensor], levels: tuple[int, ...]) -> None:
    """Copy ``pooled[n]: [r, C, n, n]`` of each level into ``dst: [r, C * L]``, level by
    level in output order (a level may appear twice), each in ``(C, n, n)`` order."""
    off = 0
    for n in levels:
        r, channels = pooled[n].shape[:2]
        dst[:, off : off + channels * n * n].view(r, channels, n, n).copy_(pooled[n])
        off += channels * n * n


def _max_pool_argmax(
    fmap: Tensor, wins: Tensor, bidx: Tensor, tables: _MaxTables
) -> tuple[Tensor, Tensor]:
    """Max-mode pyramids of all windows and the argmax of every output value.

    Values are computed by the same operations as the no-grad path of
    :func:`window_pyramid_pool`, so they are bit-identical to it. Returns
    ``(out, arg)``, both ``[R, C * L]``; ``arg`` holds flat element indices of the
    contiguous ``fmap: [N', H, W, C]`` (int32 below 2**31 elements: 102 MB rather than
    205 MB for 2,000 windows of 256 channels and levels (6, 3, 2, 1)).
    """
    levels, n_rows, n_cols, chunk_bins = tables
    channels = fmap.shape[3]
    n_win = wins.shape[0]
    plan = _divisor_plan(levels, "max")
    direct = sorted({n for n in levels if plan[n] == n}, reverse=True)
    table, itable = _max_sparse_table_argmax(fmap, n_rows, n_cols)
    flat, iflat = table.reshape(-1, channels), itable.reshape(-1, channels)
    rows = {n: _corner_rows_max(wins, bidx, n, n_cols, fmap.shape) for n in direct}
    n_out = channels * num_pyramid_bins(levels)
    out = fmap.new_empty((n_win, n_out))
    arg = torch.empty((n_win, n_out), dtype=itable.dtype, device=fmap.device)
    step = max(1, chunk_bins // sum(n * n for n in direct))
    for start in range(0, n_win, step):
        stop = min(start + step, n_win)
        r = stop - start
        pooled: dict[int, Tensor] = {}
        where: dict[int, Tensor] = {}
        for n in direct:
            idx = rows[n][:, start:stop].reshape(4, -1)
            v, iv = flat.index_select(0, idx[0]), iflat.index_select(0, idx[0])
            for k in (1, 2, 3):
                c = flat.index_select(0, idx[k])
                torch.where(c > v, iflat.index_select(0, idx[k]), iv, out=iv)
                torch.maximum(v, c, out=v)
            pooled[n] = v.view(r, n, n, channels).permute(0, 3, 1, 2)
            where[n] = iv.view(r, n, n, channels).permute(0, 3, 1, 2)
        for n in sorted(levels, reverse=True):
            if n not in pooled:
                # the union's max sits in one finer bin: take that bin's argmax
                m = plan[n]
                pooled[n], pos = F.max_pool2d(pooled[m], m // n, return_indices=True)
                finer = where[m].reshape(r, channels, m * m)
                where[n] = finer.gather(2, pos.reshape(r, channels, n * n)).view(r, channels, n, n)
        _write_levels(out[start:stop], pooled, levels)
        _write_levels(arg[start:stop], where, levels)
    return out, arg


class _WindowMaxPool(torch.autograd.Function):
    """Max-mode window pyramids with a scatter backward.

    Letting autograd differentiate the sparse table costs ~10 full passes per
    ``torch.maximum``: 2,000 windows of a 256x42x56 map took 2.2 s forward+backward on one
    thread, against 0.19 s for the forward alone. Max pooling's gradient only needs each
    output's argmax element: the forward records it (0.70 s forward+backward), the backward
    is one zero map and one ``index_add_`` of the output gradient, the subgradient max
    pooling itself uses (one argmax per output, also on ties). Not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        features: Tensor,
        fmap: Tensor,
        used: Tensor,
        wins: Tensor,
        bidx: Tensor,
        tables: _MaxTables,
    ) -> Tensor:
        out, arg = _max_pool_argmax(fmap, wins, bidx, tables)
        ctx.save_for_backward(arg, used)
        ctx.fmap_shape = fmap.shape
        _record_input_layout(ctx, features)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        arg, used = ctx.saved_tensors
        n_img, channels, height, width = ctx.features_shape
        n_used = ctx.fmap_shape[0]
        # Every output adds its gradient to its argmax element of fmap [N', H, W, C].
        grad = grad_out.new_zeros(n_used * height * width * channels)
        grad.index_add_(0, arg.view(-1), grad_out.reshape(-1))
        grad = grad.view(n_used, height, width, channels)
        images = used if n_used < n_img else None  # images without a window get zero gradient
        return _grad_in_input_layout(ctx, grad, images), None, None, None, None, None


def window_pyramid_pool(
    features: Tensor,
    windows: Tensor,
    batch_index: Tensor | None = None,
    levels: Sequence[int] = (6, 3, 2, 1),
    mode: str = "max",
    *,
    chunk_bins: int = _CHUNK_BINS,
) -> Tensor:
    """Pool a spatial pyramid inside each window of shared feature maps (Sec. 4.1).

    Window ``r`` of image ``b = batch_index[r]`` gives exactly
    ``spatial_pyramid_pool(features[b : b + 1, :, y0:y1, x0:x1], levels, mode)[0]``.
    Differentiable with respect to ``features`` (end-to-end fine-tuning).

    Args:
        features: ``Tensor[N, C, H, W]`` conv maps of N images (channels_last is fastest).
        windows: ``LongTensor[R, 4]`` feature-map cells ``(x0, y0, x1, y1)``, end-exclusive
            (see :func:`map_windows_to_features`); each a non-empty rectangle inside the map.
        batch_index: ``LongTensor[R]``, the image of each window; default all 0.
        levels: bins per side of each pyramid level, in output order.
        mode: ``"max"`` (the paper) or ``"avg"``.
        chunk_bins: finest-level bins looked up at a time, except in avg mode with
            autograd (all windows at once); bounds the temporaries at about
            ``4 * chunk_bins * C`` values (a speed/memory knob; results do not depend on it).

    Returns:
        ``Tensor[R, C * L]``: each row level by level, each level flattened as ``(C, n, n)``.

    Raises:
        TypeError: non-float features, or non-integer windows or batch indices.
        ValueError: wrong shapes, bad levels or mode, windows that are empty or leave the
            map, batch indices outside ``0..N-1``.
    """
    check_feature_map(features, "features")
    levels = check_levels(levels)
    mode = _check_mode(mode)
    n_img, channels, height, width = features.shape
    bidx = _check_windows(windows, batch_index, n_img, height, width)
    n_win = windows.shape[0]
    if n_win == 0 or channels == 0:
        return features.new_zeros((n_win, channels * num_pyramid_bins(levels)))
    if compiled_pool_available(features, mode):
        return compiled_window_pool(features, windows, bidx, levels, mode)
    return _torch_window_pool(features, windows, bidx, levels, mode, chunk_bins)


def _torch_window_pool(
    features: Tensor,
    windows: Tensor,
    bidx: Tensor,
    levels: tuple[int, ...],
    mode: str,
    chunk_bins: int,
) -> Tensor:
    """The pure-PyTorch path of :func:`window_pyramid_pool` (any device and dtype)."""
    n_img, channels, height, width = features.shape
    n_win = windows.shape[0]
    dev = features.device
    wins = windows.to(device=dev, dtype=torch.long)
    track = torch.is_grad_enabled() and features.requires_grad
    # Max mode with autograd goes through _WindowMaxPool: its own backward, so the table
    # is built from detached features and autograd records nothing inside.
    custom = track and mode == "max"
    src = features.detach() if custom else features
    # Only the images that own a window enter the look-up table.
    used, bidx = torch.unique(bidx.to(dev), return_inverse=True)
    fmap = src.index_select(0, used) if used.numel() < n_img else src
    fmap = fmap.permute(0, 2, 3, 1).contiguous()  # [N', H, W, C]; free when channels_last
    plan = _divisor_plan(levels, mode)
    direct = sorted({n for n in levels if plan[n] == n}, reverse=True)

    if mode == "max":
        n_rows, n_cols = _table_depth(wins, direct, height, width)
        if custom:
            tables = _MaxTables(levels, n_rows, n_cols, chunk_bins)
            return _WindowMaxPool.apply(features, fmap, used, wins, bidx, tables)
        table = _max_sparse_table(fmap, n_rows, n_cols)
        rows = {n: _corner_rows_max(wins, bidx, n, n_cols, fmap.shape) for n in direct}
    else:
        acc = torch.float64
        # S[n, y, x] = sum of fmap[n, :y, :x]; the zero first row and column make every bin
        # sum four signed look-ups with no special case at the map edge.
        table = F.pad(fmap.to(acc).cumsum(1).cumsum(2), (0, 0, 1, 0, 1, 0))
        rows = {n: _corner_rows_sum(wins, bidx, n, table.shape) for n in direct}
    flat = table.reshape(-1, channels)
    if track:
        # With autograd, one chunk, concatenated once: in-place writes into one output would
        # make autograd clone the whole output gradient once per write, and every chunk's
        # look-up would add a zero gradient the size of the whole table in backward.
        # Temporaries are then ~16 * R * L * C bytes.
        pooled = _pool_chunk(flat, rows, wins, slice(0, n_win), plan, levels, mode, features.dtype)
        return torch.cat([pooled[n].reshape(n_win, -1) for n in levels], dim=1)
    # Without autograd, each chunk goes straight into the output.
    out = features.new_empty((n_win, channels * num_pyramid_bins(levels)))
    step = max(1, chunk_bins // sum(n * n for n in direct))
    for start in range(0, n_win, step):
        chunk = slice(start, min(start + step, n_win))
        pooled = _pool_chunk(flat, rows, wins, chunk, plan, levels, mode, features.dtype)
        _write_levels(out[chunk], pooled, levels)
    return out


def _pool_chunk(
    flat: Tensor,
    rows: dict[int, Tensor],
    wins: Tensor,
    chunk: slice,
    plan: dict[int, int],
    levels: tuple[int, ...],
    mode: str,
    dtype: torch.dtype,
) -> dict[int, Tensor]:
    """The pyramids of windows ``wins[chunk]``: ``{n: Tensor[r, C, n, n]}`` for every level.

    Args:
        flat: the sparse table (max) or integral image (avg) as ``Tensor[rows, C]``.
        rows: per directly pooled level, ``LongTensor[4, R, n, n]`` the flat table rows of
            each bin's four corners (:func:`_corner_rows_max` / :func:`_corner_rows_sum`).
        wins: ``LongTensor[R, 4]`` all the windows.
        chunk: the windows of this chunk.
        plan: level -> the level it is pooled from (itself when pooled directly).
        levels: every level.
        mode: ``"max"`` (``flat`` is the sparse table) or ``"avg"`` (the integral image).
        dtype: the features' dtype (avg mode's means are rounded to it once).
    """
    channels = flat.shape[1]
    r = chunk.stop - chunk.start
    pooled: dict[int, Tensor] = {}
    for n, corners in rows.items():
        idx = corners[:, chunk].reshape(4, -1)
        c = [flat.index_select(0, idx[k]) for k in range(4)]
        if mode == "avg":
            ys, ye, xs, xe = _bin_edges_abs(wins[chunk], n)
            area = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).reshape(-1, 1)
            v = (((c[0] - c[1]) - (c[2] - c[3])) / area.to(flat.dtype)).to(dtype)
        else:
            v = c[0]
            for k in (1, 2, 3):
                torch.maximum(v, c[k], out=v)
        # [r*n*n, C] is [r, C, n, n] in channels_last memory: pooling it stays fast
        pooled[n] = v.view(r, n, n, channels).permute(0, 3, 1, 2)
    for n in sorted(levels, reverse=True):
        if n not in pooled:
            # a coarser bin is the union of q x q finer bins (module docstring)
            pooled[n] = F.max_pool2d(pooled[plan[n]], plan[n] // n)
    return pooled
