"""The feature cache of a detector run (stage 2) and its windows as one numbered table:
pooled features of any window, whether the cache holds pooled rows or conv maps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sppnet.data.transforms import to_tensor
from sppnet.data.voc import VOCDetection
from sppnet.detect.cache import ConvMapCache, PooledFeatureCache
from sppnet.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    shard_indices,
)

# Feature caches up to this size are read into memory for training (else memory-mapped).
_IN_MEMORY_BYTES = 2 * 2**30


def build_feature_cache(
    cache: PooledFeatureCache | ConvMapCache,
    dataset: VOCDetection,
    proposals: dict[str, Tensor],
    progress: bool = False,
    *,
    info: DistInfo | None = None,
) -> int:
    """Fill ``cache`` for every image of ``dataset``; returns how many were computed now.

    Under ``torchrun`` (``info``) rank r fills images r, r + P, ... (each image's files
    depend on that image alone), rank 0 writes ``meta.json`` first, and every rank returns
    once all are done, with the count over all ranks.
    """
    info = info or DistInfo()
    if info.distributed:
        if info.is_main:
            cache.write_meta()
        barrier(info)
    mine = shard_indices(len(dataset), info.rank, info.world_size)

    def items() -> Iterable[tuple[str, Callable[[], tuple]]]:
        for i in mine:
            image_id = dataset.ids[i]

            def load(i: int = i, image_id: str = image_id) -> tuple:
                image, target = dataset[i]
                return (
                    to_tensor(image),
                    proposals[image_id],
                    target["boxes"],
                    target["labels"] + 1,  # dataset labels 0..K-1 -> 1..K, 0 = background
                    target["difficult"],
                )

            yield image_id, load

    computed = cache.build(
        items(),
        lambda it: tqdm(
            it, disable=not progress, total=len(mine), desc="feature cache", unit="img"
        ),
    )
    if not info.distributed:
        return computed
    counts = torch.tensor([computed], dtype=torch.float64, device=info.device)
    counts = all_reduce_sum(counts, info)  # also a barrier: every rank's images are done
    return int(counts.item())


class _WindowTable:
    """Every cached window of every image as one global numbering (image, row).

    :meth:`gather` returns pooled features whatever the cache holds: rows of a
    :class:`PooledFeatureCache`, or windows pooled from a :class:`ConvMapCache`'s maps
    (one pooling call per image and scale among the ids asked for).
    """

    def __init__(self, cache: PooledFeatureCache | ConvMapCache, ids: list[str]) -> None:
        self.cache, self.ids = cache, ids
        self.records = [cache.windows(i) for i in ids]
        self.counts = np.array([len(r["boxes"]) for r in self.records], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.max_iou = torch.from_numpy(np.concatenate([r["max_iou"] for r in self.records]))
        self.labels = torch.from_numpy(np.concatenate([r["labels"] for r in self.records])).long()
        self._features: list[Any] = [None] * len(ids)
        itemsize = 2 if cache.dtype == "float16" else 4
        self._maps = isinstance(cache, ConvMapCache)
        if self._maps:
            stored = sum(
                sum(m.size for m in cache.maps(i)) * itemsize for i in ids[: min(len(ids), 8)]
            )
            total = stored * len(ids) / max(1, min(len(ids), 8))  # from the first images
        else:
            total = int(self.offsets[-1]) * cache.dim * itemsize
        self._in_memory = total <= _IN_MEMORY_BYTES

    def features(self, image: int) -> Any:
        """Pooled ``[R, P]`` rows or ``[h, w, C]`` maps of one image, as the cache holds."""
        if self._features[image] is None:
            image_id = self.ids[image]
            if self._maps:
                arr: Any = self.cache.maps(image_id)
                # Small caches are read into memory once: page faults on memory maps cost
                # more than the pooling.
                arr = [np.array(m) for m in arr] if self._in_memory else arr
            else:
                arr = self.cache.features(image_id)
                arr = np.array(arr) if self._in_memory else arr
            self._features[image] = arr
        return self._features[image]

    def gather(self, ids: Tensor) -> Tensor:
        """``Tensor[len(ids), P]`` float32 pooled features of global window ids."""
        ids_np = ids.cpu().numpy()
        image = np.searchsorted(self.offsets, ids_np, side="right") - 1
        row = ids_np - self.offsets[image]
        out = np.empty((len(ids_np), self.cache.dim), dtype=np.float32)
        for img in np.unique(image):
            sel = np.nonzero(image == img)[0]
            if self._maps:
                rec = self.records[int(img)]
                r = row[sel]
                pooled = self.cache.pool_cells(
                    self.features(int(img)), rec["scale"][r], rec["cells"][r]
                )
                out[sel] = pooled.numpy()
            else:
                out[sel] = self.features(int(img))[row[sel]]
        return torch.from_numpy(out)
