"""Where a trunk comes from, written so a checkpoint can rebuild it without pickle.

A trunk *source* is one string, with JSON keyword arguments beside it:

- ``"package.module:factory"``: an import path; ``factory(**args)`` returns the trunk.
  Importing runs that module's code, so a source read from a file (a checkpoint, a saved
  detector) is imported only when the user names the same path again:
  ``trust_model_code=True`` in Python (like Hugging Face's ``trust_remote_code``), or
  ``--model package.module:factory`` on the command line. Otherwise the load stops with
  :class:`UntrustedModelCodeError`, which says what the file asks to import.
- ``"trunk/NAME"``: a factory registered with :func:`register_trunk` (already imported
  code: no trust needed).
- ``"timm/NAME"``: a timm model (optional) as a feature extractor: ``features_only=True``
  and one stage kept, the stride-16 one unless ``feature_index`` says otherwise.
  ``pretrained`` weights come from timm's local caches only; nothing downloads.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from sppnet.errors import UserError

__all__ = [
    "TRUNK_PREFIX",
    "UntrustedModelCodeError",
    "build_trunk",
    "check_trunk_args",
    "import_timm",
    "is_import_path",
    "is_trunk_source",
    "list_trunks",
    "register_trunk",
    "timm_features_trunk",
]

TRUNK_PREFIX = "trunk/"
# timm.create_model arguments that a recorded trunk_args must not carry: they load files or
# weights, or pick the features_only stages that feature_index sets
_TIMM_RESERVED = frozenset({"features_only", "out_indices", "feature_cls", "pretrained"})
_TIMM_FILE_WORDS = re.compile(r"pretrained|checkpoint|path|file|url|cache|hub", re.IGNORECASE)
_TIMM_PREFIX = "timm/"
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_TRUNKS: dict[str, Callable[..., nn.Module]] = {}


class UntrustedModelCodeError(UserError):
    """A file names a module to import and the user did not name it again.

    Args:
        source: the import path the file asks for.
        where: the file (or object) that names it.
    """

    def __init__(self, source: str, where: str) -> None:
        self.source = source
        super().__init__(
            f"{where} asks to import {source!r}: building its trunk runs that module's code, "
            "and sppnet never imports code named only by a file's contents; if you trust "
            f"it, name it again: --model {source} on the command line, or "
            "trust_model_code=True in Python"
        )


def is_import_path(source: object) -> bool:
    """True for ``"package.module:factory"``."""
    return isinstance(source, str) and _IMPORT_PATH.match(source) is not None


def is_trunk_source(source: object) -> bool:
    """True for an import path, ``"timm/NAME"`` or ``"trunk/NAME"``."""
    return is_import_path(source) or (
        isinstance(source, str) and source.startswith((_TIMM_PREFIX, TRUNK_PREFIX))
    )


def register_trunk(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a trunk factory as ``"trunk/NAME"``.

    Args:
        name: the name after ``trunk/``.

    Returns:
        The decorator (it returns the factory unchanged).

    Raises:
        ValueError: an empty name, one with ``/`` or ``:``, or one already registered.
    """
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise ValueError(f"trunk name must be a non-empty str without '/' or ':', got {name!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _TRUNKS:
            raise ValueError(f"trunk {name!r} is already registered")
        _TRUNKS[name] = fn
        return fn

    return decorator


def list_trunks() -> list[str]:
    """The registered trunk sources, ``["trunk/NAME", ...]``, sorted."""
    return sorted(TRUNK_PREFIX + n for n in _TRUNKS)


def check_trunk_args(args: object) -> dict[str, Any]:
    """The trunk's keyword arguments: a dict with str keys that JSON can hold.

    Raises:
        TypeError: not a dict of str keys, or values JSON cannot write.
    """
    if args is None:
        return {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise TypeError(f"trunk_args must be a dict with str keys, got {args!r}")
    try:
        return json.loads(json.dumps(args, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"trunk_args must be JSON-ready (a checkpoint records them): {err}"
        ) from None


def _trusted(source: str, trust: bool | str) -> bool:
    return trust is True or (isinstance(trust, str) and trust == source)


def _import_factory(source: str) -> Callable[..., Any]:
    module_name, attr = source.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import {module_name!r} for trunk {source!r}: {err}") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{source!r}: {module_name} has no callable {attr!r}")
    return factory


def build_trunk(
    source: str,
    args: dict[str, Any] | None = None,
    *,
    trust_model_code: bool | str = False,
    pretrained: bool = False,
    feature_index: int | None = None,
    where: str = "the model description",
) -> nn.Module:
    """Build the trunk a source names (module docstring).

    Args:
        source: ``"package.module:factory"``, ``"trunk/NAME"`` or ``"timm/NAME"``.
        args: JSON keyword arguments of the factory.
        trust_model_code: True, or the same import path, allows importing ``source``.
        pretrained: timm only: ImageNet weights from timm's local cache.
        feature_index: timm only: which ``features_only`` stage (None: stride 16).
        where: what names ``source``, for the untrusted-code error.

    Returns:
        The trunk module.

    Raises:
        UntrustedModelCodeError: an import path not trusted.
        ImportError: the module (or timm) cannot be imported; the message says why.
        ValueError: an unknown name, a factory that does not return a module, or
            ``pretrained`` / ``feature_index`` for a source other than timm.
    """
    kwargs = check_trunk_args(args)
    if not isinstance(source, str) or not is_trunk_source(source):
        raise ValueError(
            f"trunk source must be 'package.module:factory', 'timm/NAME' or 'trunk/NAME', "
            f"got {source!r}"
        )
    if source.startswith(_TIMM_PREFIX):
        create = import_timm().create_model
        return timm_features_trunk(
            create, source[len(_TIMM_PREFIX) :], feature_index=feature_index,
            pretrained=pretrained, **kwargs,
        )  # fmt: skip
    if pretrained or feature_index is not None:
        raise ValueError(
            f"pretrained and feature_index are for timm trunks; {source!r} takes its own "
            "arguments (trunk_args)"
        )
    if source.startswith(TRUNK_PREFIX):
        name = source[len(TRUNK_PREFIX) :]
        if name not in _TRUNKS:
            known = ", ".join(list_trunks()) or "none registered"
            raise ValueError(f"unknown trunk {source!r}; registered trunks: {known}")
        factory: Callable[..., Any] = _TRUNKS[name]
    else:
        if not _trusted(source, trust_model_code):
            raise UntrustedModelCodeError(source, where)
        factory = _import_factory(source)
    trunk = factory(**kwargs)
    if not isinstance(trunk, nn.Module):
        raise ValueError(f"{source!r} must return an nn.Module, got {type(trunk).__name__}")
    return trunk


# --------------------------------------------------------------------------------- timm
def import_timm() -> Any:
    """``import timm``, or an ImportError saying exactly why it does not import.

    Raises:
        ImportError: timm is not installed (the message names the extra), or it is and
            does not import (the message carries the failing import, typically its
            torchvision dependency built for another torch).
    """
    try:
        return importlib.import_module("timm")
    except ModuleNotFoundError as err:
        if err.name == "timm":
            raise ImportError(
                "timm trunks need timm, which is not installed: pip install 'sppnet[timm]' "
                "(timm also needs a torchvision built for this torch)"
            ) from err
        raise ImportError(
            f"timm is installed but does not import: its dependency {err.name!r} is missing "
            f"({err}); install a torchvision built for this torch"
        ) from err
    except Exception as err:  # e.g. torchvision's compiled ops built for another torch
        raise ImportError(
            f"timm is installed but does not import: {type(err).__name__}: {err} "
            "(timm imports torchvision, which must be built for the installed torch, e.g. "
            "a CPU torchvision for a CPU torch)"
        ) from err


def _timm_cached_weights(timm: Any, name: str) -> Path:
    """The local file of a timm model's pretrained weights, never downloading."""
    cfg = timm.models.get_pretrained_cfg(name)
    places: list[str] = []
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = hub_id.split("@")[0]
        for file in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, file)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        places.append(f"the Hugging Face cache (repo {repo}: model.safetensors)")
    url = getattr(cfg, "url", None) if cfg is not None else None
    if url:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if path.is_file():
            return path
        places.append(str(path))
    raise FileNotFoundError(
        f"no local pretrained weights for timm model {name!r}; sppnet never downloads: put "
        f"them at {' or '.join(places) or 'a path timm knows (its model has none)'} "
        "(e.g. run timm.create_model(name, pretrained=True) once where there is network)"
    )


def timm_features_trunk(
    create: Callable[..., nn.Module],
    name: str,
    *,
    feature_index: int | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """A timm model as a one-map trunk: ``features_only=True`` with one stage kept.

    Args:
        create: ``timm.create_model`` (or a stand-in with its ``features_only`` interface:
            a module with ``feature_info.channels()`` and ``feature_info.reduction()``).
        name: the timm model name.
        feature_index: the stage (an index into ``feature_info``); None takes the stage
            of reduction 16, the paper's conv5 stride.
        pretrained: weights from timm's local cache (an error naming where they must be
            if they are not there).
        **kwargs: more ``create`` arguments.

    Returns:
        The module, returning a list holding the one chosen map.

    Raises:
        ValueError: no stride-16 stage (the message lists the reductions), an index out
            of range, or ``kwargs`` that would load a file or weights (``checkpoint_path``,
            ``pretrained_cfg``, ...): a checkpoint's arguments must not make timm read files.
        FileNotFoundError: ``pretrained`` and no cached weights.
    """
    loading = sorted(k for k in kwargs if k in _TIMM_RESERVED or _TIMM_FILE_WORDS.search(k))
    if loading:
        raise ValueError(
            f"arguments {loading} of timm/{name} would load files or weights or change the "
            "features_only stage; weights come only from pretrained=True (timm's local "
            "cache) and the stage from feature_index"
        )
    probe = create(name, features_only=True, pretrained=False, **kwargs)
    info = probe.feature_info
    reductions, channels = list(info.reduction()), list(info.channels())
    if feature_index is None:
        if 16 not in reductions:
            raise ValueError(
                f"timm/{name} has no stride-16 stage (reductions {reductions}, channels "
                f"{channels}); choose one with --feature-index / feature_index"
            )
        feature_index = reductions.index(16)
    if isinstance(feature_index, bool) or not isinstance(feature_index, int):
        raise TypeError(f"feature_index must be an int, got {feature_index!r}")
    if not 0 <= feature_index < len(reductions):
        raise ValueError(
            f"feature_index must be in 0..{len(reductions) - 1} for timm/{name} "
            f"(reductions {reductions}), got {feature_index}"
        )
    extra: dict[str, Any] = {}
    if pretrained:
        weights = _timm_cached_weights(import_timm(), name)
        extra = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
    return create(name, features_only=True, out_indices=(feature_index,), **extra, **kwargs)
