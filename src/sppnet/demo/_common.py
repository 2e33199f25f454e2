"""Small helpers the demo's modules share: JSON files, CPU count, percent and finite values."""

from __future__ import annotations

import math
import os
import platform
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


def cpu_name() -> str:
    """The CPU's model name and the instruction set torch's kernels use here.

    Convolutions and matrix products add in an order that depends on the CPU's vector
    instructions, so two machines of different CPUs agree on the demo's numbers only to
    the last digits (and detection APs, through ranks and thresholds, to about a point).
    """
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:  # not Linux
        pass
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


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
