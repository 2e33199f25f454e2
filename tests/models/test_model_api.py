"""The timm-style model API: create_model passing options through, config(), reset_classifier,
forward_pooled(stop_at=...), pooled_dim; checked against the manual paths they replace."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from sppnet.engine.checkpoint import load_classifier, save_checkpoint
from sppnet.models import SPPNet, create_model
from sppnet.models.registry import DEFAULT

LITE = "efficientnet_lite0"


def _zf5(**kwargs):
    return create_model("zf5", **{"num_classes": 3, "width": 0.125, "fc_dim": 16, **kwargs})


def test_create_model_passes_options_through_and_drops_default():
    lite = create_model(LITE, num_classes=2, fc_dim=8, feature_layer="stage7", padding="same")
    assert (lite.feature_layer, lite.padding, lite.feature_stride) == ("stage7", "same", 32)
    model = create_model("zf5", width=0.125, fc_dim=DEFAULT, spp_levels=DEFAULT)
    assert model.fc_dim == 4096 and model.spp_levels == (6, 3, 2, 1)
    with pytest.raises(TypeError, match="feature_layer"):
        create_model("zf5", width=0.125, feature_layer="stage7")
    with pytest.raises(ValueError, match="no pretrained weights for 'zf5'"):
        create_model("zf5", True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spp_levels": (3, 1), "spp_mode": "avg", "dropout": 0.1},
        {"spp_levels": None},
    ],
)
def test_config_rebuilds_the_same_network(kwargs):
    torch.manual_seed(0)
    model = _zf5(**kwargs).eval()
    config = model.config()
    assert config == json.loads(json.dumps(config))  # JSON-ready
    assert set(config) == {"name", *SPPNet.CONFIG_KEYS}
    rebuilt = create_model(**config).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config() == config
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_lite_config_records_its_architecture_settings():
    model = create_model(LITE, num_classes=2, fc_dim=8, feature_layer="stage7")
    config = model.config()
    assert config["feature_layer"] == "stage7" and config["padding"] == "symmetric"
    assert create_model(**config).config() == config


def test_config_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = _zf5(spp_levels=(2, 1), dropout=0.2).eval()
    state = {"model": model.config(), "epoch": 1, "classes": ["a", "b", "c"]}
    save_checkpoint(tmp_path, model=model, optimizer=None, state=state)
    loaded, meta = load_classifier(tmp_path)
    assert loaded.config() == model.config() and meta["model"]["name"] == "zf5"
    x = torch.randn(1, 3, 100, 120)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_reset_classifier_then_forward():
    model = _zf5().eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc8")}
    model.reset_classifier(5, generator=torch.Generator().manual_seed(0))
    assert model.num_classes == 5 and model.config()["num_classes"] == 5
    assert model(torch.randn(2, 3, 64, 80)).shape == (2, 5)
    assert torch.all(model.fc8.bias == 0)
    assert 0.005 < float(model.fc8.weight.detach().std()) < 0.015  # N(0, 0.01), Sec. 4.2
    for k, v in before.items():  # only fc8 changed
        assert torch.equal(model.state_dict()[k], v)
    # the same generator draws the same layer (the old hand-written fc8 swap's recipe)
    other = _zf5()
    other.reset_classifier(5, generator=torch.Generator().manual_seed(0))
    expected = torch.randn((5, 16), generator=torch.Generator().manual_seed(0)) * 0.01
    torch.testing.assert_close(other.fc8.weight, model.fc8.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.fc8.weight, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        model.reset_classifier(0)


def test_reset_classifier_keeps_device_and_dtype():
    model = _zf5().double()
    model.reset_classifier(4)
    assert model.fc8.weight.dtype == torch.float64
    assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 4)


@pytest.mark.parametrize("spp_levels", [(3, 2, 1), None])
def test_forward_pooled_stop_at_equals_the_manual_paths(spp_levels):
    torch.manual_seed(0)
    model = _zf5(spp_levels=spp_levels).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled = model.forward_pool(model.forward_features(x))
        assert pooled.shape == (2, model.pooled_dim) and model.pooled_dim == model.fc6.in_features
        fc6 = F.relu(model.fc6(pooled))
        fc7 = F.relu(model.fc7(fc6))
        torch.testing.assert_close(model.forward_pooled(pooled, stop_at="fc6"), fc6)
        torch.testing.assert_close(model.forward_pooled(pooled, stop_at="fc7"), fc7)
        torch.testing.assert_close(
            model.forward_pooled(pooled, stop_at="fc7"), model.forward_pooled(pooled, True)
        )
        torch.testing.assert_close(model.forward_pooled(pooled, stop_at="fc8"), model(x))
        torch.testing.assert_close(model.forward_pooled(pooled), model(x))


def test_forward_pooled_stop_at_errors():
    model = _zf5(spp_levels=(1,))
    pooled = torch.zeros(1, model.pooled_dim)
    with pytest.raises(ValueError, match="stop_at must be one of"):
        model.forward_pooled(pooled, stop_at="pool5")
    with pytest.raises(ValueError, match="pre_logits=True stops at fc7"):
        model.forward_pooled(pooled, True, stop_at="fc6")


@pytest.mark.parametrize(
    ("kwargs", "mode"),
    [
        ({}, "max"),
        ({"spp_mode": "avg"}, "avg"),
        ({"spp_levels": None, "spp_mode": "avg"}, "max"),  # no-SPP pool5 is a max pool
    ],
)
def test_pool_mode_says_how_the_pyramid_pools(kwargs, mode):
    model = _zf5(**kwargs)
    assert model.pool_mode == mode
    # the detector's window pyramid and the conv-map cache read the mode from it
    from sppnet.detection.window_features import _pool_mode

    assert _pool_mode(model) == mode
