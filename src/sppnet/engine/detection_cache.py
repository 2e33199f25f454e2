"""On-disk cache of pooled window features for detector training (Sec. 4.2).

The SVMs, the fc fine-tuning and the box regressors all train on the same pooled conv5
features of every window (proposals plus ground truth) of every training image. They are
computed once, with the conv maps of each whole image, and stored here (the paper's cache
was about 20 GB for VOC 2007 trainval).

Layout of ``root``:

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

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sppnet._atomic import atomic_write_bytes, atomic_write_text
from sppnet.detection.targets import label_windows
from sppnet.detection.window_features import compute_conv_maps, pool_windows, window_levels
from sppnet.engine.safe_load import load_json_file
from sppnet.ops.pyramid_bins import num_pyramid_bins

__all__ = ["PooledFeatureCache", "model_fingerprint"]

_DTYPES = {"float16": np.float16, "float32": np.float32}


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


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


class PooledFeatureCache:
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
        self.dim = int(model.feature_channels) * num_pyramid_bins(self.levels)
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
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            stored = load_json_file(meta_path)
            diff = sorted(
                k for k in set(stored) | set(self.meta) if stored.get(k) != self.meta.get(k)
            )
            if diff:
                raise ValueError(
                    f"{self.root} holds a feature cache made with other settings ({diff} "
                    "differ); pass another cache directory or delete that one"
                )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, dim={self.dim}, dtype={self.dtype!r})"
        )

    def feature_path(self, image_id: str) -> Path:
        """``features/<image_id>.npy``."""
        return self.root / "features" / f"{image_id}.npy"

    def windows_path(self, image_id: str) -> Path:
        """``windows/<image_id>.npz``, the finished-image marker."""
        return self.root / "windows" / f"{image_id}.npz"

    def __contains__(self, image_id: str) -> bool:
        return self.windows_path(image_id).is_file() and self.feature_path(image_id).is_file()

    def estimate_bytes(self, num_images: int, windows_per_image: float) -> int:
        """Disk size of the features of ``num_images`` images with that many windows each."""
        itemsize = np.dtype(_DTYPES[self.dtype]).itemsize
        return int(num_images * windows_per_image * self.dim * itemsize)

    def add(
        self,
        image_id: str,
        image: Tensor,
        proposals: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_difficult: Tensor | None = None,
    ) -> None:
        """Compute and store the pooled features of one image's windows.

        The windows are the proposals followed by the non-difficult ground-truth boxes
        (R-CNN trains on both); each gets its best IoU and label (:func:`label_windows`).

        Args:
            image_id: file-name-safe id.
            image: ``Tensor[3, H, W]`` float pixels 0..255.
            proposals: ``Tensor[R, 4]`` in image pixels.
            gt_boxes: ``Tensor[G, 4]``; ``gt_labels``: ``LongTensor[G]`` in ``1..K``;
                ``gt_difficult``: ``BoolTensor[G]`` or ``None``.
        """
        difficult = (
            torch.zeros(gt_boxes.shape[0], dtype=torch.bool)
            if gt_difficult is None
            else gt_difficult.bool().cpu()
        )
        gt = gt_boxes.float().cpu()
        keep_gt = ~difficult
        boxes = torch.cat([proposals.float().cpu(), gt[keep_gt]])  # [R + G', 4]
        is_gt = torch.zeros(boxes.shape[0], dtype=torch.bool)
        is_gt[proposals.shape[0] :] = True
        max_iou, matched, labels = label_windows(boxes, gt, gt_labels.long().cpu(), difficult)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                device = next(self.model.parameters()).device
                maps = compute_conv_maps(
                    self.model, image.to(device), self.scales, self.mean, self.max_long_side
                )
                pooled = pool_windows(self.model, maps, boxes.to(device))  # [R + G', P]
        finally:
            self.model.train(was_training)
        _save_npy(self.feature_path(image_id), pooled.cpu().numpy().astype(_DTYPES[self.dtype]))
        buf = io.BytesIO()
        np.savez(
            buf,
            boxes=boxes.numpy(),
            is_gt=is_gt.numpy(),
            max_iou=max_iou.numpy().astype(np.float32),
            matched=matched.numpy(),
            labels=labels.numpy(),
            gt_boxes=gt.numpy(),
            gt_labels=gt_labels.long().cpu().numpy(),
            gt_difficult=difficult.numpy(),
        )
        atomic_write_bytes(self.windows_path(image_id), buf.getvalue())
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            atomic_write_text(meta_path, json.dumps(self.meta, indent=2))

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
            self.add(image_id, *load())
            done += 1
        return done

    def windows(self, image_id: str) -> dict[str, np.ndarray]:
        """The window records of one image (see the module docstring).

        Raises:
            FileNotFoundError: the image is not cached.
            ValueError: a corrupt record file (named).
        """
        path = self.windows_path(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {image_id!r} is not in the feature cache")
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{path}: corrupt feature-cache record ({err}); delete it to recompute"
            ) from err

    def features(self, image_id: str) -> np.ndarray:
        """``[R, P]`` pooled features of one image, memory-mapped (read-only).

        Raises:
            FileNotFoundError: the image is not cached.
            ValueError: a corrupt or mis-shaped feature file (named).
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
        return arr
