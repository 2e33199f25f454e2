"""Geometry of the test views (Sec. 3.1.2, 3.1.5), checked by hand on small examples."""

from __future__ import annotations

import itertools

import pytest
import torch

from sppnet.data.views import feature_map_view_boxes, ten_view_boxes


def _box(x: int, y: int, c: int = 224) -> list[float]:
    return [float(x), float(y), float(x + c), float(y + c)]


def test_ten_views_256x341_by_hand():
    # width 341, height 256 (shorter side 256): x starts 0, floor(117 / 2) = 58, 117;
    # y starts 0, 16, 32.
    boxes, flipped = ten_view_boxes(341, 256)
    five = [_box(58, 16), _box(0, 0), _box(117, 0), _box(0, 32), _box(117, 32)]
    assert boxes.dtype == torch.float32 and boxes.shape == (10, 4)
    assert boxes.tolist() == five + five
    assert flipped.dtype == torch.bool
    assert flipped.tolist() == [False] * 5 + [True] * 5


def test_ten_views_portrait_and_custom_crop():
    boxes, flipped = ten_view_boxes(64, 97, crop=64)
    # x: all 0 (width == crop); y: 0, floor(33 / 2) = 16, 33
    five = [_box(0, 16, 64), _box(0, 0, 64), _box(0, 0, 64), _box(0, 33, 64), _box(0, 33, 64)]
    assert boxes.tolist() == five + five
    assert int(flipped.sum()) == 5


def test_ten_views_are_the_corners_of_the_entire_image():
    for width, height in [(256, 256), (300, 256), (256, 383), (257, 300)]:
        boxes, _ = ten_view_boxes(width, height)
        assert float(boxes[:, 0].min()) == 0 and float(boxes[:, 1].min()) == 0
        assert float(boxes[:, 2].max()) == width and float(boxes[:, 3].max()) == height
        assert torch.all(boxes[:, 2:] - boxes[:, :2] == 224)


def test_feature_map_views_256x341_nine_positions():
    boxes = feature_map_view_boxes(341, 256)
    expected = [
        _box(58, 16),  # center
        _box(0, 0),  # corners
        _box(117, 0),
        _box(0, 32),
        _box(117, 32),
        _box(58, 0),  # top-middle, bottom-middle
        _box(58, 32),
        _box(0, 16),  # left-middle, right-middle
        _box(117, 16),
    ]
    assert boxes.tolist() == expected


def test_feature_map_views_at_s_equal_crop_leave_three():
    # 224x300 image (shorter side resized to s = 224): the 9 positions collapse to 3, i.e.
    # "6 views when s = 224" with flips (Sec. 3.1.5).
    boxes = feature_map_view_boxes(300, 224)
    assert boxes.tolist() == [_box(38, 0), _box(0, 0), _box(76, 0)]
    portrait = feature_map_view_boxes(224, 300)
    assert portrait.tolist() == [_box(0, 38), _box(0, 0), _box(0, 76)]
    assert feature_map_view_boxes(224, 224).tolist() == [_box(0, 0)]


@pytest.mark.parametrize("width,height,crop", [(341, 256, 224), (65, 64, 64), (70, 91, 64)])
def test_feature_map_views_are_the_grid_of_positions(width, height, crop):
    """Against the definition: every (x, y) in {left, centre, right} x {top, middle, bottom}."""
    xs = {0, (width - crop) // 2, width - crop}
    ys = {0, (height - crop) // 2, height - crop}
    want = {tuple(_box(x, y, crop)) for x, y in itertools.product(xs, ys)}
    boxes = feature_map_view_boxes(width, height, crop)
    got = [tuple(b) for b in boxes.tolist()]
    assert len(got) == len(set(got)), "duplicates must be removed"
    assert set(got) == want
    assert got[0] == tuple(_box((width - crop) // 2, (height - crop) // 2, crop))  # center first


def test_mirrored_boxes_stay_inside_and_are_views_of_the_flipped_image():
    width, height = 341, 256
    boxes = feature_map_view_boxes(width, height)
    mirrored = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
    )
    assert torch.all(mirrored[:, :2] >= 0) and torch.all(mirrored[:, 2] <= width)
    # 18 views at this scale: 9 windows and their 9 mirrors
    assert boxes.shape[0] + mirrored.shape[0] == 18
    # the crop of the flipped image at the mirrored box is the flipped crop
    img = torch.arange(height * width, dtype=torch.float32).view(height, width)
    flipped = img.flip(-1)
    for b, m in zip(boxes.long().tolist(), mirrored.long().tolist(), strict=True):
        crop = img[b[1] : b[3], b[0] : b[2]]
        assert torch.equal(flipped[m[1] : m[3], m[0] : m[2]], crop.flip(-1))


def test_validation():
    with pytest.raises(ValueError, match="200x300"):
        ten_view_boxes(200, 300)
    with pytest.raises(ValueError, match="300x223"):
        feature_map_view_boxes(300, 223)
    with pytest.raises(TypeError, match="width"):
        ten_view_boxes(256.0, 256)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="crop"):
        feature_map_view_boxes(256, 256, crop=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop must be >= 1"):
        feature_map_view_boxes(256, 256, crop=0)


def test_ten_views_use_the_training_crops():
    """The 10 test views are the 5 training crops of Sec. 3.1 (transforms.five_crop_boxes)."""
    from sppnet.data.transforms import five_crop_boxes

    for width, height in [(341, 256), (256, 300), (64, 71)]:
        crop = min(width, height) - 7
        boxes, _ = ten_view_boxes(width, height, crop)
        assert torch.equal(boxes[:5], five_crop_boxes(width, height, crop).to(boxes.dtype))
