"""Small helpers every command group shares: sizes, tables, timing lines, ranks.

Nothing here imports torch: ``sppnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

__all__ = ["parse_size", "print_table", "print_timing", "require_images", "torchrun_rank"]


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"137x251"`` -> (137, 251) as (height, width).

    Raises:
        argparse.ArgumentTypeError: not SIZE or HEIGHTxWIDTH of positive integers.
    """
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH >= 1, got {text!r}")
    return values[0], values[1]


def print_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``head``, a rule and ``rows`` as left-aligned columns."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def print_timing(prefix: str, timing: dict[str, float]) -> None:
    """One line: ``prefix: conv 0.184 s | pooling 0.200 s | ...``."""
    parts = " | ".join(f"{stage} {seconds:.3f} s" for stage, seconds in timing.items())
    print(f"{prefix}: {parts}")


def require_images(dataset: object, args: argparse.Namespace) -> None:
    """An empty split is an error before any work, not "0 images: n/a" or numpy's words.

    Raises:
        UserError: ``dataset`` holds no images.
    """
    from sppnet.errors import UserError

    if len(dataset) == 0:  # type: ignore[arg-type]
        raise UserError(
            f"--split {args.split} of {args.data} holds no images; name a split with images"
            + (" (or 'all')" if args.command in ("eval", "features") else "")
        )


def torchrun_rank() -> int:
    """This process's ``torchrun`` rank (0 alone)."""
    return int(os.environ.get("RANK", "0") or 0)
