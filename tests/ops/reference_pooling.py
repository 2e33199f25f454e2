"""Slow, obviously-correct references written straight from the paper's Appendix A.

Nothing here calls the code under test: bins come from Python integer arithmetic and each
bin is reduced with a plain slice.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def bin_range(i: int, size: int, n: int) -> tuple[int, int]:
    """Bin i of n over `size` cells: [floor(i*size/n), ceil((i+1)*size/n))."""
    return (i * size) // n, -((-(i + 1) * size) // n)


def pyramid_reference(x: torch.Tensor, levels, mode: str = "max") -> torch.Tensor:
    """x: [C, h, w] -> [C * L], level by level, each level in (C, n, n) order.

    Differentiable when ``x`` requires grad (torch slices); otherwise computed with numpy
    slices, which are much cheaper per bin for the exhaustive size sweeps.
    """
    c, h, w = x.shape
    differentiable = x.requires_grad
    a = x if differentiable else x.numpy()
    out = []
    for n in levels:
        level = [[None] * n for _ in range(n)]
        for j in range(n):  # rows
            r0, r1 = bin_range(j, h, n)
            for i in range(n):  # columns
                c0, c1 = bin_range(i, w, n)
                assert r1 > r0 and c1 > c0, "Appendix A bins are never empty"
                cell = a[:, r0:r1, c0:c1].reshape(c, -1)
                if differentiable:
                    level[j][i] = cell.max(1).values if mode == "max" else cell.mean(1)
                else:
                    level[j][i] = cell.max(1) if mode == "max" else cell.mean(1)
        if differentiable:
            out.append(torch.stack([torch.stack(row, 1) for row in level], 1).reshape(-1))
        else:
            out.append(
                torch.from_numpy(np.stack([np.stack(row, 1) for row in level], 1).reshape(-1))
            )
    return torch.cat(out)


def map_side_reference(lo: float, hi: float, s: float, size: int, offset: float = 0.0):
    """Appendix A mapping of one axis, as first/last inclusive cells."""
    first = math.floor((lo - offset) / s) + 1
    last = math.ceil((hi - offset) / s) - 1
    if first > last:
        first = last = math.floor(((lo + hi) / 2 - offset) / s + 0.5)
    clip = lambda v: min(max(v, 0), size - 1)  # noqa: E731
    return clip(first), clip(last)
