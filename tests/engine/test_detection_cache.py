"""The pooled-feature cache: contents equal a direct computation, resume, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet.detection import compute_conv_maps, label_windows, pool_windows
from sppnet.engine.detection_cache import PooledFeatureCache, model_fingerprint
from sppnet.models import create_model


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("zf5", num_classes=4, width=0.125, fc_dim=16).eval()


def _item(seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 70, 90, generator=g) * 255
    xy = torch.rand(9, 2, generator=g) * 50
    proposals = torch.cat([xy, xy + 5 + torch.rand(9, 2, generator=g) * 30], dim=1)
    gt = torch.tensor([[10.0, 12.0, 40.0, 50.0], [50.0, 5.0, 85.0, 30.0], [0.0, 0.0, 20.0, 20.0]])
    labels = torch.tensor([1, 3, 2])
    difficult = torch.tensor([False, False, True])
    return image, proposals, gt, labels, difficult


def test_cache_holds_pooled_features_and_labels(tmp_path):
    model = _model()
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
    assert cache.estimate_bytes(10, 100.0) == 10 * 100 * 1600 * 4


def test_cache_float16_build_resume_and_refusals(tmp_path):
    model = _model()
    cache = PooledFeatureCache(tmp_path, model, scales=(100,))
    calls = []

    def items(ids):
        for i in ids:

            def load(i=i):
                calls.append(i)
                return _item(int(i[-1]))

            yield i, load

    assert cache.build(items(["a1", "a2"])) == 2
    assert cache.features("a1").dtype == np.float16
    # a rerun computes only what is missing
    again = PooledFeatureCache(tmp_path, model, scales=(100,))
    assert again.build(items(["a1", "a2", "a3"])) == 1 and calls == ["a1", "a2", "a3"]
    # a different trunk or settings are refused, naming what differs
    with pytest.raises(ValueError, match=r"\['model'\]"):
        PooledFeatureCache(tmp_path, _model(seed=1), scales=(100,))
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


def test_model_fingerprint_follows_the_trunk_or_the_whole_model():
    a, b = _model(), _model()
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.fc8.weight.add_(1.0)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a, trunk_only=False) != model_fingerprint(b, trunk_only=False)
    with torch.no_grad():
        b.features.conv1.weight.add_(1.0)
    assert model_fingerprint(a) != model_fingerprint(b)
