"""A classification dataset read from a folder tree: one sub-folder per class.

Layout::

    root/
      cat/0001.jpg, cat/more/0002.png, ...
      dog/...
      splits/train.txt    (optional) lines "class/file.jpg", relative to root

Classes are the sorted names of the non-hidden sub-folders that hold at least one image
(searched recursively), labelled 0..K-1. The class list never depends on the split, so
labels agree between train, val and test. Without a split every image under a class
folder is a sample; with ``split="train"`` only the files listed in
``root/splits/train.txt`` are, in the order listed.

Bad files. By default a file that cannot be decoded raises :class:`ImageDecodeError`
naming it. With ``skip_bad=True`` it is replaced by the next sample that decodes
(wrapping around at the end) and its label comes with it; every time a bad file is passed
over ``skipped`` grows by one, and the file is added to ``bad_files`` once (and not
decoded again). Both live in the
process that loads: with ``DataLoader`` workers each worker keeps its own counts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from sppnet._repr import format_fields
from sppnet.data.decode import ImageDecodeError, load_image, open_image
from sppnet.limits import ImageTooLargeError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "read_image_size"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# EXIF orientations 5..8 include a 90-degree turn: the upright image has width and height
# swapped compared with the stored pixels (load_image applies the turn).
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _list_images(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursive, hidden files and folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if _is_image(f))
    return sorted(found)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """The upright ``(height, width)`` of an image, read from its header without decoding.

    Args:
        path: an image file.

    Returns:
        ``(height, width)`` as :func:`~sppnet.data.decode.load_image` will return it, i.e.
        with width and height swapped for EXIF orientations 5-8.

    Raises:
        ImageDecodeError: the file is missing or its header cannot be read.
    """
    with open_image(path, "unreadable header") as img:
        width, height = img.size
        try:
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception:  # a broken EXIF block: load_image will ignore it too
            orientation = 1
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return height, width


class ImageFolder:
    """Images in class sub-folders, optionally restricted to a split file.

    Args:
        root: the dataset folder (one sub-folder per class, optional ``splits/``).
        split: name of a split file ``root/splits/{split}.txt`` (lines ``class/file``,
            blank lines and lines starting with ``#`` ignored), or None for all images.
        transform: called on the decoded RGB PIL image, e.g. a
            :class:`~sppnet.data.transforms.TrainTransform`; None returns the PIL image.
        skip_bad: replace undecodable files by the next good sample instead of raising.

    Attributes:
        root: the dataset folder as a ``Path``.
        classes: ``list[str]`` class names; label ``k`` is ``classes[k]``.
        class_to_idx: ``dict[str, int]``.
        samples: ``list[tuple[Path, int]]`` (file, label).
        targets: ``list[int]`` the labels of ``samples``.
        skipped: how many times a bad file was passed over (``skip_bad=True``).
        bad_files: ``list[Path]`` files found undecodable, in the order found.

    Raises:
        ValueError: ``root`` is not a folder or holds no class folder with images; the
            split file is missing, names an unknown class, a missing file, a path outside
            ``root`` or the same file twice (the message names the split file, line number
            and path).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"ImageFolder root must be an existing folder, got {self.root}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.split = split
        self.transform = transform
        self.skip_bad = bool(skip_bad)

        per_class: dict[str, list[Path]] = {}
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                images = _list_images(entry)
                if images:
                    per_class[entry.name] = images
        if not per_class:
            raise ValueError(
                f"no class folders with images (extensions {', '.join(IMAGE_EXTENSIONS)}) "
                f"found under {self.root}"
            )
        self.classes = sorted(per_class)
        self.class_to_idx = {name: k for k, name in enumerate(self.classes)}

        if split is None:
            self.samples = [
                (path, self.class_to_idx[name]) for name in self.classes for path in per_class[name]
            ]
        else:
            self.samples = self._read_split(split)
        self.targets = [label for _, label in self.samples]
        self.skipped = 0
        self.bad_files: list[Path] = []
        self._bad: set[int] = set()
        self._sizes: list[tuple[int, int]] | None = None

    def _read_split(self, split: str) -> list[tuple[Path, int]]:
        if not isinstance(split, str) or not split or "/" in split or "\\" in split:
            raise ValueError(f"split must be a plain name like 'train', got {split!r}")
        split_file = self.root / "splits" / f"{split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
            raise ValueError(f"split file {split_file} not found; available splits: {available}")
        samples: list[tuple[Path, int]] = []
        seen: dict[Path, int] = {}
        with open(split_file, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, start=1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                where = f"{split_file}, line {lineno}"
                rel = Path(line)
                if rel.is_absolute() or len(rel.parts) < 2:
                    raise ValueError(f"{where}: expected 'class/file', got {line!r}")
                name = rel.parts[0]
                if name not in self.class_to_idx:
                    raise ValueError(
                        f"{where}: unknown class {name!r} in {line!r}; classes: {self.classes}"
                    )
                # checked on the written path, not the resolved one: symlinked images are fine
                if ".." in rel.parts:
                    raise ValueError(f"{where}: path {line!r} may point outside {self.root}")
                path = self.root / rel
                if not path.is_file():
                    raise ValueError(f"{where}: listed file {path} does not exist")
                if path in seen:
                    raise ValueError(f"{where}: {line!r} already listed on line {seen[path]}")
                seen[path] = lineno
                samples.append((path, self.class_to_idx[name]))
        if not samples:
            raise ValueError(f"split file {split_file} lists no images")
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def _mark_bad(self, index: int) -> None:
        if index not in self._bad:
            self._bad.add(index)
            self.bad_files.append(self.samples[index][0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Load sample ``index``: ``(transform(image) or PIL image, label)``.

        Raises:
            IndexError: ``index`` out of range.
            ImageDecodeError: the file cannot be decoded (``skip_bad=False``), or no file
                in the dataset can (``skip_bad=True``).
            sppnet.limits.ImageTooLargeError: the transform would resize the image
                over the memory cap (names the file).
        """
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        index %= n
        for step in range(n):
            i = (index + step) % n
            path, label = self.samples[i]
            if i in self._bad:
                self.skipped += 1
                continue
            try:
                img = load_image(path)
            except ImageDecodeError:
                if not self.skip_bad:
                    raise
                self._mark_bad(i)
                self.skipped += 1
                continue
            if self.transform is None:
                return img, label
            try:
                return self.transform(img), label
            except ImageTooLargeError as err:
                raise err.at(path) from None
        raise ImageDecodeError(self.root, f"none of the {n} images of this dataset can be decoded")

    def image_sizes(self) -> list[tuple[int, int]]:
        """Upright ``(height, width)`` of every sample, read from file headers (cached).

        For a size-grouped batch sampler; nothing is decoded. With ``skip_bad=True`` an
        unreadable header marks the file bad and it takes the size of the sample that
        will replace it (the next readable one).

        Returns:
            ``list[tuple[int, int]]``, one per sample, in sample order.

        Raises:
            ImageDecodeError: a header cannot be read (``skip_bad=False``), or none can.
        """
        if self._sizes is None:
            sizes: list[tuple[int, int] | None] = []
            for i, (path, _) in enumerate(self.samples):
                try:
                    sizes.append(read_image_size(path))
                except ImageDecodeError:
                    if not self.skip_bad:
                        raise
                    self._mark_bad(i)
                    sizes.append(None)
            good = [i for i, s in enumerate(sizes) if s is not None]
            if not good:
                raise ImageDecodeError(self.root, "no image header of this dataset can be read")
            n = len(sizes)
            filled: list[tuple[int, int]] = []
            for i, size in enumerate(sizes):
                j = i
                while sizes[j] is None:
                    j = (j + 1) % n
                filled.append(sizes[j] if size is None else size)  # type: ignore[arg-type]
            self._sizes = filled
        return list(self._sizes)

    def __repr__(self) -> str:
        fields = format_fields(
            root=str(self.root),
            split=self.split,
            classes=len(self.classes),
            samples=len(self.samples),
            transform=self.transform,
            skip_bad=self.skip_bad,
        )
        return f"{type(self).__name__}({fields})"
