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
from sppnet.limits import MAX_RESIZED_SIDE

__all__ = ["MAX_IMAGE_SIDE", "check_options", "check_writable_folder"]

# The largest image side (pixels) any option may ask for: a 3 x 4096 x 4096 float32 input is
# 200 MB and the conv maps of ZF-5 on it several GB; the paper's largest scale is 1200.
MAX_IMAGE_SIDE = 4096
# Worker processes: each holds its own torch and images; more than 4 per CPU core only
# costs memory.
_MAX_PROCESSES = 4 * max(2, os.cpu_count() or 1)
_HUGE = 10**9  # counts that only limit (images, detections, classes shown): more than any data
_SCORE = 1e6  # score thresholds: SVM margins and probabilities are far inside +-1e6

# option dest -> (least, most, least allowed itself?, most allowed itself?) for every
# command that has it; lists are checked element by element; every float must also be
# finite (NaN compares False). Every number has both bounds: a value past the upper one
# would take the machine's memory, processes or time, or break a library below.
_Range = tuple[float, float, bool, bool]
_RANGES: dict[str, _Range] = {
    **dict.fromkeys(("crop", "small_crop", "shorter", "max_side", "size", "scales", "input",
                     "sides"),
                    (1, MAX_IMAGE_SIDE, True, True)),
    "max_image_side": (1, MAX_RESIZED_SIDE, True, True),
    "batch_size": (1, 1024, True, True),
    "epochs": (1, 10_000, True, True),
    **dict.fromkeys(("plateau_patience", "warmup_epochs"), (0, 10_000, True, True)),
    "fc_layers": (0, 2, True, True),  # 0 or 2 (the config refuses 1)
    "weight_decay": (0, 10, True, True),
    **dict.fromkeys(("fc_dim", "svd_ranks"), (1, 16_384, True, True)),
    "spp_levels": (1, 16, True, True),
    **dict.fromkeys(("max_images", "max_detections", "top"), (1, _HUGE, True, True)),
    "rcnn_images": (0, _HUGE, True, True),
    "max_proposals": (1, 100_000, True, True),
    "splits": (1, 1000, True, True),
    **dict.fromkeys(("n_train", "n_test"), (1, 100_000, True, True)),
    **dict.fromkeys(("builtin_sizes", "sizes"), (0, 100_000, True, True)),
    "finetune_iterations": (1, 10**7, True, True),
    "e2e_iterations": (0, 10**7, True, True),
    "cache_views": (0, 1000, True, True),
    "feature_index": (0, 64, True, True),  # a timm features_only stage (they have ~5)
    **dict.fromkeys(("workers", "proposal_workers"), (0, _MAX_PROCESSES, True, True)),
    "seed": (0, 2**32 - 1, True, True),
    **dict.fromkeys(("lr", "finetune_lr", "e2e_lr"), (0, 10, False, True)),
    **dict.fromkeys(("C", "svm_c"), (0, 1e6, False, True)),
    "trunk_lr_scale": (0, 100, True, True),
    "lighting": (0, 10, True, True),
    "width": (0, 16, False, True),
    "dropout": (0, 1, True, False),  # 1 would drop every unit
    "nms_threshold": (0, 1, True, True),
    **dict.fromkeys(("score_threshold", "draw_threshold"), (-_SCORE, _SCORE, True, True)),
}  # fmt: skip
# why an upper bound is what it is, where the number alone does not say
_WHY = {
    MAX_IMAGE_SIDE: "the largest image side, to fit in memory",
    MAX_RESIZED_SIDE: "the longest resized side, to fit in memory",
    _MAX_PROCESSES: f"4 processes per CPU core here, {os.cpu_count() or 1} cores",
    2**32 - 1: "the largest seed numpy takes",
}
# commands whose --out is a folder they write into
_OUT_FOLDERS = (
    "train", "train-det", "features", "eval-det", "detect", "demo", "make-data",
)  # fmt: skip


def _option(dest: str) -> str:
    return "--C" if dest == "C" else "--" + dest.replace("_", "-")


def _check_number(dest: str, v: object) -> None:
    """One value of option ``dest``: finite, and inside its :data:`_RANGES` entry."""
    if isinstance(v, float) and not math.isfinite(v):
        raise UserError(f"{_option(dest)} must be a finite number, got {v}")
    if dest not in _RANGES or not isinstance(v, int | float) or isinstance(v, bool):
        return
    low, high, low_in, high_in = _RANGES[dest]
    too_low = v < low or (v == low and not low_in)
    too_high = v > high or (v == high and not high_in)
    if too_low or too_high:
        need = f"{'>=' if low_in else '>'} {low:g} and {'<=' if high_in else '<'} {high:g}"
        why = f" ({_WHY[high]})" if too_high and high in _WHY else ""
        raise UserError(f"{_option(dest)} must be {need}{why}, got {v}")


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad option values before any work, each named with the allowed range.

    Raises:
        UserError: a NaN/infinite number, a value out of range, an image side above
            :data:`MAX_IMAGE_SIDE`, an output folder that is a file or cannot be written or
            lies inside the input data, a JSON output that is a folder, or a device that is
            not here.
    """
    for dest, value in vars(args).items():
        for v in _flat(value):
            _check_number(dest, v)
    if getattr(args, "out", None) is not None and args.command in _OUT_FOLDERS:
        check_writable_folder(args.out, "--out")
    elif args.command in ("export", "convert"):  # a file (classifier, voc2coco) or a folder
        folder = args.command == "export" and args.detector is not None
        folder = folder or (args.command == "convert" and args.direction == "coco2voc")
        check_writable_folder(args.out if folder else _parent(args.out), "--out")
    _check_out_outside_inputs(args)
    if getattr(args, "json", None) is not None:
        check_writable_folder(_parent(args.json), "--json")
        if os.path.isdir(args.json):
            raise UserError(f"--json {args.json} is a folder; give a file name")
    if getattr(args, "device", None) is not None:
        check_device(args.device)


# commands that read a folder of --data (or --images) and write files under --out
_READ_AND_WRITE = ("train", "features", "train-det", "eval-det", "convert")


def _check_out_outside_inputs(args: argparse.Namespace) -> None:
    """``--out`` is not inside the folder the command reads (``--data``, ``--images``):
    its files (checkpoints, curves.png, features, linked images) would become input, e.g.
    a class folder's extra training image.

    Raises:
        UserError: ``--out`` is that folder or inside it.
    """
    out = getattr(args, "out", None)
    if out is None or args.command not in _READ_AND_WRITE:
        return
    if args.command == "convert" and args.direction == "voc2coco":
        return  # one JSON file, read by nothing of the root
    target = os.path.realpath(out)
    for option in ("--data", "--images"):
        source = getattr(args, option[2:], None)
        if source is None or not os.path.isdir(source):
            continue  # a COCO file, or missing (named later)
        folder = os.path.realpath(source)
        if os.path.commonpath([folder, target]) == folder:
            raise UserError(
                f"--out {out} is inside {option} {source}: what it writes would be read as "
                f"input; choose an --out outside {source}"
            )


def _parent(path: str) -> str:
    """The folder a file ``path`` goes into."""
    return os.path.dirname(os.path.abspath(path))


def _flat(value: object) -> list[object]:
    """The numbers of an option's value: itself, or those of a list (of sizes)."""
    if isinstance(value, list | tuple):
        return [v for item in value for v in _flat(item)]
    return [value]


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
