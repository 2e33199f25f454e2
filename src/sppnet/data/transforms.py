"""Image transforms for classification: resizing, crops, flips, colour altering, mean subtraction.

Shape shorthand: H x W image, C = 3 colour channels (RGB). Image tensors are
``float32 Tensor[3, H, W]`` holding 0..255 values until the mean is subtracted; after
:func:`subtract_mean` zero is the mean colour, which makes zero padding of a padded batch
"mean colour" padding.

Training (Sec. 3.1): shorter side resized to 256, a 224x224 crop from the center or one
of the four corners of the ENTIRE resized image (Sec. 3.1, footnote 1: not the corners of
the central 256x256 square as in AlexNet), horizontal flip, AlexNet's PCA colour altering
[3], then mean subtraction (Appendix A). Multi-size training (Sec. 2.3) resizes the SAME
224 crop to 180 with :func:`resize_tensor`.

Crop geometry: crops are whole pixels. For a ``W x H`` image and crop ``c`` the center
crop starts at ``(floor((W - c) / 2), floor((H - c) / 2))``, so an odd margin leaves the
extra pixel on the right / bottom; corner crops touch the image borders.

Randomness comes only from the ``torch.Generator`` passed to a call, or from torch's
default generator when none is given (which a ``DataLoader`` seeds per worker from its own
generator, so runs stay reproducible). A training transform draws, in this order: the crop
index (one ``randint``), the flip (one ``rand``, only if flipping is on) and the lighting
coefficients (``randn(3)``, only if ``lighting > 0``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from sppnet._validate import check_int
from sppnet.limits import check_resized_size

__all__ = [
    "PCA_EIGENVALUES",
    "PCA_EIGENVECTORS",
    "EvalCropTransform",
    "FullImageTransform",
    "TrainTransform",
    "VariableTrainTransform",
    "check_mean",
    "five_crop_boxes",
    "hflip",
    "pca_lighting",
    "resize_shorter",
    "resize_tensor",
    "subtract_mean",
    "to_tensor",
]

# AlexNet's colour altering [3]: principal components of the RGB pixel covariance on
# ImageNet, here for 0..255 data (the widely used 0..1 values [0.2175, 0.0188, 0.0045]
# times 255). Columns of the eigenvector matrix are the components, rows are R, G, B.
PCA_EIGENVALUES = (55.46, 4.794, 1.148)
PCA_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _check_pil(img: object) -> Image.Image:
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(img).__name__}")
    return img


def _check_image_tensor(t: object, name: str = "t") -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"{name} must be Tensor[3, H, W], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def check_mean(mean: object) -> float | Tensor:
    """Validate a mean for :func:`subtract_mean`: a finite constant or a mean image.

    Args:
        mean: a finite number (128 for VOC / Caltech101, Appendix A) or a floating
            ``Tensor[3, h, w]`` mean image (warped to each input's size when subtracted).

    Returns:
        The constant as a float, or the mean image detached on the CPU.

    Raises:
        TypeError: not a finite number or a tensor.
        ValueError: a tensor that is not a floating ``Tensor[3, h, w]``.
    """
    if isinstance(mean, Tensor):
        if mean.dim() != 3 or mean.shape[0] != 3 or not mean.is_floating_point():
            raise ValueError(
                f"mean must be a float or a float Tensor[3, h, w] mean image, got "
                f"{mean.dtype} shape {tuple(mean.shape)}"
            )
        return mean.detach().cpu()
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean):
        raise TypeError(f"mean must be a finite float or a Tensor[3, h, w], got {mean!r}")
    return float(mean)


def _shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_width, new_height) with the shorter side ``size`` and the aspect kept."""
    if width <= height:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize an image so its shorter side is ``size`` pixels, keeping the aspect ratio.

    The longer side is rounded to the nearest pixel. Bilinear, with Pillow's antialiasing
    when shrinking.

    Args:
        img: a PIL image (any size).
        size: target length of the shorter side, e.g. 256 (Sec. 3.1).

    Returns:
        The resized PIL image (the input itself if it already has that size).

    Raises:
        TypeError: ``img`` is not a PIL image or ``size`` is not an int.
        ValueError: ``size < 1``.
        sppnet.limits.ImageTooLargeError: (a ``ValueError``) the resized image would
            be over the memory cap (a very elongated image).
    """
    _check_pil(img)
    check_int("size", size, min=1)
    new = _shorter_side_size(img.width, img.height, size)
    if new == img.size:
        return img
    check_resized_size((img.height, img.width), new[::-1], f"resized to shorter side {size}")
    return img.resize(new, Image.Resampling.BILINEAR)


def five_crop_boxes(width: int, height: int, crop: int = 224) -> Tensor:
    """The five ``crop x crop`` boxes of the ENTIRE image: center and four corners.

    Sec. 3.1 and its footnote 1: the corner crops are the corners of the whole (resized)
    image, not of its central square. Boxes are whole pixels; the center box starts at
    ``(floor((width - crop) / 2), floor((height - crop) / 2))``.

    Args:
        width, height: image size in pixels.
        crop: side of the square crop.

    Returns:
        ``Tensor[5, 4]`` float32 boxes ``(x1, y1, x2, y2)`` (0-based, continuous, end
        exclusive) in the order center, top-left, top-right, bottom-left, bottom-right.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is < 1 or the crop does not fit in the image.
    """
    check_int("width", width, min=1)
    check_int("height", height, min=1)
    check_int("crop", crop, min=1)
    if crop > width or crop > height:
        raise ValueError(
            f"a {crop}x{crop} crop does not fit in a {width}x{height} (w x h) image; "
            f"resize its shorter side to at least {crop} first"
        )
    right, bottom = width - crop, height - crop
    starts = [(right // 2, bottom // 2), (0, 0), (right, 0), (0, bottom), (right, bottom)]
    return torch.tensor([[x, y, x + crop, y + crop] for x, y in starts], dtype=torch.float32)


def to_tensor(img: Image.Image) -> Tensor:
    """PIL image -> ``float32 Tensor[3, H, W]`` with values 0..255 (not scaled to 0..1).

    Args:
        img: a PIL image; non-RGB modes are converted with ``img.convert("RGB")``.

    Returns:
        ``Tensor[3, H, W]`` float32, channels R, G, B.

    Raises:
        TypeError: ``img`` is not a PIL image.
    """
    _check_pil(img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    # np.asarray of a PIL image is read-only; torch.tensor copies it into its own storage
    arr = np.asarray(img, dtype=np.uint8)  # [H, W, 3]
    return torch.tensor(arr).permute(2, 0, 1).to(torch.float32).contiguous()


def hflip(t: Tensor) -> Tensor:
    """Mirror an image (or a batch) left-right: ``out[..., x] = t[..., W - 1 - x]``.

    Args:
        t: ``Tensor[..., H, W]``.

    Returns:
        A new tensor of the same shape.

    Raises:
        TypeError: ``t`` is not a tensor.
        ValueError: fewer than 2 dims.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 2:
        raise ValueError(f"t must be Tensor[..., H, W], got shape {tuple(t.shape)}")
    return t.flip(-1)


def resize_tensor(t: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize an image tensor (or batch) bilinearly with antialiasing.

    Multi-size training (Sec. 2.3) resizes the same 224x224 crop to 180x180 ("the regions
    at both scales differ only in resolution"). The bilinear weights sum to one, so
    resizing commutes with subtracting a constant mean: this may run before or after
    :func:`subtract_mean` with a constant.

    Args:
        t: ``Tensor[3, H, W]`` or ``Tensor[N, 3, H, W]``, floating point.
        size: output side for a square result, or ``(height, width)``.

    Returns:
        ``Tensor[3, h, w]`` or ``Tensor[N, 3, h, w]`` (same dtype and device).

    Raises:
        TypeError: ``t`` is not a floating-point tensor or ``size`` is not int(s).
        ValueError: wrong number of dims or a size < 1.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() not in (3, 4):
        raise ValueError(f"t must be Tensor[3, H, W] or Tensor[N, 3, H, W], got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"t must be a floating-point tensor, got dtype {t.dtype}")
    if isinstance(size, int) and not isinstance(size, bool):
        out_hw = (check_int("size", size, min=1),) * 2
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        out_hw = (check_int("size[0]", size[0], min=1), check_int("size[1]", size[1], min=1))
    else:
        raise TypeError(f"size must be an int or a (height, width) pair, got {size!r}")
    if tuple(t.shape[-2:]) == out_hw:
        return t.clone()
    batch = t if t.dim() == 4 else t.unsqueeze(0)
    out = F.interpolate(batch, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return out if t.dim() == 4 else out.squeeze(0)


def pca_lighting(
    t: Tensor, alphastd: float = 0.1, generator: torch.Generator | None = None
) -> Tensor:
    """AlexNet's colour altering [3]: add a random multiple of the RGB principal components.

    Draws ``alpha ~ N(0, alphastd^2)`` (three values, ``torch.randn(3) * alphastd``) and
    adds the same offset ``eigvec @ (alpha * eigval)`` to every pixel, per channel. Uses
    :data:`PCA_EIGENVALUES` / :data:`PCA_EIGENVECTORS` for 0..255 data. Values are not
    clipped (as in the reference implementations). ``alphastd == 0`` returns a copy and
    draws nothing.

    Args:
        t: ``Tensor[3, H, W]`` RGB image, 0..255 (before mean subtraction).
        alphastd: standard deviation of the coefficients; 0.1 in [3].
        generator: source of randomness (torch's default generator if None).

    Returns:
        A new ``Tensor[3, H, W]``.

    Raises:
        TypeError: ``t`` is not a floating-point tensor.
        ValueError: ``t`` is not ``[3, H, W]`` or ``alphastd < 0``.
    """
    _check_image_tensor(t)
    if not math.isfinite(alphastd) or alphastd < 0:
        raise ValueError(f"alphastd must be a finite number >= 0, got {alphastd}")
    if alphastd == 0:
        return t.clone()
    alpha = torch.randn(3, generator=generator, dtype=torch.float64) * alphastd
    eigval = torch.tensor(PCA_EIGENVALUES, dtype=torch.float64)
    eigvec = torch.tensor(PCA_EIGENVECTORS, dtype=torch.float64)  # [3 RGB, 3 components]
    offset = eigvec @ (alpha * eigval)  # [3] one value per channel
    return t + offset.to(dtype=t.dtype, device=t.device).view(3, 1, 1)


def subtract_mean(t: Tensor, mean: float | Tensor) -> Tensor:
    """Subtract a constant or a (warped) mean image (Appendix A).

    A constant (128 for VOC and Caltech101) is subtracted from every value. A mean image of
    any size is warped bilinearly to ``t``'s size first, as the paper does with the 224x224
    ImageNet mean image for inputs of other sizes.

    Args:
        t: ``Tensor[3, H, W]`` image, 0..255.
        mean: a float, or a ``Tensor[3, h, w]`` mean image.

    Returns:
        A new ``Tensor[3, H, W]``; zero means "the mean colour".

    Raises:
        TypeError: ``t`` is not a floating-point tensor, or ``mean`` has the wrong type.
        ValueError: ``t`` or the mean image is not ``[3, H, W]``.
    """
    _check_image_tensor(t)
    mean = check_mean(mean)
    if isinstance(mean, float):
        return t - mean
    mean = mean.to(dtype=t.dtype, device=t.device)
    if mean.shape[-2:] != t.shape[-2:]:
        mean = resize_tensor(mean, (t.shape[1], t.shape[2]))
    return t - mean


def _mean_repr(mean: float | Tensor) -> str:
    return f"{mean:g}" if isinstance(mean, float) else f"<mean image {tuple(mean.shape)}>"


class TrainTransform:
    """Training augmentation of Sec. 3.1: resize, one of five crops, flip, lighting, mean.

    Steps: shorter side -> ``shorter``; one of :func:`five_crop_boxes` picked uniformly;
    horizontal flip with probability 0.5; :func:`pca_lighting`; :func:`subtract_mean`.

    Args:
        crop: side of the square training crop (224, Sec. 3.1).
        shorter: shorter side after resizing (256, Sec. 3.1); must be >= ``crop``.
        flip: mirror with probability 0.5 ([3], Sec. 3.1).
        lighting: ``alphastd`` of the colour altering (0.1 in [3]); 0 turns it off.
        mean: constant (128 for VOC/Caltech101, Appendix A) or ``Tensor[3, h, w]`` image.

    Raises:
        TypeError / ValueError: bad settings, e.g. ``shorter < crop``.
    """

    def __init__(
        self,
        crop: int = 224,
        shorter: int = 256,
        flip: bool = True,
        lighting: float = 0.1,
        mean: float | Tensor = 128.0,
    ) -> None:
        self.crop = check_int("crop", crop, min=1)
        self.shorter = check_int("shorter", shorter, min=1)
        if shorter < crop:
            raise ValueError(f"shorter must be >= crop ({crop}) so every crop fits, got {shorter}")
        self.flip = bool(flip)
        if not math.isfinite(lighting) or lighting < 0:
            raise ValueError(f"lighting must be a finite number >= 0, got {lighting}")
        self.lighting = float(lighting)
        self.mean = check_mean(mean)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        """Augment one image.

        Args:
            img: a PIL RGB image of any size.
            generator: source of randomness (torch's default generator if None).

        Returns:
            ``Tensor[3, crop, crop]`` float32, mean subtracted.

        Raises:
            TypeError: ``img`` is not a PIL image.
            ValueError: the resized image is smaller than the crop.
        """
        img = resize_shorter(_check_pil(img), self.shorter)
        boxes = five_crop_boxes(img.width, img.height, self.crop)
        index = int(torch.randint(5, (1,), generator=generator))
        x1, y1, x2, y2 = (int(v) for v in boxes[index])
        t = to_tensor(img.crop((x1, y1, x2, y2)))  # [3, crop, crop]
        if self.flip and float(torch.rand(1, generator=generator)) < 0.5:
            t = hflip(t)
        if self.lighting > 0:
            t = pca_lighting(t, self.lighting, generator)
        return subtract_mean(t, self.mean)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop={self.crop}, shorter={self.shorter}, flip={self.flip}, "
            f"lighting={self.lighting:g}, mean={_mean_repr(self.mean)})"
        )


class FullImageTransform:
    """The full-image view (Sec. 3.1.4): resize the shorter side, keep the aspect ratio.

    Args:
        shorter: shorter side after resizing (256 in Sec. 3.1.4); None keeps the original
            size.
        mean: constant (128 for VOC/Caltech101) or ``Tensor[3, h, w]`` mean image, warped to
            each image's size (Appendix A).
        max_long_side: if set, images whose longer side would exceed it are shrunk further
            (aspect kept) so very elongated images stay affordable; the shorter side then
            ends below ``shorter``.

    Raises:
        TypeError / ValueError: bad settings.
    """

    def __init__(
        self,
        shorter: int | None = 256,
        mean: float | Tensor = 128.0,
        max_long_side: int | None = None,
    ) -> None:
        self.shorter = None if shorter is None else check_int("shorter", shorter, min=1)
        self.mean = check_mean(mean)
        self.max_long_side = (
            None if max_long_side is None else check_int("max_long_side", max_long_side, min=1)
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` this transform gives an image of the given size.

        Lets a size-grouped sampler work on the sizes the network will see without
        decoding any image.

        Args:
            height, width: the original image size.

        Returns:
            ``(height, width)`` after resizing.

        Raises:
            TypeError / ValueError: a size is not a positive int.
        """
        check_int("height", height, min=1)
        check_int("width", width, min=1)
        w, h = width, height
        if self.shorter is not None:
            w, h = _shorter_side_size(w, h, self.shorter)
        if self.max_long_side is not None and max(w, h) > self.max_long_side:
            scale = self.max_long_side / max(w, h)
            if w >= h:
                w, h = self.max_long_side, max(1, round(h * scale))
            else:
                w, h = max(1, round(w * scale)), self.max_long_side
        return h, w

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        """Transform one image (deterministic; ``generator`` is accepted and unused).

        Args:
            img: a PIL RGB image of any size.
            generator: unused, for the same call signature as :class:`TrainTransform`.

        Returns:
            ``Tensor[3, H, W]`` float32, mean subtracted, with ``(H, W)`` =
            :meth:`output_size` of the image.

        Raises:
            TypeError: ``img`` is not a PIL image.
            sppnet.limits.ImageTooLargeError: the resized image would be over the
                memory cap.
        """
        _check_pil(img)
        h, w = self.output_size(img.height, img.width)
        if (w, h) != img.size:
            check_resized_size((img.height, img.width), (h, w), f"resized to shorter side "
                               f"{self.shorter}")  # fmt: skip
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        return subtract_mean(to_tensor(img), self.mean)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shorter={self.shorter}, mean={_mean_repr(self.mean)}, "
            f"max_long_side={self.max_long_side})"
        )


class EvalCropTransform:
    """The single center-crop view (Sec. 3.1.2): resize shorter side, center crop, mean.

    Args:
        crop: side of the square crop (224).
        shorter: shorter side after resizing (256); must be >= ``crop``.
        mean: constant or ``Tensor[3, h, w]`` mean image.

    Raises:
        TypeError / ValueError: bad settings, e.g. ``shorter < crop``.
    """

    def __init__(self, crop: int = 224, shorter: int = 256, mean: float | Tensor = 128.0) -> None:
        self.crop = check_int("crop", crop, min=1)
        self.shorter = check_int("shorter", shorter, min=1)
        if shorter < crop:
            raise ValueError(f"shorter must be >= crop ({crop}) so the crop fits, got {shorter}")
        self.mean = check_mean(mean)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        """Center-crop one image (deterministic; ``generator`` is accepted and unused).

        Args:
            img: a PIL RGB image of any size.
            generator: unused, for the same call signature as :class:`TrainTransform`.

        Returns:
            ``Tensor[3, crop, crop]`` float32, mean subtracted.

        Raises:
            TypeError: ``img`` is not a PIL image.
        """
        img = resize_shorter(_check_pil(img), self.shorter)
        x1, y1, x2, y2 = (int(v) for v in five_crop_boxes(img.width, img.height, self.crop)[0])
        return subtract_mean(to_tensor(img.crop((x1, y1, x2, y2))), self.mean)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop={self.crop}, shorter={self.shorter}, "
            f"mean={_mean_repr(self.mean)})"
        )


class VariableTrainTransform:
    """Variable-size training input: the full image (shorter side ``crop``, longer side
    capped at ``max_side``), a random flip, PCA lighting, the mean subtracted.

    Args:
        crop: the shorter side after resizing.
        mean: the pixel mean (a number or one per channel).
        max_side: cap on the longer side (None: ``2 * crop``).
        flip: flip half of the images left-right.
        lighting: standard deviation of the PCA lighting noise (0: none).
    """

    def __init__(
        self,
        crop: int,
        mean: float | list[float] | Tensor,
        max_side: int | None = None,
        *,
        flip: bool = True,
        lighting: float = 0.0,
    ) -> None:
        max_side = max_side if max_side is not None else 2 * crop
        self.full = FullImageTransform(crop, mean, max_long_side=max_side)
        self.flip = flip
        self.lighting = lighting

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` an image of that size comes out at."""
        return self.full.output_size(height, width)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        """``Tensor[3, H, W]``, mean subtracted; the draws come from ``generator``."""
        t = self.full(img)  # [3, H, W], mean subtracted
        if self.flip and float(torch.rand(1, generator=generator)) < 0.5:
            t = hflip(t)
        if self.lighting > 0:
            # The lighting offset is one constant per channel, so adding it after the
            # (constant) mean subtraction equals adding it before.
            t = pca_lighting(t, self.lighting, generator)
        return t
