"""Small helpers the demo's modules share: JSON files, CPU count, percent and finite values."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

Log = Callable[[str], None]

# The demo's JSON files (settings, stage records, metrics): one space of indent, no NaN.
JSON_OPTIONS: dict[str, Any] = {"indent": 1, "allow_nan": False}


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * float(value)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _settings(config: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``{name: config.name}``: settings another config takes from the demo's unchanged."""
    return {name: getattr(config, name) for name in names}
