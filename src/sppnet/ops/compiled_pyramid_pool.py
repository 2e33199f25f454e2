"""Window pyramid pooling through compiled CPU kernels, with autograd (Sec. 4.1).

Shape shorthand: N images, C channels, H x W map, R windows, L = sum(n * n) bins.

:func:`window_pyramid_pool` and :func:`spatial_pyramid_pool` hand their work here when
:func:`compiled_pool_available` says the input qualifies: a float32/float64 CPU tensor, not
traced, and numba importable. Everything else (CUDA, half precision, no numba) keeps the
pure-PyTorch path. The kernels live in ``_pyramid_pool_kernels`` (which says why they are
hand-written); numba is imported the first time a kernel is needed, and its compiled
machine code is cached on disk (``cache=True``), so only the very first call of a Python
environment pays the compilation.

Threads follow ``torch.get_num_threads()``: one thread runs a serial build that never starts
numba's threading layer.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from sppnet.ops.pyramid_bins import num_pyramid_bins

__all__ = ["compiled_pool_available", "compiled_window_pool"]

_DTYPES = (torch.float32, torch.float64)
# Block tables of the max kernels: 2x2 and 4x4 (see _table_count). On the benchmark of
# benchmarks/window_pool_speed.py 1 and 2 tables time alike, 0 and 3 ~15% slower.
_MAX_TABLES = 2
# Window groups of the backward passes (see _grad_groups) and the memory their gradient
# maps may take together: 8 float32 maps of the benchmark's 256 x 42 x 56 map are 19 MiB
# (avg: float64 corner maps, 40 MiB).
_GRAD_GROUPS = 8
_GRAD_GROUP_BYTES = 256 * 2**20


def _kernels() -> ModuleType | None:
    """The numba kernels module, or ``None`` when numba cannot be imported or the
    environment variable ``SPPNET_COMPILED_POOL`` is ``0`` (read at every call: the pure
    PyTorch path then runs, e.g. to skip numba's one-time compilation in a short job)."""
    if os.environ.get("SPPNET_COMPILED_POOL", "1").strip() == "0":
        return None
    return _import_kernels()


@functools.cache
def _import_kernels() -> ModuleType | None:
    """The numba kernels module, imported once; ``None`` without numba."""
    try:
        from sppnet.ops import _pyramid_pool_kernels
    except ImportError:
        return None
    return _pyramid_pool_kernels


def compiled_pool_available(features: Tensor, mode: str) -> bool:
    """Whether :func:`compiled_window_pool` can pool ``features`` in ``mode``.

    True for a float32 or float64 CPU tensor outside ``torch.jit`` tracing, when numba is
    installed; in max mode the map must also hold no NaN (the kernels' max does not
    propagate it as ``torch.maximum`` does; one sum of the map tells).
    """
    if not (
        features.device.type == "cpu"
        and features.dtype in _DTYPES
        and not torch.jit.is_tracing()
        and _kernels() is not None
    ):
        return False
    # a sum that overflows to inf only sends a finite map down the (exact) torch path
    return mode == "avg" or bool(torch.isfinite(features.detach().sum()))


def _plan(levels: tuple[int, ...], mode: str, channels: int) -> dict[str, Tensor]:
    """Level tables of the kernels (see ``_pyramid_pool_kernels.max_forward``)."""
    distinct = sorted(set(levels), reverse=True)
    source, scratch_off = [], [0]
    for n in distinct:
        # as the torch path: a max level is the union of the smallest finer level it divides
        finer = [m for m in distinct if m > n and m % n == 0] if mode == "max" else []
        source.append(distinct.index(min(finer)) if finer else -1)
        scratch_off.append(scratch_off[-1] + n * n)
    out_off = [0]
    for n in levels:
        out_off.append(out_off[-1] + channels * n * n)
    as_long = functools.partial(torch.tensor, dtype=torch.long)
    return {
        "levels": as_long(distinct),
        "source": as_long(source),
        "scratch_off": as_long(scratch_off),
        "out_level": as_long([distinct.index(n) for n in levels]),
        "out_off": as_long(out_off),
    }


def _table_count(wins: Tensor, levels: tuple[int, ...], mode: str) -> int:
    """How many block tables (2x2 up to 2**K x 2**K) the max kernels build.

    Enough for the largest bins of the finest directly pooled level, at most
    ``_MAX_TABLES``: each costs a pass over the map, and bins larger than the blocks take
    a few more reads each.
    """
    if mode != "max":
        return 0
    finest = max(levels)
    side = int(torch.minimum(wins[:, 2] - wins[:, 0], wins[:, 3] - wins[:, 1]).max())
    k = 0
    while (2 << k) <= side // finest and k < _MAX_TABLES:
        k += 1
    return k


def _grad_groups(wins: np.ndarray, map_bytes: int) -> int:
    """Window groups of a backward pass, each adding into a gradient map of its own.

    Enough groups to keep every thread busy whatever the thread count, as many as the
    memory budget allows for maps of ``map_bytes`` each, and never fewer than one: a
    number that depends on the inputs alone, so results do not depend on the threads.
    """
    budget = _GRAD_GROUP_BYTES // max(1, map_bytes)
    return max(1, min(_GRAD_GROUPS, wins.shape[0], budget))


def _launch(name: str) -> tuple[object, int]:
    """The build of kernel ``name`` to run and its number of chunks (the thread count)."""
    kernels = _kernels()
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    parallel, serial = getattr(kernels, name)
    if threads == 1:
        return serial, 1
    numba.set_num_threads(threads)
    return parallel, threads


def _record_input_layout(ctx, features: Tensor) -> None:
    """Keep the shape and memory layout of ``features`` for :func:`_grad_in_input_layout`."""
    ctx.features_shape = features.shape  # [N, C, H, W]
    ctx.contiguous = features.is_contiguous()


def _grad_in_input_layout(ctx, grad: Tensor, images: Tensor | None = None) -> Tensor:
    """A contiguous ``Tensor[N', H, W, C]`` gradient as the recorded input's gradient.

    Args:
        ctx: the autograd context :func:`_record_input_layout` wrote to.
        grad: gradient of the NHWC map the kernels read, ``N' <= N`` images.
        images: ``LongTensor[N']``, the input image of each row of ``grad``; ``None`` when
            ``N' == N`` in order. Images not listed get zero gradient.

    Returns:
        ``Tensor[N, C, H, W]``: channels_last (a view of ``grad`` when ``images`` is None),
        copied to contiguous when the input was contiguous.
    """
    if images is not None:
        n_img, channels, height, width = ctx.features_shape
        grad = grad.new_zeros((n_img, height, width, channels)).index_copy_(0, images, grad)
    g = grad.permute(0, 3, 1, 2)  # channels_last Tensor[N, C, H, W]
    return g.contiguous() if ctx.contiguous else g


class _CompiledWindowPool(torch.autograd.Function):
    """Max or avg pyramids of windows, forward and backward in the compiled kernels.

    Max mode keeps no argmax: the backward finds each output's element again, which costs
    less than writing and reading back ``R * C * L`` indices. Not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        features: Tensor,
        fmap: Tensor,
        wins: Tensor,
        bidx: Tensor,
        levels: tuple[int, ...],
        mode: str,
    ) -> Tensor:
        channels = fmap.shape[3]
        plan = _plan(levels, mode, channels)
        p = {k: v.numpy() for k, v in plan.items()}
        out = fmap.new_empty((wins.shape[0], channels * num_pyramid_bins(levels)))
        w, b = wins.numpy(), bidx.numpy()
        if mode == "max":
            n_tables = _table_count(wins, levels, mode)
            kernel, chunks = _launch("block_tables")
            tab, _ = kernel(fmap.numpy(), n_tables, False, chunks)
            kernel, chunks = _launch("max_forward")
            kernel(
                fmap.numpy(), tab, w, b, p["levels"], p["source"], p["scratch_off"],
                p["out_level"], p["out_off"], out.numpy(), chunks,
            )  # fmt: skip
            ctx.fmap, ctx.n_tables = fmap, n_tables
        else:
            n_img, height, width, _ = fmap.shape
            table = torch.empty((n_img, height + 1, width + 1, channels), dtype=torch.float64)
            kernel, chunks = _launch("integral_image")
            kernel(fmap.numpy(), table.numpy(), chunks)
            kernel, chunks = _launch("avg_forward")
            kernel(
                table.numpy(), w, b, p["levels"], p["scratch_off"],
                p["out_level"], p["out_off"], out.numpy(), chunks,
            )  # fmt: skip
        ctx.plan, ctx.mode = p, mode
        ctx.wins, ctx.bidx = wins, bidx
        _record_input_layout(ctx, features)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        p = ctx.plan
        n_img, channels, height, width = ctx.features_shape
        g_out = grad_out.contiguous().numpy()
        grad = grad_out.new_empty((n_img, height, width, channels))  # every element written
        w, b = ctx.wins.numpy(), ctx.bidx.numpy()
        if ctx.mode == "max":
            kernel, chunks = _launch("block_tables")
            tab, arg = kernel(ctx.fmap.numpy(), ctx.n_tables, True, chunks)
            kernel, _ = _launch("max_backward")
            groups = _grad_groups(w, grad.numel() * grad.element_size())
            kernel(
                ctx.fmap.numpy(), tab, arg, w, b, p["levels"], p["source"], p["scratch_off"],
                p["out_level"], p["out_off"], g_out,
                grad.view(n_img, height * width, channels).numpy(), groups,
            )  # fmt: skip
        else:
            kernel, chunks = _launch("avg_backward")
            corners = n_img * (height + 1) * (width + 1) * channels * 8  # float64 bytes
            kernel(
                w, b, p["levels"], p["scratch_off"], p["out_level"], p["out_off"],
                g_out, grad.numpy(), _grad_groups(w, corners), chunks,
            )  # fmt: skip
        return _grad_in_input_layout(ctx, grad), None, None, None, None, None


def compiled_window_pool(
    features: Tensor, windows: Tensor, batch_index: Tensor, levels: tuple[int, ...], mode: str
) -> Tensor:
    """Pyramid of every window, by the compiled kernels; inputs already validated.

    Same result as the torch path of :func:`window_pyramid_pool` (bit for bit) and
    differentiable with respect to ``features``.

    Args:
        features: ``Tensor[N, C, H, W]``, float32 or float64 on the CPU, C >= 1.
        windows: ``LongTensor[R, 4]`` cells ``(x0, y0, x1, y1)`` inside the map, R >= 1.
        batch_index: ``LongTensor[R]`` in ``0..N-1``.
        levels: bins per side of each level, in output order.
        mode: ``"max"`` or ``"avg"``.

    Returns:
        ``Tensor[R, C * L]``, each row level by level, each level as ``(C, n, n)``.
    """
    fmap = features.detach().permute(0, 2, 3, 1).contiguous()  # free when channels_last
    wins = windows.to(device="cpu", dtype=torch.long).contiguous()
    bidx = batch_index.to(device="cpu", dtype=torch.long).contiguous()
    return _CompiledWindowPool.apply(features, fmap, wins, bidx, levels, mode)
