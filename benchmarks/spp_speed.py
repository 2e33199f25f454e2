"""Image SPP layer speed: forward + backward of a batch of conv5 maps.

Compares, side by side in one run (median of several runs):
  * naive   - one ``adaptive_max_pool2d`` per level on NCHW maps (the usual port);
  * loop/CL - the same loop on channels_last maps;
  * sppnet  - ``spatial_pyramid_pool`` (channels_last, 6x6 pooled once, 3x3/2x2/1x1 built
              as exact unions of 6x6 bins);
  * floor   - the 6x6 level alone (every exact SPP must read the whole map once and write
              a full-size input gradient once);
and a padded batch of different-size maps pooled with ``extents`` (beyond the paper), in one
call of the compiled window kernels (numba) and on the pure-PyTorch path (grouped by size).
Target, the project's own for this 2-core CPU machine class: sppnet forward + backward
<= 9 ms on 2 threads. The plain batch stays on adaptive pooling: the compiled kernels took
twice as long on it.

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/spp_speed.py [--batch 64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F
from _timing import (
    add_memory_option,
    apply_memory_option,
    environment_line,
    interleaved_ms,
    markdown_table,
)

import sppnet.ops.compiled_pyramid_pool as compiled
from sppnet.ops import spatial_pyramid_pool

LEVELS = (6, 3, 2, 1)
TARGET_MS = 9.0


@contextlib.contextmanager
def torch_path():
    """Run the pure-PyTorch path (as without numba)."""
    kernels = compiled._kernels
    compiled._kernels = lambda: None
    try:
        yield
    finally:
        compiled._kernels = kernels


def naive_spp(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in LEVELS], 1)


def floor_spp(x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_max_pool2d(x, 6).flatten(1)


def fwd_bwd(fn, x: torch.Tensor):
    def step():
        x.grad = None
        y = fn(x)
        y.backward(torch.ones_like(y))

    return step


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=13, help="conv5 map side (13 for 224 input)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    add_memory_option(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    apply_memory_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x_nchw = torch.randn(shape).requires_grad_()
    x_cl = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.no_grad():
        assert torch.equal(naive_spp(x_cl), spatial_pyramid_pool(x_cl, LEVELS))

    # Padded batch: each image its own extent between half and full size.
    ext = torch.randint(
        args.size // 2, args.size + 1, (args.batch, 2), generator=torch.Generator().manual_seed(1)
    )

    cases = [
        ("naive: per-level loop, NCHW", naive_spp, x_nchw),
        ("per-level loop, channels_last", naive_spp, x_cl),
        ("sppnet spatial_pyramid_pool", lambda t: spatial_pyramid_pool(t, LEVELS), x_cl),
        ("floor: 6x6 level alone", floor_spp, x_cl),
        (
            f"sppnet with extents ({len(torch.unique(ext, dim=0))} distinct sizes), compiled",
            lambda t: spatial_pyramid_pool(t, LEVELS, extents=ext),
            x_cl,
        ),
        (
            "sppnet with extents, torch path",
            lambda t: _on_torch_path(spatial_pyramid_pool, t, LEVELS, extents=ext),
            x_cl,
        ),
    ]
    with torch.no_grad():
        assert torch.equal(cases[4][1](x_cl), cases[5][1](x_cl)), (
            "compiled extents path differs from the torch path"
        )
    timed = interleaved_ms({name: fwd_bwd(fn, x) for name, fn, x in cases}, args.repeats)
    ours = timed[cases[2][0]][0]
    rows = [[name, f"{ms:.2f}", f"{ms / ours:.2f}x", ""] for name, (ms, _) in timed.items()]
    rows[2][3] = f"{TARGET_MS:.0f}"
    print(f"SPP layer forward+backward, batch {list(shape)}, levels {LEVELS}")
    print(environment_line())
    print(markdown_table(["implementation", "ms (median)", "time / sppnet", "target ms"], rows))


def _on_torch_path(fn, *args, **kwargs):
    with torch_path():
        return fn(*args, **kwargs)


if __name__ == "__main__":
    main()
