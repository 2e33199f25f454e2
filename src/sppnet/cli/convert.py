"""``sppnet convert``: detection data between the VOC layout and COCO JSON.

Example:
    sppnet convert voc2coco --data VOCdevkit/VOC2007 --split test --out voc07_test.json
"""

from __future__ import annotations

import argparse
import os

from sppnet.cli.options import add_command, add_detection_data
from sppnet.errors import UserError

__all__ = ["add_convert_parser"]


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.direction == "voc2coco":
        from sppnet.data.convert import voc_to_coco

        if args.images is not None:
            raise UserError("--images is for coco2voc (voc2coco reads ROOT/JPEGImages)")
        if args.merge:
            raise UserError("--merge is for coco2voc (voc2coco writes one .json file)")
        classes = None
        if args.classes is not None:
            from sppnet.detect.data import parse_classes

            classes = parse_classes(args.classes)
        if os.path.isdir(args.out):
            raise UserError(f"--out {args.out} is a folder; voc2coco writes a .json file")
        done = voc_to_coco(
            args.data, args.split or "trainval", args.out, classes=classes, fix_sizes=args.fix_sizes
        )
    else:
        from sppnet.data.convert import coco_to_voc

        if args.images is None:
            raise UserError("coco2voc needs --images DIR: the image folder of the COCO file")
        if args.classes is not None:
            raise UserError("--classes is for voc2coco (a COCO file names its categories)")
        if os.path.isfile(args.out):
            raise UserError(f"--out {args.out} is a file; coco2voc writes a VOC root folder")
        _check_empty_out(args)
        done = coco_to_voc(
            args.data, args.images, args.out, split=args.split or "all", fix_sizes=args.fix_sizes
        )
    print(
        f"{args.direction}: {done['images']} images, {done['objects']} objects, "
        f"{len(done['classes'])} classes -> {args.out}"
    )
    return 0


def _check_empty_out(args: argparse.Namespace) -> None:
    """coco2voc writes into a missing or empty folder, or into a VOC root with ``--merge``.

    Raises:
        UserError: ``--out`` holds files and ``--merge`` was not given.
    """
    if args.merge or not os.path.isdir(args.out):
        return
    entries = sorted(os.listdir(args.out))
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise UserError(
            f"--out {args.out} is not empty ({len(entries)} entries: {shown}); coco2voc "
            "writes into a new or empty folder. To add these images to an existing VOC root "
            "pass --merge (annotations and images of the same name are replaced, "
            "ImageSets/Main/SPLIT.txt and classes.txt are written anew), or choose another "
            "--out"
        )


_CONVERT_TEXT = r"""
convert detection data: VOC layout <-> COCO JSON

voc2coco: one split of a VOC-layout root -> a COCO annotation file (difficult -> iscrowd;
file_name relative to ROOT/JPEGImages). coco2voc: a COCO file -> a VOC-layout root
(Annotations/*.xml, ImageSets/Main/SPLIT.txt, classes.txt, JPEGImages as hard links or
copies; iscrowd -> difficult; fractional boxes grow to whole pixels). coco2voc writes
into a new or empty folder; --merge adds to an existing VOC root instead.

examples:
  sppnet convert voc2coco --data VOCdevkit/VOC2007 --split test --out voc07_test.json
  sppnet convert coco2voc --data coco/annotations/instances_val.json \
      --images coco/val --split val --out coco_voc
"""


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet convert``."""
    convert = add_command(sub, "convert", _cmd_convert, _CONVERT_TEXT)
    convert.add_argument("direction", choices=("voc2coco", "coco2voc"))
    add_detection_data(
        convert, required=True,
        help="voc2coco: the VOC root; coco2voc: the COCO annotation file",
        images_help="coco2voc: the COCO image folder",
    )  # fmt: skip
    convert.add_argument(
        "--split", help="voc2coco: the split read (trainval); coco2voc: the split written (all)"
    )
    convert.add_argument(
        "--classes", metavar="A,B,C|FILE", help="voc2coco: class names (default classes.txt)"
    )
    convert.add_argument(
        "--merge",
        action="store_true",
        help="coco2voc: write into a non-empty VOC root (files of the same name are replaced)",
    )
    convert.add_argument(
        "--out", required=True, metavar="JSON|DIR", help="the COCO file / the VOC root written"
    )
