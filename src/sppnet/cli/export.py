"""``sppnet export``: a trained classifier or detector to ONNX.

Example:
    sppnet export --detector runs/det --out runs/det_onnx
"""

from __future__ import annotations

import argparse

from sppnet.cli.options import add_command, add_trust_model
from sppnet.errors import UserError

__all__ = ["add_export_parser"]


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sppnet.export.onnx import export_classifier, export_detector, require_onnx

    require_onnx()
    _check_opset(args.opset)
    out = Path(args.out)
    if args.checkpoint is not None:
        from sppnet.engine.checkpoint import load_classifier

        if out.is_dir():
            raise UserError(f"--out {out} is a directory; give the .onnx file to write")
        model, meta = load_classifier(
            args.checkpoint, args.which, trust_model_code=args.model or False
        )
        export_classifier(model, out, classes=meta["classes"], mean=meta["mean"], opset=args.opset)
        kind = "SPP: N, H, W dynamic" if model.spp_levels is not None else "no-SPP: 224x224"
        print(
            f"{meta['model']['name']} epoch {meta['epoch']} -> {out} ({kind}, opset {args.opset})"
        )
    else:
        from sppnet.detect.io import load_detector

        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; give the directory to write")
        detector, _ = load_detector(args.detector, trust_model_code=args.model or False)
        export_detector(detector, out, max_image_side=args.max_image_side, opset=args.opset)
        print(
            f"{args.detector} -> {out} (conv.onnx, windows.onnx, onnx_detector.json; opset "
            f"{args.opset}); run it with: sppnet detect IMAGE --onnx {out}"
        )
    return 0


def _check_opset(opset: int) -> None:
    """``--opset`` between the exporter's oldest (18) and the newest the onnx package knows.

    Raises:
        UserError: out of that range.
    """
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not 18 <= opset <= newest:
        raise UserError(
            f"--opset must be >= 18 (the exporter's oldest) and <= {newest} (the newest this "
            f"onnx {onnx.__version__} knows), got {opset}"
        )


_EXPORT_TEXT = r"""
export a classifier or a detector to ONNX (any image size, any window count)

Export a trained classifier to one ONNX file (image [N, 3, H, W] minus the mean -> logits;
N, H, W dynamic for SPP networks) or a trained detector to a directory of two graphs (conv
map of an image of any size; windows [R, 4] on it -> SVM scores and box deltas) for `sppnet
detect --onnx`. The pyramid's Appendix-A bins are exact at every size. Exporter:
torch.onnx.export(dynamo=True), opset 20. Needs the onnx extra: pip install sppnet[onnx].

examples:
  sppnet export --checkpoint runs/cls --out cls.onnx
  sppnet export --detector runs/det --out runs/det_onnx
  sppnet detect image.jpg --onnx runs/det_onnx --out detections
"""


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet export``."""
    export = add_command(sub, "export", _cmd_export, _EXPORT_TEXT)
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="RUN", help="a classifier run (sppnet train)")
    source.add_argument("--detector", metavar="DIR", help="a detector (sppnet train-det)")
    export.add_argument(
        "--out", required=True, metavar="PATH",
        help="the .onnx file (classifier) or the directory (detector) to write",
    )  # fmt: skip
    export.add_argument(
        "--which", choices=("best", "latest"), default="latest",
        help="classifier checkpoint (latest)",
    )  # fmt: skip
    export.add_argument("--opset", type=int, default=20, help="ONNX opset (20)")
    add_trust_model(export, "classifier or detector")
    export.add_argument(
        "--max-image-side", type=int, metavar="PX",
        help="detector: the longest resized image side the window graph is exact for "
        "(max_long_side, else 3x the largest scale)",
    )  # fmt: skip
