"""Tests for sppnet.detection.window_features against a slow loop written from the paper.

The reference follows Sec. 4.1 and Appendix A step by step for one window at a time: pick
the scale whose resized window area is closest to 224x224 (ties to the smaller factor),
scale the box into that resized image per axis, map its edges to conv cells with the
model's stride ``S`` and offset ``o`` (left/top ``floor((x - o) / S) + 1``, right/bottom
``ceil((x - o) / S) - 1``; a window holding no cell centre gets the cell nearest its centre;
cells clipped to the map), crop the conv map and pool the crop with
:func:`sppnet.ops.spatial_pyramid_pool`.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sppnet.detection.window_features import (
    ConvMaps,
    compute_conv_maps,
    pool_windows,
    window_levels,
)
from sppnet.models import create_model
from sppnet.ops import spatial_pyramid_pool

_TARGET = 224 * 224
_HEIGHT, _WIDTH = 97, 131

# Varied windows on a 97x131 image: whole image, touching each border, tiny, zero-area,
# thin strips and mid-size ones (continuous (x1, y1, x2, y2) coordinates).
_BOXES = [
    [0.0, 0.0, 131.0, 97.0],
    [0.0, 0.0, 20.0, 15.0],
    [120.0, 80.0, 131.0, 97.0],
    [0.0, 40.0, 5.0, 60.0],
    [100.0, 0.0, 131.0, 3.0],
    [10.0, 10.0, 12.0, 13.0],
    [50.0, 50.0, 50.0, 50.0],
    [33.3, 21.7, 88.9, 70.1],
    [5.5, 60.25, 125.75, 96.5],
    [64.0, 1.0, 66.0, 96.0],
    [40.0, 30.0, 90.0, 80.0],
    [17.0, 8.0, 47.0, 38.0],
    [70.5, 45.5, 130.0, 95.0],
]


@pytest.fixture(scope="module")
def spp_model():
    torch.manual_seed(0)
    return create_model("zf5", num_classes=5, width=0.125, fc_dim=32).eval()


@pytest.fixture(scope="module")
def nospp_model():
    torch.manual_seed(1)
    return create_model("zf5", num_classes=5, width=0.125, fc_dim=32, spp_levels=None).eval()


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(2)
    return torch.rand(3, _HEIGHT, _WIDTH, generator=g) * 255


def _reference_scale(box, factors):
    """Sec. 4.1: the scale whose resized area is closest to 224*224; ties -> smaller f."""
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    best_key, best = None, None
    for i, f in enumerate(factors):
        key = (abs(area * f * f - _TARGET), f, i)
        if best_key is None or key < best_key:
            best_key, best = key, i
    return best


def _reference_side(lo, hi, stride, offset, size):
    """Appendix A on one axis: first/last cell (inclusive), at least one cell, clipped."""
    first = math.floor((lo - offset) / stride) + 1
    last = math.ceil((hi - offset) / stride) - 1
    if first > last:  # no cell centre inside: the cell nearest the centre, halves up
        first = last = math.floor(((lo + hi) / 2 - offset) / stride + 0.5)
    first = min(max(first, 0), size - 1)
    last = min(max(last, 0), size - 1)
    return first, last


def _reference_pool(model, maps, scales, boxes, levels, mode="max"):
    """One window at a time: choose scale, scale the box, map to cells, crop and pool.

    ``maps`` are the conv maps of the 97x131 image resized for each of ``scales``.
    """
    height, width = _HEIGHT, _WIDTH
    factors = [s / min(height, width) for s in scales]
    sizes = _reference_sizes(scales)
    rows = []
    for box in boxes:
        s = _reference_scale(box, factors)
        fmap = maps[s]
        h, w = sizes[s]
        sx, sy = w / width, h / height
        x1, y1, x2, y2 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
        fh, fw = fmap.shape[-2:]
        c0, c1 = _reference_side(x1, x2, model.feature_stride, model.feature_offset, fw)
        r0, r1 = _reference_side(y1, y2, model.feature_stride, model.feature_offset, fh)
        crop = fmap[:, :, r0 : r1 + 1, c0 : c1 + 1]
        rows.append(spatial_pyramid_pool(crop, levels, mode)[0])
    return torch.stack(rows)


def _reference_sizes(scales):
    short = min(_HEIGHT, _WIDTH)
    return [(round(_HEIGHT * s / short), round(_WIDTH * s / short)) for s in scales]


def _boxes(rows=_BOXES):
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------ compute_conv_maps


@pytest.mark.parametrize("scales", [(100,), (90, 140)])
def test_compute_conv_maps_matches_resize_and_trunk(spp_model, image, scales):
    with torch.no_grad():
        cm = compute_conv_maps(spp_model, image, scales, mean=128.0)
    sizes = _reference_sizes(scales)
    assert cm.image_size == (_HEIGHT, _WIDTH)
    assert cm.factors == pytest.approx([s / _HEIGHT for s in scales])
    assert cm.sizes == sizes
    assert len(cm.maps) == len(scales)
    for (h, w), fmap in zip(sizes, cm.maps, strict=True):
        x = F.interpolate(
            image[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )
        with torch.no_grad():
            expected = spp_model.forward_features(x - 128.0)
        assert fmap.shape == (1, spp_model.feature_channels, *spp_model.feature_size(h, w))
        torch.testing.assert_close(fmap, expected)


def test_compute_conv_maps_rejects_too_small_resize(spp_model, image):
    with pytest.raises(ValueError, match="smaller than the network's minimum input"):
        compute_conv_maps(spp_model, image, (10,))
    # one bad scale among good ones is enough
    with pytest.raises(ValueError, match="scale 10"):
        compute_conv_maps(spp_model, image, (100, 10))


def test_compute_conv_maps_rejects_integer_images(spp_model, image):
    with pytest.raises(TypeError, match="floating"):
        compute_conv_maps(spp_model, image.to(torch.uint8), (100,))
    with pytest.raises(TypeError, match="floating"):
        compute_conv_maps(spp_model, image.long(), (100,))
    with pytest.raises(TypeError, match="floating"):
        compute_conv_maps(spp_model, image.numpy(), (100,))


def test_compute_conv_maps_rejects_bad_shapes(spp_model, image):
    with pytest.raises(ValueError, match=r"Tensor\[3, H, W\]"):
        compute_conv_maps(spp_model, image[:1], (100,))
    with pytest.raises(ValueError, match=r"Tensor\[3, H, W\]"):
        compute_conv_maps(spp_model, image[None], (100,))


# ------------------------------------------------------------------------ pool_windows


def test_window_levels(spp_model, nospp_model):
    assert window_levels(spp_model) == (6, 3, 2, 1)
    assert window_levels(nospp_model) == (6,)


@pytest.mark.parametrize("scales", [(100,), (90, 140), (240, 400)])
@pytest.mark.parametrize("which", ["spp", "nospp"])
def test_pool_windows_matches_reference(spp_model, nospp_model, image, scales, which):
    model = spp_model if which == "spp" else nospp_model
    levels = window_levels(model)
    with torch.no_grad():
        cm = compute_conv_maps(model, image, scales)
        got = pool_windows(model, cm, _boxes())
        expected = _reference_pool(model, cm.maps, scales, _BOXES, levels)
    n_bins = sum(n * n for n in levels)
    assert got.shape == (len(_BOXES), model.feature_channels * n_bins)
    torch.testing.assert_close(got, expected)
    if which == "nospp":  # the no-SPP fc6 takes C * 36 values per window
        assert model.fc6.in_features == got.shape[1]


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_windows_random_maps_and_explicit_levels(mode):
    """Random (tie-free) maps, explicit levels, the model's pooling mode; random windows."""
    model = create_model("zf5", num_classes=5, width=0.125, fc_dim=32, spp_mode=mode)
    scales = (90, 140)
    sizes = _reference_sizes(scales)
    g = torch.Generator().manual_seed(3)
    maps = [torch.randn(1, 4, *model.feature_size(h, w), generator=g) for h, w in sizes]
    cm = ConvMaps((_HEIGHT, _WIDTH), [s / _HEIGHT for s in scales], sizes, maps)
    xy = torch.rand(60, 2, generator=g) * torch.tensor([_WIDTH, _HEIGHT])
    wh = torch.rand(60, 2, generator=g) ** 2 * torch.tensor([_WIDTH, _HEIGHT])
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([_WIDTH, _HEIGHT]))], dim=1)
    levels = (4, 2, 1)
    got = pool_windows(model, cm, boxes, levels=levels)
    expected = _reference_pool(model, maps, scales, boxes.tolist(), levels, mode)
    torch.testing.assert_close(got, expected)


def test_pool_windows_no_windows(spp_model, image):
    with torch.no_grad():
        cm = compute_conv_maps(spp_model, image, (100,))
        out = pool_windows(spp_model, cm, torch.zeros(0, 4))
    assert out.shape == (0, spp_model.feature_channels * 50)


def test_pool_windows_row_order_across_scales(spp_model, image):
    """Windows sent to different scales come back in the order of the input boxes."""
    scales = (240, 400)
    # factors 240/97 and 400/97: small windows go to 400, large ones to 240.
    rows = [
        [0.0, 0.0, 131.0, 97.0],  # large -> 240
        [10.0, 10.0, 30.0, 30.0],  # small -> 400
        [20.0, 5.0, 120.0, 90.0],  # large -> 240
        [60.0, 40.0, 75.0, 52.0],  # small -> 400
        [100.0, 70.0, 131.0, 97.0],  # small -> 400
        [1.0, 2.0, 101.0, 80.0],  # large -> 240
    ]
    factors = [s / _HEIGHT for s in scales]
    chosen = [_reference_scale(b, factors) for b in rows]
    assert chosen == [0, 1, 0, 1, 1, 0]  # the test needs both scales, interleaved
    with torch.no_grad():
        cm = compute_conv_maps(spp_model, image, scales)
        all_rows = pool_windows(spp_model, cm, _boxes(rows))
        for r, box in enumerate(rows):
            alone = pool_windows(spp_model, cm, _boxes([box]))
            torch.testing.assert_close(all_rows[r : r + 1], alone)
        reversed_rows = pool_windows(spp_model, cm, _boxes(rows[::-1]))
    torch.testing.assert_close(reversed_rows, all_rows.flip(0))


def test_pool_windows_gradients_reach_the_maps(spp_model):
    """pool_windows(...).sum().backward() fills the maps' grads, equal to the reference's."""
    scales = (240, 400)
    sizes = _reference_sizes(scales)
    g = torch.Generator().manual_seed(4)
    base = [torch.randn(1, 3, *spp_model.feature_size(h, w), generator=g) for h, w in sizes]
    maps = [m.clone().requires_grad_() for m in base]
    ref_maps = [m.clone().requires_grad_() for m in base]
    boxes = _boxes([*_BOXES, [10.0, 10.0, 30.0, 30.0], [60.0, 40.0, 75.0, 52.0]])
    cm = ConvMaps((_HEIGHT, _WIDTH), [s / _HEIGHT for s in scales], sizes, maps)
    pool_windows(spp_model, cm, boxes).sum().backward()
    _reference_pool(spp_model, ref_maps, scales, boxes.tolist(), (6, 3, 2, 1)).sum().backward()
    for m, ref in zip(maps, ref_maps, strict=True):
        assert m.grad is not None
        assert bool((m.grad != 0).any())  # both scales receive windows
        torch.testing.assert_close(m.grad, ref.grad)


def test_pool_windows_gradients_reach_the_trunk(spp_model, image):
    model = create_model("zf5", num_classes=5, width=0.125, fc_dim=32).eval()
    cm = compute_conv_maps(model, image, (90, 140))
    assert all(m.requires_grad for m in cm.maps)
    pool_windows(model, cm, _boxes()).sum().backward()
    grads = [p.grad for p in model.features.parameters()]
    assert all(gr is not None for gr in grads)
    assert any(bool((gr != 0).any()) for gr in grads)


@pytest.mark.parametrize(
    ("boxes", "kwargs", "exc", "match"),
    [
        (torch.zeros(3, 4, dtype=torch.long), {}, TypeError, "floating"),
        (torch.zeros(3, 5), {}, ValueError, r"shape \[N, 4\]"),
        (torch.tensor([[10.0, 10.0, 5.0, 20.0]]), {}, ValueError, "x2 >= x1"),
        (torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), {}, ValueError, "finite"),
        (torch.zeros(1, 4), {"levels": ()}, ValueError, "at least one pyramid level"),
        (torch.zeros(1, 4), {"levels": (0,)}, ValueError, ">= 1 bin"),
    ],
)
def test_pool_windows_validation(spp_model, image, boxes, kwargs, exc, match):
    with torch.no_grad():
        cm = compute_conv_maps(spp_model, image, (100,))
    with pytest.raises(exc, match=match):
        pool_windows(spp_model, cm, boxes, **kwargs)
