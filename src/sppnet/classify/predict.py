"""Classify image files: ImageNet names from a pretrained trunk, or a trained run's classes.

Each image is seen whole (aspect ratio kept, shorter side ``size``): the ImageNet classifier
averages its 1280-channel map globally and an SPP classifier pools any map size, so no crop is
needed (Sec. 3.1.4's full-image view). A no-SPP classifier takes its fixed center crop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sppnet.data.decode import load_image
from sppnet.data.transforms import resize_shorter, subtract_mean, to_tensor
from sppnet.limits import ImageTooLargeError

__all__ = ["Prediction", "predict_images"]


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image: ``(index, name, probability)``, best first."""

    image: str
    width: int
    height: int
    top: list[tuple[int, str, float]]


def predict_images(
    model: nn.Module,
    paths: Sequence[str | os.PathLike[str]],
    class_names: Sequence[str],
    *,
    size: int = 224,
    top: int = 5,
    crop: int | None = None,
    mean: float = 128.0,
) -> list[Prediction]:
    """Run a classifier on image files and return each one's top classes.

    Args:
        model: images ``Tensor[1, 3, H, W]`` (pixels - mean) -> ``Tensor[1, K]`` logits.
        paths: image files; all are decoded first, so a bad one fails before any work.
        class_names: K names, index order.
        size: shorter side the image is resized to.
        top: how many classes to return (at most K).
        crop: a center crop side (for a no-SPP classifier), or None for the whole image.
        mean: constant subtracted from 0..255 pixels (128, Appendix A).

    Returns:
        One :class:`Prediction` per path, in order.

    Raises:
        ValueError: an unreadable image (names the file), ``top``/``size``/``crop`` < 1.
        sppnet.limits.ImageTooLargeError: (a ``ValueError``) an image over the
            memory cap once resized (names the file).
    """
    for name, value in (("top", top), ("size", size), ("crop", crop or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if crop is not None and crop > size:
        raise ValueError(f"crop ({crop}) must not exceed size ({size})")
    images = [load_image(p) for p in paths]  # decode all first: fail before the work
    device = next(model.parameters()).device
    top = min(top, len(class_names))
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for path, img in zip(paths, images, strict=True):
                try:
                    resized = resize_shorter(img, size)
                except ImageTooLargeError as err:
                    raise err.at(path) from None
                x = subtract_mean(to_tensor(resized), mean)  # [3, H, W]
                if crop is not None:
                    top_px = (x.shape[1] - crop) // 2
                    left = (x.shape[2] - crop) // 2
                    x = x[:, top_px : top_px + crop, left : left + crop]
                logits = model(x[None].to(device))  # [1, K]
                if logits.shape[-1] != len(class_names):
                    raise ValueError(
                        f"the model gives {logits.shape[-1]} scores but {len(class_names)} "
                        "class names were given"
                    )
                probs = logits.float().softmax(dim=1)[0].cpu()
                values, indices = probs.topk(top)
                ranked = [
                    (int(i), class_names[int(i)], float(v))
                    for v, i in zip(values, indices, strict=True)
                ]
                out.append(Prediction(str(path), img.width, img.height, ranked))
    finally:
        model.train(was_training)
    return out
