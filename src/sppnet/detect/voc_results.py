"""VOC result files: one ``{prefix}{class}.txt`` per class, written and read back.

The text of a file (``image_id score x1 y1 x2 y2`` per line, VOC's 1-based inclusive pixel
coordinates) is :func:`sppnet.evaluation.format_voc_results` and
:func:`sppnet.evaluation.parse_voc_results`; this module only touches the files.

Shape shorthand: D detections of one image, K classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from torch import Tensor

from sppnet._atomic import atomic_write_text
from sppnet.evaluation.voc_detection import format_voc_results, parse_voc_results

__all__ = ["read_voc_results", "write_voc_results"]


def write_voc_results(
    detections: Mapping[object, Mapping[str, Tensor]],
    out_dir: str | os.PathLike[str],
    class_names: Sequence[str],
    prefix: str = "comp4_det_test_",
) -> list[Path]:
    """Write detections as VOC result files, one ``{prefix}{class}.txt`` per class.

    Each line is ``image_id score x1 y1 x2 y2`` in VOC's 1-based inclusive pixel coordinates,
    scores with 6 significant digits and coordinates with 3 decimals. Lines follow the order
    of ``detections``, then the order within each image. Every class gets a file, empty if it
    has no detections (the devkit expects one per class). Each file is written atomically.

    Args:
        detections: image id -> ``{"boxes": Tensor[D, 4], "scores": Tensor[D],
            "labels": LongTensor[D]}`` with labels in ``0..K-1``. Ids are written with
            ``str()`` and must not contain whitespace.
        out_dir: the folder; created if missing.
        class_names: the ``K`` class names, used in the file names.
        prefix: the file name prefix (VOC: ``comp4_det_test_`` for competition 4, own data).

    Returns:
        The ``K`` paths written, in class order.

    Raises:
        TypeError, ValueError: as :func:`sppnet.evaluation.format_voc_results` (invalid
            detections, labels outside ``0..K-1``, image ids that are empty or contain
            whitespace); nothing is written then.
    """
    texts = format_voc_results(detections, class_names)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in zip(class_names, texts, strict=True):
        path = folder / f"{prefix}{name}.txt"
        atomic_write_text(path, text)
        paths.append(path)
    return paths


def _class_files(
    folder: Path, class_names: Sequence[str], prefix: str
) -> Iterator[tuple[str, str]]:
    """``(path, text)`` of each class's result file, read one at a time as they are asked for."""
    for name in class_names:
        path = folder / f"{prefix}{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"VOC result file for class {name!r} not found: {path}")
        yield str(path), path.read_text()


def read_voc_results(
    out_dir: str | os.PathLike[str],
    class_names: Sequence[str],
    prefix: str = "comp4_det_test_",
) -> dict[str, dict[str, Tensor]]:
    """Read VOC result files back into a detections dict (inverse of :func:`write_voc_results`).

    Args:
        out_dir: the folder holding ``{prefix}{class}.txt`` for each class.
        class_names: the ``K`` class names; the label of a detection is its class's index.
        prefix: the file name prefix.

    Returns:
        image id (``str``) -> ``{"boxes": Tensor[D, 4] float32, "scores": Tensor[D] float32,
        "labels": LongTensor[D]}``, boxes converted back to our 0-based continuous
        convention. Images in order of first appearance (class files in class order), each
        image's detections by class, then in file order. A round trip gives the written
        values up to the file precision (6 significant digits of score, 1/1000 pixel).

    Raises:
        TypeError: non-string class names.
        FileNotFoundError: a class file is missing (the message names it).
        ValueError: a line that is not ``image_id score x1 y1 x2 y2`` with numbers (file and
            line number named), or a box with ``x2 < x1`` or ``y2 < y1``.
    """
    folder = Path(out_dir)
    # Lazy: parse_voc_results checks the names before the first file is opened.
    files = _class_files(folder, class_names, prefix)
    return parse_voc_results(files, class_names, where=str(folder))
