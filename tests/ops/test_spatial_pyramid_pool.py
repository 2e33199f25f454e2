import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_pooling import bin_range, pyramid_reference

from sppnet import SpatialPyramidPool
from sppnet.ops import bin_edges, num_pyramid_bins, spatial_pyramid_pool

LEVEL_SETS = [(6, 3, 2, 1), (4, 3, 2, 1), (1,)]


def test_bin_count_and_paper_size():
    assert num_pyramid_bins((6, 3, 2, 1)) == 50
    x = torch.randn(2, 256, 13, 13)
    assert spatial_pyramid_pool(x).shape == (2, 12800)  # Sec. 4.1: 12,800-d for conv5


def test_bins_are_never_empty_and_cover_the_map():
    # The sliding-window recipe of Sec. 2.3 gives 9 bins on a=10 for n=6; the Appendix A
    # rule gives exactly n non-empty bins for every size.
    for size in range(1, 41):
        for n in range(1, 8):
            ranges = [bin_range(i, size, n) for i in range(n)]
            assert all(e > s for s, e in ranges)
            assert ranges[0][0] == 0 and ranges[-1][1] == size
            start, end = bin_edges(torch.tensor([size]), n)
            assert start[0].tolist() == [r[0] for r in ranges]
            assert end[0].tolist() == [r[1] for r in ranges]


@pytest.mark.parametrize("levels", LEVEL_SETS)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_every_size_1_to_40_matches_reference(levels, mode):
    gen = torch.Generator().manual_seed(sum(levels))
    for h in range(1, 41):
        for w in range(1, 41):
            x = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64)
            got = spatial_pyramid_pool(x, levels, mode)[0]
            want = pyramid_reference(x[0], levels, mode)
            torch.testing.assert_close(got, want, msg=f"h={h} w={w} levels={levels}")


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_batch_and_memory_format(memory_format):
    x = torch.randn(3, 5, 13, 17).contiguous(memory_format=memory_format)
    got = spatial_pyramid_pool(x, (6, 3, 2, 1))
    for k in range(3):
        torch.testing.assert_close(got[k], pyramid_reference(x[k], (6, 3, 2, 1)))


def test_level_order_is_as_given():
    x = torch.randn(1, 3, 9, 7)
    a = spatial_pyramid_pool(x, (1, 2))
    b = spatial_pyramid_pool(x, (2, 1))
    torch.testing.assert_close(a[0, :3], b[0, 12:])
    torch.testing.assert_close(a[0, 3:], b[0, :12])


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 15), st.integers(1, 15)), min_size=1, max_size=5),
    mode=st.sampled_from(["max", "avg"]),
    levels=st.sampled_from([*LEVEL_SETS, (5, 2), (3,)]),
)
def test_extents_equal_pooling_each_crop(sizes, mode, levels):
    height = max(h for h, _ in sizes) + 2
    width = max(w for _, w in sizes) + 1
    x = torch.randn(len(sizes), 3, height, width, dtype=torch.float64)
    extents = torch.tensor(sizes)
    got = spatial_pyramid_pool(x, levels, mode, extents=extents)
    for k, (h, w) in enumerate(sizes):
        torch.testing.assert_close(got[k], pyramid_reference(x[k, :, :h, :w], levels, mode))


def test_extents_ignore_padding_values():
    x = torch.randn(2, 4, 10, 12)
    ext = torch.tensor([[10, 12], [6, 5]])
    y = x.clone()
    y[1, :, 6:, :] = 1e6  # padding must not leak into sample 1
    y[1, :, :, 5:] = 1e6
    torch.testing.assert_close(
        spatial_pyramid_pool(x, extents=ext), spatial_pyramid_pool(y, extents=ext)
    )


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode):
    x = torch.randn(2, 2, 7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spatial_pyramid_pool(t, (4, 2, 1), mode), (x,))
    ext = torch.tensor([[7, 5], [3, 4]])
    assert torch.autograd.gradcheck(
        lambda t: spatial_pyramid_pool(t, (3, 1), mode, extents=ext), (x,)
    )


def test_gradient_matches_reference():
    x = torch.randn(1, 3, 11, 8, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3 * 50, dtype=torch.float64)
    (spatial_pyramid_pool(x)[0] * weights).sum().backward()
    xr = x.detach().clone().requires_grad_()
    (pyramid_reference(xr[0], (6, 3, 2, 1)) * weights).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_module():
    m = SpatialPyramidPool((4, 2, 1), "avg")
    assert m.num_bins == 21
    assert "levels=(4, 2, 1)" in repr(m) and "'avg'" in repr(m)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(m(x), spatial_pyramid_pool(x, (4, 2, 1), "avg"))


def test_empty_batch_and_channels():
    assert spatial_pyramid_pool(torch.randn(0, 3, 5, 5)).shape == (0, 150)
    assert spatial_pyramid_pool(torch.randn(2, 0, 5, 5)).shape == (2, 0)
    ext = torch.zeros(0, 2, dtype=torch.long)
    assert spatial_pyramid_pool(torch.randn(0, 3, 5, 5), extents=ext).shape == (0, 150)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"levels": (6, 0, 1)}, ValueError, ">= 1"),
        ({"levels": (6, -2)}, ValueError, ">= 1"),
        ({"levels": ()}, ValueError, "at least one"),
        ({"levels": (6.0, 1)}, TypeError, "int"),
        ({"levels": "631"}, TypeError, "sequence"),
        ({"mode": "median"}, ValueError, "mode"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        spatial_pyramid_pool(torch.randn(1, 2, 5, 5), **kwargs)
    with pytest.raises(error, match=match):
        SpatialPyramidPool(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="4 dims"):
        spatial_pyramid_pool(torch.randn(2, 5, 5))
    with pytest.raises(TypeError, match="floating"):
        spatial_pyramid_pool(torch.ones(1, 2, 5, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="Tensor"):
        spatial_pyramid_pool([[1.0]])
    with pytest.raises(ValueError, match="H, W >= 1"):
        spatial_pyramid_pool(torch.randn(1, 2, 0, 5))
    x = torch.randn(2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        spatial_pyramid_pool(x, extents=torch.tensor([[6, 6]]))
    with pytest.raises(TypeError, match="integer"):
        spatial_pyramid_pool(x, extents=torch.tensor([[6.0, 6], [3, 3]]))
    with pytest.raises(ValueError, match=r"1\.\.6"):
        spatial_pyramid_pool(x, extents=torch.tensor([[7, 6], [3, 3]]))
    with pytest.raises(ValueError, match=r"1\.\.6"):
        spatial_pyramid_pool(x, extents=torch.tensor([[6, 0], [3, 3]]))
