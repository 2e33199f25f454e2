"""Transfer features of a pretrained EfficientNet-Lite0 trunk without any training: the
pooled trunk maps and the SPP vector for each view, the writer, resume across rebuilds, the
CLI (errors, fc layers only with a checkpoint) and linear SVMs on the result.

The SPP head's map is the registry's choice (stage 5 at the time of writing); the tests read
the SPP vector's length from the model rather than assume it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import make_colour_folder

from sppnet.data.image_folder import ImageFolder
from sppnet.data.transforms import resize_shorter, subtract_mean, to_tensor
from sppnet.models import EfficientNetLite, create_model
from sppnet.transfer.features import (
    FEATURE_LAYERS,
    MAP_LAYERS,
    extract_features,
    feature_dim,
    feature_layers,
    image_representation,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LITE = "efficientnet_lite0"
SIZE, CROP = 80, 64  # 80 -> a 3 x h head map (stride 32), 64 -> 2 x 2
MAP_DIMS = {"stage5": 112, "stage7": 320, "head": 1280}


@pytest.fixture(scope="module")
def lite():
    """The registry's model: the SPP head on its default map."""
    return create_model(LITE, pretrained=True, num_classes=3, fc_dim=16)


@pytest.fixture(scope="module")
def lite_full():
    """The whole trunk, up to the 1280-channel head conv."""
    return EfficientNetLite(pretrained=True, feature_layer="head", num_classes=3, fc_dim=16)


def _dims(lite):
    return {**MAP_DIMS, "spp": lite.fc6.in_features}


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    # 3 classes x 6 images (train split 12, val 6): `--split all` takes all 18
    return make_colour_folder(tmp_path_factory.mktemp("colour"), n_train=12, n_val=6)


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _view(img, view):
    if view == "warp":
        return img.resize((CROP, CROP), Image.Resampling.BILINEAR)
    img = resize_shorter(img, SIZE)
    if view == "crop":
        x, y = (img.width - CROP) // 2, (img.height - CROP) // 2
        img = img.crop((x, y, x + CROP, y + CROP))
    return img


def test_lite_offers_its_maps_the_spp_vector_and_fc_layers(lite, lite_full):
    assert feature_layers(lite_full) == (*MAP_LAYERS, "pool5", "spp", "fc6", "fc7")
    maps = feature_layers(lite)[:-4]
    assert maps and set(maps) <= set(MAP_LAYERS)
    assert feature_layers(lite)[-4:] == ("pool5", "spp", "fc6", "fc7")
    zf5 = create_model("zf5", width=0.125, fc_dim=8, num_classes=2)
    assert feature_layers(zf5) == FEATURE_LAYERS
    img = _image(70, 90)
    with pytest.raises(ValueError, match=r"has no layer 'conv5'.*stage5, stage7, head"):
        image_representation(lite_full, img, layer="conv5", view="crop", size=SIZE, crop=CROP)
    with pytest.raises(ValueError, match="zf5 has no layer 'head'"):
        image_representation(zf5, img, layer="head", view="full", size=SIZE)


@pytest.mark.parametrize("view", ["full", "crop", "warp"])
def test_pooled_maps_and_spp_of_each_view(lite, lite_full, view):
    img = _image(71, 103)
    kw = {"view": view, "size": SIZE, "crop": CROP, "normalize": False}
    got = {layer: image_representation(lite_full, img, layer=layer, **kw) for layer in MAP_DIMS}
    got["spp"] = image_representation(lite, img, layer="spp", **kw)
    dims = _dims(lite)
    assert {k: v.shape[0] for k, v in got.items()} == dims
    for layer in MAP_DIMS:
        assert feature_dim(lite_full, layer, view, size=SIZE, crop=CROP) == dims[layer]
    assert feature_dim(lite, "spp", view, size=SIZE, crop=CROP) == dims["spp"]
    x = subtract_mean(to_tensor(_view(img, view)), 128.0)[None]  # [1, 3, H, W]
    with torch.no_grad():
        maps = lite_full.eval().forward_intermediates(x, MAP_LAYERS)
        spp = lite.eval().pool(lite.forward_features(x))[0]
    for layer in MAP_LAYERS:
        torch.testing.assert_close(got[layer], maps[layer][0].mean(dim=(1, 2)))
    torch.testing.assert_close(got["spp"], spp)
    normed = image_representation(lite, img, layer="spp", view=view, size=SIZE, crop=CROP)
    assert abs(float(normed.norm()) - 1.0) < 1e-5


def test_writer_resumes_across_rebuilt_pretrained_models(colour_root, tmp_path):
    data = ImageFolder(colour_root, split="val")
    kw = {"layer": "spp", "view": "full", "size": SIZE, "batch_size": 4, "progress": False}
    torch.manual_seed(1)
    model = create_model(LITE, pretrained=True)
    out = extract_features(model, data, tmp_path, **kw)
    feats = np.load(out / "features.npy")
    assert feats.shape == (len(data), model.fc6.in_features)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # a second build draws other random fc layers; the trunk features are the same run
    torch.manual_seed(2)
    again = extract_features(create_model(LITE, pretrained=True), data, tmp_path, **kw)
    np.testing.assert_array_equal(np.load(again / "features.npy"), feats)


# ------------------------------------------------------------------------------- CLI
def _features_argv(root, out, *flags):
    argv = ["features", "--data", str(root), "--split", "all", "--size", str(SIZE)]
    argv += ["--crop", str(CROP), "--out", str(out), "--device", "cpu", "--no-progress"]
    return [*argv, *flags]


@pytest.mark.parametrize(("layer", "view"), [("spp", "full"), ("head", "crop"), ("stage5", "warp")])
def test_cli_pretrained_features_then_svm(lite, colour_root, tmp_path, capsys, layer, view):
    from sppnet.cli import main

    out = tmp_path / "feats"
    flags = ["--pretrained", "--model", LITE, "--layer", layer, "--view", view]
    assert main(_features_argv(colour_root, out, *flags)) == 0
    dim = _dims(lite)[layer]
    assert capsys.readouterr().out.startswith(f"18 images x {dim} values ({layer}")
    assert np.load(out / "features.npy").shape == (18, dim)
    argv = ["svm", "--features", str(out), "--protocol", "caltech", "--n-train", "3"]
    argv += ["--n-test", "3", "--splits", "2", "--C", "1", "--json", str(tmp_path / "s.json")]
    assert main(argv) == 0
    assert f"Caltech101 protocol, {layer} features, view {view}" in capsys.readouterr().out
    result = json.loads((tmp_path / "s.json").read_text())["result"]
    assert len(result["accuracies"]) == 2 and result["num_classes"] == 3


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--pretrained", "--model", "zf5", "--layer", "spp"], "efficientnet_lite0"),
        (["--pretrained", "--layer", "spp"], "--pretrained needs --model"),
        (["--pretrained", "--model", LITE, "--layer", "fc7"], "random"),
        (["--layer", "spp"], "--checkpoint DIR"),
        (["--checkpoint", "x", "--pretrained", "--model", LITE, "--layer", "spp"], "not both"),
        (["--checkpoint", "x", "--model", LITE, "--layer", "spp"], "--model goes with"),
        (["--pretrained", "--model", LITE, "--layer", "conv5"], "has no layer 'conv5'"),
    ],
)
def test_cli_errors_are_one_line(colour_root, tmp_path, capsys, flags, match):
    from sppnet.cli import main

    assert main(_features_argv(colour_root, tmp_path / "f", *flags, "--view", "crop")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err


def test_cli_fc7_of_a_fine_tuned_lite_checkpoint(colour_root, tmp_path, capsys):
    from sppnet.cli import main
    from sppnet.engine.checkpoint import save_checkpoint

    model = create_model(LITE, num_classes=3, fc_dim=16)
    levels = list(model.spp_levels)
    kwargs = dict(name=LITE, num_classes=3, spp_levels=levels, width=1.0, fc_dim=16)
    kwargs.update(spp_mode="max", dropout=0.5)
    state = {"epoch": 1, "model": kwargs, "classes": ["a", "b", "c"], "config": {"mean": 128.0}}
    save_checkpoint(tmp_path / "run", model=model, optimizer=None, state=state)
    flags = ["--checkpoint", str(tmp_path / "run"), "--layer", "fc7", "--view", "full"]
    assert main(_features_argv(colour_root, tmp_path / "feats", *flags)) == 0
    assert np.load(tmp_path / "feats" / "features.npy").shape == (18, 16)
