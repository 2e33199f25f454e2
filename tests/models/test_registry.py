"""The model registry: names, errors, keyword arguments, registering new variants."""

from __future__ import annotations

import pytest
import torch

from sppnet.models import SPPNet, create_model, list_models, register_model
from sppnet.models import registry as registry_module
from sppnet.models.spp_net import ConvSpec, PoolSpec


def test_list_models():
    assert list_models() == [
        "convnet5",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "overfeat5",
        "overfeat7",
        "zf5",
    ]


def test_unknown_name_lists_known_names():
    known = "known models: convnet5, efficientnet_lite0"
    with pytest.raises(ValueError, match=f"unknown model 'zf7'; {known}"):
        create_model("zf7")


@pytest.mark.parametrize("name", ["convnet5", "overfeat5", "overfeat7", "zf5"])
def test_create_model_passes_keywords(name):
    model = create_model(
        name, num_classes=7, spp_levels=(3, 1), dropout=0.1, width=0.125, fc_dim=32
    ).eval()
    assert isinstance(model, SPPNet)
    assert model.name == name
    assert model.num_classes == 7
    assert model.spp_levels == (3, 1)
    assert model.drop6.p == model.drop7.p == 0.1
    assert model.fc6.in_features == model.feature_channels * 10
    assert model.fc7.in_features == 32
    x = torch.randn(2, 3, 71, 90)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[:2] == (2, model.feature_channels)
        assert model.forward_head(features, pre_logits=True).shape == (2, 32)
        torch.testing.assert_close(model(x), model.forward_head(features))
        assert model(x).shape == (2, 7)


def test_create_model_defaults_are_the_papers():
    model = create_model("zf5")
    assert model.spp_levels == (6, 3, 2, 1)
    assert model.fc6.in_features == 256 * 50 == 12800
    assert model.fc7.out_features == 4096
    assert model.fc8.out_features == 1000
    assert model.drop6.p == 0.5


def test_register_model(monkeypatch):
    monkeypatch.setattr(registry_module, "_MODELS", dict(registry_module._MODELS))

    @register_model("tiny")
    def tiny(**kwargs) -> SPPNet:
        return SPPNet(
            name="tiny", layers=(ConvSpec(4, 3, stride=2),), pool5=PoolSpec(2, 2), **kwargs
        )

    assert "tiny" in list_models()
    model = create_model("tiny", num_classes=2, fc_dim=8)
    assert model.fc8.out_features == 2
    with pytest.raises(ValueError, match="model 'tiny' is already registered"):
        register_model("tiny")(tiny)
    with pytest.raises(TypeError, match="non-empty str"):
        register_model("")


@pytest.mark.parametrize("name", ["convnet5", "overfeat5", "overfeat7", "zf5"])
def test_paper_model_functions_are_named_documented_and_registered(name):
    fn = getattr(registry_module, name)
    assert fn.__name__ == fn.__qualname__ == name
    assert fn.__module__ == "sppnet.models.registry"
    assert "(Table 1)" in fn.__doc__
    assert registry_module._MODELS[name] is fn
    assert fn(num_classes=3, width=0.125, fc_dim=8).name == name
