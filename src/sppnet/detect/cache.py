"""On-disk caches for detector training (Sec. 4.2): conv maps, or pooled windows.

The SVMs, the fc fine-tuning and the box regressors all train on the same pooled conv5
features of every window (proposals plus ground truth) of every training image. Two
layouts hold what they need, computed once with the conv maps of each whole image:

- :class:`ConvMapCache` (the default of ``sppnet train-det``): each image's conv map at
  each scale plus each window's scale and cells; windows are pooled when a stage needs
  them. ~1.3 MB per VOC image at one scale for ZF-5 (6.6 GB for VOC 2007 trainval).
- :class:`PooledFeatureCache`: every window's ``[C * L]`` pyramid; ~51 MB per image for
  ZF-5 and 2,000 windows (257 GB for VOC 2007 trainval), faster to train from when it
  fits in memory.

Layout of a :class:`PooledFeatureCache` ``root`` (:class:`ConvMapCache` documents its own):

- ``meta.json``: what the features depend on (model fingerprint, scales, levels, dtype);
  a cache built with other settings is refused, never silently mixed.
- ``features/<image_id>.npy``: ``[R, P]`` pooled features (float16 by default), opened
  memory-mapped.
- ``windows/<image_id>.npz``: ``boxes [R, 4]``, ``is_gt [R]``, ``max_iou [R]``,
  ``matched [R]`` (ground-truth index or -1), ``labels [R]`` (``0`` background,
  ``1..K`` the class of the matched ground truth), ``gt_boxes``, ``gt_labels`` (``1..K``),
  ``gt_difficult``. Written after the features, so its presence marks a finished image:
  a killed run resumes with the next image.

Shape shorthand: R windows of one image, P = C * L pooled values per window.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sppnet._atomic import atomic_save_npy, atomic_write_bytes, atomic_write_json
from sppnet.detection.scales import image_scale_factors
from sppnet.detection.targets import label_windows
from sppnet.detection.window_features import (
    assign_window_cells,
    compute_conv_maps,
    pool_windows,
    window_levels,
)
from sppnet.engine.safe_load import load_json_file, load_npy_file
from sppnet.errors import DamagedFileError
from sppnet.ops.pyramid_bins import num_pyramid_bins
from sppnet.ops.spatial_pyramid_pool import spatial_pyramid_pool
from sppnet.ops.window_pyramid_pool import window_pyramid_pool

__all__ = ["ConvMapCache", "PooledFeatureCache", "model_fingerprint"]

_DTYPES = {"float16": np.float16, "float32": np.float32}

# Size of what np.save / np.savez write around the data: a .npy header is 128 bytes; a
# zip member adds its local header, central-directory entry and name (~100 bytes).
_NPY_HEADER = 128
_ZIP_MEMBER = 100 + _NPY_HEADER
# Window records per window: boxes float32 x 4, is_gt bool, max_iou float32, matched and
# labels int64; a conv-map cache adds scale uint8 and cells int32 x 4.
_RECORD_BYTES = {"windows": 16 + 1 + 4 + 8 + 8, "maps": 16 + 1 + 4 + 8 + 8 + 1 + 16}
_RECORD_MEMBERS = {"windows": 8, "maps": 10}
# Up to this many windows of one map are pooled one by one (spatial_pyramid_pool of each
# window's cells), more with window_pyramid_pool's look-up table (measured crossover).
_FEW_WINDOWS = 24
_GT_PER_IMAGE = 3  # ground-truth boxes per image assumed by the estimate (VOC: ~2.4)


def _float_tensor(part: np.ndarray) -> Tensor:
    """A float32 copy of part of a (memory-mapped) map; torch converts float16 fastest."""
    return torch.from_numpy(np.array(part)).float()


def _records_bytes(windows: float, layout: str = "windows") -> float:
    """Bytes of one image's ``windows/<id>.npz`` (uncompressed zip of small arrays)."""
    gt = _GT_PER_IMAGE * (16 + 8 + 1)  # gt_boxes, gt_labels, gt_difficult
    return 22 + _RECORD_MEMBERS[layout] * _ZIP_MEMBER + windows * _RECORD_BYTES[layout] + gt


def model_fingerprint(model: nn.Module, trunk_only: bool = True) -> str:
    """SHA-256 of the weights: conv maps (so the cache) change when the trunk's do.

    Args:
        model: the network.
        trunk_only: hash ``model.features`` only (what the pooled features depend on);
            ``False`` hashes every parameter and buffer (fc layers included).
    """
    digest = hashlib.sha256()
    part = getattr(model, "features", model) if trunk_only else model
    for name, tensor in sorted(part.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _WindowCache(abc.ABC):
    """What both cache layouts share: the settings check, the window records, resume."""

    layout = ""  # "windows" or "maps": recorded in meta.json (a pooled cache may omit it)
    _kind = "feature cache"
    _repr_keys: tuple[str, ...] = ("dim", "dtype")  # shown by repr() after the root

    def __init__(
        self,
        root: str | os.PathLike[str],
        model: nn.Module,
        *,
        scales: Iterable[float],
        mean: float | Tensor = 128.0,
        dtype: str = "float16",
        max_long_side: float | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.root = Path(root)
        self.model = model
        self.scales = tuple(float(s) for s in scales)
        self.mean = mean
        self.dtype = dtype
        self.max_long_side = max_long_side
        self.levels = window_levels(model)
        self.channels = int(model.feature_channels)
        self.dim = self.channels * num_pyramid_bins(self.levels)
        mean_value = mean.tolist() if isinstance(mean, Tensor) else float(mean)
        self.meta = {
            "model": model_fingerprint(model),
            "scales": list(self.scales),
            "levels": list(self.levels),
            "dim": self.dim,
            "dtype": dtype,
            "mean": mean_value,
            "max_long_side": max_long_side,
        }
        if self.layout == "maps":  # a pooled-window cache keeps its older meta.json
            self.meta["layout"] = "maps"
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            stored = load_json_file(meta_path)
            diff = sorted(
                k for k in set(stored) | set(self.meta) if stored.get(k) != self.meta.get(k)
            )
            if diff:
                raise ValueError(
                    f"{self.root} holds a {self._kind} made with other settings ({diff} "
                    "differ); pass another cache directory or delete that one"
                )
        self._init_layout()

    def _init_layout(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """What one layout adds to the common settings (nothing by default)."""

    def __repr__(self) -> str:
        settings = "".join(f", {k}={getattr(self, k)!r}" for k in self._repr_keys)
        return f"{type(self).__name__}(root={str(self.root)!r}{settings})"

    def windows_path(self, image_id: str) -> Path:
        """``windows/<image_id>.npz``, the finished-image marker."""
        return self.root / "windows" / f"{image_id}.npz"

    def _label(
        self, proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_difficult: Tensor | None
    ) -> dict[str, Tensor]:
        """Windows = proposals + non-difficult ground truth, with IoU and labels."""
        difficult = (
            torch.zeros(gt_boxes.shape[0], dtype=torch.bool)
            if gt_difficult is None
            else gt_difficult.bool().cpu()
        )
        gt = gt_boxes.float().cpu()
        boxes = torch.cat([proposals.float().cpu(), gt[~difficult]])  # [R + G', 4]
        is_gt = torch.zeros(boxes.shape[0], dtype=torch.bool)
        is_gt[proposals.shape[0] :] = True
        max_iou, matched, labels = label_windows(boxes, gt, gt_labels.long().cpu(), difficult)
        return {
            "boxes": boxes,
            "is_gt": is_gt,
            "max_iou": max_iou.float(),
            "matched": matched,
            "labels": labels,
            "gt_boxes": gt,
            "gt_labels": gt_labels.long().cpu(),
            "gt_difficult": difficult,
        }

    def add(
        self,
        image_id: str,
        image: Tensor,
        proposals: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_difficult: Tensor | None = None,
    ) -> None:
        """Compute and store one image: its windows' pooled features
        (:class:`PooledFeatureCache`), or its conv maps and its windows' scales and cells
        (:class:`ConvMapCache`).

        The windows are the proposals followed by the non-difficult ground-truth boxes
        (R-CNN trains on both); each gets its best IoU and label (:func:`label_windows`).

        Args:
            image_id: file-name-safe id.
            image: ``Tensor[3, H, W]`` float pixels 0..255.
            proposals: ``Tensor[R, 4]`` in image pixels.
            gt_boxes: ``Tensor[G, 4]``; ``gt_labels``: ``LongTensor[G]`` in ``1..K``;
                ``gt_difficult``: ``BoolTensor[G]`` or ``None``.
        """
        records = self._label(proposals, gt_boxes, gt_labels, gt_difficult)
        self._store(image_id, image, records)
        self._finish(image_id, records)

    @abc.abstractmethod
    def _store(self, image_id: str, image: Tensor, records: dict[str, Tensor]) -> None:
        """Write the layout's files of one image (records may gain entries)."""

    @contextlib.contextmanager
    def _inference(self) -> Iterator[torch.device]:
        """The model in eval mode under ``inference_mode`` (its mode restored afterwards);
        yields its device."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                yield next(self.model.parameters()).device
        finally:
            self.model.train(was_training)

    def _conv_maps(self, image: Tensor, device: torch.device) -> Any:
        """The trunk's maps of the image at every scale (:func:`compute_conv_maps`)."""
        return compute_conv_maps(
            self.model, image.to(device), self.scales, self.mean, self.max_long_side
        )

    def write_meta(self) -> None:
        """Write ``meta.json`` now if it is missing (else it comes with the first finished
        image), so that processes which then fill the cache in parallel write none."""
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            atomic_write_json(meta_path, self.meta)

    def _finish(self, image_id: str, records: dict[str, Any]) -> None:
        """Write the window records (the finished-image marker), then meta.json."""
        buf = io.BytesIO()
        np.savez(buf, **{k: v.numpy() if isinstance(v, Tensor) else v for k, v in records.items()})
        atomic_write_bytes(self.windows_path(image_id), buf.getvalue())
        self.write_meta()

    def build(
        self,
        items: Iterable[
            tuple[str, Callable[[], tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]]]
        ],
        progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    ) -> int:
        """Add every image not yet cached; returns how many were computed now.

        Args:
            items: ``(image_id, load)`` pairs; ``load()`` returns ``(image, proposals,
                gt_boxes, gt_labels, gt_difficult)`` and is called only for missing ids.
            progress: optional wrapper of the iterable (a tqdm bar).
        """
        done = 0
        iterable = progress(items) if progress is not None else items
        for image_id, load in iterable:
            if image_id in self:
                continue
            self.add(image_id, *load())  # type: ignore[attr-defined]
            done += 1
        return done

    def windows(self, image_id: str) -> dict[str, np.ndarray]:
        """The window records of one image (see the module docstring).

        Raises:
            FileNotFoundError: the image is not cached.
            ValueError: a corrupt record file (named; a
                :class:`~sppnet.errors.DamagedFileError` for a conv-map cache).
        """
        path = self.windows_path(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {image_id!r} is not in the {self._kind}")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            if self.layout == "maps":
                raise DamagedFileError(path, f"corrupt conv-map cache record: {err}") from err
            raise ValueError(
                f"{path}: corrupt feature-cache record ({err}); delete it to recompute"
            ) from err


class PooledFeatureCache(_WindowCache):
    """Pooled features of every training window, stored per image (module docstring).

    Args:
        root: the cache directory.
        model: the network whose trunk computes the conv maps.
        scales: detection scales (Sec. 4.1).
        mean: pixel mean subtracted before the trunk.
        dtype: ``"float16"`` (half the disk, ample for features that go through fc6) or
            ``"float32"``.
        max_long_side: optional cap on a resized image's longer side.

    Raises:
        ValueError: ``root`` holds a cache made with another model or settings (the message
            names the differing keys), or a bad dtype.
    """

    layout = "windows"

    def feature_path(self, image_id: str) -> Path:
        """``features/<image_id>.npy``."""
        return self.root / "features" / f"{image_id}.npy"

    def __contains__(self, image_id: str) -> bool:
        return self.windows_path(image_id).is_file() and self.feature_path(image_id).is_file()

    def estimate_bytes(self, num_images: int, windows_per_image: float) -> int:
        """Disk size of the features of ``num_images`` images with that many windows each."""
        itemsize = np.dtype(_DTYPES[self.dtype]).itemsize
        per_image = _NPY_HEADER + windows_per_image * self.dim * itemsize
        return int(num_images * (per_image + _records_bytes(windows_per_image)))

    def _store(self, image_id: str, image: Tensor, records: dict[str, Tensor]) -> None:
        """``features/<image_id>.npy``: the pooled features of the image's windows."""
        with self._inference() as device:
            maps = self._conv_maps(image, device)
            pooled = pool_windows(self.model, maps, records["boxes"].to(device))  # [R + G', P]
        atomic_save_npy(
            self.feature_path(image_id), pooled.cpu().numpy().astype(_DTYPES[self.dtype])
        )

    def features(self, image_id: str) -> np.ndarray:
        """``[R, P]`` pooled features of one image, memory-mapped (read-only).

        Raises:
            FileNotFoundError: the image is not cached.
            ValueError: a corrupt or mis-shaped feature file, or one whose row count is not
                its window record's (named; "delete it to recompute").
        """
        path = self.feature_path(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {image_id!r} is not in the feature cache")
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{path}: corrupt feature file ({err}); delete it to recompute"
            ) from err
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"{path}: expected [R, {self.dim}] features, got {arr.shape}")
        windows = self.windows(image_id)["boxes"].shape[0]
        if arr.shape[0] != windows:  # one row per window of the record: else a mixed-up cache
            raise DamagedFileError(
                path, f"{arr.shape[0]} rows for the {windows} windows of its record"
            )
        return arr


class ConvMapCache(_WindowCache):
    """The conv maps of every training image at every scale; windows pooled on demand.

    What :class:`PooledFeatureCache` stores per window (``[R, C * L]``, ~51 MB per image
    for ZF-5 and 2,000 windows) is a function of the image's conv maps and each window's
    cells; this cache stores the maps (``C x h x w`` per scale, ~1.2 MB for a 688 x 917
    image in float16) and the cells, and :meth:`pool` runs
    :func:`~sppnet.ops.window_pyramid_pool` when a stage needs windows. In max mode the
    pooled values equal the float16 pooled-window cache's exactly (rounding to float16 is
    monotone, so it commutes with max); in avg mode they differ by float16 rounding.

    Layout of ``root``: ``meta.json`` (as :class:`PooledFeatureCache`, plus
    ``"layout": "maps"``); ``maps/<image_id>_s<k>.npy``: ``[h, w, C]`` map of scale ``k``
    (channels last: the pooling reads it as it lies), memory-mapped; ``windows/<id>.npz``:
    the records of :class:`PooledFeatureCache` plus ``scale [R]`` (uint8, the index of the
    window's scale) and ``cells [R, 4]`` (int32, end-exclusive ``(x0, y0, x1, y1)`` on that
    map), written last (the finished-image marker).

    The arguments, and the errors, are those of :class:`PooledFeatureCache`; its default
    ``dtype="float16"`` halves the disk here too (the values feed max pooling and fc6).
    """

    layout = "maps"
    _kind = "conv-map cache"
    _repr_keys = ("scales", "dim", "dtype")

    def _init_layout(self) -> None:
        self.mode = getattr(self.model, "pool_mode", "max")
        self._map_sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def map_path(self, image_id: str, scale: int) -> Path:
        """``maps/<image_id>_s<scale>.npy``, the map of scale index ``scale``."""
        return self.root / "maps" / f"{image_id}_s{scale}.npy"

    def __contains__(self, image_id: str) -> bool:
        return self.windows_path(image_id).is_file() and all(
            self.map_path(image_id, k).is_file() for k in range(len(self.scales))
        )

    def _map_size(self, height: int, width: int) -> tuple[int, int]:
        """Conv-map size of a ``height x width`` input: the model's geometry, else a probe."""
        key = (height, width)
        if key not in self._map_sizes:
            size_of = getattr(self.model, "feature_size", None)
            if size_of is not None:
                h, w = size_of(height, width)
            else:  # e.g. EfficientNet-Lite: one forward pass per distinct size
                param = next(self.model.parameters())
                with torch.inference_mode():
                    x = torch.zeros((1, 3, height, width), device=param.device, dtype=param.dtype)
                    h, w = self.model.forward_features(x).shape[-2:]
            self._map_sizes[key] = (int(h), int(w))
        return self._map_sizes[key]

    def estimate_bytes(
        self, image_sizes: Sequence[tuple[int, int]], windows_per_image: float
    ) -> int:
        """Disk size of the maps and records of images of these sizes.

        Args:
            image_sizes: ``(height, width)`` of each image (original pixels).
            windows_per_image: proposals plus ground truth per image (mean).

        Returns:
            Bytes: every scale's ``h * w * C`` map at the cache dtype (the sizes the trunk
            gives at the resized image sizes), plus the window records.
        """
        itemsize = np.dtype(_DTYPES[self.dtype]).itemsize
        cells = 0
        for height, width in image_sizes:
            factors = image_scale_factors(height, width, self.scales, self.max_long_side)
            for f in factors:
                size = (max(1, round(height * f)), max(1, round(width * f)))
                h, w = self._map_size(*size)
                cells += h * w
        headers = len(image_sizes) * (len(self.scales) * _NPY_HEADER)
        records = len(image_sizes) * _records_bytes(windows_per_image, "maps")
        return int(cells * self.channels * itemsize + headers + records)

    def _store(self, image_id: str, image: Tensor, records: dict[str, Tensor]) -> None:
        """``maps/<image_id>_s<k>.npy`` per scale; the windows' ``scale`` and ``cells`` go to
        the records."""
        with self._inference() as device:
            maps = self._conv_maps(image, device)
        map_sizes = [tuple(m.shape[-2:]) for m in maps.maps]
        scale, cells = assign_window_cells(
            self.model, maps.image_size, maps.factors, maps.sizes, map_sizes, records["boxes"]
        )
        for k, fmap in enumerate(maps.maps):
            hwc = fmap[0].permute(1, 2, 0).cpu().numpy().astype(_DTYPES[self.dtype])  # [h, w, C]
            atomic_save_npy(self.map_path(image_id, k), np.ascontiguousarray(hwc))
        records["scale"] = scale.to(torch.uint8)
        records["cells"] = cells.to(torch.int32)

    def maps(self, image_id: str) -> list[np.ndarray]:
        """The ``[h, w, C]`` map of each scale of one image, memory-mapped (read-only).

        Raises:
            FileNotFoundError: the image is not cached.
            DamagedFileError: a corrupt or mis-shaped map file (named, "delete it to
                recompute").
        """
        out = []
        for k in range(len(self.scales)):
            path = self.map_path(image_id, k)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image {image_id!r} is not in the {self._kind}")
            arr = load_npy_file(path, mmap_mode="r")  # damaged: DamagedFileError
            if arr.ndim != 3 or arr.shape[2] != self.channels or arr.dtype != self.dtype:
                raise DamagedFileError(
                    path,
                    f"expected a [h, w, {self.channels}] {self.dtype} map, got "
                    f"{arr.dtype} {list(arr.shape)}",
                )
            out.append(arr)
        return out

    def pool_cells(
        self, maps: Sequence[np.ndarray], scale: np.ndarray, cells: np.ndarray
    ) -> Tensor:
        """Pool windows given by scale and cells from one image's maps.

        Each scale's windows are pooled from the smallest part of its map that holds them
        all (pooling a window reads only its own cells), so a few windows cost little.

        Args:
            maps: the image's ``[h, w, C]`` maps (:meth:`maps`), memory-mapped or in memory.
            scale: ``[R]`` scale index per window.
            cells: ``[R, 4]`` end-exclusive cells ``(x0, y0, x1, y1)`` per window.

        Returns:
            ``Tensor[R, C * L]`` float32 in the order of the rows given.

        Raises:
            DamagedFileError: a record whose cells leave its map (a mixed-up cache).
        """
        n_win = len(scale)
        out = torch.empty((n_win, self.dim), dtype=torch.float32)
        cells = np.asarray(cells, dtype=np.int64).reshape(n_win, 4)
        scale = np.asarray(scale)
        for k in np.unique(scale):
            sel = np.nonzero(scale == k)[0]
            c = cells[sel]
            fmap = maps[int(k)]
            x0, y0 = int(c[:, 0].min()), int(c[:, 1].min())
            x1, y1 = int(c[:, 2].max()), int(c[:, 3].max())
            if x0 < 0 or y0 < 0 or y1 > fmap.shape[0] or x1 > fmap.shape[1]:
                raise DamagedFileError(
                    self.root,
                    f"window cells up to ({x1}, {y1}) leave a {fmap.shape[1]}x{fmap.shape[0]} "
                    f"map of scale {k}",
                )
            if len(sel) <= _FEW_WINDOWS:
                # A few windows (a fine-tuning mini-batch spread over many images): each
                # window's pyramid is spatial_pyramid_pool of its own cells, cheaper than a
                # look-up table over the part of the map that holds them all.
                for row, (a0, b0, a1, b1) in zip(sel.tolist(), c.tolist(), strict=True):
                    crop = _float_tensor(fmap[b0:b1, a0:a1])  # [h', w', C]
                    # [1, C, h', w'] contiguous: adaptive pooling is 2-3x faster than on
                    # the channels-last view for maps this small
                    crop = crop.permute(2, 0, 1).unsqueeze(0).contiguous()
                    out[row] = spatial_pyramid_pool(crop, self.levels, self.mode)[0]
                continue
            crop = _float_tensor(fmap[y0:y1, x0:x1])  # [h', w', C]
            crop = crop.permute(2, 0, 1).unsqueeze(0)  # [1, C, h', w'], channels_last memory
            local = torch.from_numpy(c - np.array([x0, y0, x0, y0]))
            out[torch.from_numpy(sel)] = window_pyramid_pool(
                crop, local, None, self.levels, self.mode
            )
        return out

    def pool(self, image_id: str, rows: Sequence[int] | np.ndarray | None = None) -> Tensor:
        """``Tensor[R', C * L]`` float32 pooled features of windows of one image.

        Args:
            image_id: a cached image.
            rows: window rows (record order); ``None``: every window.

        Raises:
            FileNotFoundError: the image is not cached.
            DamagedFileError: a damaged map or record file.
        """
        rec = self.windows(image_id)
        idx = np.arange(len(rec["scale"])) if rows is None else np.asarray(rows, dtype=np.int64)
        return self.pool_cells(self.maps(image_id), rec["scale"][idx], rec["cells"][idx])
