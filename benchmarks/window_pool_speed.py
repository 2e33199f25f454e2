"""Window pooling speed: 2,000 detection windows on one image's conv5 map (Sec. 4.1).

Compares, side by side in one run (median of several runs):
  * naive  - a Python loop over windows, one ``adaptive_max_pool2d`` per level per window;
  * sppnet - ``window_pyramid_pool``: the compiled kernels (numba) on CPU, forward only and
             forward + backward, max and avg;
  * torch  - the same function's pure-PyTorch path (sparse tables / integral image, what
             CUDA, half precision and installs without numba run), same cases;
  * floor  - writing the ``R x C*L`` output once into a buffer that is already mapped
             (what any implementation must at least do), and into a fresh buffer.
Backward gets a gradient made once, outside the timed region. Targets, set by this project
for the 2-core machine class (a detector's 2,000 windows should cost little beside its
conv maps): forward <= 8 ms, forward + backward <= 30 ms on 2 threads.

Windows: image boxes with log-uniform sides from 16 px to the whole image, mapped with
``map_windows_to_features`` (stride 16) onto a 256 x 42 x 56 map (an s=688 image).

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/window_pool_speed.py [--windows 2000]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _timing import (
    add_memory_option,
    apply_memory_option,
    environment_line,
    interleaved_ms,
    markdown_table,
    random_boxes,
)

from sppnet.ops import map_windows_to_features, window_pyramid_pool

LEVELS = (6, 3, 2, 1)
TARGET_MS = {"forward": 8.0, "forward+backward": 30.0}
# the module (sppnet.ops re-exports a function of the same name)
torch_path = sys.modules["sppnet.ops.window_pyramid_pool"]._torch_window_pool


def naive(features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    out = []
    for x0, y0, x1, y1 in windows.tolist():
        crop = features[:, :, y0:y1, x0:x1]
        out.append(torch.cat([F.adaptive_max_pool2d(crop, n).flatten(1) for n in LEVELS], 1))
    return torch.cat(out)


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--map", type=int, nargs=2, default=(42, 56), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    add_memory_option(parser)
    return parser


def make_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The channels-last map ``[1, C, H, W]`` and its windows ``LongTensor[R, 4]`` (seeded)."""
    gen = torch.Generator().manual_seed(0)
    height, width = args.map
    stride = 16
    features = torch.randn(1, args.channels, height, width, generator=gen)
    features = features.contiguous(memory_format=torch.channels_last)
    boxes = random_boxes(args.windows, height * stride, width * stride, gen)
    return features, map_windows_to_features(boxes, stride, (height, width))


def check_equal(features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Stop unless sppnet equals the naive loop (max) and the torch path (max and avg);
    returns sppnet's max output ``[R, C*L]``."""
    with torch.no_grad():
        ours_out = window_pyramid_pool(features, windows, levels=LEVELS)
        assert torch.equal(ours_out, naive(features, windows)), "sppnet differs from naive"
        for mode in ("max", "avg"):
            assert torch.equal(
                window_pyramid_pool(features, windows, levels=LEVELS, mode=mode),
                torch_path(features, windows, torch.zeros_like(windows[:, 0]), LEVELS, mode, 1024),
            ), f"{mode}: the compiled kernels differ from the torch path"
    return ours_out


def timed_cases(
    features: torch.Tensor, windows: torch.Tensor, out_shape: torch.Size
) -> dict[str, Callable[[], object]]:
    """The table's cases in their order: naive, sppnet / torch path per mode and pass, floors."""
    reused = torch.empty(out_shape)
    reused.zero_()

    feats_grad = features.detach().clone().requires_grad_()
    grad_out = torch.ones(out_shape)
    bidx = torch.zeros(len(windows), dtype=torch.long)

    def fwd(fn, mode):
        def step():
            with torch.no_grad():
                fn(features, mode)

        return step

    def fwd_bwd(fn, mode):
        def step():
            feats_grad.grad = None
            fn(feats_grad, mode).backward(grad_out)

        return step

    def ours(t, mode):
        return window_pyramid_pool(t, windows, levels=LEVELS, mode=mode)

    def old(t, mode):
        return torch_path(t, windows, bidx, LEVELS, mode, 1024)

    def naive_fwd():
        with torch.no_grad():
            naive(features, windows)

    cases = [("naive: loop over windows (max, forward)", naive_fwd)]
    for mode in ("max", "avg"):
        for what, wrap in (("forward", fwd), ("forward+backward", fwd_bwd)):
            cases.append((f"sppnet {mode}, {what}", wrap(ours, mode)))
            cases.append((f"torch path {mode}, {what}", wrap(old, mode)))
    cases += [
        ("floor: write the output (buffer reused)", lambda: reused.fill_(1.0)),
        ("floor: write the output (fresh buffer)", lambda: torch.empty(out_shape).fill_(1.0)),
    ]
    return dict(cases)


def table_rows(timed: dict[str, tuple[float, float]]) -> list[list[str]]:
    """``[name, median ms, target ms, speed-up over the torch path]`` per case."""
    rows = []
    for name, (ms, _) in timed.items():
        target = ratio = ""
        if name.startswith("sppnet"):
            mode, what = name[len("sppnet ") :].split(", ")
            target = f"{TARGET_MS[what]:.0f}"
            ratio = f"{timed[f'torch path {mode}, {what}'][0] / ms:.2f}x"
        rows.append([name, f"{ms:.1f}", target, ratio])
    return rows


def main() -> None:
    args = build_parser().parse_args()
    apply_memory_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = args.map
    features, windows = make_inputs(args)
    area = ((windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])).float()
    ours_out = check_equal(features, windows)
    out_shape = ours_out.shape
    timed = interleaved_ms(timed_cases(features, windows, out_shape), args.repeats, warmup=1)
    print(
        f"Window pooling: {args.windows} windows on a {args.channels}x{height}x{width} map, "
        f"levels {LEVELS}, output {list(out_shape)} ({ours_out.numel() * 4 / 2**20:.0f} MiB); "
        f"mean window {area.mean():.0f} cells"
    )
    print(environment_line())
    header = ["implementation", "ms (median)", "target ms", "speed-up over the torch path"]
    print(markdown_table(header, table_rows(timed)))


if __name__ == "__main__":
    main()
