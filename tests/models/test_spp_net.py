"""SPPNet: Table 1 map sizes, any-size inputs, geometry, padded batches, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sppnet.models import ZF5, ConvSpec, PoolSpec, SPPNet, create_model, list_models

TABLE1 = {
    # name: (conv map side at 224, channels at width 1, stride, offset)
    "zf5": (13, 256, 16, 14.5),
    "convnet5": (13, 256, 16, 15.5),
    "overfeat5": (18, 512, 12, 7.5),
    "overfeat7": (18, 512, 12, 7.5),
}
# Table 1's intermediate map sizes at 224: (name, layer, side).
TABLE1_INTERMEDIATE = [
    ("zf5", "pool1", 55),
    ("zf5", "conv2", 27),
    ("convnet5", "conv1", 55),
    ("convnet5", "conv2", 55),
    ("convnet5", "pool2", 27),
    ("overfeat5", "pool1", 36),
    ("overfeat5", "pool2", 18),
]


def _small(name: str, **kwargs) -> SPPNet:
    kwargs.setdefault("width", 0.25)
    kwargs.setdefault("fc_dim", 64)
    kwargs.setdefault("num_classes", 10)
    return create_model(name, **kwargs).eval()


def test_all_four_are_registered():
    assert sorted(TABLE1) == [n for n in list_models() if not n.startswith("efficientnet")]


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_table1_map_sizes_and_channels(name):
    side, channels, stride, _ = TABLE1[name]
    model = _small(name)
    assert model.feature_size(224, 224) == (side, side)
    assert model.feature_stride == stride
    assert model.feature_channels == channels // 4
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 224, 224))
    assert features.shape == (1, channels // 4, side, side)
    assert create_model(name, fc_dim=8).feature_channels == channels


@pytest.mark.parametrize(("name", "layer", "side"), TABLE1_INTERMEDIATE)
def test_table1_intermediate_map_sizes(name, layer, side):
    model = _small(name)
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for child_name, child in model.features.named_children():
            x = child(x)
            if child_name == layer:
                break
    assert x.shape[-2:] == (side, side)


def test_zf5_full_width_224_and_180():
    model = create_model("zf5").eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 256, 13, 13)
        assert model(torch.randn(1, 3, 180, 180)).shape == (1, 1000)
    assert model.feature_size(180, 180) == (10, 10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_spp_accepts_odd_sizes(name):
    model = _small(name)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 137, 251))
    assert logits.shape == (2, 10)
    h, w = model.feature_size(137, 251)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 137, 251)).shape[-2:] == (h, w)


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_min_input_size(name):
    model = _small(name)
    m = model.min_input_size
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, m, m)).shape[-2:] == (1, 1)
        assert model(torch.randn(1, 3, m, m + 3)).shape == (1, 10)
    assert model.feature_size(m, m) == (1, 1)
    # One pixel less would give an empty map: the layer arithmetic agrees with PyTorch.
    probe = torch.zeros(1, 3, m - 1, m).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError):
        model.features(probe)
    msg = f"{name} needs inputs of at least {m}x{m} pixels, got {m - 1}x{m}"
    with pytest.raises(ValueError, match=msg):
        model.forward_features(torch.randn(1, 3, m - 1, m))
    with pytest.raises(ValueError, match=f"got {m}x{m - 1}"):
        model(torch.randn(1, 3, m, m - 1))
    with pytest.raises(ValueError, match=f"at least {m}x{m} pixels"):
        model.feature_size(m, m - 1)


def test_min_input_size_values():
    assert [create_model(n, width=0.25, fc_dim=8).min_input_size for n in sorted(TABLE1)] == [
        31,
        15,
        15,
        29,
    ]


def _probe_trunk(model: SPPNet) -> nn.Sequential:
    """The trunk's geometry only: all-ones convs/avg pools, identity for ReLU and LRN."""
    layers = []
    for layer in model.features:
        if isinstance(layer, nn.Conv2d):
            conv = nn.Conv2d(1, 1, layer.kernel_size, layer.stride, layer.padding, bias=False)
            nn.init.ones_(conv.weight)
            layers.append(conv)
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
    return nn.Sequential(*layers).double()


def _support_centre(grad: torch.Tensor, dim: int) -> tuple[float, int]:
    """(centre, length) of the nonzero support of ``grad`` along ``dim``, continuous coords."""
    other = 1 - dim
    idx = (grad.abs().sum(dim=other) > 0).nonzero().flatten()
    first, last = int(idx[0]), int(idx[-1])
    assert last - first + 1 == len(idx)  # one contiguous run
    return (first + last + 1) / 2, last - first + 1


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_feature_offset_and_stride_by_gradient_probe(name):
    # Independent of the code's arithmetic: the receptive field of conv-map cell (m, m) is
    # where d out[m, m] / d image is nonzero; its centre must be offset + stride * m.
    model = _small(name)
    _, _, stride, offset = TABLE1[name]
    assert model.feature_offset == offset
    probe = _probe_trunk(model)
    # Cells far enough from the top-left that their fields are not clipped by padding.
    first = model.receptive_field // stride + 1
    size = stride * (first + 4) + model.receptive_field
    image = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = probe(image)
    for m in (first, first + 1):
        (grad,) = torch.autograd.grad(out[0, 0, m, m + 1], image, retain_graph=True)
        rows_centre, rows_len = _support_centre(grad[0, 0], dim=0)
        cols_centre, cols_len = _support_centre(grad[0, 0], dim=1)
        assert rows_centre == offset + stride * m
        assert cols_centre == offset + stride * (m + 1)
        assert rows_len == cols_len == model.receptive_field


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_feature_size_matches_real_forward_over_sizes(name):
    model = _small(name)
    sizes = [model.min_input_size, model.min_input_size + 1, 47, 64, 101]
    with torch.no_grad():
        for h in sizes:
            x = torch.randn(1, 3, h, 57)
            assert model.forward_features(x).shape[-2:] == model.feature_size(h, 57)
    ext = torch.tensor([[h, 57] for h in sizes])
    expected = torch.tensor([model.feature_size(h, 57) for h in sizes])
    assert torch.equal(model.feature_size(ext), expected)
    assert torch.equal(model.feature_extents(ext), expected)


def test_no_spp_baseline():
    model = _small("zf5", spp_levels=None)
    assert model.fc6.in_features == 64 * 36
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 10)
        with pytest.raises(
            ValueError,
            match=r"needs a conv map that pools to 6x6 \(a 224x224 input\); "
            r"got 10x10 from a 180x180 input",
        ):
            model(torch.randn(1, 3, 180, 180))
        features = model.forward_features(torch.randn(1, 3, 180, 180))
        with pytest.raises(ValueError, match=r"pools to 6x6 .* got 10x10, which pools to 4x4"):
            model.forward_head(features)
        with pytest.raises(ValueError, match="cannot pool padded batches"):
            model(torch.randn(1, 3, 224, 224), extents=torch.tensor([[224, 224]]))
        with pytest.raises(ValueError, match="cannot pool padded batches"):
            features = model.forward_features(torch.randn(1, 3, 224, 224))
            model.forward_head(features, extents=torch.tensor([[13, 13]]))
    overfeat = _small("overfeat7", spp_levels=None)
    assert overfeat.fc6.in_features == 128 * 36
    with torch.no_grad():
        assert overfeat(torch.randn(1, 3, 224, 224)).shape == (1, 10)


@pytest.mark.parametrize("name", ["zf5", "overfeat5"])
def test_padded_batch_with_extents_equals_each_image_alone(name):
    model = _small(name)
    torch.manual_seed(0)
    # Nonzero biases: the masking, not zero-bias luck, must make the padding harmless.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.bias, 0.0, 0.1)
    sizes = [(150, 171), (203, 129)]
    images = [torch.randn(1, 3, h, w) for h, w in sizes]
    # Garbage (not zeros) in the padding.
    batch = torch.randn(2, 3, 203, 171) * 5
    for i, (h, w) in enumerate(sizes):
        batch[i, :, :h, :w] = images[i][0]
    extents = torch.tensor(sizes)
    with torch.no_grad():
        alone = torch.cat([model(img) for img in images])
        together = model(batch, extents=extents)
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
        # The same through the staged API.
        features = model.forward_features(batch, extents)
        for i, img in enumerate(images):
            fh, fw = model.feature_size(*sizes[i])
            crop = features[i : i + 1, :, :fh, :fw]
            torch.testing.assert_close(crop, model.forward_features(img), rtol=1e-4, atol=1e-5)
        head = model.forward_head(features, extents=model.feature_extents(extents))
        torch.testing.assert_close(head, alone, rtol=1e-4, atol=1e-5)
        # Full-size extents take the unmasked path and change nothing.
        full = torch.tensor([[203, 171], [203, 171]])
        torch.testing.assert_close(model(batch, extents=full), model(batch))


def test_staged_api_is_consistent_and_pre_logits():
    model = _small("convnet5")
    x = torch.randn(3, 3, 97, 130)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        pre = model.forward_head(features, pre_logits=True)
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(model.fc8(pre), logits)
    assert pre.shape == (3, 64)
    assert logits.shape == (3, 10)


def test_training_mode_backward_and_dropout():
    model = _small("zf5", dropout=0.5).train()
    x = torch.randn(2, 3, 91, 77)
    logits = model(x)
    logits.sum().backward()
    assert model.features.conv1.weight.grad is not None
    assert float(model.features.conv1.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        pre_a = model.forward_head(model.forward_features(x), pre_logits=True)
        pre_b = model.forward_head(model.forward_features(x), pre_logits=True)
    assert not torch.equal(pre_a, pre_b)  # dropout active in training mode


def test_layer_names_memory_format_and_init():
    model = _small("convnet5")
    names = [n for n, _ in model.features.named_children()]
    expected = "conv1 relu1 lrn1 conv2 relu2 lrn2 pool2 conv3 relu3 pool3 conv4 relu4 conv5 relu5"
    assert names == expected.split()
    relus = [m for n, m in model.features.named_children() if n.startswith("relu")]
    assert all(isinstance(m, nn.ReLU) and m.inplace for m in relus)
    conv1 = model.features.conv1
    assert conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert float(conv1.bias.detach().abs().max()) == 0.0
    assert abs(float(model.fc7.weight.detach().std()) - 0.01) < 0.002
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 64, 64))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert "feature_stride=16" in repr(model)


def test_width_rounding():
    model = create_model("zf5", width=0.001, fc_dim=8)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [1, 1, 1, 1, 1]
    model = create_model("overfeat7", width=0.3, fc_dim=8)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [29, 77, 154, 154, 154, 154, 154]


def test_spp_head_sizes():
    model = _small("zf5", spp_levels=(4, 2, 1), spp_mode="avg")
    assert model.fc6.in_features == 64 * 21
    assert model.spp_levels == (4, 2, 1)
    assert model.num_classes == 10 and model.name == "zf5"


def test_custom_layer_list():
    model = SPPNet(
        name="tiny",
        layers=(ConvSpec(8, 3, stride=2, padding=1), PoolSpec(2, 2), ConvSpec(16, 3)),
        pool5=PoolSpec(2, 2),
        num_classes=3,
        fc_dim=16,
    ).eval()
    assert model.feature_stride == 4
    # conv3 (no padding) needs 3 <- pool 2/2 needs 6 <- conv 3/2 pad 1 needs 11.
    assert model.min_input_size == 11
    with torch.no_grad():
        assert model(torch.randn(1, 3, 11, 40)).shape == (1, 3)
    with pytest.raises(ValueError, match="tiny needs inputs of at least 11x11 pixels, got 10x40"):
        model(torch.randn(1, 3, 10, 40))


def test_input_validation_errors():
    model = _small("zf5")
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got list"):
        model([1, 2, 3])
    with pytest.raises(
        ValueError, match=r"Tensor\[N, 3, H, W\] \(4 dims\), got shape \(3, 64, 64\)"
    ):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels, got shape \(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(TypeError, match=r"floating-point tensor, got dtype torch\.uint8"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="zf5 needs inputs of at least 29x29 pixels, got 20x31"):
        model(torch.randn(1, 3, 20, 31))


def test_extents_validation_errors():
    model = _small("zf5")
    x = torch.randn(2, 3, 64, 70)
    with pytest.raises(TypeError, match="extents must be an integer LongTensor"):
        model(x, extents=torch.tensor([[64.0, 70.0], [64.0, 70.0]]))
    with pytest.raises(ValueError, match=r"= \[2, 2\] \(height, width\), got shape \(1, 2\)"):
        model(x, extents=torch.tensor([[64, 70]]))
    with pytest.raises(ValueError, match=r"extents must lie in 29..64 \(height\) x 29..70"):
        model(x, extents=torch.tensor([[64, 70], [65, 70]]))
    with pytest.raises(ValueError, match="extents must lie in"):
        model(x, extents=torch.tensor([[64, 70], [28, 70]]))
    with pytest.raises(ValueError, match="needs inputs of at least 29x29 pixels, got extents"):
        model.feature_extents(torch.tensor([[28, 40]]))
    with pytest.raises(ValueError, match=r"LongTensor\[N, 2\] of \(height, width\)"):
        model.feature_extents(torch.tensor([40, 40]))
    with pytest.raises(TypeError, match="extents must be an integer LongTensor"):
        model.feature_extents([[40, 40]])
    with pytest.raises(TypeError, match="pass either"):
        model.feature_size(torch.tensor([[40, 40]]), 3)
    with pytest.raises(TypeError, match="height must be an int"):
        model.feature_size(40.0, 40)


def test_head_validation_errors():
    model = _small("zf5")
    with pytest.raises(ValueError, match="features must have 64 channels"):
        model.forward_head(torch.randn(1, 32, 5, 5))
    with pytest.raises(ValueError, match=r"features must be Tensor\[N, C, h, w\]"):
        model.forward_head(torch.randn(64, 5, 5))


def test_constructor_validation_errors():
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        create_model("zf5", num_classes=0)
    with pytest.raises(TypeError, match="fc_dim must be an int"):
        create_model("zf5", fc_dim=64.0)
    with pytest.raises(ValueError, match="width must be a number > 0"):
        create_model("zf5", width=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        create_model("zf5", dropout=1.0)
    with pytest.raises(TypeError, match="dropout must be a float"):
        create_model("zf5", dropout="0.5")
    with pytest.raises(ValueError, match="must be >= 1 bin per side"):
        create_model("zf5", spp_levels=(6, 0))
    with pytest.raises(ValueError, match="mode must be one of"):
        create_model("zf5", spp_mode="median")
    with pytest.raises(ValueError, match="at least one ConvSpec"):
        SPPNet(name="x", layers=(), pool5=PoolSpec(3, 2))
    with pytest.raises(ValueError, match="must start with a ConvSpec"):
        SPPNet(name="x", layers=(PoolSpec(2, 2), *ZF5.layers), pool5=PoolSpec(3, 2))
    with pytest.raises(TypeError, match="unknown layer spec"):
        SPPNet(name="x", layers=(*ZF5.layers, "relu"), pool5=PoolSpec(3, 2))


def test_forward_pooled_equals_forward_head_on_windows():
    from sppnet.ops import window_pyramid_pool

    model = _small("zf5").eval()
    features = model.forward_features(torch.randn(1, 3, 150, 190))
    windows = torch.tensor([[0, 0, 5, 4], [2, 1, 9, 8]])
    pooled = window_pyramid_pool(features, windows, levels=model.spp_levels)
    with torch.no_grad():
        got = model.forward_pooled(pooled)
        for r, (x0, y0, x1, y1) in enumerate(windows.tolist()):
            want = model.forward_head(features[:, :, y0:y1, x0:x1])[0]
            torch.testing.assert_close(got[r], want)
        assert model.forward_pooled(pooled, pre_logits=True).shape == (2, model.fc_dim)
    with pytest.raises(ValueError, match=r"pooled must be Tensor\[N, "):
        model.forward_pooled(pooled[:, :-1])


def test_forward_intermediates():
    model = _small("zf5")
    assert model.conv_layer_names == ("conv1", "conv2", "conv3", "conv4", "conv5")
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        maps = model.forward_intermediates(x, ("conv1", "conv4", "conv5", "pool2"))
        torch.testing.assert_close(maps["conv5"], model.forward_features(x))
        # by hand: every layer of the trunk up to relu1 / relu4 (the in-place LRN after
        # relu1 must not have changed the returned conv1 map)
        for target in ("relu1", "relu4"):
            y = x.contiguous(memory_format=torch.channels_last)
            for name, layer in model.features.named_children():
                y = layer(y)
                if name == target:
                    break
            torch.testing.assert_close(maps[target.replace("relu", "conv")], y)
    assert maps["pool2"].shape[-2:] == maps["conv4"].shape[-2:]
    assert (maps["conv4"] >= 0).all()  # after the ReLU
    with pytest.raises(ValueError, match="conv9"):
        model.forward_intermediates(x, ("conv9",))
    with pytest.raises(ValueError, match="layers must name"):
        model.forward_intermediates(x, ())
    assert create_model("overfeat7", width=0.1, fc_dim=8).conv_layer_names[-1] == "conv7"
