"""Class-balanced random train/test splits: the Caltech101 protocol (Sec. 3.3, Table 7).

"We randomly sample 30 images per category for training and up to 50 images per category for
testing. We repeat 10 random splits and average the accuracy." (Sec. 3.3). Per split and class,
``n_train`` images are drawn at random for training and up to ``n_test`` of the REST for
testing, so train and test never overlap.

Each split draws from its own generator, seeded with an integer derived from ``(seed, split
index)`` and recorded in the split, so split ``r`` is the same whatever ``n_splits`` is, and
``np.random.default_rng(split["seed"])`` is the generator that drew it: classes in increasing
label order, one ``permutation`` of the class's indices (in increasing order) each, the first
``n_train`` for training, the next ``min(n_test, rest)`` for testing.

Shape shorthand: N images, T training and E test images of one split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from sppnet._validate import check_int

__all__ = ["class_balanced_splits"]


def _split_seed(seed: int, index: int) -> int:
    """A 32-bit seed for split ``index`` of base ``seed`` (independent streams per split)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def class_balanced_splits(
    labels: Tensor | np.ndarray | Sequence[int],
    *,
    n_train: int = 30,
    n_test: int = 50,
    n_splits: int = 10,
    seed: int = 0,
) -> list[dict[str, Tensor | int]]:
    """Random class-balanced train/test splits (Sec. 3.3: 30 train, up to 50 test, 10 splits).

    Args:
        labels: ``LongTensor[N]``, integer ndarray or list of the class of each image (any
            integers; every distinct value is a class).
        n_train: training images per class (30 in the paper).
        n_test: the most test images per class (50); a class with fewer than
            ``n_train + n_test`` images tests on all its remaining images.
        n_splits: the number of random splits (10).
        seed: base seed, a non-negative int; the splits are a function of ``(seed, split
            index)`` only.

    Returns:
        ``n_splits`` dicts ``{"train": LongTensor[T], "test": LongTensor[E], "seed": int}``:
        indices into ``labels`` (increasing, disjoint; ``T = n_train * #classes``) and the
        split's own seed (module docstring).

    Raises:
        TypeError: non-integer labels or settings.
        ValueError: labels not 1-D or empty, settings ``< 1``, a negative seed, or classes
            with fewer than ``n_train + 1`` images (all of them named, with their counts).
    """
    if isinstance(labels, Tensor):
        y = labels.detach().cpu().numpy()
    elif isinstance(labels, (np.ndarray, list, tuple)):
        y = np.asarray(labels)
    else:
        raise TypeError(
            f"labels must be a Tensor, ndarray or list of ints [N], got {type(labels).__name__}"
        )
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D [N] array, got shape {y.shape}")
    if y.dtype == bool or y.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integers, got dtype {y.dtype}")
    n_train = check_int("n_train", n_train, min=1)
    n_test = check_int("n_test", n_test, min=1)
    n_splits = check_int("n_splits", n_splits, min=1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")

    classes, counts = np.unique(y, return_counts=True)
    short = [(int(c), int(n)) for c, n in zip(classes, counts, strict=True) if n < n_train + 1]
    if short:
        listed = ", ".join(f"{c} ({n} images)" for c, n in short)
        raise ValueError(
            f"every class needs at least n_train + 1 = {n_train + 1} images "
            f"({n_train} to train, at least 1 to test); {len(short)} of {classes.size} "
            f"classes have fewer: {listed}"
        )
    members = [np.flatnonzero(y == c) for c in classes]  # increasing indices per class

    splits: list[dict[str, Tensor | int]] = []
    for r in range(n_splits):
        split_seed = _split_seed(int(seed), r)
        rng = np.random.default_rng(split_seed)
        train: list[np.ndarray] = []
        test: list[np.ndarray] = []
        for idx in members:
            perm = rng.permutation(idx)
            train.append(perm[:n_train])
            test.append(perm[n_train : n_train + n_test])
        splits.append(
            {
                "train": torch.from_numpy(np.sort(np.concatenate(train)).astype(np.int64)),
                "test": torch.from_numpy(np.sort(np.concatenate(test)).astype(np.int64)),
                "seed": split_seed,
            }
        )
    return splits
