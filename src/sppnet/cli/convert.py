"""``sppnet convert``: detection data between the VOC layout, COCO JSON and the YOLO layout.

Example:
    sppnet convert voc2coco --data VOCdevkit/VOC2007 --split test --out voc07_test.json
    sppnet convert yolo2voc --data datasets/pets --split val --out pets_voc
"""

from __future__ import annotations

import argparse
import os

from sppnet.cli.options import add_command, add_detection_data
from sppnet.errors import UserError

__all__ = ["add_convert_parser"]

# direction -> (what --data is, what --out is, --split default, takes --images, --classes)
_DIRECTIONS = {
    "voc2coco": ("folder", "file", "trainval", False, True),
    "coco2voc": ("file", "folder", "all", True, False),
    "yolo2voc": ("folder", "folder", "all", False, True),
    "yolo2coco": ("folder", "file", "all", False, True),
    "voc2yolo": ("folder", "folder", "trainval", False, True),
    "coco2yolo": ("file", "folder", "all", True, False),
}


def _check(args: argparse.Namespace) -> None:
    """Refuse options the direction does not take, before any file is read."""
    data_kind, out_kind, _, images, classes = _DIRECTIONS[args.direction]
    source = args.direction.split("2")[0]
    if images and args.images is None:
        raise UserError(f"{args.direction} needs --images DIR: the image folder of the COCO file")
    if not images and args.images is not None:
        raise UserError(f"--images is for coco2voc / coco2yolo ({source} data has its images)")
    if not classes and args.classes is not None:
        raise UserError("--classes is not for a COCO file (it names its categories)")
    if out_kind == "file" and os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a folder; {args.direction} writes a .json file")
    if out_kind == "folder" and os.path.isfile(args.out):
        raise UserError(f"--out {args.out} is a file; {args.direction} writes a root folder")
    if args.merge and args.direction != "coco2voc":
        raise UserError(f"--merge is for coco2voc ({args.direction} writes a new output)")
    if data_kind == "folder" and not os.path.isdir(args.data):
        raise UserError(
            f"--data {args.data} is not a folder ({args.direction} reads a {source} root)"
        )


def _cmd_convert(args: argparse.Namespace) -> int:
    from sppnet.data import convert, yolo_convert

    _check(args)
    split = args.split or _DIRECTIONS[args.direction][2]
    classes = None
    if args.classes is not None:
        from sppnet.detect.data import parse_classes

        classes = parse_classes(args.classes)
    direction = args.direction
    if direction == "voc2coco":
        done = convert.voc_to_coco(
            args.data, split, args.out, classes=classes, fix_sizes=args.fix_sizes
        )
    elif direction == "coco2voc":
        _check_empty_out(args)
        done = convert.coco_to_voc(
            args.data, args.images, args.out, split=split, fix_sizes=args.fix_sizes
        )
    elif direction == "coco2yolo":
        done = yolo_convert.coco_to_yolo(args.data, args.images, args.out, split=split)
    else:  # from or to YOLO, with a root folder and a split
        fn = {"yolo2voc": yolo_convert.yolo_to_voc, "yolo2coco": yolo_convert.yolo_to_coco,
              "voc2yolo": yolo_convert.voc_to_yolo}[direction]  # fmt: skip
        done = fn(args.data, split, args.out, classes=classes)
    print(
        f"{direction}: {done['images']} images, {done['objects']} objects, "
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
convert detection data: VOC layout, COCO JSON, YOLO layout

voc2coco: one split of a VOC-layout root -> a COCO annotation file (difficult -> iscrowd;
file_name relative to ROOT/JPEGImages). coco2voc: a COCO file -> a VOC-layout root
(Annotations/*.xml, ImageSets/Main/SPLIT.txt, classes.txt, JPEGImages as hard links or
copies; iscrowd -> difficult; fractional boxes grow to whole pixels). coco2voc writes
into a new or empty folder; --merge adds to an existing VOC root instead. yolo2voc,
yolo2coco: one split of a YOLO root (data.yaml names or --classes; images/SPLIT,
labels/SPLIT; split "all" for a flat root) -> a VOC root / a COCO file (file_name relative
to the YOLO root). voc2yolo, coco2yolo: -> one split of a YOLO root (images/SPLIT,
labels/SPLIT, data.yaml; difficult and crowd objects become plain objects: YOLO has no
such flag).

examples:
  sppnet convert voc2coco --data VOCdevkit/VOC2007 --split test --out voc07_test.json
  sppnet convert coco2voc --data coco/annotations/instances_val.json \
      --images coco/val --split val --out coco_voc
  sppnet convert yolo2voc --data datasets/pets --split val --out pets_voc
  sppnet convert voc2yolo --data VOCdevkit/VOC2007 --split trainval --out voc07_yolo
  sppnet convert coco2yolo --data coco/annotations/instances_val.json \
      --images coco/val --split val --out coco_yolo
"""


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet convert``."""
    convert = add_command(sub, "convert", _cmd_convert, _CONVERT_TEXT)
    convert.add_argument("direction", choices=tuple(_DIRECTIONS))
    add_detection_data(
        convert, required=True,
        help="the VOC root, the YOLO root, or the COCO annotation file converted",
        images_help="coco2voc, coco2yolo: the COCO image folder",
    )  # fmt: skip
    convert.add_argument(
        "--split",
        help="the split read (VOC: trainval, YOLO: all) and written (coco2voc, coco2yolo: all)",
    )
    convert.add_argument(
        "--classes", metavar="A,B,C|FILE",
        help="class names in label order (VOC: default classes.txt; YOLO: data.yaml names)",
    )  # fmt: skip
    convert.add_argument(
        "--merge",
        action="store_true",
        help="coco2voc: write into a non-empty VOC root (files of the same name are replaced)",
    )
    convert.add_argument(
        "--out", required=True, metavar="JSON|DIR", help="the COCO file / the root written"
    )
