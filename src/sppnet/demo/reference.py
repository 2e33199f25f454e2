"""The demo's reference numbers: what a fresh clone must reproduce.

``sppnet demo`` writes every number it measures to ``metrics.json``. Some of them are
results (errors, APs, losses, counts) that the same seed, settings, thread count, machine
class and package versions give to the last digit; the rest are wall-clock timings and
paths, which vary. :func:`reproducible_results` keeps the first kind, and
:func:`compare_results` lists where a run's results and a recorded reference differ.

The references for the demo's two settings live in the repository under
``docs/reference/`` (``demo_quick.json``, ``demo_full.json``), recorded with the package
versions of ``constraints.txt``; ``sppnet demo --reference FILE`` compares a run with one,
and ``sppnet demo --record-reference FILE`` writes a new one. A reference holds only for the
conditions it records (seed, settings, thread count, the full configuration), on the machine
class it was recorded on: another CPU family may round differently.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sppnet.errors import DamagedFileError, UserError

__all__ = [
    "REFERENCE_CONDITIONS",
    "check_conditions",
    "compare_results",
    "demo_conditions",
    "read_reference",
    "reproducible_results",
]

# Keys whose values are not reproducible results: wall-clock times, speed ratios built on
# them (throughput), where files were written, and the pictures' file names.
_VARYING_KEYS = frozenset(
    {
        "timing",
        "spp_timing",
        "speedup",
        "train_seconds",
        "seconds",
        "stage_seconds",
        "total_seconds",
        "detector",
        "pictures",
        "reused_stages",
        "images_per_s",
    }
)

# What must be equal between a run and a reference before their numbers can be compared.
REFERENCE_CONDITIONS = ("seed", "settings", "threads", "config")


def reproducible_results(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a demo's ``metrics.json`` that a rerun must reproduce exactly.

    Args:
        metrics: the dict ``run_demo`` returns (or ``metrics.json`` read back).

    Returns:
        A copy without the keys that hold timings, speed ratios, paths or pictures.
    """
    return _without_varying(metrics)


def _without_varying(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_varying(v) for k, v in value.items() if k not in _VARYING_KEYS}
    if isinstance(value, list):
        return [_without_varying(v) for v in value]
    return value


def compare_results(
    measured: Mapping[str, Any], reference: Mapping[str, Any], *, rel_tol: float = 1e-9
) -> list[str]:
    """Where a demo run's results differ from a recorded reference.

    Args:
        measured: a run's metrics (``metrics.json``).
        reference: the recorded reference (the same format; timings are ignored in both).
        rel_tol: relative tolerance for floats (the default asks for the same digits).

    Returns:
        One line per difference, ``path: measured X, reference Y``, conditions first
        (seed, settings, threads, config: numbers from other conditions are not
        comparable); an empty list when the results are the same.
    """
    for key in REFERENCE_CONDITIONS:
        if measured.get(key) != reference.get(key):
            return [
                f"{key}: this run has {measured.get(key)!r}, the reference was recorded with "
                f"{reference.get(key)!r} (run the demo with the reference's settings)"
            ]
    ours = dict(_leaves(reproducible_results(measured)))
    theirs = dict(_leaves(reproducible_results(reference)))
    lines = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path, "(missing)"), theirs.get(path, "(missing)")
        if not _same(a, b, rel_tol):
            lines.append(f"{path}: measured {a!r}, reference {b!r}")
    return lines


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path or "/", value


def _same(a: Any, b: Any, rel_tol: float) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)
    return a == b


def demo_conditions(seed: int, quick: bool, from_scratch: bool) -> dict[str, Any]:
    """The conditions a ``sppnet demo`` run with these options records, known before it runs.

    Args:
        seed: the run's seed.
        quick: the quick settings.
        from_scratch: the paper's ZF-5 from random weights.

    Returns:
        ``{"seed", "settings", "threads", "config"}`` as ``metrics.json`` will hold them.
    """
    from sppnet.demo._common import _usable_cpus
    from sppnet.demo.pipeline import _resolve_config

    config, label = _resolve_config(seed, quick, from_scratch, None)
    return {"seed": seed, "settings": label, "threads": _usable_cpus(), "config": config.to_dict()}


def read_reference(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a recorded reference (a JSON object with the conditions and the results).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: it is not a JSON object holding every condition.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference file {path} does not exist")
    try:
        reference = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFileError(
            path, str(exc), "give a reference written by --record-reference"
        ) from exc
    missing = [
        key
        for key in REFERENCE_CONDITIONS
        if not isinstance(reference, dict) or key not in reference
    ]
    if missing:
        raise DamagedFileError(
            path, f"no {', '.join(missing)}", "give a reference written by --record-reference"
        )
    return reference


def check_conditions(
    reference: Mapping[str, Any], conditions: Mapping[str, Any], where: str
) -> None:
    """Refuse to compare a run with a reference recorded under other conditions.

    Args:
        reference: the recorded reference.
        conditions: the run's, from :func:`demo_conditions`.
        where: the reference's file name, for the message.

    Raises:
        UserError: a condition differs; the message names it and both values.
    """
    for key in REFERENCE_CONDITIONS:
        if reference.get(key) != conditions.get(key):
            ours, theirs = conditions.get(key), reference.get(key)
            if key == "config":
                changed = sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k))
                ours, theirs = (
                    {k: ours.get(k) for k in changed},
                    {k: theirs.get(k) for k in changed},
                )
            raise UserError(
                f"{where} was recorded with {key} {theirs!r}, this run has {ours!r}: its "
                "numbers are not comparable (run with the reference's options, or record "
                "a new one with --record-reference)"
            )
