"""The compiled CPU kernels against the torch path and the per-window reference loop."""

import os
import subprocess
import sys

import pytest
import torch
from reference_pooling import pyramid_reference

import sppnet.ops.compiled_pyramid_pool as compiled
from sppnet.ops import spatial_pyramid_pool, window_pyramid_pool

# the module, not the function of the same name that sppnet.ops re-exports
torch_path = sys.modules["sppnet.ops.window_pyramid_pool"]._torch_window_pool

pytestmark = pytest.mark.skipif(compiled._kernels() is None, reason="numba is not installed")


def _windows(g, n_win, height, width):
    """Random windows plus the whole map, 1x1 cells and windows on each border."""
    xs = torch.randint(0, width, (n_win, 2), generator=g).sort(1).values
    ys = torch.randint(0, height, (n_win, 2), generator=g).sort(1).values
    rand = torch.stack([xs[:, 0], ys[:, 0], xs[:, 1] + 1, ys[:, 1] + 1], 1)
    edges = [
        [0, 0, width, height],
        [0, 0, 1, 1],
        [width - 1, height - 1, width, height],
        [0, height - 2, width, height],
        [width - 3, 0, width, height],
        [1, 1, 2, 2],
    ]
    return torch.cat([rand, torch.tensor(edges)])


def _case(seed, dtype, ties, n_img=3, channels=5, height=23, width=31, n_win=40):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: most bins hold their max more than once
        x = torch.randint(0, 3, (n_img, channels, height, width), generator=g).to(dtype)
    else:
        x = torch.randn(n_img, channels, height, width, generator=g, dtype=dtype)
    wins = _windows(g, n_win, height, width)
    bidx = torch.randint(0, n_img, (len(wins),), generator=g)
    return x, wins, bidx


def _reference(x, wins, bidx, levels, mode):
    rows = [
        pyramid_reference(x[b, :, y0:y1, x0:x1], levels, mode)
        for (x0, y0, x1, y1), b in zip(wins.tolist(), bidx.tolist(), strict=True)
    ]
    return torch.stack(rows)


LEVELS = [(6, 3, 2, 1), (7, 3, 1), (5,), (4, 2, 2, 1)]


@pytest.mark.parametrize("levels", LEVELS)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_bit_equal_to_torch_path_and_reference(levels, mode, dtype):
    x, wins, bidx = _case(len(levels), dtype, ties=mode == "max")
    got = window_pyramid_pool(x, wins, bidx, levels, mode)
    assert torch.equal(got, torch_path(x, wins, bidx, levels, mode, 1024))
    want = _reference(x, wins, bidx, levels, mode)
    if mode == "max":
        assert torch.equal(got, want)
    else:  # the reference sums in another order
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (5,)])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("ties", [False, True])
def test_gradient_equals_reference_autograd(levels, mode, ties):
    # With ties too: max routes each output to its bin's first maximal cell in row-major
    # order, the cell torch.max picks in the reference.
    x, wins, bidx = _case(3 + ties, torch.float64, ties)
    weights = torch.randn(len(wins), x.shape[1] * sum(n * n for n in levels), dtype=x.dtype)
    xg = x.clone().requires_grad_()
    (window_pyramid_pool(xg, wins, bidx, levels, mode) * weights).sum().backward()
    xr = x.clone().requires_grad_()
    (_reference(xr, wins, bidx, levels, mode) * weights).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("budget", [1, 10**9])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("by_image", [False, True])
def test_gradient_with_one_window_group_or_many(monkeypatch, budget, mode, by_image):
    # a memory budget too small for two gradient maps leaves one group of windows; a large
    # one gives 8 groups, whose maps are summed in group order; windows sorted by image
    # give each group a few images of its own (the first and last shared with neighbours)
    monkeypatch.setattr(compiled, "_GRAD_GROUP_BYTES", budget)
    x, wins, bidx = _case(11, torch.float64, ties=True, n_img=7)
    if by_image:
        bidx = torch.sort(bidx).values
    assert compiled._grad_groups(wins.numpy(), x.numel() * 8) == (1 if budget == 1 else 8)
    weights = torch.randn(len(wins), x.shape[1] * 50, dtype=x.dtype)
    xg = x.clone().requires_grad_()
    (window_pyramid_pool(xg, wins, bidx, mode=mode) * weights).sum().backward()
    xr = x.clone().requires_grad_()
    (_reference(xr, wins, bidx, (6, 3, 2, 1), mode) * weights).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradient_layout_and_unused_images(channels_last):
    x, wins, bidx = _case(5, torch.float32, ties=False)
    bidx = bidx.clamp(max=1)  # image 2 owns no window
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xg = x.clone().requires_grad_()
    window_pyramid_pool(xg, wins.int(), bidx.int()).sum().backward()
    assert xg.grad.is_contiguous() == x.is_contiguous()
    assert not xg.grad[2].any()
    # max: each output sends its gradient to exactly one element
    assert float(xg.grad.sum()) == len(wins) * x.shape[1] * 50


def test_thread_count_does_not_change_results():
    x, wins, bidx = _case(6, torch.float32, ties=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for mode in ("max", "avg"):
                xg = x.clone().requires_grad_()
                y = window_pyramid_pool(xg, wins, bidx, mode=mode)
                (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
                results.append((y.detach(), xg.grad))
    finally:
        torch.set_num_threads(before)
    for (y1, g1), (y2, g2) in zip(results[:2], results[2:], strict=True):
        assert torch.equal(y1, y2)
        assert torch.equal(g1, g2)


def test_fallback_without_numba(monkeypatch):
    x, wins, bidx = _case(7, torch.float32, ties=True)
    fast = {mode: window_pyramid_pool(x, wins, bidx, mode=mode) for mode in ("max", "avg")}
    monkeypatch.setattr(compiled, "_kernels", lambda: None)
    assert not compiled.compiled_pool_available(x, "max")
    for mode in ("max", "avg"):
        assert torch.equal(window_pyramid_pool(x, wins, bidx, mode=mode), fast[mode])
    ext = torch.tensor([[23, 31], [4, 9], [1, 1]])
    slow = spatial_pyramid_pool(x, extents=ext)
    monkeypatch.undo()
    assert torch.equal(spatial_pyramid_pool(x, extents=ext), slow)


def test_unsupported_inputs_take_the_torch_path():
    x, wins, bidx = _case(8, torch.float32, ties=False)
    assert compiled.compiled_pool_available(x, "max")
    assert not compiled.compiled_pool_available(x.half(), "max")
    assert not compiled.compiled_pool_available(x.bfloat16(), "avg")
    nan = x.clone()
    nan[0, 1, 3, 4] = float("nan")
    assert not compiled.compiled_pool_available(nan, "max")  # torch.maximum keeps NaN
    assert compiled.compiled_pool_available(nan, "avg")  # same integral image as torch
    got = window_pyramid_pool(nan, wins, bidx)
    assert torch.equal(got.isnan(), torch_path(nan, wins, bidx, (6, 3, 2, 1), "max", 1024).isnan())
    half = window_pyramid_pool(x.bfloat16(), wins, bidx)
    assert half.dtype == torch.bfloat16


def test_empty_windows_and_channels():
    x = torch.randn(2, 3, 5, 6)
    assert window_pyramid_pool(x, torch.zeros(0, 4, dtype=torch.long)).shape == (0, 150)
    assert window_pyramid_pool(x[:, :0], torch.tensor([[0, 0, 2, 2]])).shape == (1, 0)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode):
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    wins = torch.tensor([[0, 0, 7, 9], [1, 2, 6, 8], [3, 3, 4, 4], [0, 5, 7, 9]])
    bidx = torch.tensor([1, 0, 1, 0])
    assert torch.autograd.gradcheck(
        lambda t: window_pyramid_pool(t, wins, bidx, (4, 2, 1), mode), (x,)
    )


def test_spp_extents_equal_pooling_each_crop():
    g = torch.Generator().manual_seed(9)
    x = torch.randint(0, 4, (4, 3, 11, 13), generator=g).double().requires_grad_()
    ext = torch.tensor([[11, 13], [1, 1], [5, 13], [11, 2]])
    got = spatial_pyramid_pool(x, extents=ext)
    weights = torch.randn(got.shape, generator=g, dtype=x.dtype)
    (got * weights).sum().backward()
    xr = x.detach().clone().requires_grad_()
    want = torch.stack([pyramid_reference(xr[i, :, :h, :w], (6, 3, 2, 1)) for i, (h, w) in
                        enumerate(ext.tolist())])  # fmt: skip
    (want * weights).sum().backward()
    assert torch.equal(got.detach(), want.detach())
    torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=1e-12)


def test_environment_switch_turns_the_kernels_off(monkeypatch):
    features = torch.rand(1, 4, 9, 11, dtype=torch.float32)
    assert compiled.compiled_pool_available(features, "max")
    monkeypatch.setenv("SPPNET_COMPILED_POOL", "0")
    assert not compiled.compiled_pool_available(features, "max")
    monkeypatch.setenv("SPPNET_COMPILED_POOL", "1")
    assert compiled.compiled_pool_available(features, "max")


def test_parallel_and_serial_builds_keep_separate_disk_caches(tmp_path):
    # numba keys its cache by function name and signature, not by parallel=True (numba
    # issue #6845): one shared entry let a serial build's code load as the parallel one
    code = (
        "import numpy as np\n"
        "from sppnet.ops import _pyramid_pool_kernels as k\n"
        "fmap = np.ones((1, 3, 4, 2), np.float32)\n"
        "for build, chunks in ((k.integral_image[1], 1), (k.integral_image[0], 2)):\n"
        "    table = np.empty((1, 4, 5, 2))\n"
        "    build(fmap, table, chunks)\n"
        "    assert table[0, 3, 4, 0] == 12.0\n"
        "    print(sum(build.stats.cache_hits.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for hits in ("0", "1"):  # compile and save both, then load both
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.split() == [hits, hits]
    names = sorted(p.name.split("-")[0] for p in tmp_path.rglob("*integral_image*.nbi"))
    assert names == [
        "_pyramid_pool_kernels.integral_image",
        "_pyramid_pool_kernels.integral_image_serial",
    ]
