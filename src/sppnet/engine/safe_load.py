"""Reading back what the engine wrote: a damaged file is named, never a reader's traceback.

Checkpoints, detectors, stage caches and feature folders are written atomically, but a
disk can still fill, a copy can be cut short and a user can overwrite a file by hand. Each
reader here turns the library's own failure (``SafetensorError: invalid header length``,
numpy's "mmap length is greater than file size", json's "Expecting value: line 1 column
22", torch's ``weights_only`` advice) into a :class:`~sppnet.errors.DamagedFileError` that
names the file and says what to do: "delete it to recompute" for a cache, a fix the
caller gives for a file that cannot be recomputed ("the checkpoint is damaged: ...").

A missing file stays a ``FileNotFoundError`` (the caller says how to make it).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sppnet.errors import DamagedFileError

__all__ = ["load_json_file", "load_npy_file", "load_safetensors_file", "load_torch_state_file"]


def _exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")


def load_safetensors_file(
    path: str | os.PathLike[str], *, device: str = "cpu", fix: str | None = None
) -> dict[str, Tensor]:
    """Load a ``.safetensors`` file.

    Args:
        path: the file.
        device: where the tensors go.
        fix: how to repair a damaged file (default: "delete it to recompute").

    Returns:
        The tensors by name.

    Raises:
        FileNotFoundError: no such file.
        DamagedFileError: truncated, corrupt, or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    _exists(path)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DamagedFileError(path, f"not a readable safetensors file: {err}", fix) from err


def load_torch_state_file(
    path: str | os.PathLike[str], *, map_location: str = "cpu", fix: str | None = None
) -> Any:
    """Load a ``torch.save`` file of tensors, numbers and containers; no pickle code runs.

    Args:
        path: the file (e.g. ``optimizer.pt``).
        map_location: where the tensors go.
        fix: how to repair a damaged or refused file.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: no such file.
        DamagedFileError: truncated or corrupt, or a pickle holding more than tensors and
            plain data (refused: ``weights_only=True``; loading it could run code).
    """
    path = Path(path)
    _exists(path)
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as err:
        detail = "refused: not a torch file of tensors and plain data only, loading could run code"
        raise DamagedFileError(path, detail, fix) from err
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, KeyError) as err:
        raise DamagedFileError(path, f"not a readable torch file: {err}", fix) from err


def load_json_file(path: str | os.PathLike[str], *, fix: str | None = None) -> Any:
    """Parse a JSON file.

    Raises:
        FileNotFoundError: no such file.
        DamagedFileError: not valid UTF-8 JSON (the position is given).
    """
    path = Path(path)
    _exists(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedFileError(path, f"not valid JSON: {err}", fix) from err


def load_npy_file(
    path: str | os.PathLike[str],
    *,
    mmap_mode: str | None = None,
    fix: str | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Load a ``.npy`` array of numbers (object arrays are refused: no pickles).

    Args:
        path: the file.
        mmap_mode: as for ``np.load`` (``"r"``: memory-mapped, read-only).
        fix: how to repair a damaged file.
        finite: also refuse NaN or infinite values (read in chunks, for memory maps).

    Returns:
        The array.

    Raises:
        FileNotFoundError: no such file.
        DamagedFileError: truncated, corrupt, an object array, or (``finite``) a NaN or
            infinity at a named row.
    """
    path = Path(path)
    _exists(path)
    try:
        arr = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DamagedFileError(path, f"not a readable .npy array: {err}", fix) from err
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        kind = type(arr).__name__ if not isinstance(arr, np.ndarray) else f"dtype {arr.dtype}"
        raise DamagedFileError(path, f"expected an array of numbers, got {kind}", fix)
    if finite and arr.dtype.kind == "f":
        flat = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
        for lo in range(0, flat.shape[0], 4096):
            bad = ~np.isfinite(flat[lo : lo + 4096]).all(axis=1)
            if bad.any():
                row = lo + int(np.argmax(bad))
                raise DamagedFileError(path, f"row {row} holds NaN or infinite values", fix)
    return arr
