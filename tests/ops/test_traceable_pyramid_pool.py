import pytest
import torch
from reference_pooling import pyramid_reference

from sppnet.ops import spatial_pyramid_pool, window_pyramid_pool
from sppnet.ops.traceable_pyramid_pool import (
    table_levels_for,
    traceable_spatial_pyramid_pool,
    traceable_window_pyramid_pool,
)

LEVEL_SETS = [(6, 3, 2, 1), (3, 2, 1), (4, 2), (5,)]


@pytest.mark.parametrize("levels", LEVEL_SETS)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_whole_map_equals_reference_at_every_size(levels, mode):
    gen = torch.Generator().manual_seed(len(levels))
    for h in range(1, 15):
        for w in (1, 2, 3, 7, 13, 14):
            x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
            got = traceable_spatial_pyramid_pool(x, levels, mode)
            for b in range(2):
                want = pyramid_reference(x[b], levels, mode)
                torch.testing.assert_close(got[b], want, rtol=0, atol=1e-12)
            torch.testing.assert_close(got, spatial_pyramid_pool(x, levels, mode))


def _random_windows(n, h, w, gen):
    x0 = torch.randint(0, w, (n,), generator=gen)
    y0 = torch.randint(0, h, (n,), generator=gen)
    x1 = x0 + 1 + (torch.rand(n, generator=gen) * (w - x0)).long().clamp(max=w - 1 - x0)
    y1 = y0 + 1 + (torch.rand(n, generator=gen) * (h - y0)).long().clamp(max=h - 1 - y0)
    return torch.stack([x0, y0, x1, y1], 1)


@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_windows_equal_reference_and_eager_op(levels):
    gen = torch.Generator().manual_seed(7)
    for h, w in [(1, 1), (2, 3), (13, 17), (40, 9), (63, 64)]:
        fmap = torch.randn(1, 4, h, w, generator=gen)
        windows = _random_windows(30, h, w, gen)
        windows[0] = torch.tensor([0, 0, w, h])  # the whole map: the longest bins
        k = table_levels_for(max(h, w), levels)
        got = traceable_window_pyramid_pool(fmap, windows, levels, k)
        assert got.shape == (30, 4 * sum(n * n for n in levels))
        torch.testing.assert_close(got, window_pyramid_pool(fmap, windows, None, levels))
        for r, (x0, y0, x1, y1) in enumerate(windows.tolist()[:5]):
            want = pyramid_reference(fmap[0, :, y0:y1, x0:x1], levels)
            torch.testing.assert_close(got[r], want, rtol=0, atol=0)


def test_no_windows():
    out = traceable_window_pyramid_pool(torch.randn(1, 3, 5, 6), torch.zeros(0, 4).long())
    assert out.shape == (0, 3 * 50)


def test_table_levels_cover_the_longest_bin():
    assert table_levels_for(1, (6, 3, 2, 1)) == 2  # bins of 1 cell + overlap: 2 cells
    # 6-3-2-1 looks up only the 6x6 level: a 64-cell side has bins of <= 12 cells
    assert table_levels_for(64, (6, 3, 2, 1)) == 4
    # 3-2-1: the 2x2 level is looked up too (2 does not divide 3)
    assert table_levels_for(64, (3, 2, 1)) == 6


def test_validation():
    with pytest.raises(ValueError, match="mode"):
        traceable_spatial_pyramid_pool(torch.randn(1, 1, 2, 2), (1,), "sum")
    with pytest.raises(ValueError, match="4 dims"):
        traceable_spatial_pyramid_pool(torch.randn(1, 2, 2), (1,))
    with pytest.raises(ValueError, match="table_levels"):
        traceable_window_pyramid_pool(torch.randn(1, 1, 2, 2), torch.zeros(0, 4).long(), (1,), 0)
    with pytest.raises(ValueError, match=r"Tensor\[1, C, H, W\]"):
        traceable_window_pyramid_pool(torch.randn(2, 1, 2, 2), torch.zeros(0, 4).long())
    with pytest.raises(ValueError, match="max_side"):
        table_levels_for(0, (1,))
