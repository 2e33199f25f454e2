"""Helpers shared by the demo tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def json_numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON tree (booleans excluded), with its ``/``-joined path."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_numbers(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_numbers(v, f"{path}/{i}")
