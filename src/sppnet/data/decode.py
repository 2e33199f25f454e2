"""Robust image decoding: whatever is on disk becomes an 8-bit RGB image, or a clear error.

Handles EXIF orientation, grey / palette / CMYK / RGBA / 16-bit images, and names the file
when it is missing, corrupt or truncated. Pillow's decompression-bomb limit is an error at
every decode (:func:`bomb_guard`): Pillow itself only warns between ``Image.MAX_IMAGE_PIXELS``
(about 89 megapixels) and twice that, and such an image costs gigabytes downstream.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["BOMB_ERRORS", "ImageDecodeError", "bomb_guard", "load_image", "open_image"]

#: What :func:`bomb_guard` turns an image over Pillow's pixel limit into.
BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


@contextlib.contextmanager
def bomb_guard() -> Iterator[None]:
    """Inside: ``Image.open`` of an image over ``Image.MAX_IMAGE_PIXELS`` raises.

    Raises (inside the block):
        PIL.Image.DecompressionBombWarning: over the limit (Pillow would only warn);
            ``DecompressionBombError`` over twice the limit, as always.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


class ImageDecodeError(ValueError):
    """An image file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot decode image {self.path}: {reason}")


@contextlib.contextmanager
def open_image(path: str | Path, corrupt: str) -> Iterator[Image.Image]:
    """``Image.open(path)`` under :func:`bomb_guard`; what fails inside the block becomes an
    :class:`ImageDecodeError` naming the file.

    Args:
        path: the image file.
        corrupt: the reason given for a file Pillow identifies but cannot read (an
            ``OSError``, ``SyntaxError`` or ``ValueError``), e.g. ``"corrupt or truncated"``.

    Yields:
        The open (lazily decoded) image.

    Raises:
        ImageDecodeError: the file is missing, not an image, a decompression bomb, or
            ``corrupt``.
    """
    path = Path(path)
    try:
        with bomb_guard(), Image.open(path) as img:
            yield img
    except FileNotFoundError:
        raise ImageDecodeError(path, "no such file") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image file Pillow can identify") from None
    except BOMB_ERRORS as err:
        raise ImageDecodeError(path, f"refused as a decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(path, f"{corrupt} ({err})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (alpha composited on white, 16-bit scaled down)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale the used range to 0..255 instead of clipping at 255
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_image(path: str | Path) -> Image.Image:
    """Read an image file as an upright 8-bit RGB ``PIL.Image``.

    Args:
        path: the image file (JPEG, PNG, BMP, TIFF, ... anything Pillow reads).

    Returns:
        A fully decoded RGB image, rotated by its EXIF orientation.

    Raises:
        ImageDecodeError: (a ``ValueError``) the file is missing, not an image, corrupt or
            truncated; the message names the file. An image over Pillow's pixel limit
            (``Image.MAX_IMAGE_PIXELS``, about 89 megapixels) is one too.
    """
    with open_image(path, "corrupt or truncated") as img:
        img.load()  # decode now: a truncated file fails here, not later in a worker
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
