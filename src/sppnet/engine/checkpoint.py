"""Checkpoints of classification runs: written atomically, read back for resuming and testing.

A run directory holds its checkpoints under ``checkpoints/``::

    RUN/checkpoints/epoch_0003/model.safetensors   the model's state_dict (safetensors)
    RUN/checkpoints/epoch_0003/optimizer.pt        torch.save(optimizer.state_dict())
    RUN/checkpoints/epoch_0003/state.json          config, model kwargs, classes, epoch,
                                                   lr, schedule, history, rng scheme
    RUN/checkpoints/latest                         text: "epoch_0003"
    RUN/checkpoints/best                           text: the epoch with the best val error

Why this layout: an epoch directory is written under a temporary name (``.tmp-...``) and
renamed into place in one step, and the ``latest``/``best`` pointers are replaced with
``os.replace``, so a run killed at any moment leaves every visible checkpoint complete
(renames are atomic on POSIX and Windows within one file system). Epoch directories are
never modified once visible; older ones are pruned after the pointer moves.

``optimizer.pt`` holds only tensors, numbers and lists, so it loads with
``torch.load(weights_only=True)`` (no arbitrary pickles are executed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from sppnet._atomic import atomic_write_text, fsync_file
from sppnet.errors import DamagedFileError, DiskFullError, is_disk_full

__all__ = [
    "CHECKPOINT_SUBDIR",
    "find_checkpoint",
    "load_checkpoint",
    "load_classifier",
    "save_checkpoint",
]

CHECKPOINT_SUBDIR = "checkpoints"
_MODEL_FILE = "model.safetensors"
_OPTIMIZER_FILE = "optimizer.pt"
_STATE_FILE = "state.json"
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def _epoch_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def _write_pointer(directory: Path, name: str, target: str) -> None:
    """Atomically point ``directory/name`` at ``target`` (a sibling directory's name)."""
    atomic_write_text(directory / name, target + "\n")


def _read_pointer(directory: Path, name: str) -> Path | None:
    pointer = directory / name
    if not pointer.is_file():
        return None
    target = directory / pointer.read_text(encoding="utf-8").strip()
    return target if (target / _STATE_FILE).is_file() else None


def _epoch_dirs(directory: Path) -> list[tuple[int, Path]]:
    """Complete epoch directories (``state.json`` present), oldest first."""
    found = []
    if directory.is_dir():
        for child in directory.iterdir():
            match = _EPOCH_DIR.match(child.name)
            if match and (child / _STATE_FILE).is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: Mapping[str, Any],
    is_best: bool = False,
    keep: int = 2,
) -> Path:
    """Write one epoch's checkpoint atomically and move the ``latest`` pointer to it.

    Args:
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints/``.
        model: the model (unwrapped, not DDP); its ``state_dict()`` goes to
            ``model.safetensors`` (tensors made contiguous: conv weights are channels_last).
        optimizer: its ``state_dict()`` goes to ``optimizer.pt``; None writes no file.
        state: JSON-serialisable progress; must hold ``"epoch"`` (int, epochs completed) and
            ``"model"`` (the :func:`~sppnet.models.create_model` keyword arguments plus
            ``"name"``).
        is_best: also move the ``best`` pointer to this checkpoint.
        keep: how many most recent epoch directories to keep (the ``best`` one is always
            kept as well).

    Returns:
        The new checkpoint directory, e.g. ``run_dir/checkpoints/epoch_0003``.

    Raises:
        ValueError: ``state`` lacks ``"epoch"``/``"model"``, or ``keep < 1``.
        TypeError: ``state`` is not JSON-serialisable.
    """
    if "epoch" not in state or "model" not in state:
        raise ValueError(f"state must hold 'epoch' and 'model', got keys {sorted(state)}")
    if isinstance(state["epoch"], bool) or not isinstance(state["epoch"], int):
        raise TypeError(f"state['epoch'] must be an int, got {state['epoch']!r}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    text = json.dumps(state, indent=2)  # fails before anything is written
    directory = Path(run_dir) / CHECKPOINT_SUBDIR
    directory.mkdir(parents=True, exist_ok=True)
    name = _epoch_name(state["epoch"])
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    _write_files(tmp, directory / name, model, optimizer, text)

    final = directory / name
    if final.exists():
        # Re-running an epoch after a resume from an older checkpoint: move the stale copy
        # aside first (a directory cannot be renamed over a non-empty one).
        stale = directory / f".stale-{name}-{os.getpid()}"
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _write_pointer(directory, "latest", name)
    if is_best:
        _write_pointer(directory, "best", name)

    # Leftovers of runs killed mid-write (only one process writes a run's checkpoints).
    for child in directory.iterdir():
        if child.is_dir() and child.name.startswith((".tmp-", ".stale-")):
            shutil.rmtree(child, ignore_errors=True)
    best = _read_pointer(directory, "best")
    epochs = _epoch_dirs(directory)
    for _, path in epochs[:-keep]:
        if path != final and (best is None or path != best):
            shutil.rmtree(path, ignore_errors=True)
    return final


def _write_files(tmp: Path, final: Path, model: nn.Module, optimizer: Any, state_text: str) -> None:
    """The checkpoint's files into the hidden folder ``tmp``, flushed to disk; on failure
    ``tmp`` is removed (the checkpoints before stay as they were) and a full disk is a
    :class:`~sppnet.errors.DiskFullError` naming the file."""
    current = tmp / _MODEL_FILE
    try:
        tmp.mkdir()
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(current), metadata={"format": "pt"})
        if optimizer is not None:
            current = tmp / _OPTIMIZER_FILE
            torch.save(optimizer.state_dict(), current)
        current = tmp / _STATE_FILE
        current.write_text(state_text, encoding="utf-8")
        for current in tmp.iterdir():  # on disk before the directory becomes visible
            fsync_file(current)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err):
            raise DiskFullError(
                final / current.name, "run again with --resume to continue from the last checkpoint"
            ) from err
        raise


def find_checkpoint(path: str | os.PathLike[str], which: str = "latest") -> Path | None:
    """Resolve a run directory, its ``checkpoints/`` or an epoch directory to a checkpoint.

    Args:
        path: a run directory (``RUN``), ``RUN/checkpoints`` or ``RUN/checkpoints/epoch_N``.
        which: ``"latest"`` or ``"best"`` (lowest val error); ignored for an epoch directory.
            Without a pointer file, ``"latest"`` falls back to the highest complete epoch
            and ``"best"`` to ``"latest"``.

    Returns:
        The checkpoint directory, or None if there is none yet.

    Raises:
        ValueError: ``which`` is not ``"latest"`` or ``"best"``.
    """
    if which not in ("latest", "best"):
        raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
    path = Path(path)
    if (path / _STATE_FILE).is_file():
        return path
    directory = path / CHECKPOINT_SUBDIR if (path / CHECKPOINT_SUBDIR).is_dir() else path
    found = _read_pointer(directory, which)
    if found is None and which == "best":
        found = _read_pointer(directory, "latest")
    if found is None:
        epochs = _epoch_dirs(directory)
        found = epochs[-1][1] if epochs else None
    return found


def _damaged_fix(found: Path) -> str:
    """What to do about a damaged file of the checkpoint ``found``."""
    return (
        f"the checkpoint is damaged: delete {found} to fall back to an older epoch "
        "(checkpoints/epoch_N), or train again"
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    which: str = "latest",
    *,
    map_location: str = "cpu",
    optimizer: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Any] | None, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: see :func:`find_checkpoint`.
        which: ``"latest"`` or ``"best"``.
        map_location: device for the loaded tensors.
        optimizer: also read ``optimizer.pt`` (resuming); testing passes False and never
            opens it.

    Returns:
        ``(model_state_dict, optimizer_state_dict or None, state)``; ``state`` is the parsed
        ``state.json`` plus ``"path"`` (the checkpoint directory, a str).

    Raises:
        FileNotFoundError: no checkpoint under ``path``.
        sppnet.errors.DamagedFileError: a truncated or corrupt ``model.safetensors``,
            ``optimizer.pt`` (or one holding more than tensors: refused) or ``state.json``,
            named with "the checkpoint is damaged".
    """
    from sppnet.engine.safe_load import (
        load_json_file,
        load_safetensors_file,
        load_torch_state_file,
    )

    found = find_checkpoint(path, which)
    if found is None:
        raise FileNotFoundError(f"no checkpoint found under {os.fspath(path)!r}")
    fix = _damaged_fix(found)
    state = load_json_file(found / _STATE_FILE, fix=fix)
    if not isinstance(state, dict):
        raise DamagedFileError(found / _STATE_FILE, "not a JSON object", fix)
    model_state = load_safetensors_file(found / _MODEL_FILE, device=map_location, fix=fix)
    optimizer_state = None
    if optimizer and (found / _OPTIMIZER_FILE).is_file():
        optimizer_file = found / _OPTIMIZER_FILE
        optimizer_state = load_torch_state_file(optimizer_file, map_location=map_location, fix=fix)
    state["path"] = str(found)
    return model_state, optimizer_state, state


def load_classifier(
    checkpoint_dir: str | os.PathLike[str],
    which: str = "latest",
    *,
    map_location: str = "cpu",
    trust_model_code: bool | str = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained classifier from its checkpoint, ready for testing.

    Args:
        checkpoint_dir: a run directory, its ``checkpoints/`` or one epoch directory.
        which: ``"latest"`` or ``"best"`` (lowest val top-1 error) when given a run directory.
        map_location: device to load onto.
        trust_model_code: a model whose trunk is an import path (``package.module:factory``,
            :func:`~sppnet.models.from_trunk`) is built only when this is True or that same
            path: the checkpoint alone never makes sppnet import code.

    Returns:
        ``(model, meta)``: the :class:`~sppnet.models.SPPNet` in eval mode, and a dict with
        ``"classes"`` (list[str], index = label), ``"mean"`` (the constant subtracted from
        0..255 pixels), ``"crop"`` and ``"shorter"`` (training crop and resize sizes; a
        run trained on whole images, the ``variable`` mode, has ``shorter == crop``),
        ``"model"`` (create_model kwargs incl. ``"name"``), ``"epoch"``, ``"config"``,
        ``"history"``, ``"best_val_error"`` and ``"path"``.

    Raises:
        FileNotFoundError: no checkpoint under ``checkpoint_dir``.
        ValueError: ``state.json`` lacks the model description.
        sppnet.errors.DamagedFileError: a damaged checkpoint file (named); the optimizer
            state is never read.
        sppnet.models.UntrustedModelCodeError: the model's trunk is an import path not
            trusted (the message names ``state.json`` and the path).
    """
    from sppnet.models import SPPNet, UntrustedModelCodeError, create_model

    model_state, _, state = load_checkpoint(
        checkpoint_dir, which, map_location=map_location, optimizer=False
    )
    kwargs = dict(state.get("model") or {})
    kwargs.setdefault("fc_layers", 2)  # older checkpoints: fc6 and fc7, always
    missing = [k for k in ("name", *SPPNet.CONFIG_KEYS) if k not in kwargs]
    if missing:
        raise ValueError(f"{state['path']}/state.json: model description lacks {missing}")
    name = kwargs.pop("name")
    if kwargs["spp_levels"] is not None:
        kwargs["spp_levels"] = tuple(kwargs["spp_levels"])
    try:
        model = create_model(name, trust_model_code=trust_model_code, **kwargs)
    except UntrustedModelCodeError as err:
        raise UntrustedModelCodeError(err.source, f"{state['path']}/state.json") from None
    try:
        model.load_state_dict(model_state)
    except RuntimeError as err:
        path = Path(state["path"]) / _MODEL_FILE
        raise DamagedFileError(
            path, f"its tensors do not fit {name}: {err}", _damaged_fix(Path(state["path"]))
        ) from err
    model.to(map_location).eval()
    config = dict(state.get("config") or {})
    # a run trained on whole images (variable mode) saw them at shorter side `crop`
    whole = config.get("size_mode") == "variable"
    meta = {
        "classes": list(state.get("classes") or []),
        "mean": config.get("mean", 128.0),
        "crop": config.get("crop", 224),
        "shorter": config.get("crop", 224) if whole else config.get("shorter", 256),
        "model": {"name": name, **kwargs},
        "epoch": state.get("epoch"),
        "config": config,
        "history": state.get("history", []),
        "best_val_error": state.get("best_val_error"),
        "path": state["path"],
    }
    return model, meta
