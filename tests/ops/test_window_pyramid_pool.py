import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_pooling import pyramid_reference

from sppnet.ops import spatial_pyramid_pool, window_pyramid_pool


def all_windows(height: int, width: int) -> torch.Tensor:
    """Every non-empty window of cells, from 1x1 to the whole map."""
    return torch.tensor(
        [
            (x0, y0, x1, y1)
            for y0 in range(height)
            for y1 in range(y0 + 1, height + 1)
            for x0 in range(width)
            for x1 in range(x0 + 1, width + 1)
        ]
    )


@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 3, 2, 1), (1,), (7, 3, 1)])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_every_window_matches_reference(levels, mode):
    height, width = 7, 9
    x = torch.randn(1, 3, height, width, dtype=torch.float64)
    wins = all_windows(height, width)
    got = window_pyramid_pool(x, wins, levels=levels, mode=mode)
    assert got.shape == (len(wins), 3 * sum(n * n for n in levels))
    for r, (x0, y0, x1, y1) in enumerate(wins.tolist()):
        want = pyramid_reference(x[0, :, y0:y1, x0:x1], levels, mode)
        torch.testing.assert_close(got[r], want, msg=f"window {(x0, y0, x1, y1)}")


def test_large_windows_equal_image_pooling():
    # Windows much larger than 6 cells per bin exercise the deeper sparse-table levels.
    x = torch.randn(2, 4, 43, 57).contiguous(memory_format=torch.channels_last)
    wins = torch.tensor([[0, 0, 57, 43], [3, 1, 40, 42], [10, 5, 11, 30], [0, 40, 57, 43]])
    bidx = torch.tensor([1, 0, 1, 0])
    got = window_pyramid_pool(x, wins, bidx)
    for r, (x0, y0, x1, y1) in enumerate(wins.tolist()):
        b = int(bidx[r])
        want = spatial_pyramid_pool(x[b : b + 1, :, y0:y1, x0:x1])[0]
        torch.testing.assert_close(got[r], want)


@settings(max_examples=30, deadline=None)
@given(
    n_img=st.integers(1, 3),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    n_win=st.integers(1, 12),
    mode=st.sampled_from(["max", "avg"]),
    seed=st.integers(0, 2**16),
)
def test_random_windows_and_images(n_img, height, width, n_win, mode, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_img, 2, height, width, generator=g, dtype=torch.float64)
    xs = torch.randint(0, width, (n_win, 2), generator=g).sort(1).values
    ys = torch.randint(0, height, (n_win, 2), generator=g).sort(1).values
    wins = torch.stack([xs[:, 0], ys[:, 0], xs[:, 1] + 1, ys[:, 1] + 1], 1)
    bidx = torch.randint(0, n_img, (n_win,), generator=g)
    got = window_pyramid_pool(x, wins, bidx, mode=mode)
    for r, (x0, y0, x1, y1) in enumerate(wins.tolist()):
        want = pyramid_reference(x[int(bidx[r]), :, y0:y1, x0:x1], (6, 3, 2, 1), mode)
        torch.testing.assert_close(got[r], want)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode):
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    wins = torch.tensor([[0, 0, 7, 6], [1, 2, 4, 3], [5, 5, 6, 6], [2, 0, 7, 5]])
    bidx = torch.tensor([0, 1, 1, 0])
    assert torch.autograd.gradcheck(
        lambda t: window_pyramid_pool(t, wins, bidx, levels=(4, 2, 1), mode=mode), (x,)
    )


def test_gradient_matches_per_window_reference():
    # Overlapping windows and overlapping bins: every path must add up exactly.
    x = torch.randn(1, 3, 12, 10, dtype=torch.float64, requires_grad=True)
    wins = torch.tensor([[0, 0, 10, 12], [2, 3, 9, 11], [4, 4, 5, 5], [1, 0, 4, 12]])
    weights = torch.randn(4, 150, dtype=torch.float64)
    (window_pyramid_pool(x, wins) * weights).sum().backward()
    xr = x.detach().clone().requires_grad_()
    total = 0
    for r, (x0, y0, x1, y1) in enumerate(wins.tolist()):
        total = total + (pyramid_reference(xr[0, :, y0:y1, x0:x1], (6, 3, 2, 1)) * weights[r]).sum()
    total.backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_float32_and_int32_windows():
    x = torch.randn(1, 5, 9, 9)
    wins = torch.tensor([[0, 0, 9, 9], [2, 2, 5, 8]], dtype=torch.int32)
    got = window_pyramid_pool(x, wins)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got[1], pyramid_reference(x[0, :, 2:8, 2:5], (6, 3, 2, 1)))


def test_no_grad_path_equals_grad_path():
    x = torch.randn(1, 4, 15, 15, requires_grad=True)
    wins = torch.tensor([[0, 0, 15, 15], [3, 2, 14, 9]])
    with torch.no_grad():
        a = window_pyramid_pool(x, wins)
    b = window_pyramid_pool(x, wins)
    torch.testing.assert_close(a, b.detach())


def test_empty_windows_list():
    x = torch.randn(2, 4, 5, 5)
    assert window_pyramid_pool(x, torch.zeros(0, 4, dtype=torch.long)).shape == (0, 200)


@pytest.mark.parametrize(
    ("wins", "bidx", "error", "match"),
    [
        ([[0, 0, 6, 5]], None, ValueError, "inside"),  # x1 > width
        ([[-1, 0, 3, 3]], None, ValueError, "inside"),
        ([[2, 0, 2, 3]], None, ValueError, "non-empty"),  # empty
        ([[3, 0, 2, 3]], None, ValueError, "non-empty"),  # reversed
        ([[0, 0, 3, 3]], [2], ValueError, "outside the batch"),
        ([[0, 0, 3, 3]], [0, 0], ValueError, "one per window"),
        ([[0, 0, 3]], None, ValueError, r"\[R, 4\]"),
    ],
)
def test_bad_windows(wins, bidx, error, match):
    x = torch.randn(2, 2, 4, 5)
    b = None if bidx is None else torch.tensor(bidx)
    with pytest.raises(error, match=match):
        window_pyramid_pool(x, torch.tensor(wins), b)


def test_bad_types():
    x = torch.randn(1, 2, 4, 5)
    with pytest.raises(TypeError, match="integer"):
        window_pyramid_pool(x, torch.tensor([[0.0, 0, 2, 2]]))
    with pytest.raises(TypeError, match="integer"):
        window_pyramid_pool(x, torch.tensor([[0, 0, 2, 2]]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="4 dims"):
        window_pyramid_pool(x[0], torch.tensor([[0, 0, 2, 2]]))
    with pytest.raises(ValueError, match=">= 1"):
        window_pyramid_pool(x, torch.tensor([[0, 0, 2, 2]]), levels=(0,))


def _random_windows(g, n_win, height, width):
    xs = torch.randint(0, width, (n_win, 2), generator=g).sort(1).values
    ys = torch.randint(0, height, (n_win, 2), generator=g).sort(1).values
    return torch.stack([xs[:, 0], ys[:, 0], xs[:, 1] + 1, ys[:, 1] + 1], 1)


@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (5,)])
@pytest.mark.parametrize("images_used", [(0, 1, 2), (0, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_custom_max_backward_equals_autograd_path(levels, images_used, channels_last):
    # The argmax + scatter backward must give the gradient autograd gets through an
    # independent path: spatial_pyramid_pool of each cropped window (adaptive max pooling),
    # on float64 random data (no ties, so the argmax is unique).

    g = torch.Generator().manual_seed(sum(levels) + len(images_used))
    x = torch.randn(3, 4, 17, 23, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wins = torch.cat([_random_windows(g, 40, 17, 23), torch.tensor([[0, 0, 23, 17]])])
    pick = torch.randint(0, len(images_used), (len(wins),), generator=g)
    bidx = torch.tensor(images_used)[pick]
    weights = torch.randn(len(wins), 4 * sum(n * n for n in levels), generator=g, dtype=x.dtype)

    def grad_of(custom, **kw):
        xg = x.detach().clone().requires_grad_()
        if custom:
            y = window_pyramid_pool(xg, wins, bidx, levels=levels, **kw)
        else:
            crops = [
                xg[b : b + 1, :, y0:y1, x0:x1]
                for (x0, y0, x1, y1), b in zip(wins.tolist(), bidx.tolist(), strict=True)
            ]
            y = torch.cat([spatial_pyramid_pool(crop, levels) for crop in crops])
        (y * weights).sum().backward()
        return y.detach(), xg.grad

    y_ref, g_ref = grad_of(False)
    y_new, g_new = grad_of(True)
    y_chunked, g_chunked = grad_of(True, chunk_bins=1)
    assert torch.equal(y_new, y_ref)
    assert torch.equal(y_chunked, y_ref)
    torch.testing.assert_close(g_new, g_ref)
    torch.testing.assert_close(g_chunked, g_ref)
    assert g_new.shape == x.shape
    assert g_new.is_contiguous() == x.is_contiguous()
    unused = [b for b in range(3) if b not in images_used]
    assert not g_new[unused].any()


@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (5,)])
def test_gradcheck_max_unused_image_channels_last(levels):
    x = torch.randn(3, 2, 8, 9, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    wins = torch.tensor([[0, 0, 9, 8], [1, 2, 8, 7], [4, 4, 5, 5], [2, 0, 9, 6], [0, 1, 3, 8]])
    bidx = torch.tensor([2, 0, 2, 2, 0])  # image 1 owns no window
    assert torch.autograd.gradcheck(
        lambda t: window_pyramid_pool(t, wins, bidx, levels=levels), (x,)
    )


def test_max_backward_routes_each_output_to_one_element_on_ties():
    # Constant maps tie everywhere: every output still sends its whole gradient to exactly
    # one element (max pooling's subgradient), so the gradient sums to the number of outputs.
    x = torch.ones(2, 3, 10, 11, requires_grad=True)
    wins = torch.tensor([[0, 0, 11, 10], [2, 3, 9, 8], [5, 5, 6, 6]])
    bidx = torch.tensor([0, 1, 1])
    y = window_pyramid_pool(x, wins, bidx)
    y.sum().backward()
    assert float(x.grad.sum()) == y.numel()
    assert float(x.grad.min()) >= 0
