"""Argument builders shared by the commands: one definition per common option.

Each builder adds options with the same name, type, metavar and meaning wherever they
appear; a command's own wording (a default it documents) is a keyword argument. Nothing
here imports torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = [
    "LITE_MODELS",
    "add_builtin_sizes",
    "add_checkpoint_options",
    "add_command",
    "add_detection_data",
    "add_detector_settings",
    "add_json",
    "add_loader_options",
    "add_no_progress",
    "add_proposal_options",
    "add_trunk_options",
    "add_trust_model",
    "check_timm_model",
    "model_args_of",
]

# sppnet.models.LITE_VARIANTS, written out so that --help does not import torch
LITE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

Handler = Callable[[argparse.Namespace], int]


def add_command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, text: str
) -> argparse.ArgumentParser:
    """A subcommand ``name`` run by ``handler``.

    Args:
        sub: the ``sppnet`` parser's subparsers.
        name: the command.
        handler: ``handler(args) -> exit code``.
        text: three paragraphs: its one line in ``sppnet --help``, its description (shown
            as one paragraph), and the copy-pasteable examples (shown as written).
    """
    help, description, examples = text.strip("\n").split("\n\n", 2)
    parser = sub.add_parser(
        name,
        help=help,
        description=" ".join(description.split()),
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=handler)
    return parser


def add_checkpoint_options(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    help: str = "run or checkpoint directory",
    metavar: str = "DIR",
    which_default: str | None = "latest",
    which_help: str = "checkpoint of a run directory to load (default latest)",
) -> None:
    """``--checkpoint DIR [--which latest|best]``: a trained classifier to load."""
    parser.add_argument("--checkpoint", required=required, metavar=metavar, help=help)
    choices = ("latest", "best") if which_default == "latest" else ("best", "latest")
    parser.add_argument("--which", choices=choices, default=which_default, help=which_help)


def add_loader_options(parser: argparse.ArgumentParser, batch_default: int, unit: str) -> None:
    """``--batch-size`` (``unit`` per batch) and ``--workers`` (image decoding processes)."""
    parser.add_argument(
        "--batch-size", type=int, default=batch_default,
        help=f"{unit} (default {batch_default})",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=0, help="image decoding worker processes (default 0)"
    )


def add_trunk_options(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--model-args JSON`` and ``--feature-index N`` of a trunk-source ``--model``."""
    parser.add_argument(
        "--model-args", metavar="JSON",
        help=f"{note}keyword arguments of --model package.module:factory (or timm/NAME) as a "
        "JSON object, e.g. '{\"depth\": 18}'",
    )  # fmt: skip
    parser.add_argument(
        "--feature-index", type=int, metavar="N",
        help=f"{note}--model timm/NAME: the features_only stage under the SPP head (default: "
        "the stride-16 one)",
    )  # fmt: skip


def model_args_of(args: argparse.Namespace) -> dict | None:
    """``--model-args`` parsed: a JSON object (None when not given).

    Raises:
        UserError: not JSON, or not an object.
    """
    import json

    from sppnet.errors import UserError

    text = getattr(args, "model_args", None)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--model-args {text!r} is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise UserError(
            f"--model-args must be a JSON object like '{{\"depth\": 18}}', got {text!r}"
        )
    return value


def check_timm_model(model: str | None) -> None:
    """``--model timm/NAME``: timm must import, checked before any data is read.

    Raises:
        ImportError: timm is not installed or does not import (the message says which).
    """
    if model is not None and model.startswith("timm/"):
        from sppnet.models.trunk_source import import_timm

        import_timm()


def add_trust_model(parser: argparse.ArgumentParser, what: str = "checkpoint") -> None:
    """``--model PACKAGE.MODULE:FACTORY``: name a saved model's trunk again to import it."""
    parser.add_argument(
        "--model", metavar="PACKAGE.MODULE:FACTORY",
        help=f"a {what} whose trunk is an import path is rebuilt only when you name that path "
        "here again (a file alone never makes sppnet import code)",
    )  # fmt: skip


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: the printed results, also as a JSON file."""
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def add_no_progress(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """``--no-progress``: no tqdm bars (logs, CI)."""
    parser.add_argument("--no-progress", action="store_true", help=help)


def add_builtin_sizes(parser: argparse.ArgumentParser, help: str) -> None:
    """``--builtin-sizes TRAIN VAL TEST``: images per split of the built-in data."""
    parser.add_argument(
        "--builtin-sizes", type=int, nargs=3, default=(300, 100, 200),
        metavar=("TRAIN", "VAL", "TEST"), help=help,
    )  # fmt: skip


def add_detection_data(
    parser: argparse.ArgumentParser,
    *,
    required: bool,
    help: str,
    images_help: str = "COCO: the image folder of --data",
) -> None:
    """``--data DIR|JSON`` (a VOC-layout root or a COCO file) and ``--images DIR``."""
    parser.add_argument("--data", required=required, metavar="DIR|JSON", help=help)
    parser.add_argument("--images", metavar="DIR", help=images_help)
    parser.add_argument(
        "--fix-sizes",
        action="store_true",
        help="rescale the boxes of images whose annotated size is not the file's (with a "
        "warning) instead of stopping at such an image",
    )


def add_proposal_options(
    parser: argparse.ArgumentParser,
    *,
    default: str | None,
    help: str,
    max_help: str = "windows (2000)",
    workers_help: str = "processes computing proposals in parallel (the same boxes; default 0: "
    "this one)",
) -> None:
    """``--proposals METHOD|DIR``, ``--max-proposals``, ``--proposal-workers``.

    ``default=None`` leaves every default to the engine's configuration.
    """
    fixed = default is not None
    parser.add_argument("--proposals", default=default, metavar="METHOD|DIR", help=help)
    parser.add_argument("--max-proposals", type=int, default=2000 if fixed else None, help=max_help)
    parser.add_argument(
        "--proposal-workers", type=int, default=0 if fixed else None, metavar="N",
        help=workers_help,
    )  # fmt: skip


def add_detector_settings(parser: argparse.ArgumentParser) -> None:
    """Settings of a saved detector a run may change: scales, thresholds, SVD ranks."""
    parser.add_argument(
        "--scales", type=int, nargs="+", metavar="S",
        help="shorter sides of the image pyramid (the detector's own: 688, or 480 576 688 "
        "864 1200)",
    )  # fmt: skip
    parser.add_argument("--score-threshold", type=float, help="least score kept (none)")
    parser.add_argument("--max-detections", type=int, help="detections per image (100)")
    parser.add_argument("--nms-threshold", type=float, help="per-class NMS IoU (0.3)")
    parser.add_argument(
        "--svd-ranks", type=int, nargs=2, metavar=("R6", "R7"),
        help="replace fc6/fc7 by truncated SVD of these ranks (faster; beyond the paper)",
    )  # fmt: skip
