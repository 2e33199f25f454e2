"""Compiled CPU kernels of window pyramid pooling (numba; imported lazily, optional).

Shape shorthand: N images, C channels, H x W map, R windows, L = sum(n * n) bins,
B = the bins of the distinct levels (scratch rows), K block tables, T parallel chunks.

Why hand-written: no library pools a pyramid inside thousands of arbitrary windows. The
torch ops that come closest (``adaptive_max_pool2d`` per crop, ``roi_pool``) have other bin
rules or cost one call per window, and composing the result out of whole-tensor torch ops
(sparse tables, integral images, gathers) spends most of its time allocating and faulting in
temporaries several times the output's size. A loop per window keeps the window's bins in
cache and writes the output once.

The kernels read the features channels last (``fmap: [N, H, W, C]``), so the innermost loop
runs over contiguous channels (SIMD). They compute, bit for bit, what the torch path of
``window_pyramid_pool`` computes:

* max: a bin of a directly pooled level is covered by ``2**k x 2**k`` blocks whose maxima
  come from small per-image tables (``block_tables``; k <= K, a handful of reads per bin
  instead of every cell); a level ``n`` built from a finer level ``m`` (``n`` divides ``m``)
  takes the max of the ``(m/n)**2`` finer bins of its union, as the torch path does. Max is
  exact, so any order of evaluation gives the same values. NaN is the caller's business
  (it keeps such maps on the torch path, whose ``maximum`` propagates NaN).
* avg: the float64 integral image is built with the same sequence of additions as
  ``cumsum(1).cumsum(2)``, and a bin's mean is ``((S[ye,xe] - S[ys,xe]) - (S[ye,xs] -
  S[ys,xs])) / area``, rounded once to the feature dtype.

Backward runs in parallel (each element sums its terms in the same order for any thread
count): over groups of windows, each into a gradient map of its own, the maps summed in
group order at the end (splitting the channels between threads instead measured ~4x slower:
every thread then walks every window):

* max finds each output's element again rather than storing ``R * C * L`` indices (as
  large as the output): the bin's first maximal cell in row-major order, the element that
  ``torch.max(dim)`` over the bin's cells, and so the per-window reference, picks. The
  tables also hold each block's first maximal cell; a bin (or a union of bins) takes, among
  its blocks that hold the max, the smallest cell, which is its own first maximal cell.
* avg adds ``grad / area`` at the four integral-image corners of each bin (float64) and
  turns them into cell gradients with suffix sums: the transpose of the forward.

One pattern recurs: a running max always goes from one buffer into another. Updating a
buffer in place (``a[c] = v if v > a[c] else a[c]``) compiles to masked stores, which are
several times slower than the loads and compares around them on x86.
"""

from __future__ import annotations

import types

import numba
import numpy as np

__all__ = [
    "avg_backward",
    "avg_forward",
    "block_tables",
    "integral_image",
    "max_backward",
    "max_forward",
]

_OPTS = {"cache": True, "nogil": True, "boundscheck": False}


def _start(i, size, n):
    """Appendix A: bin ``i`` of ``n`` over ``size`` cells starts at ``floor(i * size / n)``."""
    return (i * size) // n


def _end(i, size, n):
    """... and ends (exclusive) at ``ceil((i + 1) * size / n)``."""
    return -((-(i + 1) * size) // n)


def _floor_log2(v):
    """``floor(log2(v))`` for ``v >= 1``."""
    k = 0
    while (2 << k) <= v:
        k += 1
    return k


_start = numba.njit(inline="always", **_OPTS)(_start)
_end = numba.njit(inline="always", **_OPTS)(_end)
_floor_log2 = numba.njit(inline="always", **_OPTS)(_floor_log2)


@numba.njit(inline="always", **_OPTS)
def _span(i, size, n, origin):
    """Map cells ``[start, end)`` of bin ``i`` of ``n`` over ``size`` cells from ``origin``."""
    return origin + _start(i, size, n), origin + _end(i, size, n)


@numba.njit(inline="always", **_OPTS)
def _bin_cells(j, i, n, x0, y0, w, h):
    """Bin ``(j, i)`` of ``n x n`` over a ``w x h`` window at ``(x0, y0)``: its rows
    ``[ys, ye)``, columns ``[xs, xe)`` and its area in cells (float64)."""
    ys, ye = _span(j, h, n, y0)
    xs, xe = _span(i, w, n, x0)
    return ys, ye, xs, xe, np.float64((ye - ys) * (xe - xs))


@numba.njit(inline="always", **_OPTS)
def _finer_row(soff, m, q, j, i, u):
    """Scratch row of finer bin ``u`` (row-major in its ``q x q`` block) of the union that
    makes bin ``(j, i)`` of a coarser level, the finer level ``m x m`` starting at ``soff``."""
    return soff + (j * q + u // q) * m + i * q + u % q


@numba.njit(**_OPTS)
def _balanced_chunks(wins, levels, n_chunks):
    """Window ranges ``[bounds[t], bounds[t+1])`` of about equal work: ``int64[T + 1]``.

    A window costs about its finest level's cells read, ``(h + n - 1) * (w + n - 1)``
    (bins overlap by up to a cell), plus its output.
    """
    n_win = wins.shape[0]
    n = levels[0]
    cost = np.empty(n_win + 1, np.float64)
    cost[0] = 0.0
    for r in range(n_win):
        h = wins[r, 3] - wins[r, 1] + n - 1
        w = wins[r, 2] - wins[r, 0] + n - 1
        cost[r + 1] = cost[r] + h * w + 4 * n * n
    bounds = np.empty(n_chunks + 1, np.int64)
    r = 0
    for t in range(n_chunks + 1):
        target = cost[n_win] * t / n_chunks
        while r < n_win and cost[r] < target:
            r += 1
        bounds[t] = r
    bounds[n_chunks] = n_win
    return bounds


def block_tables(fmap, n_tables, with_arg, n_chunks):
    """Max of every ``2**k x 2**k`` block of cells, k = 1..K, and its first maximal cell.

    Returns ``(tab, arg)``, each ``[K, N, H, W, C]``: ``tab[k - 1, n, y, x]`` is the max of
    ``fmap[n, y : y + 2**k, x : x + 2**k]`` (defined where the block lies inside the map).
    With ``with_arg``, ``arg`` (int32, at least one table) holds the flat cell
    ``y' * W + x'`` of the block's first maximal element in row-major order: among its four
    half-size blocks, the one with the largest max, the smallest cell on ties (else
    ``arg`` is empty).
    """
    n_img, height, width, n_chan = fmap.shape
    tab = np.empty((n_tables, n_img, height, width, n_chan), fmap.dtype)
    # at least one (untouched) arg table, so that a look-up of single cells can name one
    n_arg = max(n_tables, 1) if with_arg else 0
    arg = np.empty((n_arg, n_img, height, width, n_chan), np.int32)
    for k in range(n_tables):
        s = 1 << k  # half the block side
        rows = height - 2 * s + 1
        for t in numba.prange(n_img * n_chunks):
            b = t // n_chunks
            part = t % n_chunks
            for y in range(rows * part // n_chunks, rows * (part + 1) // n_chunks):
                for x in range(width - 2 * s + 1):
                    dst = tab[k, b, y, x]
                    src = fmap[b] if k == 0 else tab[k - 1, b]
                    a0, a1 = src[y, x], src[y, x + s]
                    a2, a3 = src[y + s, x], src[y + s, x + s]
                    if not with_arg:
                        for c in range(n_chan):
                            w = a0[c]
                            v = a1[c]
                            w = v if v > w else w
                            v = a2[c]
                            w = v if v > w else w
                            v = a3[c]
                            dst[c] = v if v > w else w
                    elif k == 0:
                        idst = arg[k, b, y, x]
                        cell = np.int32(y * width + x)
                        # the four cells come in row-major order: strict > keeps the first
                        for c in range(n_chan):
                            w = a0[c]
                            iw = cell
                            v = a1[c]
                            iw = cell + 1 if v > w else iw
                            w = v if v > w else w
                            v = a2[c]
                            iw = cell + width if v > w else iw
                            w = v if v > w else w
                            v = a3[c]
                            iw = cell + width + 1 if v > w else iw
                            dst[c] = v if v > w else w
                            idst[c] = iw
                    else:
                        idst = arg[k, b, y, x]
                        isrc = arg[k - 1, b]
                        i0, i1 = isrc[y, x], isrc[y, x + s]
                        i2, i3 = isrc[y + s, x], isrc[y + s, x + s]
                        for c in range(n_chan):
                            w = a0[c]
                            iw = i0[c]
                            v = a1[c]
                            iv = i1[c]
                            iw = iv if (v > w) | ((v == w) & (iv < iw)) else iw
                            w = v if v > w else w
                            v = a2[c]
                            iv = i2[c]
                            iw = iv if (v > w) | ((v == w) & (iv < iw)) else iw
                            w = v if v > w else w
                            v = a3[c]
                            iv = i3[c]
                            iw = iv if (v > w) | ((v == w) & (iv < iw)) else iw
                            dst[c] = v if v > w else w
                            idst[c] = iw
    return tab, arg


@numba.njit(inline="always", **_OPTS)
def _vmax(dst, a, b):
    """``dst[c] = max(a[c], b[c])`` for every channel ``c``."""
    for c in range(dst.shape[0]):
        v = b[c]
        w = a[c]
        dst[c] = v if v > w else w


@numba.njit(inline="always", **_OPTS)
def _vargmax(dst, idst, a, ia, a_cell, b, ib, b_cell):
    """Max of ``a[c]`` and ``b[c]`` into ``dst[c]``, its cell into ``idst[c]``.

    Cells come from ``ia``/``ib``, or are one cell for every channel where
    ``*_cell >= 0``. On equal values the smaller cell (first in row-major order) wins.
    One loop per case: a load behind a branch inside the loop would keep it scalar.
    """
    n_chan = dst.shape[0]
    if a_cell >= 0 and b_cell >= 0:
        ca = np.int32(a_cell)
        cb = np.int32(b_cell)
        for c in range(n_chan):
            v = b[c]
            w = a[c]
            idst[c] = cb if (v > w) | ((v == w) & (cb < ca)) else ca
            dst[c] = v if v > w else w
    elif b_cell >= 0:
        cb = np.int32(b_cell)
        for c in range(n_chan):
            v = b[c]
            w = a[c]
            iw = ia[c]
            idst[c] = cb if (v > w) | ((v == w) & (cb < iw)) else iw
            dst[c] = v if v > w else w
    else:  # both from tables (a single cell ``a`` only ever meets a single cell ``b``)
        for c in range(n_chan):
            v = b[c]
            w = a[c]
            iv = ib[c]
            iw = ia[c]
            idst[c] = iv if (v > w) | ((v == w) & (iv < iw)) else iw
            dst[c] = v if v > w else w


@numba.njit(inline="always", **_OPTS)
def _blocks(ys, ye, xs, xe, n_tables):
    """Block size ``k`` that covers a bin, its side, and the number of blocks down, across."""
    k = min(_floor_log2(ye - ys), _floor_log2(xe - xs), n_tables)
    s = 1 << k
    return k, s, (ye - ys + s - 1) // s, (xe - xs + s - 1) // s


@numba.njit(inline="always", **_OPTS)
def _bin_max(fmap, tab, b, ys, ye, xs, xe, dst, tmp):
    """Max of one bin's cells, every channel, into ``dst: [C]``.

    The bin is covered by ``2**k x 2**k`` blocks (k as large as the bin and the tables
    allow), the last row and column of blocks moved back to end at the bin's edge.
    """
    k, s, ny, nx = _blocks(ys, ye, xs, xe, tab.shape[0])
    src = fmap[b] if k == 0 else tab[k - 1, b]
    total = ny * nx
    cur = src[ys, xs]
    if total == 1:
        dst[:] = cur
        return
    for q in range(1, total):
        y = min(ys + (q // nx) * s, ye - s)
        x = min(xs + (q % nx) * s, xe - s)
        nxt = dst if q == total - 1 else tmp[q & 1]
        _vmax(nxt, cur, src[y, x])
        cur = nxt


@numba.njit(inline="always", **_OPTS)
def _bin_argmax(fmap, tab, arg, b, ys, ye, xs, xe, dst, idst, tmp, itmp):
    """:func:`_bin_max` and the bin's first maximal cell (row-major) into ``idst: [C]``:
    the smallest cell among its blocks' first maximal cells that hold the max."""
    width = fmap.shape[2]
    k, s, ny, nx = _blocks(ys, ye, xs, xe, tab.shape[0])
    src = fmap[b] if k == 0 else tab[k - 1, b]
    isrc = arg[max(k - 1, 0), b]  # not read for single cells (k = 0)
    total = ny * nx
    cur = src[ys, xs]
    icur = isrc[ys, xs] if k > 0 else idst
    cur_cell = ys * width + xs if k == 0 else -1
    if total == 1:
        dst[:] = cur
        if k == 0:
            idst[:] = np.int32(cur_cell)
        else:
            idst[:] = icur
        return
    for q in range(1, total):
        y = min(ys + (q // nx) * s, ye - s)
        x = min(xs + (q % nx) * s, xe - s)
        last = q == total - 1
        nxt = dst if last else tmp[q & 1]
        inxt = idst if last else itmp[q & 1]
        iblk = isrc[y, x] if k > 0 else idst
        _vargmax(nxt, inxt, cur, icur, cur_cell, src[y, x], iblk,
                 y * width + x if k == 0 else -1)  # fmt: skip
        cur = nxt
        icur = inxt
        cur_cell = -1


@numba.njit(inline="always", **_OPTS)
def _window_max(fmap, tab, b, x0, y0, x1, y1, levels, source, scratch_off, acc, tmp):
    """Max of every bin of one window into ``acc: [B, C]``, distinct levels finest first."""
    h = y1 - y0
    w = x1 - x0
    for k in range(levels.shape[0]):
        n = levels[k]
        off = scratch_off[k]
        if source[k] < 0:
            for j in range(n):
                ys, ye = _span(j, h, n, y0)
                for i in range(n):
                    xs, xe = _span(i, w, n, x0)
                    _bin_max(fmap, tab, b, ys, ye, xs, xe, acc[off + j * n + i], tmp)
            continue
        m = levels[source[k]]
        q = m // n
        soff = scratch_off[source[k]]
        for j in range(n):
            for i in range(n):
                cur = acc[_finer_row(soff, m, q, j, i, 0)]  # the union of q x q finer bins
                if q == 1:
                    acc[off + j * n + i, :] = cur
                for u in range(1, q * q):
                    nxt = acc[off + j * n + i] if u == q * q - 1 else tmp[u & 1]
                    _vmax(nxt, cur, acc[_finer_row(soff, m, q, j, i, u)])
                    cur = nxt


@numba.njit(inline="always", **_OPTS)
def _transpose(src, dst, nn):
    """``dst[c * nn + t] = src[t, c]``: one level from ``[n*n, C]`` to ``(C, n, n)``."""
    for c in range(src.shape[1]):
        for t in range(nn):
            dst[c * nn + t] = src[t, c]


@numba.njit(inline="always", **_OPTS)
def _write_row(acc, scratch_off, out_level, out_off, row):
    """Scatter ``acc: [B, C]`` into one output row, each level in ``(C, n, n)`` order."""
    n_chan = acc.shape[1]
    for o in range(out_level.shape[0]):
        base = out_off[o]
        off = scratch_off[out_level[o]]
        nn = (out_off[o + 1] - base) // n_chan
        # slices, not offsets into the whole arrays: LLVM then keeps the loop lean (3x)
        _transpose(acc[off : off + nn], row[base : base + n_chan * nn], nn)


def max_forward(
    fmap, tab, wins, bidx, levels, source, scratch_off, out_level, out_off, out, n_chunks
):
    """Max-pool every window's pyramid into ``out: [R, C * L]``, windows in parallel.

    Args:
        fmap: ``[N, H, W, C]`` float32/float64, C-contiguous.
        tab: ``[K, N, H, W, C]`` block maxima from :func:`block_tables` (K may be 0).
        wins: ``int64[R, 4]`` cells ``(x0, y0, x1, y1)``; bidx: ``int64[R]``.
        levels: ``int64[D]`` the distinct levels, finest first; source: ``int64[D]`` the
            index of the finer level a level is the union of, or -1 for a level pooled
            directly; scratch_off: ``int64[D + 1]`` first scratch row of each level.
        out_level: ``int64[O]`` distinct-level index of each output level (output order);
            out_off: ``int64[O + 1]`` their column offsets in ``out``.
        n_chunks: parallel chunks of windows (the thread count).
    """
    n_bins = scratch_off[-1]
    n_chan = fmap.shape[3]
    bounds = _balanced_chunks(wins, levels, n_chunks)
    for t in numba.prange(n_chunks):
        acc = np.empty((n_bins, n_chan), fmap.dtype)
        tmp = np.empty((2, n_chan), fmap.dtype)
        for r in range(bounds[t], bounds[t + 1]):
            _window_max(
                fmap, tab, bidx[r], wins[r, 0], wins[r, 1], wins[r, 2], wins[r, 3],
                levels, source, scratch_off, acc, tmp,
            )  # fmt: skip
            _write_row(acc, scratch_off, out_level, out_off, out[r])


def _channel_bounds(n_chan, n_chunks):
    """Channel slices ``[cb[t], cb[t+1])``, multiples of 16 where possible (SIMD width)."""
    cb = np.empty(n_chunks + 1, np.int64)
    for t in range(n_chunks + 1):
        cb[t] = min(n_chan, ((n_chan * t // n_chunks) + 15) // 16 * 16)
    cb[0] = 0
    cb[n_chunks] = n_chan
    return cb


_channel_bounds = numba.njit(**_OPTS)(_channel_bounds)


@numba.njit(inline="always", **_OPTS)
def _window_argmax(fmap, tab, arg, b, x0, y0, x1, y1, levels, source, scratch_off, acc, iacc,
                   tmp, itmp):  # fmt: skip
    """:func:`_window_max` into ``acc: [B, C]``, and each bin's first maximal cell into
    ``iacc: [B, C]``."""
    h = y1 - y0
    w = x1 - x0
    for k in range(levels.shape[0]):
        n = levels[k]
        off = scratch_off[k]
        if source[k] < 0:
            for j in range(n):
                ys, ye = _span(j, h, n, y0)
                for i in range(n):
                    xs, xe = _span(i, w, n, x0)
                    row = off + j * n + i
                    _bin_argmax(fmap, tab, arg, b, ys, ye, xs, xe, acc[row], iacc[row], tmp,
                                itmp)  # fmt: skip
            continue
        m = levels[source[k]]
        q = m // n
        soff = scratch_off[source[k]]
        for j in range(n):
            for i in range(n):
                row = off + j * n + i
                cur = acc[_finer_row(soff, m, q, j, i, 0)]
                icur = iacc[_finer_row(soff, m, q, j, i, 0)]
                if q == 1:
                    acc[row, :] = cur
                    iacc[row, :] = icur
                for u in range(1, q * q):
                    fine = _finer_row(soff, m, q, j, i, u)
                    last = u == q * q - 1
                    nxt = acc[row] if last else tmp[u & 1]
                    inxt = iacc[row] if last else itmp[u & 1]
                    _vargmax(nxt, inxt, cur, icur, -1, acc[fine], iacc[fine], -1)
                    cur = nxt
                    icur = inxt


@numba.njit(**_OPTS)
def _group_images(bidx, bounds):
    """The images each window group touches, and where its maps start.

    Returns ``(lo, off)``, ``int64[G]`` and ``int64[G + 1]``: group ``t`` adds into images
    ``lo[t] .. lo[t] + off[t + 1] - off[t] - 1``, kept at rows ``off[t] ..`` of the groups'
    stacked maps (windows sorted by image, as a batch usually is, give each group a few
    images rather than all of them).
    """
    n_groups = bounds.shape[0] - 1
    lo = np.zeros(n_groups, np.int64)
    off = np.zeros(n_groups + 1, np.int64)
    for t in range(n_groups):
        first, last = 0, -1
        for r in range(bounds[t], bounds[t + 1]):
            b = bidx[r]
            if r == bounds[t] or b < first:
                first = b
            if b > last:
                last = b
        lo[t] = first
        off[t + 1] = off[t] + last - first + 1
    return lo, off


@numba.njit(inline="always", **_OPTS)
def _sum_groups(parts, lo, off, n_img, out):
    """``out[b] = sum`` of the groups' maps of image ``b`` in group order (0 where no group
    touches it): ``parts: [sum of group images, M, C]`` from :func:`_group_images`,
    ``out: [N, M, C]``, rows in parallel."""
    n_rows, n_chan = out.shape[1], out.shape[2]
    for q in numba.prange(n_img * n_rows):
        b = q // n_rows
        y = q % n_rows
        for c in range(n_chan):
            out[b, y, c] = 0
        for t in range(lo.shape[0]):
            if lo[t] <= b < lo[t] + off[t + 1] - off[t]:
                row = parts[off[t] + b - lo[t], y]
                for c in range(n_chan):
                    out[b, y, c] += row[c]


@numba.njit(inline="always", **_OPTS)
def _scatter_grad(iacc, scratch_off, out_level, out_off, g, gb):
    """Add one window's output gradient ``g`` to its bins' first maximal cells in
    ``gb: [H * W, C]``; bin by bin, all channels of a bin in turn."""
    n_chan = iacc.shape[1]
    for o in range(out_level.shape[0]):
        off = scratch_off[out_level[o]]
        base = out_off[o]
        nn = (out_off[o + 1] - base) // n_chan
        for u in range(nn):
            cells = iacc[off + u]
            for c in range(n_chan):
                gb[cells[c], c] += g[base + c * nn + u]


def max_backward(
    fmap, tab, arg, wins, bidx, levels, source, scratch_off, out_level, out_off, grad_out,
    grad, n_groups,
):  # fmt: skip
    """Route every output's gradient to its bin's first maximal cell: ``grad: [N, H * W,
    C]``, written whole (zeros included). ``tab, arg`` from :func:`block_tables` with
    ``with_arg``; the other arguments as :func:`max_forward`.

    The windows are cut into ``n_groups`` groups of about equal work (a number that does
    not depend on the threads); each group adds its windows' gradients, in window order,
    into a map of its own, and the maps are summed in group order. Groups run in parallel:
    every element sums its terms in the same order for any thread count.
    """
    n_bins = scratch_off[-1]
    n_img, n_cells, n_chan = grad.shape
    bounds = _balanced_chunks(wins, levels, n_groups)
    lo, off = _group_images(bidx, bounds)
    parts = np.zeros((off[-1], n_cells, n_chan), grad.dtype)
    for t in numba.prange(n_groups):
        acc = np.empty((n_bins, n_chan), fmap.dtype)
        iacc = np.empty((n_bins, n_chan), np.int32)
        tmp = np.empty((2, n_chan), fmap.dtype)
        itmp = np.empty((2, n_chan), np.int32)
        for r in range(bounds[t], bounds[t + 1]):
            b = bidx[r]
            _window_argmax(
                fmap, tab, arg, b, wins[r, 0], wins[r, 1], wins[r, 2], wins[r, 3], levels,
                source, scratch_off, acc, iacc, tmp, itmp,
            )  # fmt: skip
            gb = parts[off[t] + b - lo[t]]
            _scatter_grad(iacc, scratch_off, out_level, out_off, grad_out[r], gb)
    _sum_groups(parts, lo, off, n_img, grad)


def integral_image(fmap, table, n_chunks):
    """``table[n, y, x] = sum(fmap[n, :y, :x])`` in float64: ``[N, H+1, W+1, C]``.

    The same additions, in the same order, as ``F.pad(fmap.double().cumsum(1).cumsum(2))``:
    a running sum down each column, then a running sum of those along each row.
    """
    n_img, height, width, n_chan = fmap.shape
    cb = _channel_bounds(n_chan, n_chunks)
    for t in numba.prange(n_chunks * n_img):
        b = t // n_chunks
        c0 = cb[t % n_chunks]
        c1 = cb[t % n_chunks + 1]
        for x in range(width + 1):
            for c in range(c0, c1):
                table[b, 0, x, c] = 0.0
        for y in range(height):
            for c in range(c0, c1):
                table[b, y + 1, 0, c] = 0.0
            for x in range(width):
                for c in range(c0, c1):
                    # row 0 is zero: cumsum also starts from 0 + v (so -0.0 becomes 0.0)
                    table[b, y + 1, x + 1, c] = table[b, y, x + 1, c] + np.float64(fmap[b, y, x, c])
        for y in range(height):
            for x in range(1, width):
                for c in range(c0, c1):
                    table[b, y + 1, x + 1, c] += table[b, y + 1, x, c]


def avg_forward(table, wins, bidx, levels, scratch_off, out_level, out_off, out, n_chunks):
    """Mean of every bin from the integral image ``table`` into ``out``, windows in
    parallel. Every level is pooled directly (``levels`` as in :func:`max_forward`)."""
    n_bins = scratch_off[-1]
    n_chan = table.shape[3]
    bounds = _balanced_chunks(wins, levels, n_chunks)
    for t in numba.prange(n_chunks):
        acc = np.empty((n_bins, n_chan), out.dtype)
        for r in range(bounds[t], bounds[t + 1]):
            b = bidx[r]
            x0 = wins[r, 0]
            y0 = wins[r, 1]
            h = wins[r, 3] - y0
            w = wins[r, 2] - x0
            for k in range(levels.shape[0]):
                n = levels[k]
                off = scratch_off[k]
                for j in range(n):
                    for i in range(n):
                        ys, ye, xs, xe, area = _bin_cells(j, i, n, x0, y0, w, h)
                        s0 = table[b, ye, xe]
                        s1 = table[b, ys, xe]
                        s2 = table[b, ye, xs]
                        s3 = table[b, ys, xs]
                        a = acc[off + j * n + i]
                        for c in range(n_chan):
                            a[c] = ((s0[c] - s1[c]) - (s2[c] - s3[c])) / area
            _write_row(acc, scratch_off, out_level, out_off, out[r])


@numba.njit(inline="always", **_OPTS)
def _add_corners(wins, bidx, levels, out_level, out_off, grad_out, r0, r1, corner, first):
    """Add ``grad / area`` of every bin of windows ``r0 .. r1`` at its four integral-image
    corners: ``corner: [images, H + 1, W + 1, C]`` float64 from image ``first`` on, windows
    in order."""
    n_chan = corner.shape[3]
    for r in range(r0, r1):
        b = bidx[r] - first
        x0 = wins[r, 0]
        y0 = wins[r, 1]
        h = wins[r, 3] - y0
        w = wins[r, 2] - x0
        g = grad_out[r]
        for o in range(out_level.shape[0]):
            n = levels[out_level[o]]
            nn = n * n
            base = out_off[o]
            for j in range(n):
                for i in range(n):
                    ys, ye, xs, xe, area = _bin_cells(j, i, n, x0, y0, w, h)
                    s = base + j * n + i
                    for c in range(n_chan):
                        v = np.float64(g[s + c * nn]) / area
                        corner[b, ye, xe, c] += v
                        corner[b, ys, xe, c] -= v
                        corner[b, ye, xs, c] -= v
                        corner[b, ys, xs, c] += v


def avg_backward(
    wins, bidx, levels, scratch_off, out_level, out_off, grad_out, grad, n_groups, n_chunks
):
    """Gradient of :func:`avg_forward` into ``grad: [N, H, W, C]``: ``grad / area`` at each
    bin's four integral-image corners (float64), then suffix sums over rows and columns
    turn corners into cells.

    As in :func:`max_backward`, ``n_groups`` groups of windows add their corners into maps
    of their own, summed in group order; the suffix sums then run over channel slices
    (``n_chunks``, the thread count: every element's sums are the same for any slicing).
    """
    n_img, height, width, n_chan = grad.shape
    bounds = _balanced_chunks(wins, levels, n_groups)
    lo, off = _group_images(bidx, bounds)
    parts = np.zeros((off[-1], height + 1, width + 1, n_chan), np.float64)
    for t in numba.prange(n_groups):
        _add_corners(
            wins, bidx, levels, out_level, out_off, grad_out, bounds[t], bounds[t + 1],
            parts[off[t] :], lo[t],
        )  # fmt: skip
    corner = np.empty((n_img, (height + 1) * (width + 1), n_chan), np.float64)
    _sum_groups(parts.reshape(off[-1], (height + 1) * (width + 1), n_chan), lo, off, n_img, corner)
    sums_all = corner.reshape(n_img, height + 1, width + 1, n_chan)
    cb = _channel_bounds(n_chan, n_chunks)
    for t in numba.prange(n_chunks * n_img):
        b = t // n_chunks
        c0 = cb[t % n_chunks]
        c1 = cb[t % n_chunks + 1]
        sums = sums_all[b]
        for y in range(height, -1, -1):
            for x in range(width - 1, -1, -1):
                for c in range(c0, c1):
                    sums[y, x, c] += sums[y, x + 1, c]
            if y < height:
                for x in range(width + 1):
                    for c in range(c0, c1):
                        sums[y, x, c] += sums[y + 1, x, c]
        for y in range(height):
            for x in range(width):
                for c in range(c0, c1):
                    grad[b, y, x, c] = sums[y + 1, x + 1, c]


def _compile(fn):
    """A parallel and a serial build of ``fn``: the serial one never starts the threading
    layer, so a single-threaded caller (a forked data-loader worker) stays fork-safe.

    The serial build compiles a copy of ``fn`` named ``<name>_serial``. numba's disk cache
    names its files after the function and keys them by signature and CPU, not by the
    compile options (a known numba limitation): two builds of one function share one cache entry,
    and whichever compiled last is what both load in the next process. A data-loader
    worker's serial build could so leave the parallel build running on one thread (window
    pooling measured 25 ms instead of 11 until the cache was rebuilt).
    """
    serial = types.FunctionType(
        fn.__code__, fn.__globals__, f"{fn.__name__}_serial", fn.__defaults__, fn.__closure__
    )
    serial.__qualname__ = f"{fn.__qualname__}_serial"
    serial.__doc__ = fn.__doc__
    return numba.njit(parallel=True, **_OPTS)(fn), numba.njit(**_OPTS)(serial)


block_tables = _compile(block_tables)
max_forward = _compile(max_forward)
max_backward = _compile(max_backward)
integral_image = _compile(integral_image)
avg_forward = _compile(avg_forward)
avg_backward = _compile(avg_backward)
