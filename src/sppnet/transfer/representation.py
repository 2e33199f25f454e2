"""Image representations for transfer (Sec. 3.2, 3.3): features of a trained or pretrained network.

Shape shorthand: N images, D feature length, C channels of a conv map of size h x w,
L = sum(n * n) pyramid bins, K classes.

Views of an image (Sec. 3.2, Table 6 (a)-(c)):

- ``"full"``: the whole image resized so its shorter side is ``size`` (224, or 392 which
  the paper finds best for VOC), aspect kept ("full 224x-"). SPP models only: the
  pyramid turns any map size into one vector.
- ``"crop"``: shorter side resized to ``size``, then the center ``crop x crop`` region
  (Table 6 (a), (b)).
- ``"warp"``: the image resized to ``crop x crop`` ignoring its aspect ratio (Sec. 3.3).

Layers (the columns of Tables 6 and 7):

- ``"conv4"``, ``"conv5"``: the post-ReLU map flattened as ``(C, h, w)``; their length
  depends on the input size, so they need a fixed-size view (``crop`` or ``warp``).
- ``"pool5"``: SPP models: the 6x6 pyramid level alone (``C * 36``; "For SPP-net, the
  pool5/7 layer uses the 6x6 pyramid level", Table 6), pooled from conv5 whatever the
  model's levels; with the paper's pyramid ``(6, 3, 2, 1)`` it is the first ``C * 36``
  values of the SPP vector. The no-SPP baseline: its plain pool5 output (needs a 224
  crop or warp).
- ``"spp"``: the whole SPP vector ``C * L`` ("SPP pool5/7", Table 7).
- ``"fc6"``: ``relu(fc6(pooled))``; ``"fc7"``: fc7 after its ReLU, in eval mode (no dropout).

Beyond the paper, an ImageNet-pretrained EfficientNet-Lite trunk gives features without any
training of ours (:data:`MAP_LAYERS`): ``"stage5"`` (112 channels, stride 16), ``"stage7"``
(320, stride 32) and ``"head"`` (1280, stride 32), each map averaged over all its cells
(``C`` values, any view: the ImageNet classifier's own reading of its head map) -- those its
trunk computes (``EfficientNetLite(feature_layer=...)`` sets where it stops) -- and
``"spp"``, the model's SPP vector (its last map pooled with its pyramid). Its fc6/fc7 mean
something only after training (``sppnet train --pretrained``); a model straight from
``create_model(..., pretrained=True)`` has random ones. :func:`feature_layers` lists what a
model offers.

Every representation is l2-normalised by default ("we l2-normalize the features for SVM
training", Sec. 3.2). Pixels: 0..255 minus ``mean`` (128 for VOC and Caltech101,
Appendix A), as in training.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from sppnet._validate import check_int
from sppnet.data.transforms import (
    check_mean,
    five_crop_boxes,
    resize_shorter,
    subtract_mean,
    to_tensor,
)
from sppnet.ops import spatial_pyramid_pool

__all__ = [
    "FEATURE_LAYERS",
    "FEATURE_VIEWS",
    "MAP_LAYERS",
    "estimate_feature_bytes",
    "feature_dim",
    "feature_layers",
    "image_representation",
    "representation_input",
]

#: Layers a representation can be taken from (Tables 6 and 7's columns).
FEATURE_LAYERS: tuple[str, ...] = ("conv4", "conv5", "pool5", "spp", "fc6", "fc7")


#: EfficientNet-Lite trunk maps, globally average-pooled (beyond the paper).
MAP_LAYERS: tuple[str, ...] = ("stage5", "stage7", "head")


#: Image views (Table 6 (a)-(c) and the warping of Sec. 3.3).
FEATURE_VIEWS: tuple[str, ...] = ("full", "crop", "warp")


_POOL5_LEVEL = 6  # "the pool5/7 layer uses the 6x6 pyramid level" (Table 6 caption)


_CONV_LAYERS = ("conv4", "conv5")


_TRUNK_LAYERS = _CONV_LAYERS + MAP_LAYERS  # taken from the trunk alone, before any pooling


_FC_LAYERS = ("fc6", "fc7")


def _check_model(model: object) -> nn.Module:
    needed = ("forward_features", "forward_intermediates", "forward_pool", "forward_pooled")
    if not isinstance(model, nn.Module) or not all(hasattr(model, a) for a in needed):
        raise TypeError(
            f"model must be an SPPNet (from sppnet.models.create_model), got {type(model).__name__}"
        )
    return model


def feature_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers ``model`` can give representations from, trunk maps first.

    Args:
        model: an SPPNet (from :func:`sppnet.models.create_model`).

    Returns:
        For the paper's networks ``("conv4", "conv5", "pool5", "spp", "fc6", "fc7")``; for
        EfficientNet-Lite the :data:`MAP_LAYERS` its trunk computes, then ``("pool5",
        "spp", "fc6", "fc7")``; no ``"spp"`` for a no-SPP model.

    Raises:
        TypeError: ``model`` is not an SPPNet.
    """
    model = _check_model(model)
    maps = set(model.conv_layer_names)
    pooled = ("pool5", "spp") if model.spp_levels is not None else ("pool5",)
    return (*(name for name in _TRUNK_LAYERS if name in maps), *pooled, *_FC_LAYERS)


def _no_spp_side(model: nn.Module) -> int:
    """Side of the no-SPP baseline's pool5 grid (6 for the paper's trunks), from fc6's input."""
    return math.isqrt(model.pooled_dim // model.feature_channels)


def _check_request(model: object, layer: str, view: str, size: int, crop: int) -> nn.Module:
    """``model`` after :func:`_check_model`; raise for a layer/view/size it cannot give."""
    model = _check_model(model)
    known = FEATURE_LAYERS + MAP_LAYERS
    if layer not in known:
        raise ValueError(f"layer must be one of {', '.join(known)}, got {layer!r}")
    if layer == "spp" and model.spp_levels is None:
        raise ValueError(
            f"layer 'spp' needs an SPP model; {model.name} is the no-SPP baseline "
            "(use pool5 for its pooled features)"
        )
    offered = feature_layers(model)
    if layer not in offered:
        raise ValueError(
            f"{model.name} has no layer {layer!r} to take features from; its layers: "
            f"{', '.join(offered)}"
        )
    if view not in FEATURE_VIEWS:
        raise ValueError(f"view must be one of {', '.join(FEATURE_VIEWS)}, got {view!r}")
    check_int("size", size, min=1)
    check_int("crop", crop, min=1)
    if layer in _CONV_LAYERS and view == "full":
        raise ValueError(
            f"{layer} features have a length that depends on the image size; {layer} needs "
            "view 'crop' or 'warp' (Table 6 reports conv4/conv5 on crops only), got 'full'"
        )
    if view == "crop" and size < crop:
        raise ValueError(f"view 'crop' needs size >= crop so the crop fits, got {size} < {crop}")
    side = size if view == "full" else crop
    if side < model.min_input_size:
        raise ValueError(
            f"{model.name} needs inputs of at least {model.min_input_size} pixels, got "
            f"{'shorter side' if view == 'full' else 'crop'} {side}"
        )
    if model.spp_levels is None:
        if view == "full" and layer not in _TRUNK_LAYERS:
            raise ValueError(
                f"the no-SPP {model.name} needs a fixed-size input for {layer}: view 'crop' "
                "or 'warp' with crop 224 (only SPP models take full images, Sec. 3.2)"
            )
        if view != "full" and layer not in _TRUNK_LAYERS:
            h, _ = model.feature_size(crop, crop)
            kernel, stride = model.pool5_spec.kernel, model.pool5_spec.stride
            n = _no_spp_side(model)
            if h < kernel or (h - kernel) // stride + 1 != n:
                raise ValueError(
                    f"the no-SPP {model.name}'s pool5 gives {n}x{n} only for a 224-like input; "
                    f"crop {crop} gives a {h}x{h} conv map (use crop 224)"
                )
    return model


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()  # fc6/fc7 without dropout
    try:
        yield
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def representation_input(
    image: Image.Image,
    *,
    view: str,
    size: int = 224,
    crop: int = 224,
    mean: float | Tensor = 128.0,
) -> Tensor:
    """The network input of one image for a view (Sec. 3.2), mean subtracted.

    Args:
        image: an RGB PIL image of any size.
        view: ``"full"`` (shorter side ``size``, aspect kept), ``"crop"`` (shorter side
            ``size``, center ``crop x crop``) or ``"warp"`` (resized to ``crop x crop``).
        size: shorter side for ``full`` and ``crop``.
        crop: side of the square input of ``crop`` and ``warp``.
        mean: constant (128, Appendix A) or ``Tensor[3, h, w]`` mean image (warped to the
            input size).

    Returns:
        ``Tensor[3, H, W]`` float32: ``H = W = crop`` for crop/warp; shorter side ``size``
        for full.

    Raises:
        TypeError: ``image`` is not a PIL image, or bad argument types.
        ValueError: an unknown view, sizes < 1, or ``size < crop`` for ``crop``.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if view not in FEATURE_VIEWS:
        raise ValueError(f"view must be one of {', '.join(FEATURE_VIEWS)}, got {view!r}")
    check_int("size", size, min=1)
    check_int("crop", crop, min=1)
    mean = check_mean(mean)
    if view == "crop" and size < crop:
        raise ValueError(f"view 'crop' needs size >= crop, got {size} < {crop}")
    if view == "warp":
        if image.size != (crop, crop):
            image = image.resize((crop, crop), Image.Resampling.BILINEAR)  # aspect ignored
    else:
        image = resize_shorter(image, size)
        if view == "crop":
            # the center box of the ENTIRE resized image (Sec. 3.2: "crop the center 224x224")
            x1, y1, x2, y2 = (int(v) for v in five_crop_boxes(image.width, image.height, crop)[0])
            image = image.crop((x1, y1, x2, y2))
    return subtract_mean(to_tensor(image), mean)


def _represent(model: nn.Module, x: Tensor, layer: str, normalize: bool) -> Tensor:
    """``Tensor[B, 3, H, W]`` (one size) -> ``Tensor[B, D]`` float32 representations."""
    if layer in MAP_LAYERS:
        fmap = model.forward_intermediates(x, (layer,))[layer]  # [B, C, h, w]
        out = fmap.mean(dim=(2, 3))  # [B, C]: global average, any input size
    elif layer == "conv4":
        out = model.forward_intermediates(x, ("conv4",))["conv4"].flatten(1)  # [B, C*h*w]
    else:
        conv5 = model.forward_features(x)  # [B, C, h, w] after relu5
        if layer == "conv5":
            out = conv5.flatten(1)  # (C, h, w) order whatever the memory format
        elif model.spp_levels is None:
            try:
                pooled = model.forward_pool(conv5)  # the baseline's pool5, [B, C*36]
            except ValueError:
                n = _no_spp_side(model)
                raise ValueError(
                    f"the no-SPP {model.name} needs a conv map that pools to {n}x{n} (a 224 "
                    f"input); got a {x.shape[2]}x{x.shape[3]} input"
                ) from None
            out = pooled if layer == "pool5" else model.forward_pooled(pooled, stop_at=layer)
        elif layer == "pool5":
            out = spatial_pyramid_pool(conv5, (_POOL5_LEVEL,), model.spp_mode)  # [B, C*36]
        else:
            pooled = model.forward_pool(conv5)  # [B, C*L]
            out = pooled if layer == "spp" else model.forward_pooled(pooled, stop_at=layer)
    out = out.float()
    return F.normalize(out, dim=1) if normalize else out


def image_representation(
    model: nn.Module,
    image: Image.Image,
    *,
    layer: str,
    view: str,
    size: int = 224,
    crop: int = 224,
    mean: float | Tensor = 128.0,
    normalize: bool = True,
) -> Tensor:
    """The representation of one image (the reference path of :func:`extract_features`).

    Args:
        model: an SPPNet; run in eval mode (its mode is restored afterwards).
        image: an RGB PIL image.
        layer: one of :func:`feature_layers` (:data:`FEATURE_LAYERS`, :data:`MAP_LAYERS`).
        view: one of :data:`FEATURE_VIEWS` (see :func:`representation_input`).
        size: shorter side of full/crop views (224; 392 is the paper's best on VOC).
        crop: side of crop/warp views (224).
        mean: constant or ``Tensor[3, h, w]`` mean image subtracted from 0..255 pixels.
        normalize: l2-normalise (Sec. 3.2).

    Returns:
        ``Tensor[D]`` float32 on the model's device.

    Raises:
        TypeError: ``model`` is not an SPPNet or ``image`` not a PIL image.
        ValueError: an unknown layer or view, or one the model lacks (the message lists
            its layers); conv4/conv5 with the full view; spp or the full view with the
            no-SPP model; sizes below the model's minimum input.
    """
    model = _check_request(model, layer, view, size, crop)
    x = representation_input(image, view=view, size=size, crop=crop, mean=mean)
    with _eval_mode(model), torch.inference_mode():
        return _represent(model, x[None].to(_device(model)), layer, normalize)[0]


def feature_dim(
    model: nn.Module, layer: str, view: str, *, size: int = 224, crop: int = 224
) -> int:
    """D, the length of a representation (the same for every image of a view).

    Args:
        model, layer, view, size, crop: as for :func:`image_representation`.

    Returns:
        D: ``C * h * w`` for conv4/conv5, ``C`` for the pooled maps of :data:`MAP_LAYERS`
        (both by one forward pass on a blank input), ``C * 36`` for pool5 (a no-SPP
        baseline's fc6 input; ``C * 9`` for a Lite trunk cut at stride 32), ``C * L`` for spp,
        the fc width for fc6/fc7.

    Raises:
        TypeError / ValueError: as :func:`image_representation`.
    """
    model = _check_request(model, layer, view, size, crop)
    if layer in _TRUNK_LAYERS:
        side = size if view == "full" else crop
        x = torch.zeros(1, 3, side, side, device=_device(model))
        with _eval_mode(model), torch.inference_mode():
            return int(_represent(model, x, layer, normalize=False).shape[1])
    if layer == "pool5":
        if model.spp_levels is None:
            return model.pooled_dim
        return model.feature_channels * _POOL5_LEVEL * _POOL5_LEVEL
    if layer == "spp":
        return model.pooled_dim
    return model.fc_dim


def estimate_feature_bytes(
    model: nn.Module, layer: str, view: str, n: int, *, size: int = 224, crop: int = 224
) -> int:
    """Disk size of ``features.npy`` for ``n`` images: ``n * D * 4`` bytes (float32).

    Raises:
        TypeError / ValueError: as :func:`feature_dim`, or ``n < 0``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return n * feature_dim(model, layer, view, size=size, crop=crop) * 4
