"""Argument checks the detection stages share: the message names the argument,
what was expected and what came."""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["check_feature_rows", "check_positive_finite"]


def check_feature_rows(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is ``Tensor[N, D]`` with ``N >= 1``."""
    if not isinstance(value, Tensor) or value.dim() != 2 or value.shape[0] == 0:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name} must be Tensor[N, D] with N >= 1, got {got}")


def check_positive_finite(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number ``> 0``."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
