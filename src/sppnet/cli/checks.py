"""Option values checked before any work: ranges, finite numbers, output folders, devices.

One table (:data:`_RANGES`) holds the allowed range of every numeric option of every
command; :func:`check_options` applies it, then checks ``--out``, ``--json`` and
``--device``. Each failure is a :class:`~sppnet.errors.UserError` naming the option.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

from sppnet.cli.device import check_device
from sppnet.errors import UserError

__all__ = ["MAX_IMAGE_SIDE", "check_options", "check_writable_folder"]

# The largest image side (pixels) any option may ask for: a 3 x 4096 x 4096 float32 input is
# 200 MB and the conv maps of ZF-5 on it several GB; the paper's largest scale is 1200.
MAX_IMAGE_SIDE = 4096

# option dest -> (least, most, least allowed itself?) for every command that has it; lists
# are checked element by element; every float must also be finite (NaN compares False).
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    **dict.fromkeys(("crop", "small_crop", "shorter", "max_side", "size", "scales"),
                    (1, MAX_IMAGE_SIDE, True)),
    **dict.fromkeys(("batch_size", "epochs", "fc_dim", "max_images", "max_proposals",
                     "max_detections", "top", "splits", "n_train", "n_test", "spp_levels",
                     "svd_ranks", "finetune_iterations"), (1, None, True)),
    **dict.fromkeys(("rcnn_images", "e2e_iterations", "workers", "plateau_patience",
                     "builtin_sizes", "seed", "cache_views", "proposal_workers"), (0, None, True)),
    **dict.fromkeys(("lr", "finetune_lr", "e2e_lr", "C", "svm_c"), (0, None, False)),
    **dict.fromkeys(("trunk_lr_scale", "lighting"), (0, None, True)),
    "width": (0, 16, False),
    "dropout": (0, 1, True),
    "nms_threshold": (0, 1, True),
}  # fmt: skip
# commands whose --out is a folder they write into
_OUT_FOLDERS = ("train", "train-det", "features", "eval-det", "detect", "demo")


def _option(dest: str) -> str:
    return "--C" if dest == "C" else "--" + dest.replace("_", "-")


def _check_number(dest: str, v: object) -> None:
    """One value of option ``dest``: finite, and inside its :data:`_RANGES` entry."""
    if isinstance(v, float) and not math.isfinite(v):
        raise UserError(f"{_option(dest)} must be a finite number, got {v}")
    if dest not in _RANGES or not isinstance(v, int | float) or isinstance(v, bool):
        return
    low, high, closed = _RANGES[dest]
    if low is not None and (v < low or (v == low and not closed)):
        need = f">= {low}" if closed else f"> {low}"
        if high is not None:
            need += f" and <= {high}"
        raise UserError(f"{_option(dest)} must be {need}, got {v}")
    if high is not None and v > high:
        why = " (the largest image side, to fit in memory)" if high == MAX_IMAGE_SIDE else ""
        raise UserError(f"{_option(dest)} must be <= {high}{why}, got {v}")


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad option values before any work, each named with the allowed range.

    Raises:
        UserError: a NaN/infinite number, a value out of range, an image side above
            :data:`MAX_IMAGE_SIDE`, an output folder that is a file or cannot be written, a
            JSON output that is a folder, or a device that is not here.
    """
    for dest, value in vars(args).items():
        for v in value if isinstance(value, list | tuple) else [value]:
            _check_number(dest, v)
    if getattr(args, "out", None) is not None and args.command in _OUT_FOLDERS:
        check_writable_folder(args.out, "--out")
    if getattr(args, "json", None) is not None:
        check_writable_folder(os.path.dirname(os.path.abspath(args.json)), "--json")
        if os.path.isdir(args.json):
            raise UserError(f"--json {args.json} is a folder; give a file name")
    if getattr(args, "device", None) is not None:
        check_device(args.device)


def check_writable_folder(path: str, option: str) -> None:
    """``path`` is (or can be made) a folder this process can write into.

    Raises:
        UserError: ``path`` or the nearest existing folder above it is a file, or cannot
            be written into.
    """
    folder = os.path.abspath(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{option} {path} is a file, not a folder; choose another {option}")
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{option} {path}: {existing} is a file, not a folder")
    try:  # a real write: os.access is wrong for root and for read-only file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(
            f"{option} {path}: cannot write into {existing} ({err.strerror or err}); choose "
            f"a folder you can write to"
        ) from None
