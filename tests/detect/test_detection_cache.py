"""The detection training caches: pooled windows and conv maps.

Both hold what a direct computation gives; the conv-map cache's windows, pooled on demand,
equal the pooled-window cache's rows; both resume, refuse other settings and name damaged
files; their size estimates match the bytes written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet.detect.cache import ConvMapCache, PooledFeatureCache, model_fingerprint
from sppnet.detection import compute_conv_maps, label_windows, pool_windows
from sppnet.errors import DamagedFileError


def _item(seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 70, 90, generator=g) * 255
    xy = torch.rand(9, 2, generator=g) * 50
    proposals = torch.cat([xy, xy + 5 + torch.rand(9, 2, generator=g) * 30], dim=1)
    gt = torch.tensor([[10.0, 12.0, 40.0, 50.0], [50.0, 5.0, 85.0, 30.0], [0.0, 0.0, 20.0, 20.0]])
    labels = torch.tensor([1, 3, 2])
    difficult = torch.tensor([False, False, True])
    return image, proposals, gt, labels, difficult


def test_cache_holds_pooled_features_and_labels(tmp_path, tiny_zf5):
    model = tiny_zf5(4)
    cache = PooledFeatureCache(tmp_path, model, scales=(100,), dtype="float32")
    image, proposals, gt, labels, difficult = _item(0)
    cache.add("img1", image, proposals, gt, labels, difficult)
    assert "img1" in cache and "img2" not in cache
    rec = cache.windows("img1")
    # the proposals, then the non-difficult ground truth
    windows = torch.cat([proposals, gt[:2]])
    np.testing.assert_array_equal(rec["boxes"], windows.numpy())
    assert rec["is_gt"].tolist() == [False] * 9 + [True, True]
    max_iou, matched, lab = label_windows(windows, gt, labels, difficult)
    np.testing.assert_allclose(rec["max_iou"], max_iou.numpy())
    assert rec["labels"].tolist() == lab.tolist() and rec["matched"].tolist() == matched.tolist()
    assert rec["labels"][-2:].tolist() == [1, 3]
    with torch.no_grad():
        expected = pool_windows(model, compute_conv_maps(model, image, (100,)), windows)
    feats = cache.features("img1")
    assert isinstance(feats, np.memmap) and feats.shape == (11, cache.dim) == (11, 1600)
    np.testing.assert_allclose(np.asarray(feats), expected.numpy(), rtol=1e-6)
    # the features, plus the .npy header and the window records (~4.4 KB per image here)
    assert 10 * 100 * 1600 * 4 < cache.estimate_bytes(10, 100.0) < 10 * (100 * 1600 * 4 + 6000)


def _counting_items(calls: list[str]):
    """``items(ids)`` for ``build``: each image's loader appends its id to ``calls``."""

    def items(ids):
        for i in ids:

            def load(i=i):
                calls.append(i)
                return _item(int(i[-1]))

            yield i, load

    return items


def test_cache_float16_build_resume_and_refusals(tmp_path, tiny_zf5):
    model = tiny_zf5(4)
    cache = PooledFeatureCache(tmp_path, model, scales=(100,))
    calls = []
    items = _counting_items(calls)

    assert cache.build(items(["a1", "a2"])) == 2
    assert cache.features("a1").dtype == np.float16
    # a rerun computes only what is missing
    again = PooledFeatureCache(tmp_path, model, scales=(100,))
    assert again.build(items(["a1", "a2", "a3"])) == 1 and calls == ["a1", "a2", "a3"]
    # a different trunk or settings are refused, naming what differs
    with pytest.raises(ValueError, match=r"\['model'\]"):
        PooledFeatureCache(tmp_path, tiny_zf5(4, seed=1), scales=(100,))
    with pytest.raises(ValueError, match=r"\['scales'\]"):
        PooledFeatureCache(tmp_path, model, scales=(120,))
    with pytest.raises(ValueError, match="dtype"):
        PooledFeatureCache(tmp_path / "x", model, scales=(100,), dtype="int8")
    with pytest.raises(FileNotFoundError, match="not in the feature cache"):
        cache.windows("zz")
    cache.windows_path("a2").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt feature-cache record"):
        cache.windows("a2")
    cache.feature_path("a3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt feature file"):
        cache.features("a3")


def test_model_fingerprint_follows_the_trunk_or_the_whole_model(tiny_zf5):
    a, b = tiny_zf5(4), tiny_zf5(4)
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.fc8.weight.add_(1.0)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a, trunk_only=False) != model_fingerprint(b, trunk_only=False)
    with torch.no_grad():
        b.features.conv1.weight.add_(1.0)
    assert model_fingerprint(a) != model_fingerprint(b)


def _spread_item(seed, height=150, width=210, n=120):
    """An image with windows of every size: small, medium and image-sized."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, height, width, generator=g) * 255
    side = torch.cat(
        [
            torch.full((n // 3,), 6.0),
            torch.full((n // 3,), 40.0),
            torch.full((n - 2 * (n // 3),), 120.0),
        ]
    )
    size = torch.tensor([width, height], dtype=torch.float32)
    wh = torch.minimum(side[:, None] * (0.5 + torch.rand(n, 2, generator=g)), size)
    xy = torch.rand(n, 2, generator=g) * (size - wh)
    boxes = torch.cat([xy, xy + wh], dim=1)
    gt = torch.tensor([[10.0, 12.0, 80.0, 90.0], [100.0, 5.0, 200.0, 60.0], [0.0, 0.0, 20.0, 20.0]])
    return image, boxes, gt, torch.tensor([1, 3, 2]), torch.tensor([False, False, True])


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("scales", [(100,), (200, 400, 800)])
def test_windows_pooled_from_cached_maps_equal_the_pooled_window_cache(
    tmp_path, scales, mode, tiny_zf5
):
    """Max pooling: equal to the bit (rounding to float16 is monotone, so it commutes with
    max). Average pooling: within float16 rounding (relative 2**-11 per value, so the mean
    of rounded values is within 2**-11 of the rounded mean's magnitude, plus its own
    rounding: 2 * 2**-11 relative)."""
    torch.manual_seed(0)
    model = tiny_zf5(4, spp_mode=mode)
    windows = PooledFeatureCache(tmp_path / "w", model, scales=scales)
    maps = ConvMapCache(tmp_path / "m", model, scales=scales)
    item = _spread_item(1)
    windows.add("x", *item)
    maps.add("x", *item)
    rec_w, rec_m = windows.windows("x"), maps.windows("x")
    for key, value in rec_w.items():
        np.testing.assert_array_equal(rec_m[key], value)
    if len(scales) > 1:  # the windows spread over every scale
        assert np.bincount(rec_m["scale"], minlength=len(scales)).min() > 0
    expected = np.asarray(windows.features("x"), dtype=np.float32)
    got = maps.pool("x").numpy()
    assert got.shape == expected.shape == (122, 1600)
    if mode == "max":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=2 * 2.0**-11, atol=1e-6)
    # any subset, in any order, one image at a time
    rows = [100, 3, 57, 3, 121]
    # (a few windows are pooled one by one: avg sums in float32 instead of float64)
    np.testing.assert_allclose(maps.pool("x", rows).numpy(), got[rows], rtol=1e-6, atol=1e-6)
    if mode == "max":
        np.testing.assert_array_equal(maps.pool("x", rows).numpy(), got[rows])
    # and the float32 maps give the float32 pooled windows (rtol: float32 order of sums)
    exact = ConvMapCache(tmp_path / "m32", model, scales=scales, dtype="float32")
    exact.add("x", *item)
    with torch.no_grad():
        direct = pool_windows(
            model, compute_conv_maps(model, item[0], scales), torch.from_numpy(rec_m["boxes"])
        )
    torch.testing.assert_close(exact.pool("x"), direct, rtol=1e-5, atol=1e-5)


def test_conv_map_cache_stores_maps_memory_mapped_and_resumes(tmp_path, tiny_zf5):
    model = tiny_zf5(4)
    cache = ConvMapCache(tmp_path, model, scales=(60, 100))
    calls = []
    items = _counting_items(calls)

    assert cache.build(items(["a1", "a2"])) == 2
    maps = cache.maps("a1")
    with torch.no_grad():
        direct = compute_conv_maps(model, _item(1)[0], (60, 100))
    for k, (stored, fmap) in enumerate(zip(maps, direct.maps, strict=True)):
        assert isinstance(stored, np.memmap) and stored.dtype == np.float16
        assert stored.shape == (*fmap.shape[2:], fmap.shape[1])  # [h, w, C]
        np.testing.assert_array_equal(stored, fmap[0].permute(1, 2, 0).numpy().astype(np.float16))
        assert cache.map_path("a1", k).is_file()
    again = ConvMapCache(tmp_path, model, scales=(60, 100))
    assert again.build(items(["a1", "a2", "a3"])) == 1 and calls == ["a1", "a2", "a3"]
    # a map missing: that image is computed again
    cache.map_path("a2", 1).unlink()
    assert "a2" not in again and again.build(items(["a1", "a2", "a3"])) == 1


def test_conv_map_cache_refusals_and_damaged_files(tmp_path, tiny_zf5):
    model = tiny_zf5(4)
    cache = ConvMapCache(tmp_path, model, scales=(100,))
    cache.add("a1", *_item(1))
    cache.add("a2", *_item(2))
    with pytest.raises(ValueError, match=r"conv-map cache made with other settings \(\['model'\]"):
        ConvMapCache(tmp_path, tiny_zf5(4, seed=1), scales=(100,))
    with pytest.raises(ValueError, match=r"\['scales'\]"):
        ConvMapCache(tmp_path, model, scales=(120,))
    with pytest.raises(ValueError, match=r"\['dtype'\]"):
        ConvMapCache(tmp_path, model, scales=(100,), dtype="float32")
    # a pooled-window cache in the same folder is refused, and the other way round
    with pytest.raises(ValueError, match=r"\['layout'\]"):
        PooledFeatureCache(tmp_path, model, scales=(100,))
    with pytest.raises(ValueError, match="dtype"):
        ConvMapCache(tmp_path / "x", model, scales=(100,), dtype="int8")
    with pytest.raises(FileNotFoundError, match="not in the conv-map cache"):
        cache.pool("zz")
    with pytest.raises(DamagedFileError, match="leave a"):  # cells of another image's map
        cache.pool_cells(cache.maps("a1"), np.zeros(1, np.uint8), np.array([[0, 0, 99, 99]]))
    path = cache.map_path("a1", 0)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DamagedFileError, match="delete it to recompute") as err:
        cache.pool("a1")
    assert str(path) in str(err.value)
    np.save(cache.map_path("a2", 0), np.zeros((4, 5, 3), np.float16))  # wrong channels
    with pytest.raises(DamagedFileError, match=r"expected a \[h, w, 32\] float16 map"):
        cache.maps("a2")
    cache.windows_path("a2").write_bytes(b"garbage")
    with pytest.raises(
        DamagedFileError, match=r"corrupt conv-map cache record.*delete it to recompute"
    ):
        cache.windows("a2")


def _disk_bytes(root):
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "meta.json")


@pytest.mark.parametrize("scales", [(120,), (80, 120, 200)])
def test_size_estimates_match_the_bytes_written(tmp_path, scales, tiny_zf5):
    """The estimate printed before a build is within 10% of the files' sizes."""
    model = tiny_zf5(4)
    items = [_spread_item(i, height=100 + 17 * i, width=190 - 9 * i, n=150) for i in range(4)]
    windows = PooledFeatureCache(tmp_path / "w", model, scales=scales)
    maps = ConvMapCache(tmp_path / "m", model, scales=scales)
    for i, item in enumerate(items):
        windows.add(f"i{i}", *item)
        maps.add(f"i{i}", *item)
    per_image = 150 + 2  # proposals + the non-difficult ground truth
    sizes = [tuple(item[0].shape[1:]) for item in items]
    estimate_w = windows.estimate_bytes(len(items), per_image)
    estimate_m = maps.estimate_bytes(sizes, per_image)
    assert abs(estimate_w / _disk_bytes(tmp_path / "w") - 1) < 0.1, estimate_w / _disk_bytes(
        tmp_path / "w"
    )
    assert abs(estimate_m / _disk_bytes(tmp_path / "m") - 1) < 0.1
    assert estimate_m < estimate_w
