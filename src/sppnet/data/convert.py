"""Dataset format conversion: Pascal VOC layout <-> COCO JSON (``sppnet convert``).

``voc2coco``: one split of a VOC-layout root becomes one COCO annotation file. Image ids are
``1..N`` in split order, category ids ``1..K`` in class order, ``file_name`` the XML's
``<filename>`` (relative to ``JPEGImages``: pass that folder as ``--images``), ``difficult``
objects become ``iscrowd: 1``, ``area`` the box's area. ``truncated`` and ``pose`` have no
COCO field and are not carried.

``coco2voc``: a COCO file becomes a VOC-layout root: ``Annotations/<stem>.xml`` (written with
:func:`~sppnet.data.write_voc_xml`: escaped, atomic), ``ImageSets/Main/<split>.txt``,
``classes.txt`` (the category names, so the root keeps its own classes) and the images in
``JPEGImages`` (hard links where the file system allows, else copies). VOC stores whole
pixels: a box with fractional coordinates grows to the smallest pixel box holding it (by
< 1 px a side); ``iscrowd`` becomes ``difficult``. So ``voc2coco`` then ``coco2voc`` gives
back the same annotations (boxes, names, difficult, sizes, split, classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sppnet._atomic import atomic_link_or_copy, atomic_write_json, atomic_write_text
from sppnet.data._annotation import check_image_size
from sppnet.data.coco import CocoDetection, coco_ground_truth
from sppnet.data.image_folder import read_image_size
from sppnet.data.voc import VOCDetection, write_voc_xml
from sppnet.errors import UserError

__all__ = ["coco_to_voc", "voc_to_coco"]


def voc_to_coco(
    root: str | Path,
    split: str,
    out_file: str | Path,
    *,
    classes: Sequence[str] | None = None,
    fix_sizes: bool = False,
) -> dict[str, Any]:
    """Write one VOC split as a COCO annotation file (module docstring).

    Args:
        root: the VOC root.
        split: the split to convert.
        out_file: the ``.json`` file to write (atomically; its folder is created).
        classes: class names in label order (``None``: ``classes.txt`` or VOC's 20).
        fix_sizes: read the images' headers and rescale the boxes of annotations whose
            ``<size>`` differs (with a warning).

    Returns:
        ``{"images", "objects", "classes"}`` counts and names.

    Raises:
        ValueError, FileNotFoundError: a bad split or annotation, naming the file.
    """
    dataset = VOCDetection(root, split, classes=classes, fix_sizes=fix_sizes)
    coco = coco_ground_truth(dataset)
    coco = {
        "info": {"description": f"{Path(root).name} {split}, converted by sppnet from VOC XML"},
        **coco,
    }
    atomic_write_json(out_file, coco, indent=1)
    return {
        "images": len(coco["images"]),
        "objects": len(coco["annotations"]),
        "classes": list(dataset.class_names),
    }


def _place_image(src: Path, dst: Path) -> None:
    if dst.exists() and src.resolve() == dst.resolve():
        return
    atomic_link_or_copy(src, dst)


def coco_to_voc(
    annotation_file: str | Path,
    image_dir: str | Path,
    out_root: str | Path,
    *,
    split: str = "all",
    fix_sizes: bool = False,
) -> dict[str, Any]:
    """Write a COCO annotation file as a VOC-layout root (module docstring).

    Args:
        annotation_file: the COCO ``.json``.
        image_dir: the folder its ``file_name`` values are relative to.
        out_root: the VOC root to write (created; existing files of the same names are
            replaced).
        split: the split file to write (``ImageSets/Main/<split>.txt``).
        fix_sizes: rescale the boxes of images whose ``width`` / ``height`` differ from the
            file's (with a warning); without it such an image is an error.

    Returns:
        ``{"images", "objects", "classes", "root"}``.

    Raises:
        UserError: two images with the same file stem (VOC names files by the id alone), or a
            ``split`` that is not a plain name.
        ValueError, FileNotFoundError: a bad COCO file or a missing image, naming it.
    """
    if not split or Path(split).name != split or split.startswith("."):
        raise UserError(f"--split {split!r} must be a plain name such as 'train'")
    dataset = CocoDetection(annotation_file, image_dir, fix_sizes=fix_sizes)
    for i in range(len(dataset)):  # the sizes written must be the images' (header only)
        height, width = read_image_size(dataset.image_path(i))
        check_image_size(dataset.annotations[i], (width, height), dataset.image_path(i))
    root = Path(out_root)
    stems: dict[str, str] = {}
    for ann in dataset.annotations:
        name = Path(ann["filename"]).name
        stem = Path(name).stem
        if stem in stems:
            raise UserError(
                f"{annotation_file}: images {stems[stem]!r} and {ann['filename']!r} have the "
                f"same file stem {stem!r}; VOC layout names each image by its stem alone"
            )
        stems[stem] = ann["filename"]
    objects = 0
    for i, ann in enumerate(dataset.annotations):
        name = Path(ann["filename"]).name
        stem = Path(name).stem
        objs = [
            {"name": dataset.class_names[label], "box": box, "difficult": crowd}
            for box, label, crowd in zip(
                ann["boxes"].tolist(),
                ann["labels"].tolist(),
                ann["difficult"].tolist(),
                strict=True,
            )
        ]
        objects += len(objs)
        write_voc_xml(
            root / "Annotations" / f"{stem}.xml",
            filename=name,
            width=ann["width"],
            height=ann["height"],
            objects=objs,
        )
        _place_image(dataset.image_path(i), root / "JPEGImages" / name)
    atomic_write_text(
        root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{s}\n" for s in stems)
    )
    atomic_write_text(root / "classes.txt", "".join(f"{c}\n" for c in dataset.class_names))
    return {
        "images": len(dataset),
        "objects": objects,
        "classes": list(dataset.class_names),
        "root": str(root),
    }
