"""``sppnet make-data``: development data made from real photographs (never downloaded).

Example:
    sppnet make-data photos --kind classify-a --out photos_a --seed 0
"""

from __future__ import annotations

import argparse

from sppnet.cli.options import add_command

__all__ = ["add_make_data_parser"]

# sppnet.data.photos.PHOTO_KINDS, written out so that --help does not import numpy or PIL
_KINDS = ("classify-a", "classify-b", "detect")


def _cmd_make_data(args: argparse.Namespace) -> int:
    from sppnet.data.photos import generate_photo_dataset

    train, val, test = args.sizes
    meta = generate_photo_dataset(
        args.out, args.kind, sizes={"train": train, "val": val, "test": test},
        seed=args.seed, min_side=args.sides[0], max_side=args.sides[1],
    )  # fmt: skip
    counts = ", ".join(f"{split} {n}" for split, n in meta["counts"].items())
    print(f"{args.kind}: {counts} images, {len(meta['classes'])} classes -> {args.out}")
    return 0


_MAKE_DATA_TEXT = r"""
write development data made from real photographs (no download)

Crops of real photographs (the pictures bundled with scikit-image and scikit-learn) pasted
at many sizes and positions onto other photographs, in images of varied size and aspect
ratio, split into train / val / test. classify-a: ten objects (astronaut, cat, coffee,
...) on texture photographs, one per image; classify-b: eight materials (brick, grass,
stars, text, ...) as blob-shaped regions on scene photographs, test patches cut from parts
of the photographs that training never sees; detect: one to four of the ten objects per
image with their boxes (Pascal VOC layout). Classification kinds write an image-folder
tree with splits/*.txt for `sppnet train --data` and `sppnet features --data`. The same seed
writes the same files. Needs scikit-image: pip install 'sppnet[photos]'.

examples:
  sppnet make-data photos --kind classify-a --out photos_a
  sppnet make-data photos --kind classify-b --out photos_b --sizes 2000 500 500 --seed 1
  sppnet make-data photos --kind detect --out photos_det
  sppnet train --data photos_a --model efficientnet_lite0 --pretrained --out run_a
"""


def add_make_data_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet make-data``."""
    parser = add_command(sub, "make-data", _cmd_make_data, _MAKE_DATA_TEXT)
    parser.add_argument("source", choices=("photos",), help="where the pictures come from")
    parser.add_argument("--kind", required=True, choices=_KINDS, help="which set to write")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder written")
    parser.add_argument("--seed", type=int, default=0, help="the dataset seed (0)")
    parser.add_argument(
        "--sizes", type=int, nargs=3, default=(600, 200, 400), metavar=("TRAIN", "VAL", "TEST"),
        help="images per split (600 200 400)",
    )  # fmt: skip
    parser.add_argument(
        "--sides", type=int, nargs=2, default=(160, 480), metavar=("MIN", "MAX"),
        help="the longer image side is uniform in MIN..MAX px (160 480; MIN >= 64)",
    )  # fmt: skip
