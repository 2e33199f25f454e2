"""Detection training cache: pooled windows vs conv maps, disk size and training time.

Two caches can feed the detector's fc fine-tuning, SVMs and box regression (Sec. 4.2,
``sppnet train-det --cache maps|windows``):
  * windows - every window's pooled pyramid, ``[R, C*L]`` float16 per image;
  * maps    - every image's conv5 map at every scale, ``[h, w, C]`` float16, plus each
              window's scale and cells; the stages pool the windows they need from it.

Dry run (default, no data needed): the size estimate ``train-det`` prints first, for Pascal
VOC 2007 trainval as the paper ran it: 5,011 images of 500 x 375, 2,000 selective-search
windows (+ ~3 ground-truth boxes) per image, full ZF-5 (256 x 50 = 12,800 pooled values),
1 scale (688) and the paper's 5 scales (480, 576, 688, 864, 1200). GB = 10**9 bytes.

Measured run (``--measure``): the built-in scenes, both caches built with the same trunk
and windows, one fc fine-tuning epoch (every window once, in mini-batches of 128) and the
SVM and box-regression stages timed for each, the bytes on disk counted, and the two
detectors compared (they must be equal: max pooling commutes with float16 rounding).

Run:
    python benchmarks/detection_cache_size.py
    python benchmarks/detection_cache_size.py --measure --images 40 --out /tmp/cache_bench
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from _timing import environment_line, markdown_table

from sppnet.detect.cache import ConvMapCache, PooledFeatureCache
from sppnet.detection import DETECTION_SCALES_1, DETECTION_SCALES_5
from sppnet.models import create_model

VOC07_TRAINVAL = 5011  # images in VOC 2007 trainval
VOC_SIZE = (375, 500)  # (height, width) of most VOC images
GT_PER_IMAGE = 3  # ground-truth boxes added to the windows of an image


def dry_run(windows: int, width: float) -> None:
    """Print the size estimates of both caches for VOC 2007 trainval."""
    # Only the trunk's geometry and channels matter: a small fc keeps this quick.
    model = create_model("zf5", num_classes=21, width=width, fc_dim=16).eval()
    per_image = windows + GT_PER_IMAGE
    sizes = [VOC_SIZE] * VOC07_TRAINVAL
    rows = []
    for name, scales in (("1 scale (688)", DETECTION_SCALES_1), ("5 scales", DETECTION_SCALES_5)):
        nowhere = Path("/nonexistent/sppnet-dry-run")  # never written: estimates only
        pooled = PooledFeatureCache(nowhere, model, scales=scales)
        maps = ConvMapCache(nowhere, model, scales=scales)
        w_bytes = pooled.estimate_bytes(VOC07_TRAINVAL, per_image)
        m_bytes = maps.estimate_bytes(sizes, per_image)
        map_cells = sum(
            math.prod(maps._map_size(round(VOC_SIZE[0] * s / 375), round(VOC_SIZE[1] * s / 375)))
            for s in scales
        )
        rows.append(
            [
                name,
                f"{w_bytes / 1e9:,.1f} GB ({w_bytes / VOC07_TRAINVAL / 1e6:.1f} MB/img)",
                f"{m_bytes / 1e9:,.1f} GB ({m_bytes / VOC07_TRAINVAL / 1e6:.2f} MB/img)",
                f"{map_cells:,}",
                f"{w_bytes / m_bytes:.0f}x",
            ]
        )
    print(
        f"VOC 2007 trainval dry run: {VOC07_TRAINVAL:,} images of {VOC_SIZE[1]} x "
        f"{VOC_SIZE[0]}, {windows:,} windows + {GT_PER_IMAGE} ground truth per image, ZF-5 "
        f"(width {width}: {pooled.channels} channels, {pooled.dim:,} pooled values), float16\n"
    )
    print(
        markdown_table(
            ["scales", "pooled windows (--cache windows)", "conv maps (--cache maps)",
             "map cells / image", "maps save"],
            rows,
        )
    )  # fmt: skip


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def measure(args: argparse.Namespace) -> None:
    """Build both caches on the built-in scenes and time the stages that read them."""
    from sppnet.data.synthetic import generate_voc_dataset
    from sppnet.data.voc import VOCDetection
    from sppnet.detect import train as td
    from sppnet.detect.io import load_detector

    out = Path(args.out)
    voc = generate_voc_dataset(
        out / "voc", sizes={"train": args.images}, seed=0, max_side=args.max_side
    )
    base = {
        "data": str(voc), "split": "train", "width": args.width, "fc_dim": args.fc_dim,
        "proposals": "edge_boxes", "max_proposals": args.windows, "scales": tuple(args.scales),
        "finetune_batch": 128,
    }  # fmt: skip
    # One epoch: every cached window once (proposals computed once, shared by both runs).
    dataset = VOCDetection(voc, "train")
    proposals = td.get_proposals(dataset, "edge_boxes", out / "proposals", args.windows)
    gt = sum(int((~a["difficult"]).sum()) for a in dataset.annotations)
    total = sum(p.shape[0] for p in proposals.values()) + gt
    iterations = math.ceil(total / 128)
    rows, detectors = [], {}
    for layout in ("windows", "maps"):
        run = out / layout
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(out / "proposals", run / "proposals")
        np.random.seed(0)  # liblinear shuffles with numpy's global generator
        t = time.perf_counter()
        summary = td.train_detector(
            td.DetectorTrainConfig(
                **base, out=str(run), cache=layout, finetune_iterations=iterations
            )
        )
        wall = time.perf_counter() - t
        timing = summary["timing"]
        cache_dir = run / ("cache" if layout == "windows" else "cache_maps")
        cache_s = next(v for k, v in timing.items() if k.startswith("cache:"))
        size = _disk_bytes(cache_dir)
        rows.append(
            [
                layout,
                f"{size / 2**20:,.1f} MiB",
                f"{cache_s:.1f}",
                f"{timing['finetune']:.1f} ({timing['finetune'] / iterations * 1e3:.0f} ms/it)",
                f"{timing['svm']:.1f}",
                f"{timing['box_regression']:.1f}",
                f"{wall:.1f}",
            ]
        )
        detectors[layout] = load_detector(run)[0]
    same = all(
        torch.equal(getattr(detectors["windows"], k), getattr(detectors["maps"], k))
        for k in ("svm_weight", "svm_bias", "box_weight", "box_bias")
    )
    model = detectors["maps"].model
    print(
        f"built-in scenes: {args.images} images (longer side <= {args.max_side}), "
        f"{total:,} windows ({args.windows} edge boxes + ground truth per image), scales "
        f"{tuple(args.scales)}, ZF-5 width {args.width} ({model.feature_channels} channels), "
        f"fc {args.fc_dim}; fine-tuning epoch = {iterations} mini-batches of 128; "
        f"{environment_line()}\n"
    )
    print(
        markdown_table(
            ["cache", "on disk", "build s", "fc epoch s", "SVMs s", "box regr. s", "total s"],
            rows,
        )
    )
    print(f"\nthe two detectors are {'equal' if same else 'DIFFERENT'} (SVMs, box regressors)")


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=2000, help="windows per image (2000)")
    parser.add_argument("--width", type=float, default=1.0, help="ZF-5 channel multiplier")
    parser.add_argument("--measure", action="store_true", help="build and time both caches")
    parser.add_argument("--out", default="/tmp/sppnet_cache_bench", help="--measure: folder")
    parser.add_argument("--images", type=int, default=40, help="--measure: built-in scenes")
    parser.add_argument("--max-side", type=int, default=300, help="--measure: scene size")
    parser.add_argument("--scales", type=int, nargs="+", default=[400], help="--measure")
    parser.add_argument("--fc-dim", type=int, default=1024, help="--measure: fc width")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure:
        if args.windows == 2000:
            args.windows = 300
        measure(args)
    else:
        dry_run(args.windows, args.width)


if __name__ == "__main__":
    main()
