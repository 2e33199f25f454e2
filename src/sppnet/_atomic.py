"""Atomic file writes shared by every module that writes files (data, detection, engine, cli).

A temporary file in the destination's folder, flushed to disk (``fsync``), then
``os.replace``: a reader, or a run killed at any moment, sees the old file or the new one,
never half of one; and after a power cut the renamed file holds its data, not zeros (without
the ``fsync`` a file system may commit the rename before the data).

:func:`atomic_path` is the one place that does it; the writers of bytes, text, JSON, ``.npy``
arrays and matplotlib figures are built on it, and a writer that needs a file name (a
memory-mapped array, ``onnx.save_model``, a hard link) uses it directly.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_folder",
    "atomic_link_or_copy",
    "atomic_path",
    "atomic_save_figure",
    "atomic_save_npy",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_file",
    "new_write_id",
    "publish_folder",
    "staging_folder",
]


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a written file's data to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    The parent folder is created if needed. The temporary file exists (empty) when the
    block starts; a block that raises leaves ``path`` untouched and the temporary removed.
    A full disk (``ENOSPC``, a writer's "No space left on device") becomes a
    :class:`~sppnet.errors.DiskFullError` naming ``path`` and the free space.

    Args:
        path: the destination.
        suffix: ending of the temporary name (``".npy"`` for writers that append it).

    Yields:
        The temporary path to write.
    """
    from sppnet.errors import DiskFullError, is_disk_full

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise _naming(err, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path) from err
        if isinstance(err, OSError) and err.filename in (name, str(tmp)):
            raise _naming(err, path) from None
        raise


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` about ``path`` itself: the hidden temporary file is no name a user can act
    on (``os.replace`` onto a folder, a folder that cannot be written into)."""
    if err.errno is None:
        return err
    return type(err)(err.errno, err.strerror or str(err), str(path))


@contextmanager
def atomic_folder(path: str | os.PathLike[str], names: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty temporary folder for the files ``names``; on success they appear at
    ``path`` together: the temporary folder, its files flushed to disk, is renamed onto
    ``path`` whole (an earlier folder of the same files is replaced).

    A reader, or a run killed at any moment, sees the old set of files or the new one,
    never one file of each. Where ``path`` also holds other files (``save_detector`` into
    a folder of the user's), those are kept: the files are then renamed in one by one, and
    the id the writers record in each file (see :func:`new_write_id`) lets readers refuse a
    mixed set.

    Args:
        path: the folder to write.
        names: the files the block writes into the yielded folder.

    Yields:
        The temporary folder (beside ``path``).

    Raises:
        sppnet.errors.DiskFullError: the disk filled up (nothing at ``path`` changed).
    """
    import shutil

    from sppnet.errors import DiskFullError, is_disk_full

    path = Path(path)
    parent = path if _holds_others(path, names) else path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        publish_folder(tmp, path, names)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, DiskFullError) and Path(err.path).parent == tmp:
            raise DiskFullError(path / Path(err.path).name) from err  # the file's final name
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path) from err
        raise


def _holds_others(path: Path, names: tuple[str, ...]) -> bool:
    """Whether the folder ``path`` holds visible entries other than ``names``."""
    return path.is_dir() and any(
        p.name not in names and not p.name.startswith(".") for p in path.iterdir()
    )


def staging_folder(path: str | os.PathLike[str], names: tuple[str, ...]) -> Path:
    """The fixed hidden folder where a resumable multi-file output of ``path`` is built
    before :func:`publish_folder` (beside ``path``, or inside it where it holds other
    files); the same on every call and every process, so a rerun finds it."""
    path = Path(path)
    return (
        path / ".partial" if _holds_others(path, names) else path.parent / f".{path.name}.partial"
    )


def publish_folder(tmp: Path, path: Path, names: tuple[str, ...]) -> None:
    """Flush the files ``names`` of the folder ``tmp`` to disk and put them at ``path``
    together: ``tmp`` renamed onto ``path`` whole, or (where ``path`` holds other files)
    the files renamed in one by one and ``tmp`` removed. Files of ``names`` that ``tmp``
    lacks are left out (an optional file)."""
    import shutil

    present = [name for name in names if (tmp / name).exists()]
    for name in present:
        fsync_file(tmp / name)
    if _holds_others(path, names):
        for name in present:
            os.replace(tmp / name, path / name)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        _swap_in(tmp, path)


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename the folder ``tmp`` onto ``path``, moving an earlier ``path`` aside first (a
    folder cannot be renamed over a non-empty one) and removing it after."""
    import shutil

    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def new_write_id() -> str:
    """A fresh id for the files of one multi-file write; each file records it, and readers
    check that every file of the set carries the same one."""
    import uuid

    return uuid.uuid4().hex


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating the parent folder if needed."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Hard-link ``src`` to ``dst`` (replacing it atomically), copying when links fail
    (another file system, or links not supported)."""
    import shutil

    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, allow_nan: bool = True
) -> None:
    """Write ``obj`` as JSON (UTF-8, a final newline) to ``path`` atomically.

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written).
        ValueError: a NaN or infinity with ``allow_nan=False`` (nothing is written).
    """
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: Any) -> None:
    """Save ``array`` in ``.npy`` format to ``path`` atomically (never pickled)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asanyarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_figure(path: str | os.PathLike[str], fig: Any, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically.

    Args:
        path: the destination.
        fig: a ``matplotlib.figure.Figure``.
        **savefig_kwargs: passed to ``fig.savefig`` (``dpi``, ...).

    Returns:
        ``Path(path)``.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, **{"format": "png", **savefig_kwargs})
    out = Path(path)
    atomic_write_bytes(out, buffer.getvalue())
    return out
