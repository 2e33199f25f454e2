"""Whole-image detection time, stage by stage: what `sppnet detect` spends on one image.

Builds an SPP-net detector on the full-width ZF-5 (random weights: speed does not depend on
them; fc 4096, 20 classes with random SVMs and box regression, as a VOC detector has) at 1
scale (688), renders one built-in 500 x 375 scene, saves it as a PNG and runs it through
``sppnet.detect.images.detect_images``, the function behind `sppnet detect`:

  proposals (EdgeBoxes, 2,000 windows; or selective search "fast"), conv (the trunk on the
  image resized to 688 x 917), pooling (the pyramid of every window), fc (fc6 + fc7, exact
  or with truncated-SVD ranks ``--svd-ranks``), SVM (scores of 20 classes, box regression),
  NMS (per class, IoU 0.3, stopping at the 100th detection).

On the CPU the command computes the proposals first; "proposals beside conv" runs them in a
thread while the trunk computes (``proposals_beside_conv=True``, the default on a GPU), and
its "waiting for proposals" row is the time pooling waited for them after the trunk.

Each configuration runs ``--repeats`` times round-robin with the others (the shared vCPUs
drift in speed); the table gives the median of each stage and of the wall-clock total
(stages that overlap add up to more than it), and checks the project's target for
``sppnet detect`` on this 2-core CPU machine class: at most 1.0 s per image, proposals
included, with EdgeBoxes and SVD fc on 2 threads.

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/detect_image_speed.py --threads 2
    python benchmarks/detect_image_speed.py --width 0.25 --fc-dim 512 --svd-ranks 128 32 \
        --repeats 2  # quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from _timing import add_memory_option, apply_memory_option, environment_line, markdown_table
from tqdm import tqdm

from sppnet.data.synthetic import render_synthetic_image
from sppnet.detect.images import ImageFailure, detect_images
from sppnet.detection import Detector
from sppnet.models import compress_fc, create_model

TOTAL_TARGET_S = 1.0  # the project's target: EdgeBoxes + SVD fc, 2 cores, proposals included
STAGES = ("proposals", "conv", "proposals_wait", "pooling", "fc", "svm", "nms")
STAGE_NAMES = {
    "proposals": "proposals",
    "proposals_wait": "waiting for proposals after conv",
    "total": "**total (wall clock)**",
}


def _detector(args: argparse.Namespace, svd: bool) -> Detector:
    torch.manual_seed(args.seed)
    k = 20  # VOC's classes
    model = create_model("zf5", num_classes=k + 1, width=args.width, fc_dim=args.fc_dim).eval()
    if svd:
        model = compress_fc(model, *args.svd_ranks)
    p = model.fc6.in_features
    return Detector(
        model=model,
        class_names=[f"class{i}" for i in range(k)],
        scales=(688,),
        svm_weight=torch.randn(k, args.fc_dim) * 0.01,
        svm_bias=torch.zeros(k),
        box_weight=torch.randn(k, p, 4) * 1e-4,
        box_bias=torch.zeros(k, 4),
    ).eval()


def _detect_once(
    detector: Detector, path: Path, method: str, windows: int, beside: bool | None
) -> dict[str, float]:
    """One image file through `sppnet detect`'s engine (``detect_images``); seconds per
    stage and in total. ``beside``: compute the proposals in a thread beside the trunk."""
    (done,) = list(
        detect_images(
            detector, [path], proposals=method, max_proposals=windows, proposals_beside_conv=beside
        )
    )
    if isinstance(done, ImageFailure):
        raise SystemExit(f"error: {done.message}")
    return {**done.timing, "windows": float(done.windows)}


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="example: THP_MEM_ALLOC_ENABLE=1 python benchmarks/detect_image_speed.py "
        "--threads 2",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--windows", type=int, default=2000, help="proposals per image")
    parser.add_argument("--width", type=float, default=1.0, help="ZF-5 channel multiplier")
    parser.add_argument("--fc-dim", type=int, default=4096, help="fc6/fc7 width")
    parser.add_argument("--svd-ranks", type=int, nargs=2, default=(1024, 256), metavar=("R6", "R7"))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each configuration")
    parser.add_argument("--seed", type=int, default=0)
    add_memory_option(parser)
    return parser


def main() -> None:
    """Parse the options, time every configuration round-robin, print the table."""
    args = build_parser().parse_args()
    apply_memory_option(args)
    torch.set_num_threads(args.threads)

    pil, _ = render_synthetic_image(args.seed, min_side=375, max_side=500)
    pil = pil.resize((500, 375))
    exact, svd = _detector(args, svd=False), _detector(args, svd=True)
    configs = {
        "EdgeBoxes + SVD fc": (svd, "edge_boxes", None),
        "EdgeBoxes + SVD fc, proposals beside conv": (svd, "edge_boxes", True),
        "EdgeBoxes, exact fc": (exact, "edge_boxes", None),
        "selective search + SVD fc": (svd, "selective_search", None),
        "selective search, exact fc": (exact, "selective_search", None),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.png"
        pil.save(path)
        for detector, method, beside in configs.values():  # warm-up
            _detect_once(detector, path, method, args.windows, beside)
        for _ in tqdm(range(args.repeats), desc="rounds"):
            for name, (detector, method, beside) in configs.items():
                runs[name].append(_detect_once(detector, path, method, args.windows, beside))

    print(
        f"Whole-image detection, one {pil.size[0]} x {pil.size[1]} image: ZF-5 (width "
        f"{args.width}, fc {args.fc_dim}), 1 scale (688), up to {args.windows} windows, "
        f"SVD ranks {args.svd_ranks[0]}/{args.svd_ranks[1]}; median of {args.repeats}, "
        "round-robin"
    )
    print(environment_line())
    header = ["seconds per image", *configs]
    rows = []
    for stage in (*STAGES, "total"):
        rows.append(
            [
                STAGE_NAMES.get(stage, stage),
                *(
                    f"{statistics.median(r.get(stage, 0.0) for r in runs[n]):.3f}"
                    if stage in runs[n][0]
                    else "-"
                    for n in configs
                ),
            ]
        )
    rows.append(
        ["windows", *(f"{statistics.median(r['windows'] for r in runs[n]):.0f}" for n in configs)]
    )
    print(markdown_table(header, rows))
    total = statistics.median(r["total"] for r in runs["EdgeBoxes + SVD fc"])
    met = total <= TOTAL_TARGET_S
    print(
        f"{'MET    ' if met else 'NOT met'}  whole image (EdgeBoxes + SVD fc) {total:.3f} s "
        f"<= {TOTAL_TARGET_S:.1f} s"
    )


if __name__ == "__main__":
    main()
