"""The ``sppnet`` command. Parses arguments and calls the library; nothing else.

Examples:
    sppnet --help
    sppnet models
    sppnet models --width 0.25 --input 224 180 137x251
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sppnet import __version__

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  sppnet models                          the paper's four networks and their geometry
  sppnet models --input 224 180 137x251  conv5 map sizes for these inputs
  python -m sppnet --version
"""


def _parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"137x251"`` -> (137, 251) as (height, width)."""
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


def _cmd_models(args: argparse.Namespace) -> int:
    from sppnet.models import create_model, list_models

    sizes = args.input or [(224, 224), (180, 180)]
    head = ["model", "stride", "offset", "channels", "min input", "params (M)"]
    head += [f"conv map @{h}x{w}" for h, w in sizes]
    rows = []
    for name in list_models():
        model = create_model(name, width=args.width)
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        row = [
            name,
            str(model.feature_stride),
            f"{model.feature_offset:g}",
            str(model.feature_channels),
            str(model.min_input_size),
            f"{n_params:.1f}",
        ]
        for h, w in sizes:
            if min(h, w) < model.min_input_size:
                row.append("too small")
            else:
                fh, fw = model.feature_size(h, w)
                row.append(f"{fh}x{fw}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sppnet`` command (subcommands and their options)."""
    parser = argparse.ArgumentParser(
        prog="sppnet",
        description="Spatial pyramid pooling networks (He et al., TPAMI 2015): "
        "classification at any image size and detection with shared convolutions.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sppnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = sub.add_parser(
        "models",
        help="list the networks (ZF-5, Convnet*-5, Overfeat-5/7) and their geometry",
        description="List the registered networks with their conv5 stride, receptive-field "
        "offset, channels, minimum input size and parameter count.",
        epilog="example:\n  sppnet models --width 0.25 --input 224 180 137x251",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models.add_argument(
        "--width", type=float, default=1.0, help="channel width multiplier (default 1.0)"
    )
    models.add_argument(
        "--input",
        type=_parse_size,
        nargs="+",
        metavar="SIZE",
        help="input sizes to show conv map sizes for: 224 or HEIGHTxWIDTH (default 224 180)",
    )
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sppnet`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
