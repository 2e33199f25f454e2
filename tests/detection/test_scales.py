"""Tests for sppnet.detection.scales: image resize factors and per-window scale choice."""

from __future__ import annotations

import pytest
import torch

from sppnet.detection.scales import (
    DETECTION_SCALES_1,
    DETECTION_SCALES_5,
    choose_window_scales,
    image_scale_factors,
)


def _reference_choice(boxes, factors, target=224 * 224):
    """Plain loop from Sec. 4.1: the scale whose scaled area is closest; ties -> smaller f."""
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        area = (x2 - x1) * (y2 - y1)
        best = None
        for i, f in enumerate(factors):
            d = abs(area * f * f - target)
            key = (d, f, i)
            if best is None or key < best[0]:
                best = (key, i)
        out.append(best[1])
    return out


def test_paper_scales():
    assert DETECTION_SCALES_1 == (688,)
    assert DETECTION_SCALES_5 == (480, 576, 688, 864, 1200)


def test_image_scale_factors_shorter_side():
    f = image_scale_factors(375, 500, DETECTION_SCALES_5)
    assert f == pytest.approx([s / 375 for s in DETECTION_SCALES_5])
    assert image_scale_factors(500, 333, (688,)) == pytest.approx([688 / 333])


def test_image_scale_factors_cap():
    f = image_scale_factors(100, 1000, (200, 50), max_long_side=1500)
    assert f == pytest.approx([1.5, 0.5])


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((0, 10), {}, ValueError, "height must be a positive"),
        ((10, -1), {}, ValueError, "width must be a positive"),
        ((10, 10, ()), {}, ValueError, "at least one scale"),
        ((10, 10, (0,)), {}, ValueError, "every scale must be a positive"),
        ((10, 10, "688"), {}, TypeError, "scales must be a sequence"),
        ((10, 10), {"max_long_side": 0}, ValueError, "max_long_side must be a positive"),
        ((True, 10), {}, TypeError, "height must be a real number"),
    ],
)
def test_image_scale_factors_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        image_scale_factors(*args, **kwargs)


def test_choose_window_scales_matches_loop():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 400
    wh = torch.rand(300, 2, generator=g) * 400
    boxes = torch.cat((xy, xy + wh), dim=1)
    boxes[:5, 2] = boxes[:5, 0]  # zero-area windows
    factors = image_scale_factors(375, 500, DETECTION_SCALES_5)
    got = choose_window_scales(boxes, factors)
    assert got.dtype == torch.long
    assert got.tolist() == _reference_choice(boxes, factors)
    assert got[:5].tolist() == [0] * 5  # zero area: smallest factor


def test_choose_window_scales_ties_go_to_smaller_factor():
    # Area 4: at f=1 it is 4 and at f=3 it is 36, both 16 away from a target of 20.
    small = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert choose_window_scales(small, [3.0, 1.0], target_area=20).tolist() == [1]
    assert choose_window_scales(small, [1.0, 3.0], target_area=20).tolist() == [0]
    # Equal factors: the lower index.
    assert choose_window_scales(small, [2.0, 2.0, 5.0], target_area=16).tolist() == [0]


def test_choose_window_scales_exact_224():
    boxes = torch.tensor([[0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 448.0, 448.0]])
    assert choose_window_scales(boxes, [0.5, 1.0, 2.0]).tolist() == [2, 0]


def test_choose_window_scales_empty():
    out = choose_window_scales(torch.zeros(0, 4), [1.0, 2.0])
    assert out.shape == (0,) and out.dtype == torch.long


@pytest.mark.parametrize(
    ("boxes", "factors", "kwargs", "exc", "match"),
    [
        (torch.zeros(2, 3), [1.0], {}, ValueError, r"shape \[N, 4\]"),
        (torch.zeros(2, 4, dtype=torch.long), [1.0], {}, TypeError, "floating-point"),
        (torch.tensor([[5.0, 0, 1, 1]]), [1.0], {}, ValueError, "x2 >= x1"),
        (torch.zeros(1, 4), [], {}, ValueError, "at least one factor"),
        (torch.zeros(1, 4), [1.0, -2.0], {}, ValueError, "every factor must be a positive"),
        (torch.zeros(1, 4), 1.0, {}, TypeError, "factors must be a sequence"),
        (torch.zeros(1, 4), [1.0], {"target_area": 0}, ValueError, "target_area"),
    ],
)
def test_choose_window_scales_errors(boxes, factors, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        choose_window_scales(boxes, factors, **kwargs)
