"""YOLO-layout detection data: ``images/``, ``labels/`` and ``data.yaml`` (beyond the paper).

The layout (Ultralytics' and Darknet's)::

    ROOT/data.yaml                  names: [cat, dog]   (or {0: cat, 1: dog})
    ROOT/images/train/a.jpg         a split is a folder under images/ ...
    ROOT/labels/train/a.txt         ... its labels in the same place under labels/
    ROOT/images/b.jpg               (or a flat root without split folders: split "all")

A label file has one line per object: ``class cx cy w h``, the class an index into
``names`` and the box its centre and size as fractions of the image's width and height
(``0..1``). An image without a label file has no objects. ``data.yaml`` may also name a
split's images as a folder or a ``.txt`` list of image paths (``train: images/train2017``),
relative to the root; every path read from the dataset must stay inside the root.

Box convention: YOLO's fractions times the image size are continuous pixel coordinates
with the origin at the top-left corner, the project's own convention (float 0-based
``(x1, y1, x2, y2)``, a box over pixels 0..9 being ``(0, 0, 10, 10)``):
``x1 = (cx - w / 2) * W`` with nothing added or subtracted. YOLO has no ``difficult`` or
``truncated`` flag: both are False when read, and dropped when written.

``data.yaml`` is parsed with PyYAML's ``safe_load`` (plain data only, no Python objects).

Shape shorthand:
    K   number of objects in one image
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sppnet.data._annotation import AnnotatedImages, make_annotation
from sppnet.data.decode import ImageDecodeError
from sppnet.data.image_folder import IMAGE_EXTENSIONS, read_image_size

__all__ = [
    "ALL_SPLIT",
    "YoloDetection",
    "is_yolo_root",
    "parse_yolo_labels",
    "read_yolo_names",
    "yolo_label_lines",
    "yolo_names_yaml",
    "yolo_splits",
]

# The split of a flat root (images/ without split folders).
ALL_SPLIT = "all"


def _err(path: Path, what: str) -> ValueError:
    return ValueError(f"invalid YOLO dataset file {path}: {what}")


def _read_yaml(root: Path) -> dict[str, Any]:
    """``root/data.yaml`` as a dict (``{}`` when there is none)."""
    path = root / "data.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise _err(path, f"cannot be read as YAML ({' '.join(str(err).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _err(path, f"the top level must be a mapping, got {type(data).__name__}")
    return data


def read_yolo_names(root: str | Path) -> list[str] | None:
    """The class names of ``root/data.yaml`` (``names`` as a list or an index mapping).

    Args:
        root: the YOLO root.

    Returns:
        The names in label order, or None when there is no ``data.yaml`` or it has no
        ``names``.

    Raises:
        ValueError: malformed YAML, ``names`` neither a list nor a ``0..K-1`` mapping, an
            empty or repeated name, or an ``nc`` that disagrees, naming the file.
    """
    path = Path(root) / "data.yaml"
    data = _read_yaml(Path(root))
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise _err(path, f"'names' keys must be the indices 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise _err(path, f"'names' must be a non-empty list or index mapping, got {names!r}")
    out = [str(n).strip() for n in names]
    if not all(out) or len(set(out)) != len(out):
        raise _err(path, f"class names must be distinct and non-empty, got {out}")
    nc = data.get("nc")
    if nc is not None and nc != len(out):
        raise _err(path, f"nc is {nc!r} but 'names' holds {len(out)} classes")
    return out


def _inside(root: Path, path: Path, source: str) -> Path:
    """``path`` resolved, refused unless it lies inside ``root``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ValueError(
            f"{source} names {path}, which is outside the dataset root {root}; every path "
            "of a YOLO dataset must stay inside its root"
        )
    return resolved


def yolo_splits(root: str | Path) -> list[str]:
    """The splits a YOLO root offers: ``images/`` sub-folders and ``data.yaml`` entries.

    Returns:
        Sorted split names; ``["all"]`` for a flat root.
    """
    root = Path(root)
    names = {p.name for p in (root / "images").iterdir() if p.is_dir()} if (
        root / "images"
    ).is_dir() else set()  # fmt: skip
    names |= {k for k, v in _read_yaml(root).items() if k in ("train", "val", "test") and v}
    return sorted(names) or [ALL_SPLIT]


def is_yolo_root(path: str | Path) -> bool:
    """True for a folder in YOLO layout: a ``data.yaml``, or ``images/`` and ``labels/``
    without VOC's ``Annotations/``."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "data.yaml").is_file():
        return True
    return (
        (path / "images").is_dir()
        and (path / "labels").is_dir()
        and not (path / "Annotations").is_dir()
    )


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _split_images(root: Path, split: str) -> list[Path]:
    """The image files of ``split``, sorted, every one inside ``root``."""
    entry = _read_yaml(root).get(split)
    where = f"{root / 'data.yaml'} ({split}: {entry})"
    if isinstance(entry, str) and entry.strip():
        target = _inside(root, root / entry.strip(), where)
        if target.is_dir():
            return sorted(p for p in target.rglob("*") if _is_image(p))
        if target.is_file() and target.suffix == ".txt":
            lines = target.read_text(encoding="utf-8").splitlines()
            files = [_inside(root, root / ln.strip(), str(target)) for ln in lines if ln.strip()]
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise FileNotFoundError(f"no image {missing[0]} (listed in {target})")
            return files
        raise FileNotFoundError(f"{where}: no such folder or .txt list")
    folder = root / "images" / split
    if folder.is_dir():
        return sorted(_inside(root, p, str(folder)) for p in folder.rglob("*") if _is_image(p))
    flat = sorted(p for p in (root / "images").glob("*") if _is_image(p))
    if split == ALL_SPLIT and flat:
        return [_inside(root, p, str(root / "images")) for p in flat]
    raise ValueError(
        f"YOLO root {root} has no split {split!r}; its splits: {', '.join(yolo_splits(root))}"
    )


def _label_path(root: Path, image: Path) -> Path:
    """``.../images/<rest>/a.jpg`` -> ``.../labels/<rest>/a.txt`` (the last ``images``)."""
    parts = list(image.relative_to(root.resolve()).parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return root.resolve().joinpath(*parts).with_suffix(".txt")


def parse_yolo_labels(
    path: str | Path, width: int, height: int, num_classes: int
) -> list[tuple[list[float], int]]:
    """The objects of one label file: ``[(box xyxy in pixels, class index), ...]``.

    Args:
        path: the ``.txt`` label file.
        width, height: the image size in pixels.
        num_classes: K; a class index must be in ``0..K-1``.

    Returns:
        One ``([x1, y1, x2, y2], label)`` per line (blank lines skipped).

    Raises:
        ValueError: ``FILE:LINE:`` and what is wrong: not 5 columns, a value that is not a
            number, a class index that is not an integer in ``0..K-1``, a coordinate outside
            ``[0, 1]``, a zero-size box, or a box reaching outside the image.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be read ({err})") from None
    objects = []
    for n, line in enumerate(text.splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        where = f"{path}:{n}:"
        if len(cols) != 5:
            raise ValueError(
                f"{where} expected 5 columns 'class cx cy w h', got {len(cols)} ({line.strip()!r})"
            )
        try:
            values = [float(c) for c in cols]
        except ValueError:
            raise ValueError(f"{where} not numbers: {line.strip()!r}") from None
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < num_classes:
            raise ValueError(
                f"{where} unknown class index {cols[0]} (the dataset has {num_classes} "
                f"classes: 0..{num_classes - 1})"
            )
        cx, cy, w, h = values[1:]
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values[1:]):
            raise ValueError(f"{where} cx cy w h must be fractions in [0, 1], got {cols[1:]}")
        if w <= 0 or h <= 0:
            raise ValueError(f"{where} zero-size box (w {cols[3]}, h {cols[4]})")
        x1, x2 = (cx - w / 2) * width, (cx + w / 2) * width
        y1, y2 = (cy - h / 2) * height, (cy + h / 2) * height
        tol = 1e-6 * max(width, height)  # the text's rounding
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            raise ValueError(f"{where} the box reaches outside the image ({line.strip()!r})")
        box = [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]
        objects.append((box, int(cls)))
    return objects


def yolo_label_lines(
    boxes: Sequence[Sequence[float]], labels: Sequence[int], width: int, height: int
) -> list[str]:
    """Label-file lines ``class cx cy w h`` of pixel boxes (10 significant digits).

    Args:
        boxes: ``[x1, y1, x2, y2]`` per object, continuous pixel coordinates.
        labels: class index per object.
        width, height: the image size.

    Returns:
        One line per object (no newline).
    """
    lines = []
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
                  (y2 - y1) / height)  # fmt: skip
        lines.append(" ".join([str(int(label)), *(f"{v:.10g}" for v in values)]))
    return lines


class YoloDetection(AnnotatedImages, torch.utils.data.Dataset):
    """A YOLO-layout detection dataset (module docstring).

    Every label file of the split is read and checked when the dataset is built (image sizes
    from the file headers), so errors surface before any work, naming the file and line.

    Attributes:
        root, split: as given.
        ids: image ids (the file stems, unique in a split), in path order.
        class_names, class_to_idx: the classes; label ``i`` is ``class_names[i]``.
        annotations: per image the dict of :func:`~sppnet.data.voc.parse_voc_xml`
            (``filename`` relative to the root, ``width``, ``height``, ``boxes``,
            ``labels``, ``difficult`` and ``truncated`` all False, ``names``).
        sizes: ``(height, width)`` of each image.
        skipped, skipped_ids: images dropped with ``skip_bad``.

    ``dataset[i]`` returns ``(image, target)`` as :class:`~sppnet.data.voc.VOCDetection`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = ALL_SPLIT,
        *,
        classes: Sequence[str] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        """Index a YOLO split.

        Args:
            root: the folder holding ``images/``, ``labels/`` and ``data.yaml``.
            split: a folder under ``images/``, a ``data.yaml`` entry, or ``"all"`` for a
                flat root.
            classes: class names in label order (``None``: ``data.yaml``'s ``names``); with
                a ``data.yaml``, each file index maps to its name there, then to the label of
                that name here (every name must be among ``classes``).
            transform: applied to the PIL image only.
            skip_bad: drop images with a bad label file or header instead of raising.

        Raises:
            FileNotFoundError: no ``root/images`` folder, or a listed image missing.
            ValueError: no class names, an unknown split, a path leaving the root, or
                (without ``skip_bad``) a bad label line (``FILE:LINE: ...``).
        """
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.skip_bad = skip_bad
        if not (self.root / "images").is_dir():
            raise FileNotFoundError(f"no YOLO images folder {self.root / 'images'}")
        file_names = read_yolo_names(self.root)
        names = list(classes) if classes is not None else file_names
        if not names:
            raise ValueError(
                f"{self.root} has no data.yaml with 'names'; pass the classes in label order "
                "(--classes a,b,c, or classes=[...] in Python)"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"classes must be distinct, got {names}")
        self.class_names = names
        self.class_to_idx = {name: i for i, name in enumerate(names)}
        # the files' class indices go through data.yaml's names to ``classes`` (as a COCO
        # file's categories are matched by name); without names they index ``classes``
        self._file_classes = file_names or names
        missing = [n for n in self._file_classes if n not in self.class_to_idx]
        if missing:
            raise ValueError(
                f"{self.root / 'data.yaml'} names classes {missing} that are not among the "
                f"classes given {names}; the label files' indices are read through its names"
            )
        self.ids: list[str] = []
        self.annotations: list[dict[str, Any]] = []
        self.skipped_ids: list[str] = []
        base = self.root.resolve()
        seen: dict[str, Path] = {}
        for image in _split_images(self.root, split):
            image_id = image.stem  # ids name cache files: no folders in them
            if image_id in seen:
                raise ValueError(
                    f"images {seen[image_id]} and {image} of split {split!r} have the same "
                    f"file stem {image_id!r}; image ids must be unique"
                )
            seen[image_id] = image
            try:
                self.annotations.append(self._annotation(image, base))
            except (ValueError, OSError):
                if not skip_bad:
                    raise
                self.skipped_ids.append(image_id)
                continue
            self.ids.append(image_id)
        self.skipped = len(self.skipped_ids)
        self.sizes = [(a["height"], a["width"]) for a in self.annotations]

    def _annotation(self, image: Path, base: Path) -> dict[str, Any]:
        try:
            height, width = read_image_size(image)  # upright, as load_image returns it
        except ImageDecodeError as err:
            raise ValueError(str(err)) from None
        label_file = _label_path(self.root, image)
        found = []
        if label_file.is_file():
            found = parse_yolo_labels(label_file, width, height, len(self._file_classes))
        objects = [
            {"box": box, "label": self.class_to_idx[name], "difficult": False,
             "truncated": False, "name": name}
            for box, name in ((box, self._file_classes[i]) for box, i in found)
        ]  # fmt: skip
        return make_annotation(image.relative_to(base).as_posix(), width, height, objects)

    def check_item(self, index: int, size: tuple[int, int]) -> None:
        """Nothing to check: a YOLO label holds fractions, and the sizes are the images' own."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"images={len(self)}, classes={len(self.class_names)}, skipped={self.skipped})"
        )


def yolo_names_yaml(names: Sequence[str], splits: Mapping[str, str]) -> str:
    """The text of a ``data.yaml``: ``path: .``, each split's image folder, ``names``.

    Args:
        names: class names in label order.
        splits: split name -> image folder relative to the root.

    Returns:
        YAML text (written with PyYAML's ``safe_dump``).
    """
    import yaml

    data = {"path": ".", **dict(splits), "nc": len(names), "names": dict(enumerate(names))}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
