import itertools

import numpy as np
import pytest
import torch
from image_tree_helpers import make_tree

from sppnet.data.batching import SizeGroupedBatchSampler, pad_collate, padding_fraction
from sppnet.data.image_folder import ImageFolder
from sppnet.data.transforms import FullImageTransform

# ---- pad_collate -------------------------------------------------------------------------


def test_pad_collate_shapes_extents_and_zero_padding():
    a = torch.rand(3, 5, 9) + 1  # + 1: no zeros inside the images
    b = torch.rand(3, 7, 4) + 1
    c = torch.rand(3, 2, 2) + 1
    images, extents, labels = pad_collate([(a, 3), (b, torch.tensor(0)), (c, np.int64(7))])
    assert images.shape == (3, 3, 7, 9) and images.dtype == torch.float32
    assert extents.dtype == torch.long and extents.tolist() == [[5, 9], [7, 4], [2, 2]]
    assert labels.dtype == torch.long and labels.tolist() == [3, 0, 7]
    for i, img in enumerate((a, b, c)):
        h, w = img.shape[1:]
        assert torch.equal(images[i, :, :h, :w], img)
        for y in range(7):
            for x in range(9):
                if y >= h or x >= w:
                    assert images[i, :, y, x].abs().sum() == 0  # padding is zero
                else:
                    assert images[i, :, y, x].min() >= 1


def test_pad_collate_keeps_dtype_and_validates():
    images, _, _ = pad_collate([(torch.zeros(3, 2, 2, dtype=torch.float64), 1)])
    assert images.dtype == torch.float64
    with pytest.raises(ValueError, match="empty"):
        pad_collate([])
    with pytest.raises(ValueError, match=r"Tensor\[3, H, W\]"):
        pad_collate([(torch.zeros(1, 4, 4), 0)])
    with pytest.raises(ValueError, match="dtype"):
        pad_collate([(torch.zeros(3, 2, 2), 0), (torch.zeros(3, 2, 2, dtype=torch.float64), 0)])
    with pytest.raises(TypeError):
        pad_collate([(torch.zeros(3, 2, 2), 0.5)])
    with pytest.raises(TypeError):
        pad_collate([(torch.zeros(3, 2, 2, dtype=torch.uint8), 0)])
    with pytest.raises(TypeError):
        pad_collate([torch.zeros(3, 2, 2)])


# ---- SizeGroupedBatchSampler -------------------------------------------------------------


def _mixed_sizes(n, seed=0):
    """Shorter side 64, aspect ratios from 1:3 to 3:1, portrait and landscape mixed."""
    rng = np.random.default_rng(seed)
    sizes = []
    for _ in range(n):
        long = int(rng.integers(64, 193))
        sizes.append((64, long) if rng.random() < 0.5 else (long, 64))
    return sizes


def _epoch(sizes, batch_size, epoch=0, **kwargs):
    replicas = kwargs.pop("num_replicas", 1)
    per_rank = []
    for rank in range(replicas):
        sampler = SizeGroupedBatchSampler(
            sizes, batch_size, num_replicas=replicas, rank=rank, **kwargs
        )
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        per_rank.append(batches)
    return per_rank


@pytest.mark.parametrize(
    "n,batch_size,replicas", [(50, 8, 1), (50, 8, 2), (37, 5, 2), (10, 4, 2), (13, 4, 3), (9, 1, 3)]
)
def test_every_index_exactly_once_per_epoch(n, batch_size, replicas):
    sizes = _mixed_sizes(n)
    for epoch in (0, 1):
        per_rank = _epoch(sizes, batch_size, epoch, num_replicas=replicas, seed=4)
        assert len({len(b) for b in per_rank}) == 1  # the same number of batches per rank
        flat = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= batch_size for batches in per_rank for b in batches)
    if replicas == 1:  # single process: full batches and one partial batch
        lengths = sorted(len(b) for b in per_rank[0])
        partial = [n % batch_size] if n % batch_size else []
        assert lengths == sorted([batch_size] * (n // batch_size) + partial)


def test_drop_last_gives_full_batches_without_repeats():
    sizes = _mixed_sizes(50)
    per_rank = _epoch(sizes, 8, num_replicas=2, drop_last=True)
    assert [len(b) for b in per_rank] == [3, 3]  # 6 full batches of 8, dealt to 2 ranks
    flat = [i for batches in per_rank for batch in batches for i in batch]
    assert all(len(b) == 8 for batches in per_rank for b in batches)
    assert len(flat) == len(set(flat)) == 48
    other_epoch = _epoch(sizes, 8, 1, num_replicas=2, drop_last=True)
    other = [i for batches in other_epoch for b in batches for i in b]
    assert set(range(50)) - set(flat) != set(range(50)) - set(other)  # a random pair left out


def test_grouping_pads_less_than_random_batches():
    sizes = _mixed_sizes(400, seed=1)
    grouped = _epoch(sizes, 16, seed=3)[0]
    rng = np.random.default_rng(0)
    perm = rng.permutation(400).tolist()
    random_batches = [perm[i : i + 16] for i in range(0, 400, 16)]
    grouped_pad = padding_fraction(sizes, grouped)
    random_pad = padding_fraction(sizes, random_batches)
    assert random_pad > 0.5
    assert grouped_pad < 0.1 < random_pad
    # a batch holds similar aspect ratios: all portrait or all landscape (up to one mixed
    # batch at the square boundary)
    mixed = [b for b in grouped if len({sizes[i][0] > sizes[i][1] for i in b}) > 1]
    assert len(mixed) <= 1


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    sizes = _mixed_sizes(120)
    a = _epoch(sizes, 8, epoch=2, seed=7, num_replicas=2)
    assert a == _epoch(sizes, 8, epoch=2, seed=7, num_replicas=2)
    b = _epoch(sizes, 8, epoch=3, seed=7, num_replicas=2)
    assert a != b
    assert sorted(map(sorted, itertools.chain(*a))) != sorted(map(sorted, itertools.chain(*b)))
    assert _epoch(sizes, 8, epoch=2, seed=8) != _epoch(sizes, 8, epoch=2, seed=7)


def test_no_shuffle_is_the_same_every_epoch():
    sizes = _mixed_sizes(30)
    first = _epoch(sizes, 4, epoch=0, shuffle=False)
    assert first == _epoch(sizes, 4, epoch=5, shuffle=False)
    flat = [i for b in first[0] for i in b]
    aspects = [np.log(sizes[i][1] / sizes[i][0]) for i in flat]
    assert np.all(np.diff(np.floor(np.array(aspects) / 0.1)) >= 0)  # sorted by aspect bin


def test_sampler_validation():
    sizes = [(10, 10)] * 5
    with pytest.raises(ValueError, match="rank"):
        SizeGroupedBatchSampler(sizes, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        SizeGroupedBatchSampler(sizes, 0)
    with pytest.raises(TypeError):
        SizeGroupedBatchSampler(sizes, 2.0)
    with pytest.raises(ValueError, match="non-empty"):
        SizeGroupedBatchSampler([], 2)
    with pytest.raises(ValueError, match="positive"):
        SizeGroupedBatchSampler([(0, 3)], 2)
    with pytest.raises(ValueError, match="cannot give each of 8 ranks"):
        SizeGroupedBatchSampler(sizes, 2, num_replicas=8, rank=0)
    with pytest.raises(ValueError, match="cannot give"):
        SizeGroupedBatchSampler(sizes, 8, drop_last=True)
    with pytest.raises(ValueError, match="epoch"):
        SizeGroupedBatchSampler(sizes, 2).set_epoch(-1)


def test_with_image_folder_and_data_loader(tmp_path):
    spec = {
        "a": [(f"a{i}.png", (30 + 7 * i, 20)) for i in range(5)],
        "b": [(f"b{i}.png", (20, 25 + 9 * i)) for i in range(5)],
    }
    tf = FullImageTransform(shorter=16, mean=128.0)
    ds = ImageFolder(make_tree(tmp_path, spec), transform=tf)
    sizes = [tf.output_size(h, w) for h, w in ds.image_sizes()]
    sampler = SizeGroupedBatchSampler(sizes, 3, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=pad_collate)
    seen = []
    for batch, (images, extents, labels) in zip(sampler, loader, strict=True):
        assert images.shape[0] == len(batch) == len(labels)
        assert extents.tolist() == [list(sizes[i]) for i in batch]
        assert images.shape[2:] == tuple(extents.max(0).values.tolist())
        assert labels.tolist() == [ds.targets[i] for i in batch]
        seen += batch
    assert sorted(seen) == list(range(10))
