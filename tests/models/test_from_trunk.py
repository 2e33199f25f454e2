"""from_trunk: geometry measured on small trunks against hand derivations, refusals, the
timm adapter on a stand-in, rebuilding from a source, and the untrusted-import guard."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
import toy_trunks
from torch import nn

from sppnet.models import (
    SPPNet,
    TrunkSPPNet,
    UntrustedModelCodeError,
    create_model,
    from_trunk,
    measure_trunk_geometry,
    trunk_source,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _hand(layers: list[tuple[int, int, int]]) -> tuple[int, float, int, int]:
    """(stride, offset, field, least side) of a chain of (kernel, stride, padding) layers,
    written out from Appendix A: cell j's window centre on the layer's input is
    stride * j - padding + (kernel - 1) / 2, starting at pixel centres i + 0.5."""
    stride, offset, field = 1, 0.5, 1
    for k, s, p in layers:
        offset += stride * ((k - 1) / 2 - p)
        field += (k - 1) * stride
        stride *= s
    least = 1
    for k, s, p in reversed(layers):
        least = max(1, (least - 1) * s + k - 2 * p)
    return stride, offset, field, least


def test_resnet_style_geometry_is_the_hand_derived_one():
    # stem 7/2 p3, pool 3/2 p1, block1 3/1 p1 x2, block2 3/2 p1 + 3/1 p1, block3 the same
    # (the 1x1 shortcuts have the same centres and smaller fields).
    layers = [(7, 2, 3), (3, 2, 1), (3, 1, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1), (3, 2, 1),
              (3, 1, 1)]  # fmt: skip
    stride, offset, field, least = _hand(layers)
    assert (stride, offset, field, least) == (16, 0.5, 99, 1)  # by hand: 1+6+4+8+8+8+16+16+32
    torch.manual_seed(0)
    model = from_trunk(toy_trunks.resnet_s16(), num_classes=4, fc_dim=16)
    assert isinstance(model, SPPNet)
    assert (model.feature_stride, model.feature_offset) == (16, 0.5)
    assert (model.receptive_field, model.min_input_size, model.feature_channels) == (99, 1, 32)


def test_odd_padding_stride8_geometry_is_the_hand_derived_one():
    layers = [(5, 2, 1), (3, 1, 0), (2, 2, 0), (4, 2, 2)]
    stride, offset, field, least = _hand(layers)
    # by hand: offset 0.5 + (2 - 1) + 2 * (1 - 0) + 2 * 0.5 + 4 * (1.5 - 2) = 2.5;
    # field 1 + 4 + 2 * 2 + 2 * 1 + 4 * 3 = 23; least side: 1 <- 1 <- 2 <- 4 <- 9
    assert (stride, offset, field, least) == (8, 2.5, 23, 9)
    model = from_trunk(toy_trunks.odd_s8(), num_classes=3, fc_dim=8)
    assert model.feature_stride == 8 and model.feature_offset == 2.5
    assert model.receptive_field == 23 and model.min_input_size == 9


@pytest.mark.parametrize("maker", [toy_trunks.resnet_s16, toy_trunks.odd_s8])
def test_feature_size_matches_real_forward_over_sizes(maker):
    torch.manual_seed(1)
    model = from_trunk(maker(), num_classes=3, fc_dim=8).eval()
    m = model.min_input_size
    with torch.no_grad():
        for h, w in [(m, m), (m + 1, m + 5), (37, 101), (64, 65), (127, 33)]:
            fmap = model.forward_features(torch.randn(1, 3, h, w))
            assert tuple(fmap.shape[-2:]) == model.feature_size(h, w)
            assert model(torch.randn(2, 3, h, w)).shape == (2, 3)
    if m > 1:
        with pytest.raises(ValueError, match=f"at least {m}x{m} pixels"):
            model(torch.randn(1, 3, m - 1, m))


def test_squeeze_excitation_does_not_hide_the_offset():
    # the SE mean reaches every pixel; the probe cuts it, the field stays the conv one
    model = from_trunk(toy_trunks.resnet_s16(se=True), num_classes=2, fc_dim=8)
    assert (model.feature_stride, model.feature_offset, model.receptive_field) == (16, 0.5, 99)


def test_padded_batch_equals_images_alone():
    torch.manual_seed(2)
    model = from_trunk(toy_trunks.odd_s8(), num_classes=3, fc_dim=8).eval()
    a, b = torch.randn(1, 3, 40, 29) * 50, torch.randn(1, 3, 23, 50) * 50
    batch = torch.zeros(2, 3, 40, 50)
    batch[0, :, :40, :29], batch[1, :, :23, :50] = a[0], b[0]
    extents = torch.tensor([[40, 29], [23, 50]])
    with torch.no_grad():
        together = model(batch, extents)
        alone = torch.cat([model(a), model(b)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_dict_output_and_feature_key():
    with pytest.raises(ValueError, match=r"returns 2 maps \(\['c3', 'c4'\]\); choose one"):
        from_trunk(toy_trunks.DictTrunk(), num_classes=2)
    c3 = from_trunk(toy_trunks.DictTrunk(), num_classes=2, fc_dim=8, feature_key="c3")
    c4 = from_trunk(toy_trunks.DictTrunk(), num_classes=2, fc_dim=8, feature_key="c4")
    assert (c3.feature_stride, c3.feature_channels) == (8, 8)
    assert (c4.feature_stride, c4.feature_channels) == (16, 16)
    with pytest.raises(ValueError, match="feature_key 'c5' is not among"):
        from_trunk(toy_trunks.DictTrunk(), num_classes=2, feature_key="c5")


@pytest.mark.parametrize(
    ("maker", "words"),
    [
        (toy_trunks.global_pool, "does not follow the input height .* global pooling"),
        (toy_trunks.flatten, r"must be a 4-D map \[N, C, h, w\], got \(1, 48\)"),
        (toy_trunks.VaryingStride, "one fixed stride"),
    ],
)
def test_refusals_say_why(maker, words):
    with pytest.raises(ValueError, match=words):
        from_trunk(maker(), num_classes=2)


def test_given_stride_is_checked_and_given_offset_used():
    with pytest.raises(ValueError, match=r"feature_stride 16 was given, but .* every 8 pixels"):
        from_trunk(toy_trunks.odd_s8(), num_classes=2, feature_stride=16)
    model = from_trunk(toy_trunks.odd_s8(), num_classes=2, fc_dim=8, feature_offset=3.0)
    assert model.feature_offset == 3.0 and model.receptive_field is None


def test_normalisation_is_imagenet_in_pixel_units():
    model = from_trunk(nn.Conv2d(3, 3, 1), num_classes=2, fc_dim=8)
    x = torch.rand(1, 3, 5, 5) * 255 - 128  # pixels - 128
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    want = ((x + 128) / 255 - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(x * model._scale + model._shift, want)


# ----------------------------------------------------------------------------- sources
def test_rebuild_from_import_path_needs_trust():
    model = create_model("toy_trunks:odd_s8", num_classes=3, fc_dim=8, trunk_args={"width": 4},
                         trust_model_code="toy_trunks:odd_s8")  # fmt: skip
    config = model.config()
    assert config["name"] == "toy_trunks:odd_s8" and config["trunk_args"] == {"width": 4}
    assert config["feature_stride"] == 8 and config["feature_offset"] == 2.5
    name = config.pop("name")
    with pytest.raises(UntrustedModelCodeError, match="asks to import 'toy_trunks:odd_s8'"):
        create_model(name, **config)
    with pytest.raises(UntrustedModelCodeError):
        create_model(name, **config, trust_model_code="toy_trunks:resnet_s16")
    again = create_model(name, **config, trust_model_code=True)
    again.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 50, 61)
    torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_a_file_naming_os_system_runs_nothing(monkeypatch):
    called = []
    monkeypatch.setattr("os.system", lambda *a: called.append(a))
    with pytest.raises(UntrustedModelCodeError, match="asks to import 'os:system'"):
        create_model("os:system", num_classes=2, trunk_args={"command": "echo hi"})
    assert called == []


def test_registered_trunk_needs_no_trust():
    trunk_source.register_trunk("toy_odd_s8_test")(toy_trunks.odd_s8)
    model = create_model("trunk/toy_odd_s8_test", num_classes=2, fc_dim=8)
    assert isinstance(model, TrunkSPPNet) and model.config()["name"] == "trunk/toy_odd_s8_test"
    with pytest.raises(ValueError, match="unknown trunk 'trunk/nope'"):
        create_model("trunk/nope", num_classes=2)


def test_module_instance_cannot_be_saved():
    model = from_trunk(toy_trunks.odd_s8(), num_classes=2, fc_dim=8)
    with pytest.raises(ValueError, match="cannot rebuild; build it from a source"):
        model.config()


# -------------------------------------------------------------------------------- timm
class _FeatureInfo:
    def __init__(self, stages):
        self.stages = stages

    def channels(self):
        return [c for c, _ in self.stages]

    def reduction(self):
        return [r for _, r in self.stages]


class _StandIn(nn.Module):
    """timm's features_only interface: stages of reductions 2, 4, 8, 16, 32; a list out."""

    STAGES = ((4, 2), (6, 4), (8, 8), (10, 16), (12, 32))

    def __init__(self, out_indices=None):
        super().__init__()
        self.out_indices = tuple(range(5)) if out_indices is None else tuple(out_indices)
        self.feature_info = _FeatureInfo([self.STAGES[i] for i in self.out_indices])
        cin, layers = 3, []
        for c, _ in self.STAGES[: max(self.out_indices) + 1]:
            layers.append(nn.Sequential(nn.Conv2d(cin, c, 3, 2, 1), nn.ReLU()))
            cin = c
        self.stages = nn.ModuleList(layers)

    def forward(self, x):
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out.append(x)
        return out


def _create(name, *, features_only, pretrained=False, out_indices=None, **kwargs):
    assert features_only and name == "standin" and not kwargs
    return _StandIn(out_indices)


class _FakeTimm:
    create_model = staticmethod(_create)


def test_timm_adapter_takes_the_stride16_stage_by_default(monkeypatch):
    trunk = trunk_source.timm_features_trunk(_create, "standin")
    assert trunk.out_indices == (3,)
    monkeypatch.setattr(trunk_source, "import_timm", lambda: _FakeTimm)
    model = create_model("timm/standin", num_classes=2, fc_dim=8)
    assert (model.feature_stride, model.feature_channels, model.feature_offset) == (16, 10, 0.5)
    assert model.config()["name"] == "timm/standin" and model.config()["feature_index"] is None
    deep = create_model("timm/standin", num_classes=2, fc_dim=8, feature_index=4)
    assert (deep.feature_stride, deep.feature_channels) == (32, 12)
    with pytest.raises(ValueError, match=r"feature_index must be in 0..4 .* got 5"):
        trunk_source.timm_features_trunk(_create, "standin", feature_index=5)


@pytest.mark.parametrize("key", ["checkpoint_path", "pretrained_cfg_overlay", "out_indices"])
def test_timm_args_cannot_load_files(key):
    with pytest.raises(ValueError, match=f"arguments \\['{key}'\\] of timm/standin would load"):
        trunk_source.timm_features_trunk(_create, "standin", **{key: "x.pth"})


def test_timm_without_stride16_stage_names_the_reductions():
    def create(name, **kwargs):
        trunk = _create(name, **kwargs)
        trunk.feature_info = _FeatureInfo([(4, 2), (6, 4), (8, 8)])
        return trunk

    with pytest.raises(ValueError, match=r"no stride-16 stage \(reductions \[2, 4, 8\]"):
        trunk_source.timm_features_trunk(create, "standin")


def test_timm_import_errors_say_why(monkeypatch):
    real = trunk_source.importlib.import_module

    def fail(exc):
        def imp(name):
            if name == "timm":
                raise exc
            return real(name)

        return imp

    monkeypatch.delitem(sys.modules, "timm", raising=False)
    monkeypatch.setattr(trunk_source.importlib, "import_module", fail(ModuleNotFoundError(
        "No module named 'timm'", name="timm")))  # fmt: skip
    with pytest.raises(ImportError, match=r"not installed: pip install 'sppnet\[timm\]'"):
        trunk_source.import_timm()
    monkeypatch.setattr(trunk_source.importlib, "import_module", fail(RuntimeError(
        "operator torchvision::nms does not exist")))  # fmt: skip
    with pytest.raises(ImportError, match="installed but does not import: RuntimeError: "
                       "operator torchvision::nms"):  # fmt: skip
        trunk_source.import_timm()


def test_geometry_probe_leaves_weights_and_modes_alone():
    trunk = toy_trunks.resnet_s16().train()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    measure_trunk_geometry(trunk)
    assert trunk.training and all(m.training for m in trunk.modules())
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert math.isfinite(measure_trunk_geometry(trunk).offset)


def test_meta_trunk_measures_shapes_and_asks_for_the_offset():
    with torch.device("meta"):
        trunk = toy_trunks.odd_s8()
    geometry = measure_trunk_geometry(trunk, feature_offset=2.5)
    assert (geometry.stride, geometry.min_input_size, geometry.channels) == (8, 9, 12)
    with pytest.raises(ValueError, match=r"meta device .* pass feature_offset"):
        measure_trunk_geometry(trunk)


# ---------------------------------------------------------- timm's local weight caches
class _Cfg:
    def __init__(self, hf_hub_id=None, url=None):
        self.hf_hub_id, self.url = hf_hub_id, url


def _timm_with(cfg):
    """A stand-in of the ``timm`` module: ``timm.models.get_pretrained_cfg(name)``."""
    models = types.SimpleNamespace(get_pretrained_cfg=lambda name: cfg)
    return types.SimpleNamespace(models=models, create_model=_create)


def test_timm_weights_come_from_torch_hubs_cache_or_an_error_naming_it(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    timm = _timm_with(_Cfg(url="https://example.org/weights/standin-1234.pth"))
    expected = tmp_path / "hub" / "checkpoints" / "standin-1234.pth"
    with pytest.raises(FileNotFoundError, match="sppnet never downloads") as info:
        trunk_source._timm_cached_weights(timm, "standin")
    assert str(expected) in str(info.value)
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"weights")
    assert trunk_source._timm_cached_weights(timm, "standin") == expected


def test_timm_weights_come_from_the_hugging_face_cache(tmp_path, monkeypatch):
    cached = tmp_path / "model.safetensors"
    asked = []

    def try_to_load_from_cache(repo, file):  # huggingface_hub's: a path, or None
        asked.append((repo, file))
        return str(cached) if cached.is_file() else None

    hub = types.ModuleType("huggingface_hub")
    hub.try_to_load_from_cache = try_to_load_from_cache
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    timm = _timm_with(_Cfg(hf_hub_id="timm/standin.a1_in1k@main"))
    with pytest.raises(FileNotFoundError, match=r"Hugging Face cache \(repo timm/standin"):
        trunk_source._timm_cached_weights(timm, "standin")
    assert asked[0] == ("timm/standin.a1_in1k", "model.safetensors")  # no revision suffix
    cached.write_bytes(b"weights")
    assert trunk_source._timm_cached_weights(timm, "standin") == cached


def test_pretrained_timm_trunk_is_built_from_the_cached_file_only(tmp_path, monkeypatch):
    weights = tmp_path / "standin.pth"
    weights.write_bytes(b"weights")
    calls = []

    def create(name, *, features_only, pretrained=False, out_indices=None, **kwargs):
        calls.append({"pretrained": pretrained, **kwargs})
        return _StandIn(out_indices)

    monkeypatch.setattr(trunk_source, "import_timm", lambda: _timm_with(None))
    monkeypatch.setattr(trunk_source, "_timm_cached_weights", lambda timm, name: weights)
    trunk_source.timm_features_trunk(create, "standin", pretrained=True)
    probe, built = calls
    assert probe == {"pretrained": False}  # the stage is chosen without any weights
    assert built == {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
