"""The IMAGE arguments of ``sppnet detect`` and ``sppnet predict``, at dataset scale.

Each argument is one of:

- an image file (a path that does not exist is kept, and reported as a failed image);
- a folder: every image file below it (recursive; extensions of :data:`IMAGE_EXTENSIONS`,
  any case), sorted by path;
- a glob (``photos/*.jpg``, ``data/**/*.png``; quoted, so the shell leaves it alone): the
  matching files, sorted;
- ``@list.txt``: one entry per line (a file, folder or glob; relative paths are read from
  the list's folder; blank lines and lines starting with ``#`` skipped).

The files are kept in the order of the arguments; a file named twice is detected once.
"""

from __future__ import annotations

import argparse
import glob
from collections.abc import Iterable, Sequence
from pathlib import Path

from sppnet.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "add_image_inputs", "expand_images", "refuse_overwriting_inputs"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GLOB_CHARS = ("*", "?", "[")


def add_image_inputs(parser: argparse.ArgumentParser) -> None:
    """The positional images of ``detect`` and ``predict`` (read by :func:`expand_images`)."""
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE",
        help="image files, folders (recursive), quoted globs or @list.txt",
    )  # fmt: skip


def _folder_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _expand_one(entry: str, base: Path | None, seen_lists: set[Path]) -> list[Path]:
    if entry.startswith("@"):
        return _read_list(Path(entry[1:]) if base is None else base / entry[1:], seen_lists)
    path = Path(entry) if base is None or Path(entry).is_absolute() else base / entry
    if path.is_dir():
        found = _folder_images(path)
        if not found:
            raise UserError(
                f"{entry}: the folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
            )
        return found
    if any(c in entry for c in _GLOB_CHARS) and not path.exists():
        found = sorted(
            Path(p) for p in glob.glob(str(path), recursive=True)
            if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS
        )  # fmt: skip
        if not found:
            raise UserError(f"{entry}: no image files match this pattern")
        return found
    return [path]


def _read_list(path: Path, seen_lists: set[Path]) -> list[Path]:
    if not path.is_file():
        raise UserError(f"@{path}: no such list file (one image, folder or glob per line)")
    if path.resolve() in seen_lists:
        raise UserError(f"@{path}: the list includes itself")
    seen_lists.add(path.resolve())
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"@{path}: cannot read the list ({err})") from None
    out: list[Path] = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            out.extend(_expand_one(line, path.parent, seen_lists))
    if not out:
        raise UserError(f"@{path}: the list names no images")
    return out


def expand_images(arguments: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The image files the IMAGE arguments name (see the module docstring).

    Args:
        arguments: the command's IMAGE arguments.

    Returns:
        ``(images, lists)``: the files in order without repeats, and the list files read.

    Raises:
        UserError: an empty folder, a glob matching nothing, a missing or empty list.
    """
    seen_lists: set[Path] = set()
    images: list[Path] = []
    taken: set[Path] = set()
    for argument in arguments:
        for path in _expand_one(argument, None, seen_lists):
            key = path.resolve()
            if key not in taken:
                taken.add(key)
                images.append(path)
    return images, sorted(seen_lists)


def refuse_overwriting_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Stop before any work if an output file would replace an input.

    Raises:
        UserError: naming the first such file.
    """
    given = {p.resolve() for p in inputs}
    for out in outputs:
        if out.resolve() in given:
            raise UserError(
                f"{out}: an output would overwrite this input; choose another --out folder"
            )
