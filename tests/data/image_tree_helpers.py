"""Tiny image files and class-folder trees for the data tests (written with Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def make_image(
    path: Path,
    size: tuple[int, int],
    *,
    kind: str = "noise",
    color: tuple[int, int, int] = (200, 30, 90),
    seed: int = 0,
    exif_orientation: int | None = None,
) -> Path:
    """Write a ``size = (width, height)`` RGB image: a solid colour or uniform noise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    if kind == "solid":
        img = Image.new("RGB", (width, height), color)
    elif kind == "noise":
        rng = np.random.default_rng(seed)
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    else:
        raise ValueError(f"kind must be 'solid' or 'noise', got {kind!r}")
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = exif_orientation
        kwargs["exif"] = exif
    if path.suffix.lower() in (".jpg", ".jpeg"):
        kwargs["quality"] = 95
    img.save(path, **kwargs)
    return path


def make_corrupt(path: Path, n_bytes: int = 300, seed: int = 1) -> Path:
    """Random bytes under an image name (Pillow cannot identify it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, np.uint8).tobytes())
    return path


def make_truncated_jpeg(path: Path, size: tuple[int, int] = (60, 40)) -> Path:
    """A noise JPEG cut to half its bytes: the header reads fine, decoding fails."""
    path = make_image(path, size, kind="noise", seed=7)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_tree(
    root: Path,
    spec: dict[str, list[tuple[str, tuple[int, int]]]],
    splits: dict[str, list[str]] | None = None,
) -> Path:
    """Class folders ``root/<class>/<name>`` of noise images; optional split files.

    Args:
        root: where to write.
        spec: class -> list of (file name, (width, height)).
        splits: split name -> lines of ``root/splits/<split>.txt``.
    """
    root = Path(root)
    seed = 0
    for name, files in spec.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for filename, size in files:
            make_image(root / name / filename, size, seed=seed)
            seed += 1
    for split, lines in (splits or {}).items():
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
