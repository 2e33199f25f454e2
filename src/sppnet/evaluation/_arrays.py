"""One conversion for every metric: a ``Tensor``, an ``ndarray`` or a (nested) list becomes an
``ndarray``, so ``voc_ap``, ``voc_detection_map`` and the classification metrics take all three
alike (what most evaluation code passes is numpy)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | list | tuple


def as_array(values: object, name: str, shape_hint: str) -> np.ndarray:
    """``values`` as an ndarray (CPU, detached; float16/bfloat16 tensors become float32).

    Args:
        values: a ``Tensor``, an ``ndarray``, or a list / tuple (nested for 2-D).
        name: the argument's name in error messages.
        shape_hint: the expected shape, e.g. ``"[N, K]"``, for error messages.

    Raises:
        TypeError: anything else (a string, a scalar, a dict), or a list of non-numbers.
        ValueError: a ragged list (rows of different lengths).
    """
    if isinstance(values, Tensor):
        x = values.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            x = x.float()
        return x.numpy()
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (list, tuple)):
        ragged = f"{name} must be a rectangular {shape_hint} list, got rows of different lengths"
        try:
            arr = np.asarray(values)
        except ValueError:
            raise ValueError(ragged) from None
        if arr.dtype == object:
            raise ValueError(ragged)
        if arr.size and arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        return arr
    raise TypeError(
        f"{name} must be a Tensor, ndarray or list {shape_hint}, got {type(values).__name__}"
    )
