"""R-CNN baseline: window warping against a per-pixel loop, pooled features, validation."""

from __future__ import annotations

import math

import pytest
import torch

from sppnet.detection.rcnn import rcnn_pooled_features, rcnn_window_features, warp_windows
from sppnet.models import create_model


def _bilinear(image: torch.Tensor, u: float, v: float) -> list[float]:
    """Bilinear value at pixel-index coordinates (u, v), index clamped to the image."""
    _, height, width = image.shape
    u = min(max(u, 0.0), width - 1.0)
    v = min(max(v, 0.0), height - 1.0)
    x0, y0 = math.floor(u), math.floor(v)
    x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
    ax, ay = u - x0, v - y0
    out = []
    for c in range(3):
        p = image[c]
        top = (1 - ax) * float(p[y0, x0]) + ax * float(p[y0, x1])
        bottom = (1 - ax) * float(p[y1, x0]) + ax * float(p[y1, x1])
        out.append((1 - ay) * top + ay * bottom)
    return out


def reference_warp(image: torch.Tensor, boxes: torch.Tensor, size: int, pad: int) -> torch.Tensor:
    """The module docstring's formula, one output pixel at a time."""
    _, height, width = image.shape
    out = torch.zeros(boxes.shape[0], 3, size, size, dtype=torch.float64)
    for r, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        if pad:
            grow = size / (size - 2 * pad)
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            x1, x2 = cx - hw * grow, cx + hw * grow
            y1, y2 = cy - hh * grow, cy + hh * grow
        for i in range(size):
            y = y1 + (i + 0.5) * (y2 - y1) / size
            for j in range(size):
                x = x1 + (j + 0.5) * (x2 - x1) / size
                if pad and not (0 <= x < width and 0 <= y < height):
                    continue  # outside the image: 0, the mean
                out[r, :, i, j] = torch.tensor(
                    _bilinear(image, x - 0.5, y - 0.5), dtype=torch.float64
                )
    return out


BOXES = torch.tensor(
    [
        [2.3, 1.7, 9.1, 12.4],  # inside, fractional
        [4.0, 5.0, 4.0, 5.0],  # zero area: one point
        [3.5, 2.0, 3.5, 10.0],  # zero width
        [0.0, 0.0, 13.0, 11.0],  # the whole image
        [8.2, 6.6, 13.0, 11.0],  # touching the right and bottom borders
        [-2.0, -1.5, 5.0, 4.0],  # beyond the top-left corner
    ],
    dtype=torch.float64,
)


@pytest.mark.parametrize("size", [5, 7])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_warp_matches_per_pixel_loop(size, pad):
    if 2 * pad >= size:
        pytest.skip("no room")
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 11, 13, generator=gen, dtype=torch.float64) * 255
    got = warp_windows(image, BOXES, size=size, context_pad=pad, chunk=4)
    assert got.shape == (BOXES.shape[0], 3, size, size)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference_warp(image, BOXES, size, pad), rtol=0, atol=1e-9)


def test_warp_float32_and_chunking():
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(3, 9, 14, generator=gen) * 255
    boxes = BOXES.float()
    whole = warp_windows(image, boxes, size=6, chunk=256)
    assert whole.dtype == torch.float32
    torch.testing.assert_close(warp_windows(image, boxes, size=6, chunk=1), whole)
    ref = reference_warp(image.double(), boxes.double(), 6, 0).float()
    torch.testing.assert_close(whole, ref, rtol=0, atol=1e-2)


def test_warp_identity_and_empty():
    image = torch.rand(3, 6, 6, dtype=torch.float64)
    same = warp_windows(image, torch.tensor([[0.0, 0.0, 6.0, 6.0]], dtype=torch.float64), 6)
    torch.testing.assert_close(same[0], image)
    empty = warp_windows(image, torch.zeros(0, 4, dtype=torch.float64), 6)
    assert empty.shape == (0, 3, 6, 6)


def test_context_pad_zero_outside_the_image():
    image = torch.ones(3, 8, 8)
    out = warp_windows(image, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), size=8, context_pad=2)
    # the box fills the central 4x4; the enlarged box reaches 4 px beyond every side,
    # so the 2 outer samples on each side fall outside the image
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 1.0
    torch.testing.assert_close(out[0, 1], expected)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"image": torch.zeros(3, 4, 4, dtype=torch.int64)}, TypeError),
        ({"image": torch.zeros(4, 4)}, ValueError),
        ({"image": torch.zeros(1, 4, 4)}, ValueError),
        ({"boxes": torch.tensor([[2.0, 0.0, 1.0, 1.0]])}, ValueError),
        ({"boxes": torch.tensor([[0, 0, 1, 1]])}, TypeError),
        ({"boxes": torch.zeros(2, 3)}, ValueError),
        ({"size": 0}, ValueError),
        ({"size": 4.0}, TypeError),
        ({"context_pad": -1}, ValueError),
        ({"context_pad": 2}, ValueError),
        ({"chunk": 0}, ValueError),
    ],
)
def test_warp_validation(kwargs, error):
    args = {"image": torch.zeros(3, 4, 4), "boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]])}
    args |= {"size": 4}
    args |= kwargs
    with pytest.raises(error):
        warp_windows(**args)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model("zf5", num_classes=5, width=0.125, fc_dim=32).eval()


def test_pooled_features_equal_per_window_crop(tiny_model):
    model = tiny_model
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(3, 70, 90, generator=gen) * 255 - 128
    boxes = torch.tensor(
        [[0.0, 0.0, 90.0, 70.0], [10.5, 3.0, 40.0, 60.5], [30.0, 30.0, 30.0, 50.0]]
    )
    size = 48
    with torch.no_grad():
        pooled = rcnn_pooled_features(model, image, boxes, size=size, batch_size=2)
        expected = torch.cat(
            [
                model.forward_pool(model.forward_features(warp_windows(image, b[None], size)))
                for b in boxes
            ]
        )
        _, fc7 = rcnn_window_features(model, image, boxes, size=size, batch_size=2)
        fc7_ref = model.forward_pooled(expected, pre_logits=True)
    assert pooled.shape == (3, model.fc6.in_features)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fc7, fc7_ref, rtol=1e-5, atol=1e-5)
    empty = rcnn_pooled_features(model, image, torch.zeros(0, 4), size=size)
    assert empty.shape == (0, model.fc6.in_features)


def test_pooled_features_validation(tiny_model):
    image = torch.zeros(3, 40, 40)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    with pytest.raises(ValueError, match="minimum input"):
        rcnn_pooled_features(tiny_model, image, boxes, size=tiny_model.min_input_size - 1)
    with pytest.raises(ValueError, match="batch_size"):
        rcnn_pooled_features(tiny_model, image, boxes, size=40, batch_size=0)
    with pytest.raises(TypeError):
        rcnn_pooled_features(tiny_model, image.long(), boxes, size=40)
