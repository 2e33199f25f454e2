"""Tests for sppnet.ops.boxes: each op against a slow loop written from its definition."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sppnet.ops.boxes as boxes_mod
from sppnet.ops import (
    batched_nms,
    box_area,
    box_iou,
    check_boxes,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nms,
    remove_small_boxes,
)

DTYPES = [torch.float32, torch.float64]
FAST = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------------------- references
def ref_iou(a: list[float], b: list[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes straight from the definition, in Python floats."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    rows_a, rows_b = a.tolist(), b.tolist()
    out = [[ref_iou(ra, rb) for rb in rows_b] for ra in rows_a]
    return torch.tensor(out, dtype=torch.float64).reshape(len(rows_a), len(rows_b))


def ref_nms(boxes, scores, thr, labels=None) -> list[int]:
    """Greedy NMS: visit by score (Python's sort is stable: ties keep the lower index)
    and keep a box if its IoU with every kept box of the same label is <= thr."""
    rows, s = boxes.tolist(), scores.tolist()
    lab = labels.tolist() if labels is not None else [0] * len(rows)
    kept: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -s[i]):
        if all(lab[k] != lab[i] or ref_iou(rows[i], rows[k]) <= thr for k in kept):
            kept.append(i)
    return kept


def ref_nms_vectorised(boxes, scores, thr) -> list[int]:
    """The greedy loop of :func:`ref_nms`, one candidate at a time against all kept boxes
    with the IoU formula written out in torch (fast enough for thousands of boxes)."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    kept: list[int] = []
    for i in order:
        b, k = boxes[i], boxes[kept]  # [4], [K, 4]
        iw = (torch.minimum(k[:, 2], b[2]) - torch.maximum(k[:, 0], b[0])).clamp(min=0)
        ih = (torch.minimum(k[:, 3], b[3]) - torch.maximum(k[:, 1], b[1])).clamp(min=0)
        inter = iw * ih
        union = (b[2] - b[0]) * (b[3] - b[1]) + (k[:, 2] - k[:, 0]) * (k[:, 3] - k[:, 1]) - inter
        iou = torch.where(union > 0, inter / union, torch.zeros_like(inter))
        if bool((iou <= thr).all()):
            kept.append(i)
    return kept


def random_boxes(n: int, dtype=torch.float64, size=20, max_wh=12, seed=0, integer=True):
    """Boxes on a small integer grid so that equal, touching, nested and zero-area boxes
    all occur; ``integer=False`` gives continuous coordinates."""
    g = torch.Generator().manual_seed(seed)
    if integer:
        xy = torch.randint(0, size, (n, 2), generator=g).to(dtype)
        wh = torch.randint(0, max_wh + 1, (n, 2), generator=g).to(dtype)
    else:
        xy = torch.rand(n, 2, generator=g, dtype=dtype) * size
        wh = torch.rand(n, 2, generator=g, dtype=dtype) * max_wh
    return torch.cat([xy, xy + wh], dim=1)


@st.composite
def box_lists(draw, min_n=0, max_n=25, integer=True):
    if integer:
        coord, side = st.integers(0, 20), st.integers(0, 12)
    else:
        coord = st.floats(0, 100, allow_nan=False, allow_infinity=False)
        side = st.floats(0, 50, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.tuples(coord, coord, side, side), min_size=min_n, max_size=max_n))
    t = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=torch.float64)
    return t.reshape(-1, 4)


# Thresholds with exact ties possible on integer boxes (1/3, 0.5) and the two ends.
THRESHOLDS = st.sampled_from([0.0, 0.1, 0.3, 1 / 3, 0.5, 0.7, 1.0])


# ------------------------------------------------------------------------------ box_area
@pytest.mark.parametrize("dtype", DTYPES)
def test_box_area(dtype):
    b = torch.tensor([[0, 0, 10, 10], [1, 2, 4, 8], [3, 3, 3, 9]], dtype=dtype)
    out = box_area(b)
    assert out.dtype == dtype
    assert out.tolist() == [100.0, 18.0, 0.0]
    assert box_area(torch.zeros(0, 4, dtype=dtype)).shape == (0,)


# ------------------------------------------------------------------------------- box_iou
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3),  # half overlap: 50 / 150
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # nested
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),  # touching corners
        ((0, 0, 10, 10), (30, 30, 40, 45), 0.0),  # disjoint
        ((0, 0, 4, 4), (2, 2, 6, 6), 4 / 28),  # corner overlap
        ((5, 5, 5, 5), (5, 5, 5, 5), 0.0),  # two equal zero-area boxes: 0, not NaN
        ((3, 0, 3, 10), (0, 0, 10, 10), 0.0),  # zero-width inside a box
    ],
)
def test_box_iou_worked_examples(dtype, a, b, expected):
    out = box_iou(torch.tensor([a], dtype=dtype), torch.tensor([b], dtype=dtype))
    assert out.shape == (1, 1)
    assert out.dtype == dtype
    assert out.item() == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "m"), [(1, 1), (7, 5), (13, 17), (31, 2)])
@pytest.mark.parametrize("integer", [True, False])
def test_box_iou_matches_reference(dtype, n, m, integer):
    a = random_boxes(n, dtype, seed=n, integer=integer)
    b = random_boxes(m, dtype, seed=100 + m, integer=integer)
    out = box_iou(a, b)
    expected = ref_iou_matrix(a, b)
    assert out.shape == (n, m)
    if dtype == torch.float64:
        # Same arithmetic in the same order: bit for bit.
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_iou_empty(dtype):
    full = random_boxes(3, dtype)
    empty = torch.zeros(0, 4, dtype=dtype)
    assert box_iou(empty, full).shape == (0, 3)
    assert box_iou(full, empty).shape == (3, 0)
    assert box_iou(empty, empty).shape == (0, 0)
    assert box_iou(empty, full).dtype == dtype


@FAST
@given(a=box_lists(), b=box_lists(integer=False))
def test_box_iou_properties(a, b):
    iou = box_iou(a, b)
    assert torch.equal(iou, box_iou(b, a).T)
    assert bool(((iou >= 0) & (iou <= 1)).all())
    self_iou = box_iou(a, a).diagonal()
    positive = box_area(a) > 0
    assert bool((self_iou[positive] == 1).all())
    assert bool((self_iou[~positive] == 0).all())


def test_box_iou_gradcheck():
    a = torch.tensor([[0.0, 0.5, 10.2, 10.1], [3.1, 2.2, 7.3, 9.4]], dtype=torch.float64)
    b = torch.tensor([[5.3, 0.7, 15.1, 10.9], [1.1, 1.3, 4.6, 4.2]], dtype=torch.float64)
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(box_iou, (a, b))


def test_box_iou_zero_area_gradient_is_finite():
    a = torch.tensor([[5.0, 5.0, 5.0, 5.0]], dtype=torch.float64, requires_grad=True)
    box_iou(a, a.detach().clone()).sum().backward()
    assert bool(torch.isfinite(a.grad).all())


# ----------------------------------------------------------------------------------- nms
def _check_nms(boxes, scores, thr, labels=None):
    out = nms(boxes, scores, thr) if labels is None else batched_nms(boxes, scores, labels, thr)
    assert out.dtype == torch.int64
    assert out.device == boxes.device
    assert out.tolist() == ref_nms(boxes, scores, thr, labels)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 33, 130, 301])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_reference(dtype, n, thr):
    boxes = random_boxes(n, dtype, seed=n)
    scores = torch.rand(n, generator=torch.Generator().manual_seed(n), dtype=dtype)
    _check_nms(boxes, scores, thr)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_threshold_is_strict(dtype):
    # IoU of the two boxes is exactly 50 / 150 = 1/3.
    boxes = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert nms(boxes, scores, 1 / 3).tolist() == [0, 1]  # IoU == thr: kept
    just_below = math.nextafter(1 / 3, 0.0) if dtype == torch.float64 else 0.3333
    assert nms(boxes, scores, just_below).tolist() == [0]  # IoU > thr: suppressed
    _check_nms(boxes, scores, 1 / 3)
    _check_nms(boxes, scores, just_below)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_ties_keep_lower_index_first(dtype):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [1, 0, 11, 10]])
    boxes = boxes.to(dtype)
    scores = torch.ones(4, dtype=dtype)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    scores = torch.tensor([0.5, 0.9, 0.9, 0.9], dtype=dtype)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # Many exact ties across a block boundary of the implementation.
    big = random_boxes(300, dtype, seed=3)
    _check_nms(big, torch.zeros(300, dtype=dtype), 0.3)
    _check_nms(big, (torch.arange(300) % 4).to(dtype), 0.5)


def test_nms_zero_area_boxes_never_suppress():
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.0).tolist() == [0, 1, 2]


@pytest.mark.parametrize("dtype", [*DTYPES, torch.float16, torch.bfloat16])
def test_nms_keeps_device_and_accepts_grad_inputs(dtype):
    boxes = random_boxes(20, dtype).requires_grad_()
    scores = torch.rand(20, dtype=dtype).requires_grad_()
    out = nms(boxes, scores, 0.5)
    assert out.dtype == torch.int64
    assert out.device == boxes.device
    assert out.tolist() == ref_nms(boxes.detach().float(), scores.detach().float(), 0.5)


@FAST
@given(boxes=box_lists(), thr=THRESHOLDS, data=st.data())
def test_nms_properties(boxes, thr, data):
    n = boxes.shape[0]
    raw = data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))  # many ties
    scores = torch.tensor(raw, dtype=torch.float64)
    keep = _check_nms(boxes, scores, thr)
    kept = keep.tolist()
    assert len(set(kept)) == len(kept)
    assert all(0 <= i < n for i in kept)
    # Sorted by decreasing score, ties by index.
    assert kept == sorted(kept, key=lambda i: (-raw[i], i))
    iou = box_iou(boxes, boxes)
    # Kept boxes do not overlap each other more than thr.
    sub = iou[keep][:, keep]
    assert bool((sub.triu(diagonal=1) <= thr).all())
    # Every suppressed box overlaps a kept box that outranks it.
    rank = {i: (-raw[i], i) for i in range(n)}
    for j in set(range(n)) - set(kept):
        assert any(iou[j, k] > thr and rank[k] < rank[j] for k in kept)


@FAST
@given(boxes=box_lists(integer=False, max_n=40), thr=st.floats(0, 1), data=st.data())
def test_nms_continuous_boxes(boxes, thr, data):
    n = boxes.shape[0]
    raw = data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n))
    _check_nms(boxes, torch.tensor(raw, dtype=torch.float64), thr)


def test_nms_large_n_is_chunked_and_matches_reference(monkeypatch):
    # No IoU matrix larger than the block x chunk size may be built.
    original = boxes_mod._over_threshold
    sizes = []

    def recording(a, b, thr):
        sizes.append(a.shape[0] * b.shape[0])
        return original(a, b, thr)

    monkeypatch.setattr(boxes_mod, "_over_threshold", recording)
    n = 20_000
    boxes = random_boxes(n, torch.float32, size=1000, max_wh=300, seed=7, integer=False)
    scores = torch.rand(n, generator=torch.Generator().manual_seed(7))
    keep = nms(boxes, scores, 0.3)
    assert max(sizes) <= boxes_mod._NMS_BLOCK * boxes_mod._NMS_CHUNK
    # Greedy NMS decides the top-M boxes from the top-M boxes alone, so the kept boxes
    # among the 2,000 best must equal NMS (and the reference) over those 2,000 alone.
    order = torch.sort(scores, descending=True, stable=True).indices
    top = order[:2000]  # [3000] indices into boxes
    expected = top[ref_nms_vectorised(boxes[top], scores[top], 0.3)]
    assert keep[: len(expected)].tolist() == expected.tolist()
    assert set(keep.tolist()) & set(top.tolist()) == set(expected.tolist())
    assert torch.equal(top[nms(boxes[top], scores[top], 0.3)], expected)


def test_nms_empty():
    out = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert out.shape == (0,)
    assert out.dtype == torch.int64
    out = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert out.shape == (0,)
    assert out.dtype == torch.int64


# --------------------------------------------------------------------------- batched_nms
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 9, 64, 257])
@pytest.mark.parametrize("num_labels", [1, 3, 21])
@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8])
def test_batched_nms_matches_reference(dtype, n, num_labels, label_dtype):
    g = torch.Generator().manual_seed(n * num_labels)
    boxes = random_boxes(n, dtype, seed=n)
    scores = torch.randint(0, 8, (n,), generator=g).to(dtype)  # ties across labels
    labels = torch.randint(0, num_labels, (n,), generator=g).to(label_dtype)
    _check_nms(boxes, scores, 0.3, labels)


@pytest.mark.parametrize("n", [5, 300, 700])
@pytest.mark.parametrize("max_keep", [0, 1, 17, 128, 129, 10_000])
@pytest.mark.parametrize("thr", [0.0, 0.3])
def test_batched_nms_max_keep_is_the_reference_cut(n, max_keep, thr):
    # n > 128 crosses the blocks of the early-stopping walk (suppression by an earlier
    # block, a cut inside a block); integer scores give ties across labels
    g = torch.Generator().manual_seed(n + max_keep)
    boxes = random_boxes(n, torch.float32, seed=n, size=40)
    scores = torch.randint(0, 30, (n,), generator=g).float()
    labels = torch.randint(0, 4, (n,), generator=g)
    got = batched_nms(boxes, scores, labels, thr, max_keep=max_keep)
    assert got.dtype == torch.int64
    assert got.tolist() == ref_nms(boxes, scores, thr, labels)[:max_keep]


def test_batched_nms_max_keep_validation():
    boxes, scores, labels = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    assert batched_nms(boxes, scores, labels, 0.5, max_keep=3).tolist() == []
    with pytest.raises(ValueError, match="max_keep"):
        batched_nms(boxes, scores, labels, 0.5, max_keep=-1)


def test_batched_nms_labels_do_not_interact():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.9, 0.7], dtype=torch.float64)
    labels = torch.tensor([1, 2, 1])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5).tolist() == [1]


def test_batched_nms_exact_at_large_coordinates():
    # With labels this large the coordinate-offset trick (shift each label's boxes by
    # label * (max coordinate + 1), about 5e9) would round these 0.25-wide float32 boxes
    # to nothing; per-label NMS sees the boxes as they are.
    boxes = torch.tensor(
        [[1e3, 1e3, 1e3 + 0.25, 1e3 + 0.25], [1e3 + 0.2, 1e3, 1e3 + 0.45, 1e3 + 0.25]]
    )
    scores = torch.tensor([0.9, 0.8])
    labels = torch.tensor([5_000_000, 5_000_000])
    # IoU = 0.05 / 0.45 = 1/9.
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, labels, 0.1).tolist() == [0]


@FAST
@given(boxes=box_lists(), thr=THRESHOLDS, data=st.data())
def test_batched_nms_properties(boxes, thr, data):
    n = boxes.shape[0]
    scores = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    keep = _check_nms(boxes, scores.double(), thr, labels.long())
    # Per label, the result is plain NMS of that label's boxes.
    for label in labels.unique():
        idx = torch.nonzero(labels == label).flatten()
        alone = idx[nms(boxes[idx], scores[idx].double(), thr)]
        assert keep[labels[keep] == label].tolist() == alone.tolist()


# ----------------------------------------------------------------------------- box coding
@pytest.mark.parametrize("dtype", DTYPES)
def test_encode_worked_example(dtype):
    proposals = torch.tensor([[0, 0, 10, 20]], dtype=dtype)  # centre (5, 10), 10 x 20
    targets = torch.tensor([[2, 4, 22, 24]], dtype=dtype)  # centre (12, 14), 20 x 20
    deltas = encode_boxes(proposals, targets)
    expected = torch.tensor([[7 / 10, 4 / 20, math.log(2.0), 0.0]], dtype=dtype)
    torch.testing.assert_close(deltas, expected)
    weighted = encode_boxes(proposals, targets, weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(weighted, expected * torch.tensor([10, 10, 5, 5], dtype=dtype))
    torch.testing.assert_close(decode_boxes(proposals, deltas), targets)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_round_trip(dtype, weights):
    proposals = random_boxes(37, dtype, seed=1, integer=False) + torch.tensor(
        [0, 0, 1, 1], dtype=dtype
    )
    targets = random_boxes(37, dtype, seed=2, integer=False) + torch.tensor(
        [0, 0, 1, 1], dtype=dtype
    )
    deltas = encode_boxes(proposals, targets, weights)
    assert deltas.shape == (37, 4)
    assert deltas.dtype == dtype
    out = decode_boxes(proposals, deltas, weights)
    assert out.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out, targets, rtol=tol, atol=tol)


@FAST
@given(p=box_lists(min_n=1, integer=False), data=st.data())
def test_encode_decode_round_trip_property(p, data):
    n = p.shape[0]
    g = data.draw(box_lists(min_n=n, max_n=n, integer=False))
    # Coding needs positive sizes; sides in [1, 51] also keep gw / pw under the decode
    # clamp of 1000 / 16.
    p = p + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    g = g + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    out = decode_boxes(p, encode_boxes(p, g))
    torch.testing.assert_close(out, g, rtol=1e-9, atol=1e-9)


def test_decode_per_class_deltas():
    proposals = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 9.0, 7.0]], dtype=torch.float64)
    targets_a = torch.tensor([[1.0, 2.0, 12.0, 19.0], [4.0, 5.0, 9.0, 8.0]], dtype=torch.float64)
    targets_b = torch.tensor([[0.0, 1.0, 8.0, 30.0], [6.0, 6.0, 7.0, 7.5]], dtype=torch.float64)
    deltas = torch.cat([encode_boxes(proposals, targets_a), encode_boxes(proposals, targets_b)], 1)
    out = decode_boxes(proposals, deltas)  # [N, 4*K] with K = 2
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[:, :4], targets_a)
    torch.testing.assert_close(out[:, 4:], targets_b)


def test_decode_clamps_large_size_deltas():
    proposals = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    deltas = torch.tensor([[0.0, 0.0, 1000.0, 1000.0]])  # exp(1000) overflows to inf
    out = decode_boxes(proposals, deltas)
    assert bool(torch.isfinite(out).all())
    # Clamped at log(1000 / 16): the box grows to 1000 x 1000 around the same centre.
    torch.testing.assert_close(out, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))


def test_encode_decode_gradcheck():
    p = torch.tensor([[0.0, 0.5, 10.2, 10.1], [3.1, 2.2, 7.3, 9.4]], dtype=torch.float64)
    g = torch.tensor([[1.3, 0.7, 12.1, 10.9], [2.1, 1.3, 6.6, 8.2]], dtype=torch.float64)
    d = torch.tensor([[0.1, -0.2, 0.3, -0.1, 0.0, 0.2, -0.3, 0.4]] * 2, dtype=torch.float64)
    for t in (p, g, d):
        t.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: encode_boxes(a, b, (10, 10, 5, 5)), (p, g))
    assert torch.autograd.gradcheck(lambda a, b: decode_boxes(a, b, (10, 10, 5, 5)), (p, d))


def test_box_coding_empty():
    empty = torch.zeros(0, 4)
    assert encode_boxes(empty, empty).shape == (0, 4)
    assert decode_boxes(empty, torch.zeros(0, 8)).shape == (0, 8)


# ----------------------------------------------------------------- clip_boxes / small boxes
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_boxes(dtype):
    b = torch.tensor([[-5, -3, 12, 30], [2, 3, 4, 5], [15, 25, 20, 40]], dtype=dtype)
    out = clip_boxes(b, height=20, width=10)
    expected = torch.tensor([[0, 0, 10, 20], [2, 3, 4, 5], [10, 20, 10, 20]], dtype=dtype)
    assert torch.equal(out, expected)
    assert out.dtype == dtype
    assert torch.equal(b[1], torch.tensor([2, 3, 4, 5], dtype=dtype))  # input untouched
    check_boxes(out)
    assert clip_boxes(torch.zeros(0, 4, dtype=dtype), 5, 5.5).shape == (0, 4)


def test_remove_small_boxes():
    b = torch.tensor([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 10, 3], [1, 1, 4, 4.5], [3, 3, 3, 3]])
    assert remove_small_boxes(b, 3).tolist() == [0, 2, 3]  # a side equal to min_size stays
    assert remove_small_boxes(b, 3.5).tolist() == [0]
    assert remove_small_boxes(b, 0).tolist() == [0, 1, 2, 3, 4]
    out = remove_small_boxes(torch.zeros(0, 4), 1)
    assert out.shape == (0,)
    assert out.dtype == torch.int64


# ----------------------------------------------------------------------------- validation
GOOD = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 2.0]])


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ([[0, 0, 1, 1]], TypeError, "floating-point"),
        (torch.tensor([[0, 0, 1, 1]]), TypeError, "floating-point"),
        (torch.zeros(4), ValueError, r"shape \[N, 4\].*got \[4\]"),
        (torch.zeros(2, 3, 4), ValueError, r"got \[2, 3, 4\]"),
        (torch.zeros(3, 5), ValueError, r"got \[3, 5\]"),
        (torch.tensor([[0, 0, 1, 1], [0, float("nan"), 1, 1]]), ValueError, "finite.*row 1"),
        (torch.tensor([[0, 0, float("inf"), 1]]), ValueError, "finite.*row 0"),
        (torch.tensor([[0.0, 0, 1, 1], [5, 0, 4, 1]]), ValueError, r"x2 >= x1.*row 1.*5\.0"),
        (torch.tensor([[0.0, 3, 1, 2], [5, 0, 4, 1]]), ValueError, r"y2 >= y1.*row 0.*3\.0"),
        (
            torch.tensor([[0.0, 0, 1, 1], [0, 3, 1, 2], [5, 0, 4, 1]]),
            ValueError,
            r"y2 >= y1.*row 1",
        ),
    ],
)
def test_check_boxes_errors(bad, error, match):
    if isinstance(bad, list):
        with pytest.raises(TypeError, match=r"torch.Tensor"):
            check_boxes(bad)
        return
    with pytest.raises(error, match=match):
        check_boxes(bad)
    with pytest.raises(error, match=r"^proposals"):
        check_boxes(bad, "proposals")
    # Every public op validates its boxes.
    for call in (
        lambda: box_area(bad),
        lambda: box_iou(bad, GOOD),
        lambda: box_iou(GOOD, bad),
        lambda: nms(bad, torch.zeros(bad.shape[0]), 0.5),
        lambda: clip_boxes(bad, 10, 10),
        lambda: remove_small_boxes(bad, 1),
        lambda: encode_boxes(bad, bad),
        lambda: decode_boxes(bad, torch.zeros(bad.shape[0], 4)),
    ):
        with pytest.raises(error, match=match):
            call()


def test_check_boxes_accepts_zero_area_and_empty():
    check_boxes(torch.tensor([[2.0, 3.0, 2.0, 3.0]]))
    check_boxes(torch.zeros(0, 4, dtype=torch.float64))


@pytest.mark.parametrize(
    ("scores", "thr", "error", "match"),
    [
        (torch.zeros(3), 0.5, ValueError, r"scores must have shape \[N\] = \[2\].*\[3\]"),
        (torch.zeros(2, 1), 0.5, ValueError, r"scores must have shape.*\[2, 1\]"),
        (torch.zeros(2, dtype=torch.int64), 0.5, TypeError, "scores must be a floating"),
        (torch.tensor([0.0, float("nan")]), 0.5, ValueError, r"scores\[1\]"),
        ([0.0, 1.0], 0.5, TypeError, "scores must be a torch.Tensor"),
        (torch.zeros(2), -0.1, ValueError, r"iou_threshold must be in \[0, 1\]"),
        (torch.zeros(2), 1.5, ValueError, r"iou_threshold must be in \[0, 1\]"),
        (torch.zeros(2), float("nan"), ValueError, "iou_threshold must be finite"),
        (torch.zeros(2), float("inf"), ValueError, "iou_threshold must be finite"),
        (torch.zeros(2), "0.5", TypeError, "iou_threshold must be a real number"),
        (torch.zeros(2), True, TypeError, "iou_threshold must be a real number"),
    ],
)
def test_nms_argument_errors(scores, thr, error, match):
    with pytest.raises(error, match=match):
        nms(GOOD, scores, thr)
    with pytest.raises(error, match=match):
        batched_nms(GOOD, scores, torch.zeros(2, dtype=torch.int64), thr)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.zeros(2), TypeError, "labels must be an integer tensor.*float32"),
        (torch.zeros(2, dtype=torch.bool), TypeError, "labels must be an integer tensor"),
        (torch.zeros(3, dtype=torch.int64), ValueError, r"labels must have shape.*\[3\]"),
        (torch.zeros(2, 1, dtype=torch.int64), ValueError, r"labels must have shape.*\[2, 1\]"),
        ([0, 1], TypeError, "labels must be a torch.Tensor"),
    ],
)
def test_batched_nms_label_errors(labels, error, match):
    with pytest.raises(error, match=match):
        batched_nms(GOOD, torch.zeros(2), labels, 0.5)


def test_box_coding_errors():
    with pytest.raises(ValueError, match=r"same shape.*\[2, 4\].*\[1, 4\]"):
        encode_boxes(GOOD, GOOD[:1])
    flat = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"proposals must have positive width.*row 0"):
        encode_boxes(flat, GOOD[:1])
    with pytest.raises(ValueError, match=r"targets must have positive width.*row 0"):
        encode_boxes(GOOD[:1], flat)
    with pytest.raises(ValueError, match="weights must be 4 numbers"):
        encode_boxes(GOOD, GOOD, weights=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights must be > 0"):
        decode_boxes(GOOD, torch.zeros(2, 4), weights=(1.0, 0.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="deltas must be a floating"):
        decode_boxes(GOOD, torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"deltas must be a torch.Tensor"):
        decode_boxes(GOOD, [[0.0] * 4] * 2)
    for shape in [(2, 5), (3, 4), (2,), (2, 0), (2, 2, 4)]:
        with pytest.raises(ValueError, match=r"deltas must have shape \[N, 4\*K\] with N = 2"):
            decode_boxes(GOOD, torch.zeros(shape))
    with pytest.raises(ValueError, match="deltas must be finite"):
        decode_boxes(GOOD, torch.tensor([[0.0, 0.0, float("nan"), 0.0]] * 2))


def test_clip_and_small_box_errors():
    with pytest.raises(ValueError, match="height and width must be > 0"):
        clip_boxes(GOOD, 0, 10)
    with pytest.raises(ValueError, match="width must be finite"):
        clip_boxes(GOOD, 10, float("inf"))
    with pytest.raises(TypeError, match="height must be a real number"):
        clip_boxes(GOOD, "10", 10)
    with pytest.raises(ValueError, match="min_size must be >= 0"):
        remove_small_boxes(GOOD, -1)
    with pytest.raises(TypeError, match="min_size must be a real number"):
        remove_small_boxes(GOOD, None)
