import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_pooling import map_side_reference

from sppnet.ops import map_windows_to_features


def test_worked_example_from_the_paper_rule():
    # S = 16: x from 100 to 300 -> first cell floor(100/16)+1 = 7, last ceil(300/16)-1 = 18.
    cells = map_windows_to_features(torch.tensor([[100.0, 100.0, 300.0, 300.0]]), 16, (40, 40))
    assert cells.tolist() == [[7, 7, 19, 19]]
    assert cells.dtype == torch.long


def test_offset_shifts_the_grid():
    box = torch.tensor([[114.5, 0.0, 314.5, 50.0]])
    cells = map_windows_to_features(box, 16, (40, 40), offset=14.5)
    assert cells[0, [0, 2]].tolist() == [7, 19]


def test_small_window_gets_the_cell_nearest_its_centre():
    # 20..30 contains no centre (16, 32): first 2 > last 1 -> centre 25 -> cell round(1.5625) = 2
    cells = map_windows_to_features(torch.tensor([[20.0, 20.0, 30.0, 30.0]]), 16, (10, 10))
    assert cells.tolist() == [[2, 2, 3, 3]]
    # zero-area box still gives one cell
    cells = map_windows_to_features(torch.tensor([[8.0, 8.0, 8.0, 8.0]]), 16, (10, 10))
    assert cells.tolist() == [[1, 1, 2, 2]]  # 8/16 = 0.5 rounds half up


def test_clipping_to_the_map():
    boxes = torch.tensor([[-50.0, -50.0, 1000.0, 1000.0], [900.0, 900.0, 990.0, 990.0]])
    cells = map_windows_to_features(boxes, 16, (5, 7))
    assert cells.tolist() == [[0, 0, 7, 5], [6, 4, 7, 5]]


@settings(max_examples=200, deadline=None)
@given(
    x1=st.floats(-40, 600),
    w=st.floats(0, 600),
    y1=st.floats(-40, 400),
    h=st.floats(0, 400),
    stride=st.sampled_from([12, 16, 8.5]),
    offset=st.sampled_from([0.0, 7.5, 14.5]),
)
def test_matches_reference_and_centres_lie_inside(x1, w, y1, h, stride, offset):
    size = (30, 40)
    box = torch.tensor([[x1, y1, x1 + w, y1 + h]], dtype=torch.float64)
    cx0, cy0, cx1, cy1 = map_windows_to_features(box, stride, size, offset)[0].tolist()
    x2, y2 = box[0, 2].item(), box[0, 3].item()
    assert (cx0, cx1 - 1) == map_side_reference(x1, x2, stride, size[1], offset)
    assert (cy0, cy1 - 1) == map_side_reference(y1, y2, stride, size[0], offset)
    assert 0 <= cx0 < cx1 <= size[1] and 0 <= cy0 < cy1 <= size[0]
    # Independent of the formula: when the box holds >= 2 centres and no clipping happens,
    # the chosen cells are exactly those whose receptive-field centre is strictly inside.
    inside = [c for c in range(size[1]) if x1 < offset + stride * c < x2]
    outside_map = offset + stride * (size[1] - 1) < x2 or x1 < offset
    if len(inside) >= 2 and not outside_map:
        assert list(range(cx0, cx1)) == inside


def test_empty_input():
    assert map_windows_to_features(torch.zeros(0, 4), 16, (3, 3)).shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "kwargs", "error", "match"),
    [
        ([[0.0, 0, 10, 10]], {"stride": 0}, ValueError, "stride"),
        ([[0.0, 0, 10, 10]], {"stride": -16}, ValueError, "stride"),
        ([[0.0, 0, 10, 10]], {"stride": math.inf}, ValueError, "finite"),
        ([[0.0, 0, 10, 10]], {"feature_size": (0, 3)}, ValueError, "feature_size"),
        ([[0.0, 0, 10, 10]], {"feature_size": (2.5, 3)}, ValueError, "feature_size"),
        ([[0.0, 0, 10, 10]], {"feature_size": 3}, ValueError, "feature_size"),
        ([[0.0, 0, 10, 10]], {"offset": math.nan}, ValueError, "offset"),
        ([[10.0, 0, 0, 10]], {}, ValueError, "x2"),
        ([[0.0, 10, 10, 0]], {}, ValueError, "y2"),
        ([[math.nan, 0, 10, 10]], {}, ValueError, "NaN|finite"),
        ([[0.0, 0, 10]], {}, ValueError, "4"),
    ],
)
def test_validation(boxes, kwargs, error, match):
    args = {"stride": 16, "feature_size": (10, 10)} | kwargs
    with pytest.raises(error, match=match):
        map_windows_to_features(torch.tensor(boxes), **args)


def test_integer_boxes_rejected():
    with pytest.raises(TypeError):
        map_windows_to_features(torch.tensor([[0, 0, 10, 10]]), 16, (4, 4))
