"""The feature directory: the one module that writes and reads its files.

:func:`sppnet.transfer.features` fills it; ``sppnet svm`` reads it back with
:func:`load_feature_dir`::

    features.npy   float32 [N, D], a .npy file to open with np.load(mmap_mode="r")
    labels.npy     int64 [N] (image folder) or [N, K] in {1, 0, -1} (VOC classification)
    ids.json       N image ids (relative paths for image folders, VOC ids)
    meta.json      layer, view, size, crop, mean, normalize, model, N, D, rows_done, ...
    shards/        under ``torchrun`` only, until rank 0 merges them: ``settings.json`` and
                   each finished batch ``k`` as ``batch_<k>.npz`` (rows, skipped images)

Every file but ``features.npy`` is replaced atomically; ``features.npy`` is a memory-mapped
array filled in place, flushed before ``meta.json`` counts its rows as done. The folder is
built in a hidden staging folder (:func:`work_folder`, where a rerun resumes) and renamed
into place whole once finished (:func:`publish_feature_dir`): a folder at the output path
is always a finished one, never a mix of two extractions.

Shape shorthand: N images, D feature length, K classes, B images of one batch.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sppnet._atomic import (
    atomic_path,
    atomic_save_npy,
    atomic_write_bytes,
    publish_folder,
    staging_folder,
)
from sppnet.engine.json_io import read_json, write_json
from sppnet.engine.safe_load import load_json_file, load_npy_file
from sppnet.errors import DamagedFileError, DiskFullError, is_disk_full

__all__ = [
    "FEATURES_FILE",
    "IDS_FILE",
    "LABELS_FILE",
    "META_FILE",
    "SHARDS_DIR",
    "check_feature_dir",
    "clear_shards",
    "compact_feature_dir",
    "create_feature_dir",
    "has_features",
    "load_feature_dir",
    "open_features",
    "publish_feature_dir",
    "read_meta",
    "read_shard",
    "shard_written",
    "start_shards",
    "work_folder",
    "write_meta",
    "write_shard",
]

FEATURES_FILE = "features.npy"
LABELS_FILE = "labels.npy"
IDS_FILE = "ids.json"
META_FILE = "meta.json"
SHARDS_DIR = "shards"  # under torchrun: each rank's finished batches, until rank 0 merges them
FOLDER_FILES = (FEATURES_FILE, LABELS_FILE, IDS_FILE, META_FILE)
_COMPACT_CHUNK = 4096  # rows copied at a time: features.npy may not fit in memory


# ------------------------------------------------------------------------------ writing
def work_folder(out: Path) -> Path:
    """Where the extraction into ``out`` is built: ``out`` itself when it already holds a
    ``meta.json`` (a finished folder, or an unfinished one of the earlier in-place layout),
    else the hidden staging folder beside it (the same for every process and rerun)."""
    if (out / META_FILE).is_file():
        return out
    return staging_folder(out, FOLDER_FILES)


def publish_feature_dir(work: Path, out: Path) -> None:
    """Put the finished folder ``work`` at ``out`` whole (nothing to do when they are one)."""
    if work != out:
        publish_folder(work, out, FOLDER_FILES)


def read_meta(root: Path) -> dict[str, Any] | None:
    """The folder's ``meta.json``, or None when there is none yet."""
    path = root / META_FILE
    return read_json(path) if path.is_file() else None


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    """Replace ``meta.json`` atomically (after the rows it counts are flushed)."""
    write_json(root / META_FILE, meta, allow_nan=True)


def has_features(root: Path) -> bool:
    """Whether ``features.npy`` exists."""
    return (root / FEATURES_FILE).is_file()


def create_feature_dir(
    root: Path,
    ids: Sequence[str],
    labels: np.ndarray | None,
    meta: dict[str, Any],
) -> None:
    """Start a folder: ids, labels, a zero ``features.npy`` of ``[N, D]`` and, last, the meta.

    Args:
        root: the folder (it exists).
        ids: the ``N`` image ids.
        labels: ``[N]`` or ``[N, K]`` int64, or None for none.
        meta: the run's meta, with ``num_images`` (N) and ``dim`` (D).
    """
    write_json(root / IDS_FILE, list(ids), allow_nan=True)
    if labels is not None:
        atomic_save_npy(root / LABELS_FILE, labels)
    shape = (int(meta["num_images"]), int(meta["dim"]))
    path = root / FEATURES_FILE
    try:
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        _reserve(path)
    except OSError as err:
        path.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise
    write_meta(root, meta)


def _reserve(path: Path) -> None:
    """Allocate a freshly created (sparse) file's blocks now: a full disk is an error here,
    before any work, instead of a crash (SIGBUS) when a memory-mapped row is written."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if is_disk_full(err):
            raise
        # a file system without fallocate: the rows are written as before
    finally:
        os.close(fd)


def check_feature_dir(root: Path, meta: dict[str, Any]) -> None:
    """Before a folder is reused (finished, or resumed), its files must hold what its meta
    says: ``features.npy`` ``[rows, dim]`` readable to its last byte, ``labels.npy`` and
    ``ids.json`` one entry per row. A ``complete`` flag alone does not prove it.

    Args:
        root: the folder.
        meta: its ``meta.json``.

    Raises:
        DamagedFileError: a file missing, truncated, of another shape or length (named,
            with: delete the folder and rerun ``sppnet features``).
    """
    fix = f"delete {root} and rerun `sppnet features` to re-extract"
    n, dim = int(meta["num_images"]), int(meta["dim"])
    kept = n - len({s["index"] for s in meta.get("skipped", [])})
    # finished: the compacted rows; unfinished: all N (or kept, if compaction was cut short)
    allowed = {int(meta.get("rows", kept))} if meta.get("complete") else {n, kept}
    path = root / FEATURES_FILE
    if not path.is_file():
        raise DamagedFileError(path, "missing beside its meta.json", fix)
    features = load_npy_file(path, mmap_mode="r", fix=fix)  # a truncated file fails here
    if features.ndim != 2 or features.shape[1] != dim or features.shape[0] not in allowed:
        expected = " or ".join(f"[{r}, {dim}]" for r in sorted(allowed))
        raise DamagedFileError(path, f"shape {features.shape}, meta.json says {expected}", fix)
    rows = features.shape[0]
    del features
    if (root / LABELS_FILE).is_file() or meta.get("labels_shape"):
        labels = load_npy_file(root / LABELS_FILE, mmap_mode="r", fix=fix)
        if labels.shape[:1] not in {(r,) for r in allowed}:
            raise DamagedFileError(root / LABELS_FILE, f"{labels.shape[0]} rows for {rows}", fix)
    ids = load_json_file(root / IDS_FILE, fix=fix)
    if not isinstance(ids, list) or len(ids) not in allowed:
        got = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise DamagedFileError(root / IDS_FILE, f"{got} ids for {rows} rows", fix)


def open_features(root: Path) -> np.memmap:
    """``features.npy`` memory-mapped for writing rows in place: ``ndarray[N, D]``."""
    return np.load(root / FEATURES_FILE, mmap_mode="r+")


def compact_feature_dir(root: Path, meta: dict[str, Any]) -> None:
    """Drop the skipped images' rows from features, labels and ids; mark the folder complete.

    Each file is compacted only while it still has N rows, so a crash in here is
    finished by the next call.

    Args:
        root: a folder whose ``meta["rows_done"]`` rows are all written.
        meta: its meta; ``"rows"``, ``"complete"`` (and ``"labels_shape"``) are updated in
            place and written.
    """
    n = meta["num_images"]
    bad = sorted({s["index"] for s in meta["skipped"]})
    n_rows = n - len(bad)
    if bad:
        keep = np.setdiff1d(np.arange(n), bad)
        _compact_features(root / FEATURES_FILE, keep, n)
        if (root / LABELS_FILE).is_file():
            label_arr = np.load(root / LABELS_FILE)
            if label_arr.shape[0] == n:
                atomic_save_npy(root / LABELS_FILE, label_arr[keep])
        ids = read_json(root / IDS_FILE)
        if len(ids) == n:
            write_json(root / IDS_FILE, [ids[i] for i in keep], allow_nan=True)
        if meta.get("labels_shape"):
            meta["labels_shape"][0] = n_rows
    meta["rows"] = n_rows
    meta["complete"] = True
    write_meta(root, meta)


def _compact_features(path: Path, keep: np.ndarray, n: int) -> None:
    """Rewrite ``features.npy`` with only the rows ``keep`` (if it still has ``n`` rows)."""
    src = np.load(path, mmap_mode="r")
    if src.shape[0] == n:
        shape = (len(keep), src.shape[1])
        with atomic_path(path, suffix=".npy") as tmp:
            dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            for lo in range(0, len(keep), _COMPACT_CHUNK):
                dst[lo : lo + _COMPACT_CHUNK] = src[keep[lo : lo + _COMPACT_CHUNK]]
            dst.flush()
            del dst
    del src


# ------------------------------------------------------------------------------- shards
def _shard_path(root: Path, k: int) -> Path:
    return root / SHARDS_DIR / f"batch_{k:06d}.npz"


def start_shards(root: Path, settings: dict[str, Any]) -> None:
    """Keep ``shards/`` if it holds batches of the same ``settings``, else start it empty."""
    shards = root / SHARDS_DIR
    stored = None
    if (shards / "settings.json").is_file():
        stored = read_json(shards / "settings.json")
    if stored != settings:  # batches of another run: not ours
        shutil.rmtree(shards, ignore_errors=True)
        shards.mkdir(parents=True)
        write_json(shards / "settings.json", settings, allow_nan=True)


def shard_written(root: Path, k: int) -> bool:
    """Whether batch ``k`` is in ``shards/``."""
    return _shard_path(root, k).is_file()


def write_shard(root: Path, k: int, rows: np.ndarray, skipped: list[dict[str, Any]]) -> None:
    """Write batch ``k`` atomically: ``rows`` float32 ``[B, D]`` and its skipped images
    (``{"index", "file"}`` each)."""
    buf = io.BytesIO()
    np.savez(
        buf,
        rows=rows,
        bad_index=np.array([s["index"] for s in skipped], dtype=np.int64),
        bad_file=np.array([s["file"] for s in skipped], dtype=np.str_),
    )
    atomic_write_bytes(_shard_path(root, k), buf.getvalue())


def read_shard(root: Path, k: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Batch ``k`` as written by :func:`write_shard`: ``(rows [B, D], skipped)``."""
    with np.load(_shard_path(root, k), allow_pickle=False) as part:
        files = part["bad_file"].tolist()
        skipped = [
            {"index": int(index), "file": file}
            for index, file in zip(part["bad_index"].tolist(), files, strict=True)
        ]
        return part["rows"], skipped


def clear_shards(root: Path) -> None:
    """Remove ``shards/`` (merged, or left by an interrupted ``torchrun``)."""
    shutil.rmtree(root / SHARDS_DIR, ignore_errors=True)


# ------------------------------------------------------------------------------ reading
def load_feature_dir(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Open a directory written by ``sppnet features``.

    Args:
        path: a folder with ``features.npy`` (float32 ``[N, D]``), ``labels.npy`` (int64
            ``[N]`` or ``[N, K]``) and ``meta.json``.

    Returns:
        ``(features, labels, meta)``: features memory-mapped read-only, labels in memory.

    Raises:
        FileNotFoundError: a missing file (named).
        sppnet.errors.DamagedFileError: a truncated or corrupt file, an object array, or
            NaN / infinite features (the file and row named).
        ValueError: an unfinished extraction (``meta["complete"]`` false, or
            ``meta["rows_done"] < meta["num_images"]``) or row counts that differ between
            the files.
    """
    root = Path(path)
    for name in (FEATURES_FILE, LABELS_FILE, META_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} not found; write it with `sppnet features`")
    fix = f"re-extract it: delete {root} and rerun `sppnet features`"
    meta = load_json_file(root / META_FILE, fix=fix)
    if not isinstance(meta, dict):
        raise DamagedFileError(root / META_FILE, "not a JSON object", fix)
    features = load_npy_file(root / FEATURES_FILE, mmap_mode="r", fix=fix, finite=True)
    labels = load_npy_file(root / LABELS_FILE, fix=fix)
    if features.ndim != 2:
        raise DamagedFileError(root / FEATURES_FILE, f"expected [N, D], got {features.shape}", fix)
    n = features.shape[0]
    total = int(meta.get("num_images", n))
    done = int(meta.get("rows_done", total))
    # "complete" is set once the skipped images' rows are dropped (then N <= num_images)
    if not meta.get("complete", True) or done < total:
        raise ValueError(
            f"{root} holds an unfinished extraction ({done} of {total} images done); "
            "rerun `sppnet features` with the same arguments to finish it"
        )
    if labels.shape[0] != n:
        raise ValueError(f"{root}: features.npy has {n} rows, labels.npy {labels.shape[0]}")
    return features, labels, meta
