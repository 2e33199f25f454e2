"""Pascal VOC layout: annotation XML reader/writer, split files and a detection dataset.

Layout (VOC2007 and the built-in generator, :mod:`sppnet.data.synthetic`)::

    root/JPEGImages/{id}.jpg
    root/Annotations/{id}.xml
    root/ImageSets/Main/{split}.txt      one image id per line
    root/classes.txt                     optional, one class name per line (built-in data)

Box convention: VOC stores 1-based, inclusive pixel indices; the project uses
float ``(x1, y1, x2, y2)``, 0-based, continuous. The conversion happens once, in
:func:`parse_voc_xml`, and its inverse once, in :func:`write_voc_xml`.

Shape shorthand:
    K   number of objects in one image
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import torch
from defusedxml import DefusedXmlException
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from sppnet._atomic import atomic_write_bytes
from sppnet.data._annotation import (
    AnnotatedImages,
    fit_sizes,
    make_annotation,
)
from sppnet.data._paths import inside_root
from sppnet.data.decode import BOMB_ERRORS, bomb_guard

__all__ = [
    "VOC_CLASSES",
    "VOCDetection",
    "collect_class_names",
    "parse_voc_xml",
    "read_class_file",
    "read_class_names",
    "read_split_ids",
    "write_voc_xml",
]

# The 20 Pascal VOC 2007 classes in the official order (index = label).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# A box may stick out of the image by at most this many pixels; it is then clipped. Real VOC
# files hold a few boxes with xmin = 0 (written 0-based by mistake) or xmax = width + 1.
_OUTSIDE_TOLERANCE = 1.0
# write_voc_xml snaps coordinates within this distance of an integer to that integer first, so
# float noise (9.9999999) does not move a pixel border.
_SNAP_EPS = 1e-4


def _err(path: Path, what: str) -> ValueError:
    return ValueError(f"invalid VOC annotation {path}: {what}")


class _UnknownClassError(ValueError):
    """An object whose class name is not in the class list (see :class:`VOCDetection`)."""

    def __init__(self, message: str, name: str, path: Path) -> None:
        super().__init__(message)
        self.name, self.path = name, path


def _text(elem: ET.Element, tag: str, path: Path, where: str) -> str:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise _err(path, f"{where} has no <{tag}>")
    return child.text.strip()


def _number(elem: ET.Element, tag: str, path: Path, where: str) -> float:
    raw = _text(elem, tag, path, where)
    try:
        value = float(raw)
    except ValueError:
        raise _err(path, f"{where} <{tag}> is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise _err(path, f"{where} <{tag}> is not finite: {raw!r}")
    return value


def _flag(elem: ET.Element, tag: str, path: Path, where: str) -> bool:
    """A 0/1 flag (``difficult``, ``truncated``); absent or empty means 0."""
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return False
    raw = child.text.strip().lower()
    if raw in ("0", "false", "0.0"):
        return False
    if raw in ("1", "true", "1.0"):
        return True
    raise _err(path, f"{where} <{tag}> must be 0 or 1, got {raw!r}")


def _image_size(image_path: Path, path: Path) -> tuple[int, int]:
    """(width, height) from the image header only (no full decode)."""
    try:
        with bomb_guard(), Image.open(image_path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, *BOMB_ERRORS) as err:
        raise _err(
            path, f"<size> is 0 and the image {image_path} cannot be read for its size ({err})"
        ) from None


def parse_voc_xml(
    path: str | Path,
    class_to_idx: Mapping[str, int] | None = None,
    *,
    image_path: str | Path | None = None,
    skip_degenerate: bool = False,
) -> dict[str, Any]:
    """Read one Pascal VOC annotation file (with ``defusedxml``).

    VOC's ``xmin..xmax`` are 1-based, inclusive pixel indices; they are converted here, once,
    to the project's 0-based continuous boxes ``(xmin - 1, ymin - 1, xmax, ymax)`` (pixels
    1..10 in VOC are pixels 0..9 here, i.e. the box ``(0, 10)``). Boxes that stick out of the
    image by at most one pixel are clipped to it.

    Args:
        path: the ``.xml`` file.
        class_to_idx: class name -> label. When given, an unknown name is an error; when
            ``None``, every label is ``-1`` and ``names`` carries the classes.
        image_path: the image the file describes; only read (its header) when ``<size>`` says
            width or height 0, as a few VOC files do.
        skip_degenerate: drop boxes of zero width or height (after clipping) and count them in
            ``num_skipped`` instead of raising.

    Returns:
        ``dict`` with ``filename`` (str), ``width``, ``height`` (int), ``boxes``
        (``Tensor[K, 4]`` float32, our convention), ``labels`` (``LongTensor[K]``),
        ``difficult``, ``truncated`` (``BoolTensor[K]``, absent flags read as 0), ``names``
        (``list[str]``) and ``num_skipped`` (int).

    Raises:
        ValueError: naming the file (and the object index): malformed XML, a missing
            ``<size>``/``<object>``/``<bndbox>`` field, a non-numeric coordinate, ``xmax <
            xmin`` or ``ymax < ymin``, a zero-area box (unless ``skip_degenerate``), a box
            outside the image by more than a pixel, an unknown class name, or a zero size
            that cannot be read from the image.
    """
    path = Path(path)
    root = _read_annotation_root(path)
    filename_elem = root.find("filename")
    if filename_elem is not None and filename_elem.text and filename_elem.text.strip():
        filename = filename_elem.text.strip()
    else:
        filename = path.stem + ".jpg"  # VOC always writes it; other tools sometimes do not
    width, height = _read_size(root, path, image_path)
    objects = []
    num_skipped = 0
    for index, obj in enumerate(root.findall("object")):
        item = _read_object(obj, index, path, class_to_idx, width, height, skip_degenerate)
        if item is None:
            num_skipped += 1
        else:
            objects.append(item)
    return make_annotation(filename, width, height, objects, num_skipped)


def _read_annotation_root(path: Path) -> ET.Element:
    """The ``<annotation>`` element of ``path``, parsed with ``defusedxml``."""
    try:
        root = SafeET.parse(path).getroot()
    except FileNotFoundError:
        raise _err(path, "no such file") from None
    except (ET.ParseError, DefusedXmlException) as err:
        raise _err(path, f"malformed or unsafe XML ({err})") from None
    if root.tag != "annotation":
        raise _err(path, f"root element must be <annotation>, got <{root.tag}>")
    return root


def _read_size(root: ET.Element, path: Path, image_path: str | Path | None) -> tuple[int, int]:
    """``(width, height)`` from ``<size>``, or from the image's header when it says 0."""
    size = root.find("size")
    if size is None:
        raise _err(path, "no <size> element")
    width = _number(size, "width", path, "<size>")
    height = _number(size, "height", path, "<size>")
    if width < 0 or height < 0 or width != int(width) or height != int(height):
        raise _err(path, f"<size> must hold non-negative integers, got {width} x {height}")
    if width == 0 or height == 0:
        if image_path is None:
            raise _err(path, "<size> has width or height 0 and no image path to read it from")
        return _image_size(Path(image_path), path)
    return int(width), int(height)


def _read_object(
    obj: ET.Element,
    index: int,
    path: Path,
    class_to_idx: Mapping[str, int] | None,
    width: int,
    height: int,
    skip_degenerate: bool,
) -> dict[str, Any] | None:
    """One ``<object>``: ``name``, ``label``, ``box`` (our convention, clipped), ``difficult``
    and ``truncated``; ``None`` for a zero-area box when ``skip_degenerate``."""
    where = f"object {index}"
    name = _text(obj, "name", path, where)
    where = f"object {index} ({name!r})"
    if class_to_idx is not None and name not in class_to_idx:
        known = ", ".join(sorted(class_to_idx)[:25])
        raise _UnknownClassError(
            str(_err(path, f"{where} has an unknown class name; known: {known}")), name, path
        )
    bndbox = obj.find("bndbox")  # direct child only: <part> elements have their own
    if bndbox is None:
        raise _err(path, f"{where} has no <bndbox>")
    xmin, ymin, xmax, ymax = (
        _number(bndbox, tag, path, f"{where} <bndbox>") for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    for axis, low, high in (("x", xmin, xmax), ("y", ymin, ymax)):
        if high < low:
            raise _err(
                path,
                f"{where} has {axis}max < {axis}min: (xmin, ymin, xmax, ymax) = "
                f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})",
            )
    # VOC pixel indices are 1-based and inclusive: pixels xmin..xmax (1-based) are the
    # continuous interval [xmin - 1, xmax) in our 0-based convention.
    x1, y1, x2, y2 = xmin - 1.0, ymin - 1.0, xmax, ymax
    tol = _OUTSIDE_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise _err(
            path,
            f"{where} box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) (0-based) lies outside the "
            f"{width} x {height} image by more than {tol:g} pixel",
        )
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        if skip_degenerate:
            return None
        raise _err(path, f"{where} box has zero area after clipping: {[x1, y1, x2, y2]}")
    return {
        "name": name,
        "label": class_to_idx[name] if class_to_idx is not None else -1,
        "box": [x1, y1, x2, y2],
        "difficult": _flag(obj, "difficult", path, where),
        "truncated": _flag(obj, "truncated", path, where),
    }


def _voc_coords(box: Sequence[float], width: int, height: int, index: int) -> list[int]:
    if len(box) != 4:
        raise ValueError(f"objects[{index}]['box'] must have 4 numbers, got {len(box)}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"objects[{index}]['box'] must be finite, got {list(box)}")
    if not (x2 > x1 and y2 > y1):
        raise ValueError(
            f"objects[{index}]['box'] must have x2 > x1 and y2 > y1 (VOC cannot store a "
            f"zero-area box), got {list(box)}"
        )
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ValueError(
            f"objects[{index}]['box'] must lie inside the {width} x {height} image, got {list(box)}"
        )

    def snap(v: float) -> float:
        r = round(v)
        return float(r) if abs(v - r) < _SNAP_EPS else v

    # Inverse of parse_voc_xml: [x1, x2) covers the 0-based pixels floor(x1) .. ceil(x2) - 1,
    # i.e. 1-based floor(x1) + 1 .. ceil(x2). Integer boxes round-trip exactly; a non-integer
    # box becomes the smallest pixel box containing it (it can only grow, by < 1 px a side).
    x1, y1, x2, y2 = snap(x1), snap(y1), snap(x2), snap(y2)
    return [
        math.floor(x1) + 1,
        math.floor(y1) + 1,
        max(math.ceil(x2), math.floor(x1) + 1),
        max(math.ceil(y2), math.floor(y1) + 1),
    ]


def write_voc_xml(
    path: str | Path,
    *,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[Mapping[str, Any]],
    folder: str = "VOC",
    depth: int = 3,
) -> None:
    """Write a Pascal VOC annotation file (atomically: temporary file + ``os.replace``).

    Boxes are converted back from the project's convention to VOC's 1-based inclusive integer
    pixel indices: ``xmin = floor(x1) + 1``, ``xmax = ceil(x2)`` (same for y), after snapping
    values within 1e-4 of an integer. So ``parse_voc_xml(write_voc_xml(b)) == b`` for boxes
    with integer coordinates; a non-integer box is stored as the smallest pixel box containing
    it.

    Args:
        path: the ``.xml`` file to write (parent folders are created).
        filename: the image file name stored in ``<filename>`` (e.g. ``"000001.jpg"``).
        width, height: the image size in pixels (> 0).
        objects: one mapping per object with ``name`` (str), ``box`` (4 floats, our
            convention, inside the image, non-zero area) and optional ``difficult``,
            ``truncated`` (bool, default False) and ``pose`` (str, default "Unspecified").
        folder: the ``<folder>`` text.
        depth: the number of colour channels stored in ``<size><depth>``.

    Raises:
        ValueError: a non-positive size, an empty class name, or a box that is not finite,
            has zero area or lies outside the image (the message names the object index).
    """
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive integers, got {width} x {height}")
    width, height = int(width), int(height)
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = str(int(depth))
    ET.SubElement(root, "segmented").text = "0"
    for index, obj in enumerate(objects):
        name = str(obj.get("name", "")).strip()
        if not name:
            raise ValueError(f"objects[{index}] needs a non-empty 'name', got {obj.get('name')!r}")
        if "box" not in obj:
            raise ValueError(f"objects[{index}] needs a 'box' (x1, y1, x2, y2)")
        box = obj["box"]
        if isinstance(box, Tensor):
            box = box.tolist()
        xmin, ymin, xmax, ymax = _voc_coords(box, width, height, index)
        elem = ET.SubElement(root, "object")
        ET.SubElement(elem, "name").text = name
        ET.SubElement(elem, "pose").text = str(obj.get("pose", "Unspecified"))
        ET.SubElement(elem, "truncated").text = str(int(bool(obj.get("truncated", False))))
        ET.SubElement(elem, "difficult").text = str(int(bool(obj.get("difficult", False))))
        bndbox = ET.SubElement(elem, "bndbox")
        for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root, space="\t")
    data = ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"
    atomic_write_bytes(Path(path), data)


def read_split_ids(root: str | Path, split: str) -> list[str]:
    """Image ids of one split, from ``root/ImageSets/Main/{split}.txt``.

    Only the first token of each line is kept, so per-class files (``"000005 -1"``) work too.

    Args:
        root: the VOC root (the folder holding ``JPEGImages`` and ``Annotations``).
        split: e.g. ``"train"``, ``"val"``, ``"trainval"``, ``"test"``.

    Returns:
        The ids in file order, blank lines skipped.

    Raises:
        ValueError: the split file does not exist, or lists an id twice.
        sppnet.data.OutsideRootError: (a ``ValueError``) an id whose annotation path
            (``Annotations/{id}.xml``) leads outside the root (``..``, an absolute path, a
            symbolic link), naming the line.
    """
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise ValueError(f"no split file {path} (split {split!r})")
    ids = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        if image_id in seen:
            raise ValueError(f"split file {path} lists image id {image_id!r} more than once")
        where = f"line {number} (image id)"
        inside_root(Path(root) / "Annotations", f"{image_id}.xml", source=path, record=where)
        seen.add(image_id)
        ids.append(image_id)
    return ids


def read_class_file(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines skipped); line order = label.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty or names a class twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no class file {path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path} must list distinct class names, one per line, got {names}")
    return names


def read_class_names(root: str | Path) -> list[str]:
    """Class names of a VOC-layout dataset: ``root/classes.txt`` if present, else VOC's 20.

    Raises:
        ValueError: ``classes.txt`` is empty or names a class twice.
    """
    path = Path(root) / "classes.txt"
    if not path.is_file():
        return list(VOC_CLASSES)
    return read_class_file(path)


def collect_class_names(root: str | Path, split: str) -> list[str]:
    """The distinct class names the annotations of a split use, sorted (unreadable files are
    passed over: this only suggests a class list, :class:`VOCDetection` reports bad files).

    Args:
        root: the VOC root.
        split: the split name.

    Returns:
        The names in sorted order.

    Raises:
        ValueError: the split file does not exist.
    """
    root = Path(root)
    names: set[str] = set()
    for image_id in read_split_ids(root, split):
        try:
            ann = parse_voc_xml(root / "Annotations" / f"{image_id}.xml", skip_degenerate=True)
        except ValueError:
            continue
        names.update(ann["names"])
    return sorted(names)


class VOCDetection(AnnotatedImages, torch.utils.data.Dataset):
    """A Pascal VOC-layout detection dataset (real VOC2007 or the built-in data).

    All annotations of the split are parsed when the dataset is built (a few ms per 100
    files), so errors surface early and ``sizes`` is known without decoding images.

    Bad-file policy (``skip_bad``): with ``skip_bad=False`` a bad annotation raises a
    ``ValueError`` at construction and a bad image raises an ``ImageDecodeError`` in
    ``__getitem__``, both naming the file. With ``skip_bad=True`` bad annotations are dropped
    at construction (their ids listed in ``skipped_ids``, counted in ``skipped``), and a bad
    image is replaced by the next readable one in index order (wrapping around) and counted in
    ``skipped`` (per process: DataLoader workers keep their own count).

    An image whose decoded size differs from its annotation's ``<size>`` is an error
    naming both sizes when it is read (its boxes belong to another picture), unless
    ``fix_sizes`` rescaled them.

    Attributes:
        ids: image ids in split order (bad ones removed when ``skip_bad``).
        class_names: class names; label ``i`` is ``class_names[i]``.
        class_to_idx: name -> label.
        annotations: the parsed annotation dict of each id (see :func:`parse_voc_xml`).
        sizes: ``(height, width)`` of each image, from the annotations.
        skipped, skipped_ids: see the policy above.
        resized: how many annotations ``fix_sizes`` rescaled to their image's real size.

    ``dataset[i]`` returns ``(image, target)``: ``image`` is the RGB ``PIL.Image`` (or
    ``transform(image)``), ``target`` a dict with ``boxes`` (``Tensor[K, 4]`` float32, in the
    ORIGINAL image's coordinates, whatever the transform does), ``labels`` (``LongTensor[K]``),
    ``difficult``, ``truncated`` (``BoolTensor[K]``), ``image_id`` (str) and ``size``
    (``LongTensor[2]``, the original ``(height, width)``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        classes: Sequence[str] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        skip_bad: bool = False,
        fix_sizes: bool = False,
    ) -> None:
        """Index a VOC-layout split.

        Args:
            root: the folder holding ``JPEGImages``, ``Annotations`` and ``ImageSets``.
            split: the split name (``ImageSets/Main/{split}.txt``).
            classes: class names in label order; ``None`` reads ``root/classes.txt`` if
                present, else uses :data:`VOC_CLASSES`. Without either, an annotation that
                names another class is an error that lists the split's class names and how to
                pass them (not a guess: the labels of a detector must not depend on which
                classes one split happens to hold, or on their order in the files).
            transform: applied to the PIL image only.
            skip_bad: the bad-file policy described in the class docstring.
            fix_sizes: read each image's header now and rescale the boxes of an annotation
                whose ``<size>`` differs from it, with a warning. Without it, an image whose
                decoded size differs from its ``<size>`` is an error when it is read.

        Raises:
            ValueError: a missing split file, repeated class names, a class name outside
                :data:`VOC_CLASSES` when the classes were not given (even with ``skip_bad``),
                or (without ``skip_bad``) a bad annotation file, naming it.
            sppnet.data.OutsideRootError: (a ``ValueError``, even with ``skip_bad``) a split
                id or a ``<filename>`` that leads outside the root or ``JPEGImages``.
        """
        self.root = Path(root)
        self.split = split
        guessed = classes is None and not (self.root / "classes.txt").is_file()
        self.class_names = list(classes) if classes is not None else read_class_names(root)
        if len(set(self.class_names)) != len(self.class_names) or not self.class_names:
            raise ValueError(f"classes must be distinct and non-empty, got {self.class_names}")
        self.class_to_idx = {name: i for i, name in enumerate(self.class_names)}
        self.transform = transform
        self.skip_bad = skip_bad
        self.skipped = 0
        self.skipped_ids: list[str] = []
        self.ids: list[str] = []
        self.annotations: list[dict[str, Any]] = []
        images = self.root / "JPEGImages"
        for image_id in read_split_ids(self.root, split):
            xml = self.root / "Annotations" / f"{image_id}.xml"
            jpeg = inside_root(images, f"{image_id}.jpg", source=xml, record="the image id")
            try:
                ann = parse_voc_xml(xml, self.class_to_idx, image_path=jpeg)
            except _UnknownClassError as err:
                if guessed:
                    raise self._no_class_list(err) from None
                if not skip_bad:
                    raise
                self.skipped += 1
                self.skipped_ids.append(image_id)
                continue
            except ValueError:
                if not skip_bad:
                    raise
                self.skipped += 1
                self.skipped_ids.append(image_id)
                continue
            inside_root(images, ann["filename"], source=xml, record="<filename>")
            self.ids.append(image_id)
            self.annotations.append(ann)
        self.resized = 0  # annotations whose boxes fix_sizes rescaled
        if fix_sizes:
            paths = [self.image_path(i) for i in range(len(self.ids))]
            self.resized = fit_sizes(self.annotations, paths, f"{self.root} split {split!r}")
        self.sizes = [(a["height"], a["width"]) for a in self.annotations]

    def _no_class_list(self, err: _UnknownClassError) -> ValueError:
        """The error for a non-VOC class name when no class list was given: what to do."""
        names = collect_class_names(self.root, self.split)
        return ValueError(
            f"{err.path}: class {err.name!r} is not a Pascal VOC class, and "
            f"{self.root} has no classes.txt naming the dataset's own classes. The annotations "
            f"of split {self.split!r} name {len(names)}: {', '.join(names)}. To use them, "
            f"write them one per line to {self.root / 'classes.txt'}, or pass --classes "
            f"{','.join(names)} (train-det, convert; classes=[...] in Python); the order "
            "sets the labels"
        )

    def image_folder(self) -> Path:
        """``root/JPEGImages``: the folder of the XMLs' ``<filename>``."""
        return self.root / "JPEGImages"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"images={len(self)}, classes={len(self.class_names)}, skipped={self.skipped})"
        )
