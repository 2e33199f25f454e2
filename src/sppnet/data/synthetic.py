"""The built-in dataset: procedural shapes on cluttered backgrounds, written in Pascal VOC layout.

No download and no extra dependency (numpy + Pillow). Every image is rendered from its own
seed, derived from ``(seed, split, index)``, so a dataset is byte-identical from run to run,
can be resumed after a crash, and image ``i`` of a split does not depend on the other splits.

What makes it hard enough for the paper's comparisons (Sec. 3.1): image sides vary
independently in ``[min_side, max_side]`` (aspect ratios ~1:4 to 4:1), objects take 10% to
80% of the shorter side at any position (a 224 center crop often cuts them; the full-image
view does not), with random aspect ratio, rotation, colour and texture, on backgrounds of
smooth colour noise, stripes, checkers, grids, dots, soft blobs and distractor strokes. A
class is a SHAPE (a disk and a ring only differ by a hole; a frame and a square blob by its
hole), never a colour. Blur and sensor noise soften the edges.

Annotations: each object's box is the tight box of its visible pixels (its rendered coverage
>= 50%, minus the pixels later objects cover), in the project's box convention; ``truncated``
marks objects cut by the image border; ``difficult`` marks tiny objects (box side < 16 px) and
objects with less than 40% of their area visible.

Shape shorthand:
    H, W   image height, width
    K      objects in an image
"""

from __future__ import annotations

import io
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from sppnet._atomic import atomic_link_or_copy, atomic_write_bytes
from sppnet.data.scenes import (
    _SETTINGS,
    GENERATOR_VERSION,
    SYNTHETIC_CLASSES,
    image_seed,
    render_synthetic_image,
)
from sppnet.data.voc import (
    parse_voc_xml,
    read_class_names,
    read_split_ids,
    write_voc_xml,
)

__all__ = [
    "GENERATOR_VERSION",
    "SYNTHETIC_CLASSES",
    "generate_voc_dataset",
    "image_seed",
    "make_classification_view",
    "render_synthetic_image",
]


_SPLIT_ORDER = ("train", "val", "test")
_DEFAULT_SIZES = {"train": 300, "val": 100, "test": 200}


# --------------------------------------------------------------------------- background


# --------------------------------------------------------------------------- shapes


# --------------------------------------------------------------------------- objects


# --------------------------------------------------------------------------- file writer
class _FileWriter:
    """The one way this module writes files: atomically, through :mod:`sppnet._atomic`
    (temporary file, ``fsync``, ``os.replace``), to paths relative to one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folders(self, *names: str) -> None:
        """Create ``root/name`` for each name (and ``root``)."""
        for name in names:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def bytes(self, name: str, data: bytes, *, unless_same: bool = False) -> None:
        """Write ``root/name``; with ``unless_same``, leave a file that already holds ``data``."""
        path = self.root / name
        if unless_same and path.is_file() and path.read_bytes() == data:
            return
        atomic_write_bytes(path, data)

    def jpeg(self, name: str, image: Image.Image) -> None:
        """Write ``image`` as a JPEG (quality from the settings) to ``root/name``."""
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=_SETTINGS["jpeg_quality"])
        self.bytes(name, buf.getvalue())

    def voc_xml(self, name: str, **fields: Any) -> None:
        """Write a VOC annotation to ``root/name`` (``fields`` as :func:`write_voc_xml`)."""
        write_voc_xml(self.root / name, **fields)

    def link(self, source: Path, name: str) -> None:
        """Hard-link (or copy) ``source`` to ``root/name``."""
        atomic_link_or_copy(source, self.root / name)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _read_json(path: Path, default: Any) -> Any:
    """The JSON in ``path``, or ``default`` when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


# --------------------------------------------------------------------------- VOC layout
def _split_order(sizes: Mapping[str, int]) -> list[str]:
    return [sp for sp in _SPLIT_ORDER if sp in sizes] + sorted(
        sp for sp in sizes if sp not in _SPLIT_ORDER
    )


def _check_sizes(sizes: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(sizes, Mapping) or not sizes:
        raise TypeError(f"sizes must be a non-empty mapping split -> count, got {sizes!r}")
    out = {}
    for split, n in sizes.items():
        if not isinstance(split, str) or not split or not split.replace("_", "").isalnum():
            raise ValueError(f"split names must be alphanumeric strings, got {split!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"sizes[{split!r}] must be an int >= 0, got {n!r}")
        out[split] = n
    if "trainval" in out:
        raise ValueError("'trainval' is written as train + val; do not request it in sizes")
    return out


def _check_generator_args(
    sizes: Mapping[str, int] | None, seed: int, min_side: int, max_side: int
) -> dict[str, int]:
    """The checked sizes (default :data:`_DEFAULT_SIZES`), in split order."""
    sizes = _check_sizes(_DEFAULT_SIZES if sizes is None else sizes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not 16 <= min_side <= max_side <= 8192:
        raise ValueError(f"need 16 <= min_side <= max_side <= 8192, got {min_side}, {max_side}")
    total = sum(sizes.values())
    if total > 999_999:
        raise ValueError(f"at most 999,999 images (6-digit ids), got {total}")
    return {sp: sizes[sp] for sp in _split_order(sizes)}


def _generator_meta(
    sizes: Mapping[str, int], seed: int, min_side: int, max_side: int
) -> dict[str, Any]:
    """What ``generator.json`` records: everything that decides the files' bytes."""
    return {
        "generator": "sppnet.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "sizes": dict(sizes),
        "min_side": int(min_side),
        "max_side": int(max_side),
        "classes": list(SYNTHETIC_CLASSES),
        "settings": _SETTINGS,
    }


def _can_resume(meta_path: Path, meta: dict[str, Any], overwrite: bool) -> bool:
    """Whether ``meta_path`` records these very settings (a rerun then skips finished images).

    Raises:
        ValueError: it records other settings and ``overwrite`` is False.
    """
    if not meta_path.is_file():
        return False
    resume = _read_json(meta_path, None) == json.loads(_json_bytes(meta))
    if not resume and not overwrite:
        raise ValueError(
            f"{meta_path} describes a dataset made with other settings; use another root, "
            "delete it, or pass overwrite=True"
        )
    return resume


def _split_ids(sizes: Mapping[str, int]) -> dict[str, list[str]]:
    """6-digit image ids ``000001, ...`` running over the splits in ``sizes``' order."""
    ids_of: dict[str, list[str]] = {}
    next_id = 1
    for split, n in sizes.items():
        ids_of[split] = [f"{next_id + i:06d}" for i in range(n)]
        next_id += n
    return ids_of


def _main_class_orders(seed: int, splits: Sequence[str]) -> dict[str, np.ndarray]:
    """Per split, the permutation of classes the first objects cycle through (its own
    random stream: not an image's seed)."""
    k = len(SYNTHETIC_CLASSES)
    return {
        sp: np.random.default_rng([int(seed), zlib.crc32(f"classes:{sp}".encode())]).permutation(k)
        for sp in splits
    }


def _write_image(
    out: _FileWriter,
    image_id: str,
    seed: np.random.SeedSequence,
    *,
    main_class: int,
    min_side: int,
    max_side: int,
) -> None:
    """Render one image and write its JPEG and its annotation XML."""
    image, objects = render_synthetic_image(
        seed, min_side=min_side, max_side=max_side, main_class=main_class
    )
    out.jpeg(f"JPEGImages/{image_id}.jpg", image)
    out.voc_xml(
        f"Annotations/{image_id}.xml",
        filename=f"{image_id}.jpg",
        width=image.width,
        height=image.height,
        objects=objects,
        folder="sppnet-synthetic",
    )


def _write_split_files(out: _FileWriter, ids_of: Mapping[str, list[str]]) -> None:
    """``ImageSets/Main/{split}.txt`` for each split, plus ``trainval`` (train + val)."""
    split_files = dict(ids_of)
    if "train" in ids_of and "val" in ids_of:
        split_files["trainval"] = ids_of["train"] + ids_of["val"]
    for split, ids in split_files.items():
        data = "".join(f"{i}\n" for i in ids).encode()
        out.bytes(f"ImageSets/Main/{split}.txt", data, unless_same=True)


def generate_voc_dataset(
    root: str | Path,
    *,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    min_side: int = 120,
    max_side: int = 500,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the built-in dataset in Pascal VOC layout (deterministic and resumable).

    Layout: ``root/JPEGImages/{id}.jpg`` (JPEG quality 90), ``root/Annotations/{id}.xml``,
    ``root/ImageSets/Main/{split}.txt`` (plus ``trainval.txt`` when train and val are both
    made), ``root/classes.txt`` (:data:`SYNTHETIC_CLASSES`, one per line) and
    ``root/generator.json`` (version, seed, sizes, sides, settings). Ids are 6-digit numbers
    ``000001, 000002, ...`` running over the splits in the order train, val, test, then the
    other split names sorted.

    The same arguments give byte-identical files. Image ``i`` of a split is rendered from
    :func:`image_seed` ``(seed, split, i)``; its first object's class cycles through a
    per-split permutation of the classes, so each class is the main object of ``n / K``
    images (+-1). Every file is written atomically (temporary file + ``os.replace``); a rerun
    into a root whose ``generator.json`` matches skips every image whose JPEG and XML both
    exist, so a killed run resumes where it stopped.

    Args:
        root: the output folder (created).
        sizes: images per split; default ``{"train": 300, "val": 100, "test": 200}``.
        seed: the dataset seed.
        min_side, max_side: image sides are uniform in this range (px).
        progress: show a tqdm progress bar.
        overwrite: regenerate every file even when ``root`` holds a dataset made with other
            settings (files of ids no longer listed are left in place but unlisted).

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: bad sizes, seed or sides, or ``root/generator.json`` describes different
            settings and ``overwrite`` is False.
        TypeError: ``sizes`` is not a mapping.
    """
    sizes = _check_generator_args(sizes, seed, min_side, max_side)
    root = Path(root)
    meta = _generator_meta(sizes, seed, min_side, max_side)
    resume = _can_resume(root / "generator.json", meta, overwrite)
    out = _FileWriter(root)
    out.folders("JPEGImages", "Annotations", "ImageSets/Main")
    if not resume:
        out.bytes("generator.json", _json_bytes(meta))
    out.bytes("classes.txt", ("\n".join(SYNTHETIC_CLASSES) + "\n").encode(), unless_same=True)

    from tqdm.auto import tqdm

    ids_of = _split_ids(sizes)
    jobs = [(sp, i, image_id) for sp, ids in ids_of.items() for i, image_id in enumerate(ids)]
    perms = _main_class_orders(seed, list(sizes))
    k = len(SYNTHETIC_CLASSES)
    for split, index, image_id in tqdm(jobs, disable=not progress, desc="synthetic images"):
        done = [root / "JPEGImages" / f"{image_id}.jpg", root / "Annotations" / f"{image_id}.xml"]
        if resume and all(path.is_file() for path in done):
            continue
        _write_image(
            out,
            image_id,
            image_seed(seed, split, index),
            main_class=int(perms[split][index % k]),
            min_side=min_side,
            max_side=max_side,
        )
    _write_split_files(out, ids_of)
    return root


# --------------------------------------------------------------------------- classification
def _largest_object(boxes: Tensor, keep: Sequence[int]) -> int:
    """Index of the largest box (area) among ``keep``; the first one on ties."""
    areas = [(j, float((boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]))) for j in keep]
    return max(areas, key=lambda ja: ja[1])[0]  # max keeps the first on ties


def _crop_box(box: Sequence[float], context: float, width: int, height: int) -> tuple[int, ...]:
    """``box`` grown by ``context`` times its width/height on each side, in whole pixels,
    clipped to the image."""
    x1, y1, x2, y2 = box
    mx, my = context * (x2 - x1), context * (y2 - y1)
    return (
        max(0, math.floor(x1 - mx)),
        max(0, math.floor(y1 - my)),
        min(width, math.ceil(x2 + mx)),
        min(height, math.ceil(y2 + my)),
    )


def _view_samples(
    out: _FileWriter,
    image_path: Path,
    image_id: str,
    ann: Mapping[str, Any],
    keep: Sequence[int],
    context: float | None,
) -> list[tuple[str, str]]:
    """Write one image's samples: ``(class, file under out_root)`` each.

    ``context=None``: the whole image, linked under its largest object's class; else one
    JPEG crop per kept object.
    """
    boxes, names = ann["boxes"], ann["names"]
    if context is None:
        best = _largest_object(boxes, keep)
        rel = f"{names[best]}/{image_id}{image_path.suffix}"
        out.link(image_path, rel)
        return [(names[best], rel)]
    from sppnet.data.decode import load_image

    image = load_image(image_path)
    samples = []
    for j in keep:
        crop_box = _crop_box(boxes[j].tolist(), context, image.width, image.height)
        rel = f"{names[j]}/{image_id}_{j}.jpg"
        out.jpeg(rel, image.crop(crop_box))
        samples.append((names[j], rel))
    return samples


def _view_split(
    out: _FileWriter,
    voc_root: Path,
    split: str,
    class_to_idx: Mapping[str, int],
    context: float | None,
    counts: dict[str, int],
) -> tuple[list[str], int]:
    """Write the samples of one VOC split; count them per class into ``counts``.

    Returns:
        ``(lines, skipped)``: the ``class/file`` lines of the split file and the number of
        images without a non-difficult object.
    """
    lines: list[str] = []
    skipped = 0
    for image_id in read_split_ids(voc_root, split):
        ann = parse_voc_xml(
            voc_root / "Annotations" / f"{image_id}.xml",
            class_to_idx,
            image_path=voc_root / "JPEGImages" / f"{image_id}.jpg",
        )
        keep = [j for j in range(len(ann["names"])) if not bool(ann["difficult"][j])]
        if not keep:
            skipped += 1
            continue
        image_path = voc_root / "JPEGImages" / ann["filename"]
        for name, rel in _view_samples(out, image_path, image_id, ann, keep, context):
            lines.append(rel)
            counts[name] += 1
    return lines, skipped


def make_classification_view(
    voc_root: str | Path,
    out_root: str | Path,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    crop_objects: bool = False,
    context: float = 0.1,
) -> Path:
    """An ImageFolder tree for classification, made from a VOC-layout dataset.

    Rule (default, ``crop_objects=False``): each image's class is the class of its largest
    (box area) non-difficult object, ties going to the first in the file; the WHOLE image is
    written (hard-linked, or copied) to ``out_root/{class}/{id}.jpg``, so the full-image view
    (Sec. 3.1.4) sees the object where it is, other objects and clutter included. Images
    without a non-difficult object are left out.

    With ``crop_objects=True`` every non-difficult object gives one sample
    ``out_root/{class}/{id}_{k}.jpg`` (``k`` = the object's index in the XML): its box grown
    by ``context`` times its width/height on each side, clipped to the image (JPEG quality 90).

    Split files ``out_root/splits/{split}.txt`` list ``class/file.jpg`` lines in the order of
    the VOC split file; every class has a folder (maybe empty), so labels are the class
    order of sorted folder names for any subset. ``out_root/view.json`` records the source,
    rule and counts; rerunning with the same arguments rewrites the same files.

    Args:
        voc_root: a VOC-layout root (classes from ``classes.txt`` or :data:`VOC_CLASSES`).
        out_root: the output folder (created).
        splits: the VOC splits to convert.
        crop_objects: write object crops instead of whole images.
        context: the margin of a crop, as a fraction of the box size per side (>= 0).

    Returns:
        ``out_root`` as a ``Path``.

    Raises:
        ValueError: a missing split file or bad annotation (naming the file), a negative
            ``context``, or an ``out_root/view.json`` made with other arguments.
    """
    if not context >= 0:
        raise ValueError(f"context must be >= 0, got {context}")
    voc_root, out_root = Path(voc_root), Path(out_root)
    classes = read_class_names(voc_root)
    settings = {
        "source": str(voc_root.resolve()),
        "splits": list(splits),
        "mode": "crop_objects" if crop_objects else "whole_image_largest_object",
        "context": float(context) if crop_objects else None,
        "classes": classes,
    }
    view_path = out_root / "view.json"
    if view_path.is_file():
        old = _read_json(view_path, {})
        if {key: old.get(key) for key in settings} != settings:
            raise ValueError(f"{view_path} was made with other arguments; use another out_root")
    out = _FileWriter(out_root)
    out.folders(*classes, "splits")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    counts: dict[str, dict[str, int]] = {}
    skipped: dict[str, int] = {}
    for split in splits:
        counts[split] = dict.fromkeys(classes, 0)
        lines, skipped[split] = _view_split(
            out, voc_root, split, class_to_idx, context if crop_objects else None, counts[split]
        )
        out.bytes(f"splits/{split}.txt", "".join(f"{x}\n" for x in lines).encode())
    out.bytes("view.json", _json_bytes({**settings, "counts": counts, "skipped_images": skipped}))
    return out_root
