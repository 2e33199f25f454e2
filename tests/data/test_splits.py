"""Caltech101-style class-balanced splits: counts, disjointness, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet.data.splits import class_balanced_splits

# 4 classes with 12, 7, 5 and 20 images, shuffled so indices of a class are not contiguous.
_COUNTS = {0: 12, 1: 7, 2: 5, 3: 20}
LABELS = np.random.default_rng(0).permutation(np.repeat(list(_COUNTS), list(_COUNTS.values())))


def test_counts_and_no_overlap():
    splits = class_balanced_splits(LABELS, n_train=4, n_test=5, n_splits=3, seed=1)
    assert len(splits) == 3
    for split in splits:
        train, test = split["train"], split["test"]
        assert train.dtype == torch.int64 and test.dtype == torch.int64
        assert torch.equal(train, train.sort().values) and torch.equal(test, test.sort().values)
        assert len(set(train.tolist()) | set(test.tolist())) == len(train) + len(test)
        for c, n in _COUNTS.items():
            assert int((torch.from_numpy(LABELS)[train] == c).sum()) == 4
            # Up to 5 of the rest: class 1 has 3 left, class 2 has 1 left.
            assert int((torch.from_numpy(LABELS)[test] == c).sum()) == min(5, n - 4)
        assert isinstance(split["seed"], int)


def test_deterministic_and_seeds_differ():
    a = class_balanced_splits(LABELS, n_train=3, n_test=2, n_splits=4, seed=7)
    b = class_balanced_splits(torch.from_numpy(LABELS), n_train=3, n_test=2, n_splits=4, seed=7)
    c = class_balanced_splits(LABELS.tolist(), n_train=3, n_test=2, n_splits=4, seed=8)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["train"], y["train"]) and torch.equal(x["test"], y["test"])
        assert x["seed"] == y["seed"]
    assert not torch.equal(a[0]["train"], c[0]["train"])
    assert len({s["seed"] for s in a + c}) == 8  # every split has its own seed
    assert not torch.equal(a[0]["train"], a[1]["train"])  # splits within a run differ


def test_split_is_independent_of_n_splits_and_regenerates_from_its_seed():
    few = class_balanced_splits(LABELS, n_train=3, n_test=2, n_splits=2, seed=3)
    many = class_balanced_splits(LABELS, n_train=3, n_test=2, n_splits=5, seed=3)
    for x, y in zip(few, many[:2], strict=True):
        assert torch.equal(x["train"], y["train"]) and x["seed"] == y["seed"]
    # The documented recipe, written out as a loop.
    rng = np.random.default_rng(many[4]["seed"])
    train, test = [], []
    for c in sorted(_COUNTS):
        perm = rng.permutation([i for i, y in enumerate(LABELS.tolist()) if y == c])
        train += perm[:3].tolist()
        test += perm[3:5].tolist()
    assert many[4]["train"].tolist() == sorted(train)
    assert many[4]["test"].tolist() == sorted(test)


def test_too_few_images_names_the_classes():
    with pytest.raises(ValueError, match=r"n_train \+ 1 = 8.*1 \(7 images\), 2 \(5 images\)"):
        class_balanced_splits(LABELS, n_train=7, n_test=5)
    # Exactly n_train + 1 images is enough (one test image).
    splits = class_balanced_splits(LABELS, n_train=4, n_test=50, n_splits=1)
    assert int((torch.from_numpy(LABELS)[splits[0]["test"]] == 2).sum()) == 1


def test_validation():
    with pytest.raises(TypeError, match="integers"):
        class_balanced_splits(LABELS.astype(np.float32))
    with pytest.raises(ValueError, match="1-D"):
        class_balanced_splits(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="1-D"):
        class_balanced_splits([])
    with pytest.raises(ValueError, match="n_train must be >= 1"):
        class_balanced_splits(LABELS, n_train=0)
    with pytest.raises(TypeError, match="n_splits"):
        class_balanced_splits(LABELS, n_splits=2.0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        class_balanced_splits(LABELS, n_train=2, seed=-1)
    with pytest.raises(TypeError, match="labels"):
        class_balanced_splits("0012")
