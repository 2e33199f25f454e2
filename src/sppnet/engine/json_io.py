"""The runs' JSON files: one writer (atomic: a crash never leaves half a file) and one
reader (a damaged file is named, with how to fix it, instead of a parser's traceback)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sppnet._atomic import atomic_write_json
from sppnet.engine.safe_load import load_json_file

__all__ = ["read_json", "write_json"]


def write_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1, allow_nan: bool = False
) -> Path:
    """Write ``obj`` as JSON (UTF-8, a final newline) to ``path`` atomically.

    Args:
        path: the file to write.
        obj: JSON-serialisable data.
        indent: ``json.dumps`` indentation; None for one line.
        allow_nan: allow NaN and infinity (not strict JSON).

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written).
        ValueError: a NaN or infinity with ``allow_nan=False`` (nothing is written).
    """
    atomic_write_json(path, obj, indent=indent, allow_nan=allow_nan)
    return Path(path)


def read_json(path: str | os.PathLike[str], *, fix: str | None = None) -> Any:
    """The JSON value in ``path``.

    Args:
        path: the file to read.
        fix: how to repair a damaged file, added to the error message.

    Returns:
        The parsed value.

    Raises:
        FileNotFoundError: no such file.
        DamagedFileError: not valid UTF-8 JSON (the position is given).
    """
    return load_json_file(path, fix=fix)
