"""Detection speed per image: SPP-net (1 and 5 scales) against R-CNN on ZF-5 (Table 10).

Builds ZF-5 with random weights (speed does not depend on them), one built-in synthetic
image resized to ``--image H W`` (375 x 500, a typical VOC size) and ``--windows`` random
windows (log-uniform sides from 16 px to the image side, seeded), then times with
:func:`_timing.time_detection`:

  * SPP-net: conv maps of the whole image at 1 scale (688) and 5 scales (480..1200),
    window pooling, fc6 + fc7 for every window;
  * R-CNN: every window warped to 224 x 224 and run through the trunk, then the same fc;
  * SPP-net with fc6/fc7 compressed by truncated SVD (``--svd-ranks``, Fast R-CNN's trick).

and checks the project's detection speed targets on this 2-core CPU machine class: conv
speedup >= 0.95 x the conv work ratio (sharing the convs buys what the multiply-add count
promises); fc6 + fc7 of the R windows
(exact) at >= 75% of the ceiling, a 256->256 3x3 channels_last oneDNN conv on a
1 x 256 x 128 x 128 input timed in the same rounds (the same ceiling as
``benchmarks/trunk_speed.py``); total speedup >= 40x at 1 scale; and >= 100x with SVD fc at 1
scale (the paper's own GPU ratio, 102x). R-CNN's convs take ~10-20 s on 2 cores, so they run once
(``--rcnn-repeats``), their batches spread over the SPP-net rounds (the machine's speed
drifts); the SVD of fc6 (4096 x 12800, float64) takes ~half a minute, untimed.

With ``--detector DIR --data DIR`` (a trained detector, e.g. the demo's, and its VOC-layout
data) it also reports accuracy: VOC07 mAP of SPP-net and of R-CNN on the same model, windows
and SVMs over the first ``--accuracy-images`` images of ``--split``, with the measured time
per image of both (:func:`sppnet.detect.evaluate.evaluate_detector`).

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/detection_speed.py --windows 2000 --threads 2
    python benchmarks/detection_speed.py --no-rcnn --detector runs/demo/detection/train \
        --data runs/demo/data/voc --accuracy-images 10  # + mAP on the demo's test scenes
    python benchmarks/detection_speed.py --width 0.25 --fc-dim 512 --windows 200 \
        --svd-ranks 128 64  # quick
    python benchmarks/detection_speed.py --device cuda --threads 0  # on a GPU
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from _timing import (
    add_memory_option,
    apply_memory_option,
    detection_table,
    environment_line,
    random_boxes,
    time_detection,
)
from torch import nn

from sppnet.data.synthetic import render_synthetic_image
from sppnet.data.transforms import to_tensor
from sppnet.models import create_model

CONV_EFFICIENCY_TARGET = 0.95  # conv speedup / conv work ratio
FC_CEILING_TARGET = 0.75  # exact fc6 + fc7 GFLOP/s / the oneDNN conv ceiling
TOTAL_SPEEDUP_TARGET = 40.0  # 1 scale, exact fc
SVD_SPEEDUP_TARGET = 100.0  # 1 scale, SVD fc (the paper's GPU ratio: 102x)


def _ceiling_case(device: torch.device) -> tuple[Callable[[], object], float]:
    """One large conv (256->256 3x3, channels_last 1x256x128x128; oneDNN on the CPU) on
    ``device`` and its GFLOP."""
    conv = nn.Conv2d(256, 256, 3, padding=1).eval().to(device, memory_format=torch.channels_last)
    x = torch.randn(1, 256, 128, 128, device=device).contiguous(memory_format=torch.channels_last)
    return (lambda: conv(x)), 2 * 256 * 256 * 9 * 128 * 128 / 1e9


def _device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """``--device`` as a torch device, refused (exit 2) before any work when unusable."""
    try:
        device = torch.device(name)
    except RuntimeError:
        parser.error(f"--device: unknown device {name!r}; use cpu or cuda (cuda:N)")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device: {name!r} is not timed here; use cpu or cuda (cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {name}: no CUDA device here (torch {torch.__version__})")
        if (device.index or 0) >= torch.cuda.device_count():
            parser.error(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_targets(result: dict[str, float]) -> list[tuple[str, bool]]:
    """``[(description, met)]`` for the three targets that apply to ``result``."""
    out = []
    if "fc_ceiling_fraction" in result:
        got = result["fc_ceiling_fraction"]
        out.append(
            (
                f"exact fc6+fc7 {result['fc_gflops']:.0f} GFLOP/s = {100 * got:.0f}% of the "
                f"ceiling {result['ceiling_gflops']:.0f} GFLOP/s >= {100 * FC_CEILING_TARGET:.0f}%",
                got >= FC_CEILING_TARGET,
            )
        )
    if "spp1_conv_speedup" in result:
        for n in (1, 5):
            if f"spp{n}_conv_speedup" not in result:
                continue
            got, ratio = result[f"spp{n}_conv_speedup"], result[f"spp{n}_mac_ratio"]
            out.append(
                (
                    f"{n}-scale conv speedup {got:.1f}x >= {CONV_EFFICIENCY_TARGET} x work "
                    f"ratio {ratio:.1f}x = {CONV_EFFICIENCY_TARGET * ratio:.1f}x",
                    got >= CONV_EFFICIENCY_TARGET * ratio,
                )
            )
        got = result["spp1_speedup"]
        out.append(
            (
                f"1-scale total speedup {got:.1f}x >= {TOTAL_SPEEDUP_TARGET:.0f}x"
                f"{_fc_bound(result, 'fc_s')}",
                got >= TOTAL_SPEEDUP_TARGET,
            )
        )
        if "spp1_svd_speedup" in result:
            got = result["spp1_svd_speedup"]
            out.append(
                (
                    f"1-scale total speedup with SVD fc {got:.1f}x >= {SVD_SPEEDUP_TARGET:.0f}x"
                    f"{_fc_bound(result, 'svd_fc_s')}",
                    got >= SVD_SPEEDUP_TARGET,
                )
            )
    return out


def _fc_bound(result: dict[str, float], fc_key: str) -> str:
    """What the fc alone allows: R-CNN's total over SPP-net's fc time is the speed-up SPP-net
    would reach with free convs, pooling and SVMs (both run fc6 + fc7 on every window)."""
    if "rcnn_total_s" not in result or fc_key not in result:
        return ""
    bound = result["rcnn_total_s"] / result[fc_key]
    return f" (the fc alone caps it at {bound:.1f}x: R-CNN total / this fc time)"


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="example: THP_MEM_ALLOC_ENABLE=1 python benchmarks/detection_speed.py "
        "--windows 2000 --threads 2 --out detection_speed.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--windows", type=int, default=2000, help="R, windows per image")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: default)")
    parser.add_argument("--width", type=float, default=1.0, help="ZF-5 channel multiplier")
    parser.add_argument("--fc-dim", type=int, default=4096, help="fc6/fc7 width")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of SPP/fc cases")
    parser.add_argument("--rcnn-repeats", type=int, default=1, help="timed runs of R-CNN")
    parser.add_argument(
        "--svd-ranks",
        type=int,
        nargs=2,
        default=(1024, 256),
        metavar=("R6", "R7"),
        help="truncated-SVD ranks of fc6 and fc7 (0 0: skip)",
    )
    parser.add_argument("--image", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the network runs: cpu, or cuda / cuda:N (each timing waits for the device)",
    )
    parser.add_argument("--no-rcnn", action="store_true", help="skip R-CNN (fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    acc = parser.add_argument_group("accuracy (optional): a trained detector on VOC-layout data")
    acc.add_argument("--detector", type=Path, default=None, help="train-det output folder")
    acc.add_argument("--data", type=Path, default=None, help="VOC-layout root")
    acc.add_argument("--split", default="test", help="split to score")
    acc.add_argument("--accuracy-images", type=int, default=10, help="images (R-CNN is slow)")
    acc.add_argument("--max-proposals", type=int, default=300, help="selective-search windows")
    acc.add_argument(
        "--proposal-cache", type=Path, default=None, help="(DETECTOR/eval_SPLIT/proposals)"
    )
    add_memory_option(parser)
    return parser


def checked_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, torch.device]:
    """The parsed options and the device, refused (exit 2) before any work when unusable."""
    args = parser.parse_args()
    apply_memory_option(args)
    if (args.detector is None) != (args.data is None):
        parser.error("--detector and --data go together")
    device = _device(parser, args.device)
    if any(r < 0 or r > args.fc_dim for r in args.svd_ranks):
        parser.error(
            f"--svd-ranks {args.svd_ranks[0]} {args.svd_ranks[1]}: each rank must be in "
            f"0..--fc-dim ({args.fc_dim}); 0 0 skips SVD"
        )
    return args, device


def make_inputs(
    args: argparse.Namespace, device: torch.device
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """ZF-5 with random weights, a built-in scene ``[3, H, W]`` and ``R`` random windows."""
    torch.manual_seed(args.seed)
    model = create_model("zf5", num_classes=21, width=args.width, fc_dim=args.fc_dim)
    model = model.eval().to(device)
    height, width = args.image
    pil, _ = render_synthetic_image(
        args.seed, min_side=min(height, width), max_side=max(height, width)
    )
    image = to_tensor(pil.resize((width, height))).to(device)  # [3, H, W], 0..255
    boxes = random_boxes(args.windows, height, width, torch.Generator().manual_seed(args.seed))
    return model, image, boxes.to(device)


def measure(
    args: argparse.Namespace,
    model: nn.Module,
    image: torch.Tensor,
    boxes: torch.Tensor,
    device: torch.device,
) -> dict[str, float]:
    """:func:`time_detection` with the ceiling conv in its rounds, plus the fc's GFLOP/s
    against that ceiling."""
    svd = None if tuple(args.svd_ranks) == (0, 0) else tuple(r or None for r in args.svd_ranks)
    ceiling_fn, ceiling_gflop = _ceiling_case(device)
    result = time_detection(
        model,
        image,
        boxes,
        rcnn=not args.no_rcnn,
        svd_ranks=svd,
        repeats=args.repeats,
        rcnn_repeats=args.rcnn_repeats,
        threads=args.threads or None,
        extra_cases={"ceiling": ceiling_fn},
    )
    fc_gflop = 2 * args.windows * (model.fc6.in_features + model.fc7.in_features) * args.fc_dim
    result["fc_gflops"] = fc_gflop / 1e9 / result["fc_s"]
    result["ceiling_gflops"] = ceiling_gflop / result["ceiling_s"]
    result["fc_ceiling_fraction"] = result["fc_gflops"] / result["ceiling_gflops"]
    return result


def main() -> None:
    args, device = checked_args(build_parser())
    if args.threads:
        torch.set_num_threads(args.threads)
    model, image, boxes = make_inputs(args, device)
    result = measure(args, model, image, boxes, device)
    height, width = args.image
    print(
        f"Detection speed per image: ZF-5 (width {args.width}, fc {args.fc_dim}), "
        f"{height}x{width} image, {args.windows} windows; median of {args.repeats} "
        f"(R-CNN: {args.rcnn_repeats}), round-robin"
    )
    print(environment_line(device))
    print(detection_table(result))
    for text, met in check_targets(result):
        print(f"{'MET    ' if met else 'NOT met'}  {text}")
    if args.detector is not None:
        result["accuracy"] = accuracy(args)
    if args.out is not None:
        args.out.write_text(
            json.dumps({"args": vars(args), "result": result}, indent=2, default=str)
        )


def accuracy(args: argparse.Namespace) -> dict[str, object]:
    """mAP and time per image of SPP-net and R-CNN with a trained detector; printed too."""
    from sppnet.data.voc import VOCDetection
    from sppnet.detect.evaluate import evaluate_detector
    from sppnet.detect.io import load_detector
    from sppnet.detection.proposals import ProposalCache

    detector, _ = load_detector(args.detector)
    dataset = VOCDetection(args.data, args.split, classes=detector.class_names)
    cache = args.proposal_cache or args.detector / f"eval_{args.split}" / "proposals"
    n = min(args.accuracy_images, len(dataset))
    ss = ProposalCache(cache, "selective_search", max_proposals=args.max_proposals)
    proposals = {
        dataset.ids[i]: ss.get(dataset.ids[i], lambda i=i: dataset[i][0]) for i in range(n)
    }
    res = evaluate_detector(detector, dataset, proposals, rcnn_images=n, max_images=n)
    r = res["rcnn"]
    print(
        f"\nAccuracy on the first {n} images of {args.data} ({args.split}), same model, "
        f"windows ({r['windows_per_image']:.0f} per image) and SVMs:"
    )
    print("| | VOC07 mAP (%) | conv s / image | total s / image |")
    print("|---|---|---|---|")
    for name, m, t in (
        ("SPP-net", r["spp_map"], r["spp_timing"]),
        ("R-CNN", r["map"], r["timing"]),
    ):
        m_text = "n/a" if m is None else f"{100 * m:.1f}"
        print(f"| {name} | {m_text} | {t['conv']:.4f} | {t['total']:.4f} |")
    print(f"speed-up: conv {r['speedup']['conv']:.1f}x, total {r['speedup']['total']:.1f}x")
    return dict(r)


if __name__ == "__main__":
    main()
