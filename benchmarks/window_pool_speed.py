"""Window pooling speed: 2,000 detection windows on one image's conv5 map (Sec. 4.1).

Compares, side by side in one run (median of several runs):
  * naive  - a Python loop over windows, one ``adaptive_max_pool2d`` per level per window;
  * sppnet - ``window_pyramid_pool`` (sparse-table range max + exact bin unions), forward
             only and forward + backward;
  * floor  - writing the ``R x C*L`` output once into a buffer that is already mapped
             (what any implementation must at least do), and into a fresh buffer.

Windows: image boxes with log-uniform sides from 16 px to the whole image, mapped with
``map_windows_to_features`` (stride 16) onto a 256 x 42 x 56 map (an s=688 image).

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/window_pool_speed.py [--windows 2000]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _timing import environment_line, interleaved_ms, markdown_table, random_boxes

from sppnet.ops import map_windows_to_features, window_pyramid_pool

LEVELS = (6, 3, 2, 1)


def naive(features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    out = []
    for x0, y0, x1, y1 in windows.tolist():
        crop = features[:, :, y0:y1, x0:x1]
        out.append(torch.cat([F.adaptive_max_pool2d(crop, n).flatten(1) for n in LEVELS], 1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--map", type=int, nargs=2, default=(42, 56), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    height, width = args.map
    stride = 16
    features = torch.randn(1, args.channels, height, width, generator=gen)
    features = features.contiguous(memory_format=torch.channels_last)
    boxes = random_boxes(args.windows, height * stride, width * stride, gen)
    windows = map_windows_to_features(boxes, stride, (height, width))
    area = ((windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])).float()

    with torch.no_grad():
        ours = window_pyramid_pool(features, windows, levels=LEVELS)
        assert torch.equal(ours, naive(features, windows)), "sppnet differs from the naive loop"
    out_shape = ours.shape
    reused = torch.empty(out_shape)
    reused.zero_()

    feats_grad = features.detach().clone().requires_grad_()

    def ours_fwd():
        with torch.no_grad():
            window_pyramid_pool(features, windows, levels=LEVELS)

    def ours_fwd_bwd():
        feats_grad.grad = None
        y = window_pyramid_pool(feats_grad, windows, levels=LEVELS)
        y.backward(torch.ones_like(y))

    def naive_fwd():
        with torch.no_grad():
            naive(features, windows)

    cases = [
        ("naive: loop over windows", naive_fwd),
        ("sppnet window_pyramid_pool, forward", ours_fwd),
        ("sppnet window_pyramid_pool, forward+backward", ours_fwd_bwd),
        ("floor: write the output (buffer reused)", lambda: reused.fill_(1.0)),
        ("floor: write the output (fresh buffer)", lambda: torch.empty(out_shape).fill_(1.0)),
    ]
    timed = interleaved_ms(dict(cases), args.repeats, warmup=1)
    base = timed[cases[1][0]][0]
    rows = [[name, f"{ms:.1f}", f"{ms / base:.2f}x"] for name, (ms, _) in timed.items()]
    print(
        f"Window pooling: {args.windows} windows on a {args.channels}x{height}x{width} map, "
        f"levels {LEVELS}, output {list(out_shape)} ({ours.numel() * 4 / 2**20:.0f} MiB); "
        f"mean window {area.mean():.0f} cells"
    )
    print(environment_line())
    print(markdown_table(["implementation", "ms (median)", "time / sppnet forward"], rows))


if __name__ == "__main__":
    main()
