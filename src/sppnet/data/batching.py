"""Batches of images of different sizes: padded collation and a size-grouped sampler.

Shape shorthand: N images per batch, H x W the largest height and width in the batch.

Beyond the paper: instead of resizing every image to one size, images keep
their own size; :func:`pad_collate` pads them bottom/right with zeros (the mean colour,
after mean subtraction) and returns each image's extent, so the network pools every image
over its own valid region only. :class:`SizeGroupedBatchSampler` puts images of similar
shape in the same batch so little compute goes to padding, and shards the batches across
distributed (DDP) processes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "SAMPLE_STREAM",
    "SeededTransformDataset",
    "SizeGroupedBatchSampler",
    "derive_seed",
    "pad_collate",
    "padding_fraction",
    "seeded_generator",
]

#: The tag of each sample's augmentation stream: seeds derive from (seed, 2, epoch, index).
SAMPLE_STREAM = 2

# Grouping keys: log aspect ratio in bins of 0.1 (~10% aspect difference), then log2 area
# in bins of 0.5 (a factor ~1.41); images are random within a (aspect, area) cell.
_LOG_SIDE_RATIO_BIN = 0.1
_LOG2_AREA_BIN = 0.5


def pad_collate(batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack images of different sizes into one zero-padded batch.

    Each image sits in the top-left corner of its slot; the padding (bottom and right)
    is zero, i.e. the mean colour once the mean has been subtracted.

    Args:
        batch: ``N`` pairs ``(image Tensor[3, H_i, W_i], label)``; labels are ints or
            0-dim integer tensors. All images share one floating dtype.

    Returns:
        ``images`` ``Tensor[N, 3, H, W]`` with ``H = max H_i``, ``W = max W_i``;
        ``extents`` ``LongTensor[N, 2]`` the ``(H_i, W_i)`` of each image (image pixels);
        ``labels`` ``LongTensor[N]``.

    Raises:
        TypeError: an item is not an (image, label) pair or an image is not a float tensor.
        ValueError: an empty batch, or an image that is not ``[3, H, W]`` or mixed dtypes.
    """
    if len(batch) == 0:
        raise ValueError("pad_collate needs at least one (image, label) pair, got an empty batch")
    images, labels = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"batch[{i}] must be an (image, label) pair, got {type(item).__name__}")
        img, label = item
        if not isinstance(img, Tensor) or not img.is_floating_point():
            raise TypeError(f"batch[{i}] image must be a floating-point Tensor, got {img!r:.60}")
        if img.dim() != 3 or img.shape[0] != 3 or img.shape[1] < 1 or img.shape[2] < 1:
            raise ValueError(f"batch[{i}] image must be Tensor[3, H, W], got {tuple(img.shape)}")
        if img.dtype != batch[0][0].dtype:
            raise ValueError(
                f"batch[{i}] image has dtype {img.dtype}, batch[0] has {batch[0][0].dtype}"
            )
        if isinstance(label, Tensor):
            if label.numel() != 1 or label.is_floating_point():
                raise TypeError(f"batch[{i}] label must be an integer scalar, got {label!r}")
            label = int(label.item())
        elif isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TypeError(f"batch[{i}] label must be an int, got {type(label).__name__}")
        images.append(img)
        labels.append(int(label))
    extents = torch.tensor([[img.shape[1], img.shape[2]] for img in images], dtype=torch.long)
    height, width = (int(v) for v in extents.max(dim=0).values)
    out = images[0].new_zeros((len(images), 3, height, width))  # [N, 3, H, W]
    for i, img in enumerate(images):
        out[i, :, : img.shape[1], : img.shape[2]] = img
    return out, extents, torch.tensor(labels, dtype=torch.long)


def padding_fraction(sizes: Sequence[tuple[int, int]], batches: Sequence[Sequence[int]]) -> float:
    """Share of the pixels of padded batches that are padding.

    Args:
        sizes: ``(height, width)`` of every image.
        batches: lists of indices into ``sizes``.

    Returns:
        ``1 - sum(image areas) / sum(N * H_max * W_max)`` over the batches, in ``[0, 1)``.

    Raises:
        ValueError: no batches.
    """
    if not batches:
        raise ValueError("padding_fraction needs at least one batch")
    used = total = 0
    for batch in batches:
        hs = [sizes[i][0] for i in batch]
        ws = [sizes[i][1] for i in batch]
        used += sum(h * w for h, w in zip(hs, ws, strict=True))
        total += len(batch) * max(hs) * max(ws)
    return 1.0 - used / total


def _batch_sizes(n: int, batch_size: int, num_replicas: int, drop_last: bool) -> list[int]:
    """Sizes of the batches of one epoch (all ranks), a multiple of ``num_replicas`` of them.

    ``drop_last``: only full batches, as many as divide evenly among the ranks. Otherwise
    every image is used exactly once: ``ceil(n / batch_size)`` batches rounded up to a
    multiple of ``num_replicas``, as many of them full as possible and the remaining
    images spread evenly over the rest (so the usual single-process case gives full
    batches and one partial batch).
    """
    if drop_last:
        count = (n // batch_size) // num_replicas * num_replicas
        return [batch_size] * count
    count = math.ceil(math.ceil(n / batch_size) / num_replicas) * num_replicas
    if count > n:  # not enough images for one batch per rank in the last round
        return []
    if batch_size == 1:
        return [1] * count
    full = min(count, (n - count) // (batch_size - 1))
    small, extra = divmod(n - full * batch_size, count - full) if count > full else (0, 0)
    return [batch_size] * full + [small + 1] * extra + [small] * (count - full - extra)


class SizeGroupedBatchSampler:
    """Batches of indices whose images have similar shapes, for padded batches.

    Each epoch: a random permutation of the indices (seeded by ``(seed, epoch)``);
    a stable sort by log-aspect-ratio bin, then log-area bin, so images inside one
    (aspect, area) cell stay in random order and batches change from epoch to epoch; the
    sorted list is cut into consecutive batches; the batch order is shuffled. Rank ``r``
    of ``num_replicas`` takes batches ``r, r + num_replicas, ...``, so every rank gets the
    same number of batches and, with ``drop_last=False``, every index appears exactly once
    over all ranks together (some batches are then smaller than ``batch_size``, see
    below). With ``drop_last=True`` a random set of ``n mod batch_size`` images (plus any
    whole batches that do not divide among the ranks) is left out each epoch and every
    batch is full.

    Pass the sizes the network will see (e.g. ``FullImageTransform.output_size`` of
    ``ImageFolder.image_sizes()``); with the shorter side fixed the aspect ratio alone
    decides the padded shape.

    Args:
        sizes: ``(height, width)`` of every dataset item.
        batch_size: largest number of images per batch.
        shuffle: randomise per epoch; False gives the sorted, grouped order every time.
        seed: base seed, the same on every rank.
        drop_last: only full batches (see above).
        num_replicas: number of distributed processes.
        rank: this process, ``0 <= rank < num_replicas``.

    Raises:
        TypeError / ValueError: bad sizes or settings, or too few images to give every
            rank a batch.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("num_replicas", num_replicas)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        hw = np.asarray(sizes, dtype=np.float64)
        if hw.ndim != 2 or hw.shape[1] != 2 or hw.shape[0] == 0:
            raise ValueError(f"sizes must be a non-empty list of (height, width), got {hw.shape}")
        if not np.all(hw >= 1) or not np.all(hw == np.round(hw)):
            raise ValueError("sizes must hold positive whole (height, width) pixel counts")
        self.num_samples = len(hw)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._sizes = _batch_sizes(self.num_samples, batch_size, num_replicas, self.drop_last)
        if not self._sizes or min(self._sizes) < 1:
            raise ValueError(
                f"{self.num_samples} images cannot give each of {num_replicas} ranks a "
                f"batch (batch_size={batch_size}, drop_last={self.drop_last})"
            )
        log_aspect = np.log(hw[:, 1] / hw[:, 0])
        log2_area = np.log2(hw[:, 0] * hw[:, 1])
        self._aspect_bin = np.floor(log_aspect / _LOG_SIDE_RATIO_BIN).astype(np.int64)
        self._area_bin = np.floor(log2_area / _LOG2_AREA_BIN).astype(np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields (call on every rank).

        Raises:
            ValueError: ``epoch`` is not an int >= 0.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        """This epoch's batches for all ranks, in the (shuffled) order they are dealt out."""
        n = self.num_samples
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        order = order[: sum(self._sizes)]  # drop_last leaves out the permutation's tail
        # np.lexsort is stable and sorts by the LAST key first: aspect, then area, then
        # the (random) permutation order.
        order = order[np.lexsort((self._area_bin[order], self._aspect_bin[order]))]
        bounds = np.cumsum([0, *self._sizes])
        batches = [order[a:b].tolist() for a, b in itertools.pairwise(bounds)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self._sizes) // self.num_replicas

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
            f"num_replicas={self.num_replicas}, rank={self.rank})"
        )


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (numpy's SeedSequence hashes them thoroughly)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seeded_generator(*parts: int) -> torch.Generator:
    """A torch generator seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


class SeededTransformDataset(Dataset):
    """Applies ``transform(img, generator)`` with a generator seeded by (seed, epoch, index).

    Re-creating the generator per sample makes the augmentation of a sample a function of
    ``(seed, epoch, index)`` only: identical with 0 or 8 loader workers, 1 or 8 processes,
    and after a resume.

    Args:
        base: a dataset of ``(image, label)``.
        transform: called as ``transform(image, generator=...)``.
        seed: the run's seed.
    """

    def __init__(self, base: Any, transform: Callable[..., Tensor], seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose draws the next samples take."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img, label = self.base[index]
        gen = seeded_generator(self.seed, SAMPLE_STREAM, self.epoch, index)
        return self.transform(img, generator=gen), int(label)
