"""The images a predictor takes: file paths, PIL images, NumPy arrays and tensors.

:func:`check_images` looks at every input before any work (types, shapes, value ranges,
files that exist) and :func:`to_pil` turns one into an upright 8-bit RGB ``PIL.Image``.
Errors name the image by its path, or by its position in the list (``image 3``).

Accepted:

- ``str`` / ``os.PathLike``: an image file (anything Pillow reads, EXIF orientation applied);
- ``PIL.Image.Image``: any mode, converted to RGB;
- ``numpy.ndarray`` ``uint8`` ``[H, W, 3]`` (RGB) or ``[H, W]`` (grey);
- ``torch.Tensor`` float ``[3, H, W]`` with values in ``[0, 1]`` (torchvision's convention),
  rounded to 8 bits as a saved image would be.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["as_image_list", "check_images", "image_label", "to_pil"]


def as_image_list(images: Any) -> list[Any]:
    """``images`` as a list: one image (of any accepted kind) becomes a list of one."""
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        return [images]
    if isinstance(images, Sequence):
        return list(images)
    raise TypeError(
        "images must be an image (path, PIL image, uint8 HWC array, float CHW tensor) or a "
        f"list of them, got {type(images).__name__}"
    )


def image_label(image: Any, index: int) -> str:
    """How errors name an image: ``image 3 (photos/a.jpg)`` for a path, else ``image 3``."""
    if isinstance(image, (str, os.PathLike)):
        return f"image {index} ({os.fspath(image)})"
    return f"image {index}"


def _check_one(image: Any, label: str) -> None:
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"{label}: no such image file")
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
        ):
            raise ValueError(
                f"{label}: a NumPy image must be uint8 [H, W, 3] (RGB) or [H, W], got "
                f"{image.dtype} {list(image.shape)}"
            )
    elif isinstance(image, torch.Tensor):
        if not image.is_floating_point() or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"{label}: a tensor image must be float [3, H, W] in [0, 1], got "
                f"{image.dtype} {list(image.shape)}"
            )
        if image.numel() and (
            not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1
        ):
            raise ValueError(
                f"{label}: tensor values must lie in [0, 1] (divide 0..255 pixels by 255)"
            )
    elif not isinstance(image, Image.Image):
        raise TypeError(
            f"{label}: expected a path, PIL image, uint8 HWC array or float CHW tensor, got "
            f"{type(image).__name__}"
        )


def check_images(images: Sequence[Any]) -> None:
    """Check every input before any work.

    Args:
        images: the inputs (see the module docstring).

    Raises:
        FileNotFoundError: a path that is not a file (named with its position).
        TypeError: an input of another kind.
        ValueError: an empty list, an array or tensor of the wrong dtype, shape or range.
    """
    if len(images) == 0:
        raise ValueError("no images given")
    for i, image in enumerate(images):
        _check_one(image, image_label(image, i))


def to_pil(image: Any, index: int = 0) -> Image.Image:
    """One checked input as an 8-bit RGB ``PIL.Image``.

    Args:
        image: a path, PIL image, uint8 array or float tensor (see the module docstring).
        index: its position, for the error message.

    Returns:
        The image in RGB.

    Raises:
        ValueError: a file that cannot be decoded (its message names the file), or an input
            :func:`check_images` rejects.
    """
    from sppnet.data.decode import _to_rgb, load_image

    label = image_label(image, index)
    _check_one(image, label)
    if isinstance(image, (str, os.PathLike)):
        try:
            return load_image(image)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from err
    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if isinstance(image, np.ndarray):
        array = np.ascontiguousarray(image)
        pil = Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB")
        return pil.convert("RGB")
    pixels = (image.detach().float().cpu() * 255).round().to(torch.uint8)  # [3, H, W]
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
