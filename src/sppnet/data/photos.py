"""Development data made from real photographs that ship inside installed packages.

The built-in shape scenes (:mod:`sppnet.data.synthetic`) are flat-coloured drawings; a
trunk pretrained on ImageNet sees little of what it learnt there. These sets are made of
crops of real photographs (real textures, lighting and camera noise) pasted at many sizes
and positions onto other real photographs, in images of varied size and aspect ratio. The
pictures come from the files bundled with scikit-image (``skimage/data``: astronaut,
cameraman, cat, coffee, coins, motorcycle, rocket, retina, brick, grass, gravel, moon,
Hubble deep field, tissue, printed text) and scikit-learn (``china.jpg``, ``flower.jpg``);
nothing is downloaded.

Kinds:
    ``classify-a``: ten object classes (a photograph's object: the astronaut, the cat, the
        coffee cup, ...), one object per image, on texture photographs (brick, grass,
        gravel, moon, stars, tissue, text, cells, a blurred clock). The same ten objects
        appear in every split (instance recognition under new crops, sizes, positions,
        colours and backgrounds); backgrounds come from disjoint bands of their photographs
        per split.
    ``classify-b``: eight material classes (brick, grass, gravel, moon, stars, tissue, text,
        coins): a blob-shaped region filled with a crop of the material photograph, on a
        scene photograph (the object photographs of ``classify-a``). Materials and scenes
        come from disjoint bands of their photographs per split, so test patches are unseen.
    ``detect``: the ten ``classify-a`` objects, one to four per image, smaller, with their
        boxes, in Pascal VOC layout.

Splits: ``train``, ``val``, ``test``; each photograph's region is cut along its longer side
into bands of 60 / 20 / 20 % for them, where the kind says so.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from sppnet._atomic import atomic_write_bytes
from sppnet.data.synthetic import image_seed
from sppnet.data.voc import write_voc_xml
from sppnet.errors import UserError

__all__ = [
    "PHOTO_CLASSES",
    "PHOTO_KINDS",
    "PHOTO_VERSION",
    "generate_photo_dataset",
    "photo_file",
    "render_photo_image",
]

PHOTO_KINDS: tuple[str, ...] = ("classify-a", "classify-b", "detect")

# Bump whenever rendering changes: generator.json records it.
PHOTO_VERSION = 1

# picture -> (package, path inside it)
_FILES: dict[str, tuple[str, str]] = {
    **{
        name: ("skimage", f"data/{name}.{ext}")
        for name, ext in (
            ("astronaut", "png"), ("camera", "png"), ("chelsea", "png"), ("coffee", "png"),
            ("coins", "png"), ("motorcycle_left", "png"), ("rocket", "jpg"), ("retina", "jpg"),
            ("brick", "png"), ("grass", "png"), ("gravel", "png"), ("moon", "png"),
            ("hubble_deep_field", "jpg"), ("ihc", "png"), ("page", "png"), ("text", "png"),
            ("cell", "png"), ("clock_motion", "png"),
        )
    },
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}  # fmt: skip

# object class -> (picture, box of the object in it: x1, y1, x2, y2 px), sorted by name
_OBJECTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "astronaut": ("astronaut", (20, 0, 390, 512)),
    "cameraman": ("camera", (90, 30, 360, 470)),
    "cat": ("chelsea", (60, 0, 451, 300)),
    "coffee": ("coffee", (0, 20, 480, 400)),
    "coins": ("coins", (10, 10, 374, 293)),
    "flower": ("flower", (110, 40, 450, 400)),
    "motorcycle": ("motorcycle_left", (40, 90, 710, 480)),
    "pagoda": ("china", (60, 10, 420, 420)),
    "retina": ("retina", (0, 0, 1411, 1411)),
    "rocket": ("rocket", (230, 60, 380, 400)),
}
# material class -> picture (its whole area)
_MATERIALS: dict[str, str] = {
    "brick": "brick",
    "coins": "coins",
    "grass": "grass",
    "gravel": "gravel",
    "moon": "moon",
    "stars": "hubble_deep_field",
    "text": "page",
    "tissue": "ihc",
}
_TEXTURE_BACKGROUNDS = (
    "brick", "grass", "gravel", "moon", "hubble_deep_field", "ihc", "page", "text", "cell",
    "clock_motion",
)  # fmt: skip
_SCENE_BACKGROUNDS = tuple(picture for picture, _ in _OBJECTS.values())

PHOTO_CLASSES: dict[str, tuple[str, ...]] = {
    "classify-a": tuple(_OBJECTS),
    "classify-b": tuple(_MATERIALS),
    "detect": tuple(_OBJECTS),
}

_BANDS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
_SETTINGS: dict[str, Any] = {
    "object_scale": {"classify-a": [0.25, 0.85], "classify-b": [0.3, 0.85], "detect": [0.1, 0.5]},
    "objects_per_image": {"detect": [1, 4]},
    "object_crop": [0.75, 1.0],  # sub-window of an object's box, per side
    "max_iou": 0.2,  # between the boxes of one detection image
    "gray_prob": 0.1,
    "jitter": [0.7, 1.3],  # brightness, contrast and saturation factors
    "jpeg_quality": 90,
}
_DEFAULT_SIZES = {"train": 600, "val": 200, "test": 400}


# ------------------------------------------------------------------------------ pictures
def photo_file(name: str) -> Path:
    """The path of a bundled picture (``"astronaut"``, ``"china"``, ...).

    Raises:
        UserError: the package that ships it is not installed (names the pip command).
    """
    package, rel = _FILES[name]
    spec = importlib.util.find_spec(package)
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / rel
    if path is None or not path.is_file():
        pip = "scikit-image" if package == "skimage" else "scikit-learn"
        raise UserError(
            f"the photo data need the picture {rel} that {pip} ships, not found: "
            f"pip install 'sppnet[photos]' (or pip install {pip})"
        )
    return path


@functools.lru_cache(maxsize=32)
def _picture(name: str) -> Image.Image:
    with Image.open(photo_file(name)) as image:
        return image.convert("RGB")


def _band(box: Sequence[float], split: str) -> tuple[float, float, float, float]:
    """The part of ``box`` that ``split`` may use: a band along its longer side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    lo, hi = _BANDS[split]
    if x2 - x1 >= y2 - y1:
        return x1 + lo * (x2 - x1), y1, x1 + hi * (x2 - x1), y2
    return x1, y1 + lo * (y2 - y1), x2, y1 + hi * (y2 - y1)


def _sub_window(rng: np.random.Generator, box: Sequence[float], frac: Sequence[float]) -> tuple:
    """A random window inside ``box`` whose sides are ``U(frac)`` of its sides."""
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * rng.uniform(*frac), (y2 - y1) * rng.uniform(*frac)
    left, top = x1 + rng.uniform(0, x2 - x1 - w), y1 + rng.uniform(0, y2 - y1 - h)
    return left, top, left + w, top + h


def _jitter(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Random brightness, contrast and saturation, and a random left-right flip."""
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhance(image).enhance(float(rng.uniform(*_SETTINGS["jitter"])))
    return ImageOps.mirror(image) if rng.random() < 0.5 else image


def _crop(picture: Image.Image, box: Sequence[float], size: tuple[int, int]) -> Image.Image:
    return picture.resize(size, Image.BILINEAR, box=tuple(float(v) for v in box))


# ----------------------------------------------------------------------------- rendering
def _canvas_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """Width and height: the longer side ``U(min_side, max_side)``, aspect up to 2:1."""
    longer = int(rng.integers(min_side, max_side + 1))
    aspect = float(np.exp(rng.uniform(0.0, np.log(2.0))))
    shorter = max(min_side // 2, round(longer / aspect))
    return (longer, shorter) if rng.random() < 0.5 else (shorter, longer)


def _background(rng: np.random.Generator, split: str, pictures: Sequence[str], size) -> Image:
    name = pictures[int(rng.integers(len(pictures)))]
    picture = _picture(name)
    band = _band((0, 0, picture.width, picture.height), split)
    return _jitter(rng, _crop(picture, _sub_window(rng, band, (0.5, 1.0)), size))


def _mask(rng: np.random.Generator, w: int, h: int, blob: bool) -> Image.Image:
    """An alpha mask ``w x h``: a rectangle, rounded rectangle or ellipse, or (``blob``) a
    smooth random star-shaped region, with a feathered edge."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    shape = 3 if blob else int(rng.integers(3))
    if shape == 0:
        draw.rectangle((0, 0, w - 1, h - 1), fill=255)
    elif shape == 1:
        draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=min(w, h) // 4, fill=255)
    elif shape == 2:
        draw.ellipse((0, 0, w - 1, h - 1), fill=255)
    else:
        angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        radius = 1.0 + sum(
            rng.uniform(0, 0.25) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
        )
        radius = radius / radius.max()
        xs = (w - 1) / 2 * (1 + radius * np.cos(angles))
        ys = (h - 1) / 2 * (1 + radius * np.sin(angles))
        draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(1.0))


def _object_patch(
    rng: np.random.Generator, kind: str, name: str, split: str, longer: int
) -> tuple[Image.Image, Image.Image]:
    """The pasted object of class ``name``, its longer side ``longer`` px, and its mask."""
    if kind == "classify-b":
        picture = _picture(_MATERIALS[name])
        band = _band((0, 0, picture.width, picture.height), split)
        window = _sub_window(rng, band, (0.3, 1.0))
        aspect = float(np.exp(rng.uniform(-0.5, 0.5)))
    else:
        source, box = _OBJECTS[name]
        picture = _picture(source)
        window = _sub_window(rng, box, _SETTINGS["object_crop"])
        aspect = (window[2] - window[0]) / (window[3] - window[1])
    w, h = (longer, round(longer / aspect)) if aspect >= 1 else (round(longer * aspect), longer)
    w, h = max(w, 8), max(h, 8)
    patch = _jitter(rng, _crop(picture, window, (w, h)))
    return patch, _mask(rng, w, h, blob=kind == "classify-b")


def _free_spot(
    rng: np.random.Generator, size: tuple[int, int], w: int, h: int, boxes: list[tuple]
) -> tuple[int, int] | None:
    """Top-left corner of a ``w x h`` object inside the image whose box overlaps no box in
    ``boxes`` by more than the allowed IoU (None after 30 tries)."""
    for _ in range(30):
        x, y = int(rng.integers(0, size[0] - w + 1)), int(rng.integers(0, size[1] - h + 1))
        if all(_iou((x, y, x + w, y + h), b) <= _SETTINGS["max_iou"] for b in boxes):
            return x, y
    return None


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def render_photo_image(
    kind: str,
    seed: np.random.SeedSequence,
    split: str,
    *,
    classes: Sequence[int],
    min_side: int = 160,
    max_side: int = 480,
) -> tuple[Image.Image, list[dict[str, Any]]]:
    """Render one image of ``kind`` with objects of the given classes.

    Args:
        kind: one of :data:`PHOTO_KINDS`.
        seed: the image's seed (:func:`~sppnet.data.synthetic.image_seed`).
        split: ``"train"``, ``"val"`` or ``"test"`` (which bands of the pictures are used).
        classes: class indices into ``PHOTO_CLASSES[kind]``, one per object (the first is
            always placed; a later one is left out when it finds no free spot).
        min_side, max_side: the longer image side is uniform in this range (px).

    Returns:
        The RGB image and its objects: ``{"name", "box"}`` with ``box`` in the project's
        convention ``(x1, y1, x2, y2)``, inside the image.
    """
    rng = np.random.default_rng(seed)
    size = _canvas_size(rng, min_side, max_side)
    backgrounds = _SCENE_BACKGROUNDS if kind == "classify-b" else _TEXTURE_BACKGROUNDS
    canvas = _background(rng, split, backgrounds, size)
    lo, hi = _SETTINGS["object_scale"][kind]
    objects: list[dict[str, Any]] = []
    for label in classes:
        name = PHOTO_CLASSES[kind][label]
        longer = round(min(size) * np.exp(rng.uniform(np.log(lo), np.log(hi))))
        patch, mask = _object_patch(rng, kind, name, split, max(longer, 12))
        spot = _free_spot(rng, size, patch.width, patch.height, [o["box"] for o in objects])
        if spot is None:
            continue
        canvas.paste(patch, spot, mask)
        box = mask.getbbox()  # the object's visible pixels
        objects.append({"name": name, "box": tuple(float(v + spot[i % 2]) for i, v in
                                                    enumerate(box))})  # fmt: skip
    if rng.random() < _SETTINGS["gray_prob"]:
        canvas = ImageOps.grayscale(canvas).convert("RGB")
    return canvas, objects


# ------------------------------------------------------------------------------- writing
def _jpeg_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=_SETTINGS["jpeg_quality"])
    return buf.getvalue()


def _classes_of_image(kind: str, seed: int, split: str, index: int, order: np.ndarray) -> list[int]:
    """The object classes of one image: the first cycles through ``order`` (balanced
    classes); a detection image adds up to three more at random."""
    first = int(order[index % len(order)])
    if kind != "detect":
        return [first]
    rng = np.random.default_rng([int(seed), zlib.crc32(f"more:{split}".encode()), index])
    lo, hi = _SETTINGS["objects_per_image"]["detect"]
    more = int(rng.integers(lo, hi + 1)) - 1
    return [first, *(int(c) for c in rng.integers(0, len(order), size=more))]


def _check_args(kind: str, sizes: Mapping[str, int], seed: int, sides: tuple[int, int]) -> None:
    if kind not in PHOTO_KINDS:
        raise ValueError(f"kind must be one of {PHOTO_KINDS}, got {kind!r}")
    bad = [s for s in sizes if s not in _BANDS]
    if bad:
        raise ValueError(f"splits must be among {tuple(_BANDS)}, got {bad}")
    if any(int(n) < 0 for n in sizes.values()):
        raise ValueError(f"split sizes must be >= 0, got {dict(sizes)}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 64 <= sides[0] <= sides[1]:
        raise ValueError(f"need 64 <= min_side <= max_side, got {sides}")
    for name in {*_TEXTURE_BACKGROUNDS, *_SCENE_BACKGROUNDS, *_MATERIALS.values()}:
        photo_file(name)  # a missing package is named before any image is written


def generate_photo_dataset(
    root: str | Path,
    kind: str,
    *,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    min_side: int = 160,
    max_side: int = 480,
) -> dict[str, Any]:
    """Write a photo dataset of ``kind`` into ``root`` (deterministic for a seed).

    Layouts: a classification kind writes an image-folder tree (``root/{class}/{id}.jpg``,
    ``root/splits/{split}.txt`` with lines ``class/{id}.jpg``), the layout of
    :class:`~sppnet.data.image_folder.ImageFolderDataset`; ``detect`` writes Pascal VOC
    (``JPEGImages``, ``Annotations``, ``ImageSets/Main/{split}.txt`` plus ``trainval``,
    ``classes.txt``). Both write ``root/generator.json`` (kind, version, seed, sizes,
    settings). Ids are 6-digit numbers running over the splits; image ``i`` of a split is
    rendered from ``image_seed(seed, split, i)``, so the same arguments write the same bytes.

    Args:
        root: the output folder (created).
        kind: one of :data:`PHOTO_KINDS`.
        sizes: images per split; default ``{"train": 600, "val": 200, "test": 400}``.
        seed: the dataset seed (>= 0).
        min_side, max_side: the longer image side is uniform in this range (px).

    Returns:
        The ``generator.json`` contents, with ``counts`` (images per split) and ``objects``
        (objects per class over all splits).

    Raises:
        ValueError: a bad kind, split name, size, seed or side.
        UserError: the package that ships the pictures is not installed.
    """
    sizes = dict(_DEFAULT_SIZES if sizes is None else sizes)
    _check_args(kind, sizes, seed, (min_side, max_side))
    root = Path(root)
    classes = PHOTO_CLASSES[kind]
    lines: dict[str, list[str]] = {split: [] for split in sizes}
    objects = dict.fromkeys(classes, 0)
    next_id = 1
    for split, n in sizes.items():
        order = np.random.default_rng([int(seed), zlib.crc32(f"order:{split}".encode())])
        perm = order.permutation(len(classes))
        for index in range(int(n)):
            image_id = f"{next_id:06d}"
            next_id += 1
            labels = _classes_of_image(kind, seed, split, index, perm)
            image, objs = render_photo_image(
                kind, image_seed(seed, split, index), split, classes=labels,
                min_side=min_side, max_side=max_side,
            )  # fmt: skip
            for obj in objs:
                objects[obj["name"]] += 1
            lines[split].append(_write_one(root, kind, image_id, image, objs))
    _write_lists(root, kind, lines)
    meta = {
        "kind": kind, "version": PHOTO_VERSION, "seed": int(seed), "sizes": sizes,
        "sides": [min_side, max_side], "settings": _SETTINGS, "classes": list(classes),
        "counts": {s: len(v) for s, v in lines.items()}, "objects": objects,
    }  # fmt: skip
    atomic_write_bytes(root / "generator.json", (json.dumps(meta, indent=2) + "\n").encode())
    return meta


def _write_one(root: Path, kind: str, image_id: str, image: Image.Image, objs: list) -> str:
    """Write one image (and its annotation); returns its line in the split file."""
    if kind == "detect":
        atomic_write_bytes(root / "JPEGImages" / f"{image_id}.jpg", _jpeg_bytes(image))
        write_voc_xml(
            root / "Annotations" / f"{image_id}.xml", filename=f"{image_id}.jpg",
            width=image.width, height=image.height, objects=objs, folder="sppnet-photos",
        )  # fmt: skip
        return image_id
    name = objs[0]["name"]
    atomic_write_bytes(root / name / f"{image_id}.jpg", _jpeg_bytes(image))
    return f"{name}/{image_id}.jpg"


def _write_lists(root: Path, kind: str, lines: Mapping[str, list[str]]) -> None:
    """The split files (and, for detection, ``classes.txt`` and ``trainval``)."""
    classes = PHOTO_CLASSES[kind]
    if kind == "detect":
        folder = root / "ImageSets" / "Main"
        files = dict(lines)
        if "train" in lines and "val" in lines:
            files["trainval"] = lines["train"] + lines["val"]
        atomic_write_bytes(root / "classes.txt", ("\n".join(classes) + "\n").encode())
    else:
        folder = root / "splits"
        files = dict(lines)
        for name in classes:  # every class has a folder, so labels are the sorted names
            (root / name).mkdir(parents=True, exist_ok=True)
    for split, ids in files.items():
        atomic_write_bytes(folder / f"{split}.txt", "".join(f"{i}\n" for i in ids).encode())
