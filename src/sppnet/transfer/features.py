"""Extracting image representations (:mod:`sppnet.transfer.representation`) of a whole
dataset into a folder, for the linear SVMs of transfer (Sec. 3.2, 3.3).

:func:`extract_features` writes one folder::

    features.npy   float32 [N, D], a .npy file to open with np.load(mmap_mode="r")
    labels.npy     int64 [N] (image folder) or [N, K] in {1, 0, -1} (VOC classification)
    ids.json       N image ids (relative paths for image folders, VOC ids)
    meta.json      layer, view, size, crop, mean, normalize, model, N, D, rows_done, ...

and is resumable: ``meta.json`` (replaced atomically after each batch) records how many
images are done; a second call continues there and recomputes nothing. Under ``torchrun``
(``info``) the batches are dealt out to the processes and rank 0 assembles the same folder,
bit for bit (:func:`_extract_shard`). The files are written and read by
:mod:`sppnet.transfer.store`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sppnet._validate import check_int
from sppnet.data.decode import ImageDecodeError
from sppnet.data.transforms import check_mean
from sppnet.engine.distributed import DistInfo, barrier, shard_indices
from sppnet.limits import ImageTooLargeError
from sppnet.transfer.representation import (
    _FC_LAYERS,
    FEATURE_LAYERS,
    FEATURE_VIEWS,
    MAP_LAYERS,
    _check_request,
    _device,
    _eval_mode,
    _represent,
    estimate_feature_bytes,
    feature_dim,
    feature_layers,
    image_representation,
    representation_input,
)
from sppnet.transfer.store import (
    check_feature_dir,
    clear_shards,
    compact_feature_dir,
    create_feature_dir,
    has_features,
    open_features,
    publish_feature_dir,
    read_meta,
    read_shard,
    shard_written,
    start_shards,
    work_folder,
    write_meta,
    write_shard,
)

__all__ = [
    "FEATURE_LAYERS",
    "FEATURE_VIEWS",
    "MAP_LAYERS",
    "estimate_feature_bytes",
    "extract_features",
    "feature_dim",
    "feature_layers",
    "image_representation",
    "representation_input",
]


_FORMAT_VERSION = 1


# ------------------------------------------------------------------------ validation


# ---------------------------------------------------------------------------- pixels


# ---------------------------------------------------------------------------- layers


# ------------------------------------------------------------------------ extraction
class _Inputs(Dataset):
    """Dataset indices -> network inputs; decode errors are returned, not raised.

    (An ``ImageDecodeError`` does not survive pickling out of a worker process, so the
    file and reason travel as strings.)
    """

    def __init__(self, dataset: Any, indices: Sequence[int], view: str, size: int, crop: int, mean):
        self.dataset, self.indices = dataset, indices
        self.view, self.size, self.crop, self.mean = view, size, crop, mean

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        try:
            item = self.dataset[index]
        except ImageDecodeError as err:
            return {"index": index, "x": None, "bad": (str(err.path), err.reason)}
        image = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"dataset items must be PIL images or (PIL image, target) pairs; item {index} "
                f"holds {type(image).__name__} (build the dataset without a transform)"
            )
        try:
            x = representation_input(
                image, view=self.view, size=self.size, crop=self.crop, mean=self.mean
            )
        except ImageTooLargeError as err:
            samples = getattr(self.dataset, "samples", None)
            raise err.at(samples[index][0] if samples is not None else f"item {index}") from None
        return {"index": index, "x": x, "bad": None}


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


def _dataset_ids(dataset: Any) -> list[str]:
    n = len(dataset)
    ids = getattr(dataset, "ids", None)
    if ids is not None and len(ids) == n:
        return [str(i) for i in ids]
    samples = getattr(dataset, "samples", None)
    root = getattr(dataset, "root", None)
    if samples is not None and len(samples) == n:
        out = []
        for sample in samples:
            path = Path(sample[0] if isinstance(sample, (tuple, list)) else sample)
            try:
                out.append(path.relative_to(root).as_posix() if root is not None else str(path))
            except ValueError:
                out.append(str(path))
        return out
    return [str(i) for i in range(n)]


def _dataset_labels(dataset: Any) -> np.ndarray | None:
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    annotations = getattr(dataset, "annotations", None)
    names = getattr(dataset, "class_names", None)
    if annotations is not None and names is not None:
        # VOC classification truth, by the devkit's rule (1 / 0 difficult-only / -1)
        from sppnet.evaluation.voc_classification import voc_image_labels

        return np.asarray(voc_image_labels(annotations, len(names)), dtype=np.int64)
    return None


def _check_labels(labels: object, n: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"labels must be an array [N] or [N, K] with N = {n}, got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"labels must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _mean_info(mean: float | Tensor) -> float | dict[str, Any]:
    if isinstance(mean, float):
        return mean
    digest = hashlib.sha256(mean.float().contiguous().numpy().tobytes()).hexdigest()[:16]
    return {"image_shape": list(mean.shape), "sha256": digest}


def _model_info(model: nn.Module, layer: str) -> dict[str, Any]:
    """What identifies the network behind a features folder (for resuming it).

    The digest covers the weights the layer reads: fc6-fc8 only for fc6/fc7, so the trunk
    features of a pretrained model (whose fc layers are drawn afresh on each build) resume.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if layer not in _FC_LAYERS and name.split(".")[0] in ("fc6", "fc7", "fc8"):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return {
        "name": model.name,
        "spp_levels": None if model.spp_levels is None else list(model.spp_levels),
        "width": model.width,
        "fc_dim": model.fc_dim,
        "feature_channels": model.feature_channels,
        "weights_sha256": digest.hexdigest()[:16],
    }


# the settings two runs must share for the second to continue the first
_RUN_KEYS = ("format_version", "layer", "view", "size", "crop", "mean", "normalize", "model")
_RUN_KEYS += ("num_images", "dim")


@dataclass(frozen=True)
class _Job:
    """The settings of one :func:`extract_features` call, checked."""

    layer: str
    view: str
    size: int
    crop: int
    mean: float | Tensor
    normalize: bool
    skip_bad: bool
    batch_size: int
    num_workers: int
    progress: bool

    @classmethod
    def checked(
        cls,
        layer: str,
        view: str,
        size: int,
        crop: int,
        mean: float | Tensor,
        normalize: bool,
        skip_bad: bool,
        batch_size: int,
        num_workers: int,
        progress: bool,
    ) -> _Job:
        """The job after checking ``mean``, ``batch_size`` and ``num_workers`` (the layer,
        view and sizes are checked against the model by ``_check_request``)."""
        mean = check_mean(mean)
        check_int("batch_size", batch_size, min=1)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        return cls(
            layer, view, size, crop, mean, bool(normalize), skip_bad, batch_size, num_workers,
            progress,
        )  # fmt: skip

    def inputs(self, dataset: Any, indices: Sequence[int]) -> _Inputs:
        return _Inputs(dataset, indices, self.view, self.size, self.crop, self.mean)

    def rows(
        self, model: nn.Module, batch: list[dict[str, Any]], device: torch.device, dim: int
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        return _batch_rows(model, batch, self.layer, self.normalize, self.skip_bad, device, dim)


def extract_features(
    model: nn.Module,
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    layer: str,
    view: str,
    size: int = 224,
    crop: int = 224,
    mean: float | Tensor = 128.0,
    labels: np.ndarray | Sequence[int] | None = None,
    batch_size: int = 32,
    normalize: bool = True,
    progress: bool = True,
    skip_bad: bool = False,
    num_workers: int = 0,
    info: DistInfo | None = None,
) -> Path:
    """Write the representation of every image of a dataset to ``out_dir`` (resumable).

    Images are read in dataset order, ``batch_size`` at a time; the images of one batch
    that have the same input size run through the network together (crop/warp: always
    the whole batch; full: the images of equal resized size, so a batch of all-different
    sizes runs one image at a time -- no image is ever resized to a common size). After
    each batch the rows are flushed and ``meta.json`` (``rows_done``) is replaced
    atomically; a later call with the same settings continues from there and a finished
    folder is returned as it is, so no image is computed twice.

    Args:
        model: an SPPNet, run in eval mode under ``torch.inference_mode`` on its device
            (its mode is restored afterwards).
        dataset: yields ``(PIL image, target)`` (``ImageFolder``, ``VOCDetection``) and
            was built with ``skip_bad=False`` (this function skips bad images itself).
        out_dir: the folder to write. It is built in the hidden ``.NAME.partial`` beside it
            (where a rerun resumes) and renamed into place whole once finished.
        layer: one of :func:`feature_layers` (:data:`FEATURE_LAYERS`, :data:`MAP_LAYERS`).
        view: one of :data:`FEATURE_VIEWS`.
        size: shorter side of full/crop views (224; 392 is the paper's best on VOC).
        crop: side of crop/warp views (224).
        mean: constant or ``Tensor[3, h, w]`` mean image subtracted from 0..255 pixels.
        labels: ``[N]`` or ``[N, K]`` integer labels to store; None takes ``dataset.targets``
            (image folders) or the VOC classification truth of ``dataset.annotations``
            (``{1, 0, -1}``, :func:`sppnet.evaluation.voc_image_labels`).
        batch_size: images per batch (and per checkpoint of the progress).
        normalize: l2-normalise each row (Sec. 3.2).
        progress: show a tqdm bar over images.
        skip_bad: leave out images that cannot be decoded (their ids and the reason go to
            ``meta.json``'s ``skipped``) instead of raising.
        num_workers: DataLoader processes decoding and resizing images (0: in this process).
        info: the ``torchrun`` process group (:func:`~sppnet.engine.distributed.
            init_distributed`): the batches are dealt out to the ranks and rank 0 assembles
            the folder, bit-equal to one process's (:func:`_extract_shard`); every rank
            must see ``out_dir``. ``None``: alone.

    Returns:
        ``out_dir`` as a ``Path``: ``features.npy`` (float32 ``[N', D]``), ``labels.npy``
        (int64 ``[N']`` or ``[N', K]``), ``ids.json`` and ``meta.json``, where ``N'`` is
        N minus the skipped images.

    Raises:
        TypeError: a model that is not an SPPNet, or dataset items that are not PIL images.
        ValueError: bad layer/view/sizes (see :func:`image_representation`), an empty
            dataset, a dataset built with ``skip_bad=True``, labels of the wrong shape, or
            ``out_dir`` holding an extraction with other settings.
        ImageDecodeError: an image cannot be decoded (``skip_bad=False``); names the file.
    """
    info = info or DistInfo()
    model = _check_request(model, layer, view, size, crop)
    job = _Job.checked(layer, view, size, crop, mean, normalize, skip_bad, batch_size,
                       num_workers, progress)  # fmt: skip
    label_arr = _check_dataset(dataset, labels)
    out = Path(out_dir)
    _extract_into(model, dataset, out, job, label_arr, info)
    return out


def _extract_into(
    model: nn.Module,
    dataset: Any,
    out: Path,
    job: _Job,
    label_arr: np.ndarray | None,
    info: DistInfo,
) -> None:
    """Build the folder in its staging place (resuming it), then rename it to ``out``."""
    run = _run_settings(model, job, len(dataset))
    work = work_folder(out)  # built there, renamed to out whole once finished
    meta = _open_folder(work, run, dataset, label_arr, info)
    if meta is None or not meta.get("complete"):
        if info.distributed:
            _extract_shard(model, dataset, work, run, job, info)
        else:
            _extract_alone(model, dataset, work, meta, job)
    if info.is_main:
        publish_feature_dir(work, out)


def _check_dataset(dataset: Any, labels: object) -> np.ndarray | None:
    """The labels to store (given, or the dataset's), after checking the dataset."""
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty: nothing to extract")
    if getattr(dataset, "skip_bad", False):
        raise ValueError(
            "build the dataset with skip_bad=False: it would replace a bad image by the next "
            "one, whose features would then be stored under the bad image's id; pass "
            "skip_bad=True to extract_features instead, which leaves bad images out"
        )
    label_arr = _dataset_labels(dataset) if labels is None else labels
    return None if label_arr is None else _check_labels(label_arr, n)


def _run_settings(model: nn.Module, job: _Job, n: int) -> dict[str, Any]:
    """What identifies an extraction: the ``_RUN_KEYS`` of its ``meta.json``."""
    return {
        "format_version": _FORMAT_VERSION,
        "layer": job.layer,
        "view": job.view,
        "size": job.size,
        "crop": job.crop,
        "mean": _mean_info(job.mean),
        "normalize": job.normalize,
        "model": _model_info(model, job.layer),
        "num_images": n,
        "dim": feature_dim(model, job.layer, job.view, size=job.size, crop=job.crop),
    }


def _open_folder(
    out: Path, run: dict[str, Any], dataset: Any, label_arr: np.ndarray | None, info: DistInfo
) -> dict[str, Any] | None:
    """The folder's meta; rank 0 starts the folder when it has none (or lost its features).

    None on another rank until rank 0 has started it. Every rank checks the settings of an
    existing folder, before any work.
    """
    out.mkdir(parents=True, exist_ok=True)
    meta = _read_meta(out, run)
    if meta is not None and not has_features(out) and not meta.get("complete"):
        meta = None  # features file lost before any row counted: start over
    if meta is not None:
        check_feature_dir(out, meta)  # reused: its files must hold what the meta says
    if meta is not None and meta.get("complete"):
        return meta
    if meta is None and info.is_main:
        meta = {**run, "dtype": "float32", "rows_done": 0, "skipped": [], "complete": False}
        meta["labels_shape"] = None if label_arr is None else list(label_arr.shape)
        create_feature_dir(out, _dataset_ids(dataset), label_arr, meta)
    return meta


def _read_meta(out: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's ``meta.json`` (None if absent); raise if it holds other settings."""
    meta = read_meta(out)
    if meta is None:
        return None
    differ = [k for k in _RUN_KEYS if meta.get(k) != run[k]]
    if differ:
        detail = ", ".join(f"{k}: {meta.get(k)!r} there, {run[k]!r} now" for k in differ)
        raise ValueError(
            f"{out} holds features extracted with other settings ({detail}); "
            "choose another output folder or delete it"
        )
    return meta


@contextlib.contextmanager
def _progress(enabled: bool, **tqdm_kwargs: Any) -> Iterator[Any]:
    """A tqdm bar over images (closed at the end), or None when ``enabled`` is false."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(**tqdm_kwargs)
    try:
        yield bar
    finally:
        bar.close()


def _extract_alone(
    model: nn.Module, dataset: Any, out: Path, meta: dict[str, Any] | None, job: _Job
) -> None:
    """One process: every batch from ``rows_done`` on, each flushed then counted in the meta."""
    assert meta is not None  # a process alone is rank 0: it has started the folder
    n = int(meta["num_images"])
    features = open_features(out)  # [N, D]
    start = int(meta["rows_done"])
    inputs = job.inputs(dataset, range(start, n))
    loader = DataLoader(
        inputs, batch_size=job.batch_size, num_workers=job.num_workers, collate_fn=_as_list
    )
    device = _device(model)
    desc = f"features {job.layer}/{job.view}"
    with (
        _progress(job.progress, total=n, initial=start, desc=desc, unit="img") as bar,
        _eval_mode(model),
        torch.inference_mode(),
    ):
        for batch in loader:
            rows, skipped = job.rows(model, batch, device, int(meta["dim"]))
            features[batch[0]["index"] : batch[-1]["index"] + 1] = rows  # a range
            meta["skipped"].extend(skipped)
            features.flush()  # rows on disk before meta says they are done
            meta["rows_done"] = batch[-1]["index"] + 1
            write_meta(out, meta)
            if bar is not None:
                bar.update(len(batch))
    del features
    clear_shards(out)  # left by an interrupted torchrun
    compact_feature_dir(out, meta)


def _batch_rows(
    model: nn.Module,
    batch: list[dict[str, Any]],
    layer: str,
    normalize: bool,
    skip_bad: bool,
    device: torch.device,
    dim: int,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(rows float32 [len(batch), D], skipped)``: one batch's representations, zeros for
    undecodable images (listed in ``skipped``), images of equal input size run together."""
    groups: dict[tuple[int, ...], list[tuple[int, dict[str, Any]]]] = {}
    skipped = []
    for pos, item in enumerate(batch):
        if item["x"] is None:
            path, reason = item["bad"]
            if not skip_bad:
                raise ImageDecodeError(path, reason)
            skipped.append({"index": item["index"], "file": path})
            continue
        groups.setdefault(tuple(item["x"].shape), []).append((pos, item))
    rows = np.zeros((len(batch), dim), dtype=np.float32)
    for members in groups.values():
        x = torch.stack([it["x"] for _, it in members]).to(device)  # [B, 3, H, W]
        rows[[pos for pos, _ in members]] = _represent(model, x, layer, normalize).cpu().numpy()
    return rows, skipped


def _extract_shard(
    model: nn.Module, dataset: Any, out: Path, run: dict[str, Any], job: _Job, info: DistInfo
) -> None:
    """This rank's share of an extraction under ``torchrun``; rank 0 then assembles it.

    The batches are those of one process (``batch_size`` images from ``rows_done`` on), so
    every image runs through the network with the same neighbours and its row is the same
    to the bit; batch k goes to rank ``k % P``, which writes ``shards/batch_<k>.npz`` (rows,
    skipped images) atomically. After a barrier rank 0 copies them into ``features.npy``
    in order, then finishes the folder as one process would; the other ranks return. A
    killed run resumes with the batches that have no file yet (with any number of ranks).
    """
    barrier(info)  # rank 0 has set the folder up
    meta = _read_meta(out, run)
    assert meta is not None
    n, start = int(meta["num_images"]), int(meta["rows_done"])
    if info.is_main:
        start_shards(out, {"rows_done": start, "batch_size": job.batch_size})
    barrier(info)
    batches = [
        list(range(lo, min(lo + job.batch_size, n))) for lo in range(start, n, job.batch_size)
    ]
    todo = [
        k
        for k in shard_indices(len(batches), info.rank, info.world_size)
        if not shard_written(out, k)
    ]
    _write_shards(model, dataset, out, meta, job, info, [(k, batches[k]) for k in todo])
    barrier(info)  # every batch is on disk
    if info.is_main:
        _merge_shards(out, meta, batches)


def _write_shards(
    model: nn.Module,
    dataset: Any,
    out: Path,
    meta: dict[str, Any],
    job: _Job,
    info: DistInfo,
    todo: list[tuple[int, list[int]]],
) -> None:
    """Compute the batches ``todo`` (``(k, dataset indices)`` each) into ``shards/``."""
    positions, sampler = [], []
    for _, indices in todo:
        sampler.append(list(range(len(positions), len(positions) + len(indices))))
        positions += indices
    inputs = job.inputs(dataset, positions)
    loader = DataLoader(
        inputs, batch_sampler=sampler, num_workers=job.num_workers, collate_fn=_as_list
    )
    device = _device(model)
    desc = f"features {job.layer}/{job.view} (rank 0)"
    with (
        _progress(
            job.progress and info.is_main, total=len(positions), desc=desc, unit="img"
        ) as bar,
        _eval_mode(model),
        torch.inference_mode(),
    ):
        for (k, _), batch in zip(todo, loader, strict=True):
            rows, skipped = job.rows(model, batch, device, int(meta["dim"]))
            write_shard(out, k, rows, skipped)
            if bar is not None:
                bar.update(len(batch))


def _merge_shards(out: Path, meta: dict[str, Any], batches: list[list[int]]) -> None:
    """Rank 0: copy every batch into ``features.npy`` in order, then finish the folder."""
    features = open_features(out)  # [N, D]
    for k, rows_of in enumerate(batches):
        rows, skipped = read_shard(out, k)
        features[rows_of[0] : rows_of[-1] + 1] = rows
        meta["skipped"].extend(skipped)
    features.flush()  # rows on disk before meta says they are done
    del features
    meta["rows_done"] = int(meta["num_images"])
    write_meta(out, meta)
    clear_shards(out)
    compact_feature_dir(out, meta)
