"""Opening a detection dataset from the command line's words: a VOC-layout root, a YOLO root
(``data.yaml``, ``images/``, ``labels/``), or a COCO annotation file with its image folder;
the class list given as names or as a file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sppnet.data.coco import CocoDetection
from sppnet.data.voc import VOCDetection, read_class_file
from sppnet.data.yolo import YoloDetection, is_yolo_root
from sppnet.errors import UserError

__all__ = ["keep_first_images", "open_detection_dataset", "parse_classes"]


def parse_classes(spec: str, option: str = "--classes") -> list[str]:
    """Class names from ``a,b,c`` or from a file naming one class per line.

    Args:
        spec: comma-separated names, or the path of a text file (taken as a file when one
            exists there, or when it has no comma and ends in ``.txt``).
        option: the option's name in error messages.

    Returns:
        The names in order (label ``i`` is the ``i``-th).

    Raises:
        UserError: a ``.txt`` file that is not there, an empty or repeated name.
    """
    path = Path(spec)
    if path.is_file():
        try:
            return read_class_file(path)
        except ValueError as err:
            raise UserError(f"{option} {spec}: {err}") from None
    if "," not in spec and spec.endswith(".txt"):
        raise UserError(f"{option} {spec}: no such class file (or give names: a,b,c)")
    names = [n.strip() for n in spec.split(",")]
    if not all(names):
        raise UserError(f"{option} {spec!r}: empty class name (give a,b,c or a file)")
    if len(set(names)) != len(names):
        raise UserError(f"{option} {spec!r}: a class is named twice")
    return names


def open_detection_dataset(
    data: str | Path,
    split: str,
    *,
    images: str | Path | None = None,
    classes: Sequence[str] | None = None,
    fix_sizes: bool = False,
) -> VOCDetection | CocoDetection | YoloDetection:
    """A VOC-layout or YOLO split, or (with ``images``) a COCO annotation file.

    Args:
        data: the VOC or YOLO root (a YOLO root has ``data.yaml``, or ``images/`` and
            ``labels/``), or the COCO ``.json`` file.
        split: the VOC or YOLO split (a COCO file is its own split: ignored then).
        images: the COCO image folder; ``None`` for VOC layout.
        classes: class names in label order (``None``: the dataset's own, see
            :class:`~sppnet.data.VOCDetection` and :class:`~sppnet.data.CocoDetection`).
        fix_sizes: rescale the boxes of images whose recorded size differs from the file's
            (with a warning) instead of failing when such an image is read.

    Raises:
        UserError: a COCO file without ``images``, or ``images`` with a VOC folder.
        ValueError, FileNotFoundError: from the datasets, naming the file.
    """
    path = Path(data)
    if images is not None:
        if path.is_dir():
            raise UserError(
                f"--images {images} is for a COCO annotation file, but --data {data} is a "
                "folder (a VOC-layout root needs no --images)"
            )
        return CocoDetection(path, images, classes=classes, fix_sizes=fix_sizes)
    if path.is_file():
        raise UserError(
            f"--data {data} is a file: for a COCO annotation file name its image folder with "
            "--images DIR; for VOC or YOLO layout give the root folder"
        )
    if is_yolo_root(path):
        return YoloDetection(path, split, classes=classes)
    return VOCDetection(path, split, classes=classes, fix_sizes=fix_sizes)


def keep_first_images(
    dataset: VOCDetection | CocoDetection, n: int
) -> VOCDetection | CocoDetection:
    """Keep only the first ``n`` images of ``dataset`` (in place; quick runs, part of a split).

    Args:
        dataset: a detection dataset (its ``ids``, ``annotations`` and ``sizes`` are cut).
        n: how many images to keep; more than the dataset holds keeps them all.

    Returns:
        ``dataset`` itself.
    """
    keep = min(n, len(dataset))
    dataset.ids = dataset.ids[:keep]
    dataset.annotations = dataset.annotations[:keep]
    dataset.sizes = dataset.sizes[:keep]
    return dataset
