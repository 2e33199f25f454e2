"""Tests for sppnet.detection.targets: IoU bands, sampling, SVM sets, regression targets."""

from __future__ import annotations

import pytest
import torch

from sppnet.detection.targets import (
    hard_negative_round,
    label_windows,
    regression_targets,
    sample_finetune_batch,
    select_hard_negatives,
    select_regression_windows,
    svm_negatives,
    svm_positives,
)
from sppnet.ops.boxes import box_iou, decode_boxes

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])


def _strip(height: float) -> list[float]:
    """A box inside GT of IoU height / 10 with it (area 10 * height of 100)."""
    return [0.0, 0.0, 10.0, height]


def _random_boxes(n: int, seed: int, size: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat((xy, xy + wh), dim=1)


# ---------------------------------------------------------------------- label_windows


def test_label_windows_bands_and_exact_thresholds():
    proposals = torch.tensor(
        [_strip(5.0), _strip(4.9), _strip(10.0), _strip(1.0), [20, 20, 30, 30]]
    )
    iou, matched, labels = label_windows(proposals, GT, torch.tensor([7]))
    assert iou.tolist() == pytest.approx([0.5, 0.49, 1.0, 0.1, 0.0])
    assert matched.tolist() == [0, 0, 0, 0, 0]
    assert labels.tolist() == [7, 0, 7, 0, 0]  # exactly 0.5 is foreground


def test_label_windows_matches_loop_and_ties():
    gt = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [5.0, 5, 25, 25]])
    gt_labels = torch.tensor([3, 4, 2])
    proposals = torch.cat((_random_boxes(200, 1, 30.0), torch.tensor([_strip(8.0)])))
    iou, matched, labels = label_windows(proposals, gt, gt_labels)
    full = box_iou(proposals, gt)
    for r in range(proposals.shape[0]):
        row = full[r].tolist()
        best = max(row)
        j = row.index(best)  # first maximum
        assert iou[r].item() == best
        assert matched[r].item() == j
        assert labels[r].item() == (gt_labels[j].item() if best >= 0.5 else 0)
    assert matched[-1].item() == 0 and labels[-1].item() == 3  # tie -> lower gt index


def test_label_windows_difficult_and_empty():
    gt = torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])
    proposals = torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])
    difficult = torch.tensor([True, False])
    iou, matched, labels = label_windows(proposals, gt, torch.tensor([1, 2]), difficult)
    assert matched.tolist() == [1, 1] and labels.tolist() == [0, 2]
    assert iou.tolist() == [0.0, 1.0]
    _, matched, labels = label_windows(
        proposals, gt, torch.tensor([1, 2]), difficult, include_difficult=True
    )
    assert labels.tolist() == [1, 2]
    iou, matched, labels = label_windows(proposals, torch.zeros(0, 4), torch.zeros(0).long())
    assert iou.tolist() == [0.0, 0.0] and matched.tolist() == [-1, -1]
    assert labels.tolist() == [0, 0]
    iou, matched, labels = label_windows(torch.zeros(0, 4), gt, torch.tensor([1, 2]))
    assert iou.shape == matched.shape == labels.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"gt_labels": torch.tensor([0])}, ValueError, "gt_labels must be class indices >= 1"),
        ({"gt_labels": torch.tensor([1.0])}, TypeError, "gt_labels must be an integer"),
        ({"gt_labels": torch.tensor([1, 2])}, ValueError, r"gt_labels must have shape \[1\]"),
        ({"gt_difficult": torch.tensor([1])}, TypeError, "gt_difficult must be a bool"),
        ({"gt_difficult": torch.tensor([True, False])}, ValueError, "gt_difficult must have"),
        ({"fg_threshold": 1.5}, ValueError, r"fg_threshold must be in \[0, 1\]"),
        ({"proposals": torch.zeros(3)}, ValueError, "proposals must have shape"),
        ({"gt_boxes": torch.tensor([[1.0, 1, 0, 2]])}, ValueError, "gt_boxes must have x2 >= x1"),
    ],
)
def test_label_windows_errors(kwargs, exc, match):
    args = {"proposals": torch.zeros(2, 4), "gt_boxes": GT, "gt_labels": torch.tensor([1])}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        label_windows(**args)


# --------------------------------------------------------------- sample_finetune_batch


def _pool(n_pos: int, n_neg: int, n_low: int) -> tuple[torch.Tensor, torch.Tensor]:
    iou = torch.cat(
        (
            torch.linspace(0.5, 1.0, n_pos),
            torch.linspace(0.1, 0.49, n_neg),
            torch.linspace(0.0, 0.0999, n_low),
        )
    )
    labels = (iou >= 0.5).long() * 5
    perm = torch.randperm(iou.numel(), generator=torch.Generator().manual_seed(3))
    return iou[perm], labels[perm]


def test_sample_finetune_batch_quarter_positives():
    iou, labels = _pool(100, 400, 300)
    idx = sample_finetune_batch(iou, labels, generator=torch.Generator().manual_seed(0))
    assert idx.numel() == 128 and idx.unique().numel() == 128
    assert int((iou[idx] >= 0.5).sum()) == 32
    assert bool((iou[idx[:32]] >= 0.5).all()) and bool((iou[idx[32:]] < 0.5).all())
    assert bool((iou[idx] >= 0.1).all())  # never below the background band


def test_sample_finetune_batch_few_positives_and_short_pool():
    iou, labels = _pool(10, 400, 50)
    idx = sample_finetune_batch(iou, labels, generator=torch.Generator().manual_seed(0))
    assert idx.numel() == 128 and int((iou[idx] >= 0.5).sum()) == 10
    iou, labels = _pool(10, 20, 500)
    idx = sample_finetune_batch(iou, labels, generator=torch.Generator().manual_seed(0))
    assert idx.numel() == 30 and bool((iou[idx] >= 0.1).all())
    empty = sample_finetune_batch(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0,) and empty.dtype == torch.long


def test_sample_finetune_batch_exact_band_edges():
    iou = torch.tensor([0.5, 0.1, 0.0999, 0.4999, 1.0])
    labels = torch.tensor([1, 0, 0, 0, 1])
    idx = sample_finetune_batch(iou, labels, batch_size=8, positive_fraction=0.5)
    assert sorted(idx.tolist()) == [0, 1, 3, 4]


def test_sample_finetune_batch_deterministic():
    iou, labels = _pool(100, 400, 300)
    a = sample_finetune_batch(iou, labels, generator=torch.Generator().manual_seed(7))
    b = sample_finetune_batch(iou, labels, generator=torch.Generator().manual_seed(7))
    c = sample_finetune_batch(iou, labels, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"max_iou": torch.zeros(3, dtype=torch.long)}, TypeError, "max_iou must be a floating"),
        ({"max_iou": torch.tensor([0.1, float("nan"), 0.2])}, ValueError, "must not hold NaN"),
        ({"labels": torch.zeros(2, dtype=torch.long)}, ValueError, r"labels must have shape \[3\]"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 1.5}, TypeError, "batch_size must be an int"),
        ({"positive_fraction": -0.1}, ValueError, "positive_fraction must be in"),
        ({"bg_range": (0.1,)}, ValueError, "bg_range must be a pair"),
        ({"bg_range": (0.4, 0.2)}, ValueError, "lo <= hi <= fg_threshold"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ({"labels": torch.tensor([0, 0, 0])}, ValueError, "labels must be >= 1"),
    ],
)
def test_sample_finetune_batch_errors(kwargs, exc, match):
    args = {"max_iou": torch.tensor([0.9, 0.3, 0.0]), "labels": torch.tensor([2, 0, 0])}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sample_finetune_batch(**args)


# ------------------------------------------------------------------------------ SVM sets


def test_svm_positives():
    gt = torch.tensor([[0.0, 0, 1, 1], [1.0, 1, 2, 2], [2.0, 2, 3, 3], [0.0, 0, 4, 4]])
    labels = torch.tensor([3, 1, 3, 3])
    difficult = torch.tensor([False, False, True, False])
    assert svm_positives(gt, labels, 3, difficult).tolist() == [0, 3]
    assert svm_positives(gt, labels, 3, difficult, include_difficult=True).tolist() == [0, 2, 3]
    assert svm_positives(gt, labels, 2).tolist() == []
    with pytest.raises(ValueError, match="cls must be >= 1"):
        svm_positives(gt, labels, 0)
    with pytest.raises(TypeError, match="cls must be an int"):
        svm_positives(gt, labels, 1.0)


def test_svm_negatives_iou_band():
    # IoU with GT: exactly 0.3 (a negative: the paper's "<= 0.3"), 0.31 (not), 0 (negative).
    proposals = torch.tensor([_strip(3.0), _strip(3.1), [50.0, 50, 60, 60]])
    assert svm_negatives(proposals, GT).tolist() == [0, 2]
    # No positive of the class in the image: every window is a negative (then the two
    # strips, IoU 30/31 with each other, are deduplicated).
    assert svm_negatives(proposals, torch.zeros(0, 4)).tolist() == [0, 2]
    assert svm_negatives(proposals, torch.zeros(0, 4), dedup_iou=1.0).tolist() == [0, 1, 2]
    assert svm_negatives(torch.zeros(0, 4), GT).tolist() == []


def test_svm_negatives_dedup_edges():
    far = [50.0, 50.0, 60.0, 60.0]
    a = [50.0, 50.0, 60.0, 57.0]  # IoU 0.7 with far: kept
    b = [50.0, 50.0, 60.0, 57.1]  # IoU 0.71 with far: dropped
    proposals = torch.tensor([far, a, b])
    assert svm_negatives(proposals, GT).tolist() == [0, 1]


def _reference_negatives(proposals, gts, neg_iou=0.3, dedup_iou=0.7):
    """Plain loop: candidates by IoU with every positive, then greedy in input order."""
    iou_gt = box_iou(proposals, gts).tolist() if gts.shape[0] else None
    iou_pp = box_iou(proposals, proposals).tolist()
    kept = []
    for r in range(proposals.shape[0]):
        if iou_gt is not None and any(v > neg_iou for v in iou_gt[r]):
            continue
        if any(iou_pp[r][k] > dedup_iou for k in kept):
            continue
        kept.append(r)
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svm_negatives_matches_loop(seed):
    proposals = _random_boxes(250, seed, 60.0)
    # Many near-duplicates: jitter copies of the first 50 windows.
    jitter = proposals[:50] + torch.rand(50, 4, generator=torch.Generator().manual_seed(seed))
    proposals = torch.cat((proposals, jitter))
    gts = torch.tensor([[10.0, 10, 40, 40], [30.0, 5, 70, 35]])
    got = svm_negatives(proposals, gts)
    assert got.tolist() == _reference_negatives(proposals, gts)
    got = svm_negatives(proposals, gts, neg_iou=0.1, dedup_iou=0.5)
    assert got.tolist() == _reference_negatives(proposals, gts, 0.1, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"neg_iou": 1.3}, ValueError, r"neg_iou must be in \[0, 1\]"),
        ({"dedup_iou": "0.7"}, TypeError, "dedup_iou must be a real number"),
        ({"gt_boxes_of_class": torch.zeros(1, 5)}, ValueError, "gt_boxes_of_class must have"),
        ({"proposals": [[0, 0, 1, 1]]}, TypeError, "proposals must be a torch.Tensor"),
    ],
)
def test_svm_negatives_errors(kwargs, exc, match):
    args = {"proposals": torch.zeros(2, 4), "gt_boxes_of_class": GT}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        svm_negatives(**args)


# ------------------------------------------------------------------------ hard negatives


def test_select_hard_negatives():
    scores = torch.tensor([-2.0, -1.0, -0.999, 0.5, -1.5, 3.0])
    assert select_hard_negatives(scores).tolist() == [2, 3, 5]  # -1 exactly is on the margin
    assert select_hard_negatives(scores, threshold=-1.0001).tolist() == [1, 2, 3, 5]
    assert select_hard_negatives(scores, max_count=2).tolist() == [3, 5]
    assert select_hard_negatives(scores, max_count=0).tolist() == []
    assert select_hard_negatives(torch.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="max_count must be >= 0"):
        select_hard_negatives(scores, max_count=-1)
    with pytest.raises(ValueError, match="threshold must be finite"):
        select_hard_negatives(scores, threshold=float("inf"))
    with pytest.raises(ValueError, match=r"scores must have shape \[N\]"):
        select_hard_negatives(scores[None])


def test_hard_negative_round():
    cache = torch.tensor([10, 11, 12])
    cache_scores = torch.tensor([-1.5, -1.1, 0.2])  # 10 is easy: evicted
    candidates = torch.tensor([12, 20, 21, 22])
    candidate_scores = torch.tensor([0.2, -0.5, -1.05, 1.0])  # 21 is not hard
    new = hard_negative_round(cache, cache_scores, candidates, candidate_scores)
    assert new.tolist() == [11, 12, 20, 22]
    # A second round with a solver that now separates everything adds nothing new.
    again = hard_negative_round(new, torch.full((4,), -1.1), candidates, torch.full((4,), -3.0))
    assert again.tolist() == [11, 12, 20, 22]
    with pytest.raises(ValueError, match="evict_threshold must be <= hard_threshold"):
        hard_negative_round(cache, cache_scores, candidates, candidate_scores, -1.0, -0.5)
    with pytest.raises(ValueError, match=r"cache_scores must have shape \[3\]"):
        hard_negative_round(cache, cache_scores[:2], candidates, candidate_scores)
    with pytest.raises(TypeError, match="candidates must be an integer"):
        hard_negative_round(cache, cache_scores, candidates.float(), candidate_scores)


# ------------------------------------------------------------------------ box regression


def test_select_regression_windows():
    iou = torch.tensor([0.5, 0.4999, 0.9, 0.0])
    assert select_regression_windows(iou).tolist() == [0, 2]
    assert select_regression_windows(iou, 0.6).tolist() == [2]
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        select_regression_windows(iou, -0.1)


def test_regression_targets_round_trip():
    proposals = _random_boxes(100, 4).double()
    gt = torch.tensor([[10.0, 10, 40, 40], [30.0, 5, 70, 35]], dtype=torch.float64)
    iou, matched, _ = label_windows(
        torch.cat((proposals, gt)), gt, torch.tensor([1, 2])
    )  # the gt boxes themselves guarantee some windows with IoU >= 0.5
    windows = torch.cat((proposals, gt))
    idx = select_regression_windows(iou)
    assert idx.numel() >= 2
    targets = gt[matched[idx]]
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        deltas = regression_targets(windows[idx], targets, weights)
        assert deltas.shape == (idx.numel(), 4)
        back = decode_boxes(windows[idx], deltas, weights)
        torch.testing.assert_close(back, targets)


def test_regression_targets_errors():
    with pytest.raises(ValueError, match="same shape"):
        regression_targets(torch.ones(2, 4).cumsum(1), torch.ones(3, 4).cumsum(1))
    with pytest.raises(ValueError, match="positive width and height"):
        regression_targets(torch.zeros(1, 4), GT)
