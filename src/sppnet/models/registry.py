"""Named model variants: ``create_model(name, **kwargs)`` and ``list_models()``, timm-style.

A variant is a function returning an :class:`~sppnet.models.spp_net.SPPNet`, registered
under its name with :func:`register_model`; the four networks of Table 1 are registered
here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sppnet.models.spp_net import CONVNET5, OVERFEAT5, OVERFEAT7, ZF5, ArchSpec, SPPNet

__all__ = ["create_model", "list_models", "register_model"]

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
    """Names of the registered models, sorted (``["convnet5", "overfeat5", ...]``)."""
    return sorted(_MODELS)


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    spp_levels: Sequence[int] | None = (6, 3, 2, 1),
    dropout: float = 0.5,
    width: float = 1.0,
    fc_dim: int = 4096,
    spp_mode: str = "max",
) -> SPPNet:
    """Build a registered model by name.

    Args:
        name: one of :func:`list_models`.
        num_classes: outputs of fc8 (1000 for ImageNet, Sec. 3.1).
        spp_levels: pyramid levels, ``(6, 3, 2, 1)`` in the paper (Sec. 3.1.2); None builds
            the "no SPP" baseline (plain pool5 to 6x6, 224x224 inputs only).
        dropout: drop probability after fc6 and fc7 (0.5, Sec. 3.1).
        width: channel multiplier of every conv (1.0 is the paper's network).
        fc_dim: width of fc6 and fc7 (4096 in the paper).
        spp_mode: ``"max"`` (the paper) or ``"avg"``.

    Returns:
        The model, in training mode, randomly initialised.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones), or bad arguments.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](
        num_classes=num_classes,
        spp_levels=spp_levels,
        dropout=dropout,
        width=width,
        fc_dim=fc_dim,
        spp_mode=spp_mode,
    )


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
