"""Transfer features (Sec. 3.2): each layer/view against the network's own outputs, the
batched writer against the one-image path, resume, bad images and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sppnet.data.decode import ImageDecodeError
from sppnet.data.image_folder import ImageFolder
from sppnet.data.transforms import resize_shorter, subtract_mean, to_tensor
from sppnet.models import create_model
from sppnet.transfer.features import (
    FEATURE_LAYERS,
    FEATURE_VIEWS,
    estimate_feature_bytes,
    extract_features,
    feature_dim,
    image_representation,
)

SIZE, CROP = 64, 56  # narrow zf5 takes >= 29 px; 64 -> a 3x3 to 5x5 conv5 map
# (height, width) of the test images: odd sizes, some shared (batched together in "full")
SIZES = [(40, 57), (64, 64), (40, 57), (77, 51), (90, 61), (64, 64), (45, 101)]


def _model(spp_levels=(6, 3, 2, 1)):
    torch.manual_seed(0)
    model = create_model("zf5", width=0.125, fc_dim=32, num_classes=2, spp_levels=spp_levels)
    with torch.no_grad():  # non-zero biases: fewer all-zero ReLU outputs in a random net
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.bias.uniform_(0.0, 0.05)
    return model.train()  # the functions must switch to eval (dropout off) themselves


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _folder(root, sizes=SIZES, bad=()):
    """Two classes, image i in class i % 2; names in ``bad`` get undecodable bytes."""
    for i, (h, w) in enumerate(sizes):
        path = root / ("ab"[i % 2]) / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in bad:
            path.write_bytes(b"not a png at all")
        else:
            _image(h, w, seed=i).save(path)
    return root


def _crop(img, size, crop):
    img = resize_shorter(img, size)
    x, y = (img.width - crop) // 2, (img.height - crop) // 2
    return img.crop((x, y, x + crop, y + crop))


def _x(img):
    return subtract_mean(to_tensor(img), 128.0)[None]  # [1, 3, H, W]


def _slow_max_pool_level(fmap, n):
    """Reference n x n level of Appendix A by loops: bin (i, j) covers rows
    [floor(i h / n), ceil((i + 1) h / n)) and columns likewise; output order (C, n, n)."""
    c, h, w = fmap.shape
    out = torch.empty(c, n, n)
    for i in range(n):
        for j in range(n):
            r0, r1 = math.floor(i * h / n), math.ceil((i + 1) * h / n)
            c0, c1 = math.floor(j * w / n), math.ceil((j + 1) * w / n)
            out[:, i, j] = fmap[:, r0:r1, c0:c1].amax(dim=(1, 2))
    return out.flatten()


# --------------------------------------------------------------- the one-image path
def test_full_image_features_equal_the_networks_own_outputs():
    model = _model()
    img = _image(47, 83)
    kw = {"view": "full", "size": SIZE, "normalize": False}
    got = {
        layer: image_representation(model, img, layer=layer, **kw) for layer in FEATURE_LAYERS[2:]
    }
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        x = _x(resize_shorter(img, SIZE))
        conv5 = model.forward_intermediates(x, ("conv5",))["conv5"]
        fc7 = model.forward_head(model.forward_features(x), pre_logits=True)[0]
        spp = model.pool(conv5)[0]
    torch.testing.assert_close(got["fc7"], fc7)
    torch.testing.assert_close(got["spp"], spp)
    torch.testing.assert_close(got["fc6"], F.relu(model.fc6(spp)))
    torch.testing.assert_close(got["pool5"], _slow_max_pool_level(conv5[0], 6))
    c = model.feature_channels
    torch.testing.assert_close(got["pool5"], got["spp"][: c * 36])  # the 6x6 level's slice
    assert got["fc7"].shape == (32,) and got["spp"].shape == (c * 50,)


@pytest.mark.parametrize("view", ["crop", "warp"])
def test_conv_features_equal_intermediate_maps(view):
    model = _model()
    img = _image(61, 95)
    kw = {"view": view, "size": SIZE, "crop": CROP, "normalize": False}
    conv4 = image_representation(model, img, layer="conv4", **kw)
    conv5 = image_representation(model, img, layer="conv5", **kw)
    pool5 = image_representation(model, img, layer="pool5", **kw)
    spp = image_representation(model, img, layer="spp", **kw)
    view_img = (
        _crop(img, SIZE, CROP)
        if view == "crop"
        else img.resize((CROP, CROP), Image.Resampling.BILINEAR)
    )
    model.eval()
    with torch.no_grad():
        maps = model.forward_intermediates(_x(view_img), ("conv4", "conv5"))
    torch.testing.assert_close(conv4, maps["conv4"][0].flatten())
    torch.testing.assert_close(conv5, maps["conv5"][0].flatten())
    torch.testing.assert_close(pool5, spp[: model.feature_channels * 36])
    assert conv5.numel() == feature_dim(model, "conv5", view, size=SIZE, crop=CROP)


def test_no_spp_pool5_and_fc7_on_224_views():
    model = _model(spp_levels=None)
    img = _image(230, 260)
    pool5 = image_representation(model, img, layer="pool5", view="warp", normalize=False)
    fc7 = image_representation(model, img, layer="fc7", view="crop", normalize=False)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(_x(img.resize((224, 224), Image.Resampling.BILINEAR)))
        x_crop = _x(_crop(img, 224, 224))
        ref_fc7 = model.forward_head(model.forward_features(x_crop), pre_logits=True)[0]
    torch.testing.assert_close(pool5, model.pool(feats).flatten())
    torch.testing.assert_close(fc7, ref_fc7)


def test_representations_are_l2_normalised():
    model = _model()
    img = _image(50, 70)
    for layer in FEATURE_LAYERS:
        for view in FEATURE_VIEWS:
            if layer in ("conv4", "conv5") and view == "full":
                continue
            r = image_representation(model, img, layer=layer, view=view, size=SIZE, crop=CROP)
            assert r.shape == (feature_dim(model, layer, view, size=SIZE, crop=CROP),)
            assert abs(float(r.norm()) - 1.0) < 1e-5, (layer, view)


def test_invalid_requests_raise():
    model, img = _model(), _image(50, 70)
    for layer in ("conv4", "conv5"):
        with pytest.raises(ValueError, match="crop' or 'warp"):
            image_representation(model, img, layer=layer, view="full")
    with pytest.raises(ValueError, match="layer must be one of"):
        image_representation(model, img, layer="fc8", view="full")
    with pytest.raises(ValueError, match="view must be one of"):
        image_representation(model, img, layer="fc7", view="center")
    with pytest.raises(ValueError, match="size >= crop"):
        image_representation(model, img, layer="fc7", view="crop", size=50, crop=56)
    with pytest.raises(ValueError, match="at least 29"):
        image_representation(model, img, layer="fc7", view="full", size=20)
    with pytest.raises(TypeError, match="PIL"):
        image_representation(model, torch.zeros(3, 50, 50), layer="fc7", view="full")
    with pytest.raises(TypeError, match="SPPNet"):
        image_representation(torch.nn.Linear(2, 2), img, layer="fc7", view="full")
    no_spp = _model(spp_levels=None)
    with pytest.raises(ValueError, match="needs an SPP model"):
        image_representation(no_spp, img, layer="spp", view="crop")
    with pytest.raises(ValueError, match="fixed-size input"):
        image_representation(no_spp, img, layer="fc7", view="full")
    with pytest.raises(ValueError, match="6x6"):
        image_representation(no_spp, img, layer="pool5", view="warp", crop=CROP)


# ---------------------------------------------------------------- the batched writer
@pytest.mark.parametrize(("layer", "view"), [("fc7", "full"), ("conv5", "crop"), ("pool5", "warp")])
def test_extract_features_matches_the_one_image_path(tmp_path, layer, view):
    model = _model()
    data = ImageFolder(_folder(tmp_path / "data"))
    kw = {"layer": layer, "view": view, "size": SIZE, "crop": CROP}
    out = extract_features(model, data, tmp_path / "out", batch_size=4, progress=False, **kw)
    feats = np.load(out / "features.npy", mmap_mode="r")
    meta = json.loads((out / "meta.json").read_text())
    n, d = len(SIZES), feature_dim(model, layer, view, size=SIZE, crop=CROP)
    assert isinstance(feats, np.memmap) and feats.dtype == np.float32 and feats.shape == (n, d)
    assert (out / "features.npy").stat().st_size - estimate_feature_bytes(
        model, layer, view, n, size=SIZE, crop=CROP
    ) < 256  # the .npy header
    assert meta["complete"] and meta["rows_done"] == n and meta["rows"] == n and meta["dim"] == d
    assert (meta["layer"], meta["view"], meta["size"]) == (layer, view, SIZE)
    np.testing.assert_array_equal(np.load(out / "labels.npy"), data.targets)
    ids = json.loads((out / "ids.json").read_text())
    assert ids == [p.relative_to(data.root).as_posix() for p, _ in data.samples]
    for i, (path, _) in enumerate(data.samples):
        with Image.open(path) as img:
            ref = image_representation(model, img.convert("RGB"), **kw)
        np.testing.assert_allclose(feats[i], ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def _count_images(model):
    """Count images entering the trunk (conv1's forward hook); returns the list and handle."""
    seen: list[int] = []
    handle = model.features.conv1.register_forward_hook(
        lambda module, args, output: seen.append(args[0].shape[0])
    )
    return seen, handle


def test_resume_after_interruption_computes_nothing_twice(tmp_path):
    model = _model()
    data = ImageFolder(_folder(tmp_path / "data"))
    kw = {"layer": "spp", "view": "crop", "size": SIZE, "crop": CROP, "batch_size": 2}
    whole = extract_features(model, data, tmp_path / "whole", progress=False, **kw)

    def stop_on_third_batch(module, args):
        stop_on_third_batch.calls += 1
        if stop_on_third_batch.calls == 3:
            raise KeyboardInterrupt

    stop_on_third_batch.calls = 0
    handle = model.features.conv1.register_forward_pre_hook(stop_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        extract_features(model, data, tmp_path / "part", progress=False, **kw)
    handle.remove()
    assert not (tmp_path / "part").exists()  # only a finished folder appears there
    meta = json.loads((tmp_path / ".part.partial" / "meta.json").read_text())  # staging
    assert meta["rows_done"] == 4 and not meta["complete"]

    seen, handle = _count_images(model)
    extract_features(model, data, tmp_path / "part", progress=False, **kw)
    assert sum(seen) == len(SIZES) - 4  # only the images not yet written
    seen.clear()
    extract_features(model, data, tmp_path / "part", progress=False, **kw)  # complete
    assert sum(seen) == 0
    handle.remove()
    for name in ("features.npy", "labels.npy", "ids.json"):
        assert (tmp_path / "part" / name).read_bytes() == (whole / name).read_bytes(), name

    with pytest.raises(ValueError, match="other settings"):
        extract_features(model, data, tmp_path / "part", **{**kw, "layer": "fc7"})


def test_bad_image_is_named_or_skipped_and_counted(tmp_path):
    model = _model()
    root = _folder(tmp_path / "data", bad=(3,))
    data = ImageFolder(root)
    kw = {"layer": "fc6", "view": "full", "size": SIZE, "batch_size": 3, "progress": False}
    with pytest.raises(ImageDecodeError, match=r"img_3\.png"):
        extract_features(model, data, tmp_path / "raise", **kw)
    out = extract_features(model, data, tmp_path / "skip", skip_bad=True, **kw)
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["skipped"]) == 1 and meta["skipped"][0]["file"].endswith("img_3.png")
    good = [i for i, (path, _) in enumerate(data.samples) if path.name != "img_3.png"]
    feats = np.load(out / "features.npy")
    assert feats.shape == (len(good), 32) and meta["rows"] == len(good)
    np.testing.assert_array_equal(np.load(out / "labels.npy"), [data.targets[i] for i in good])
    ids = json.loads((out / "ids.json").read_text())
    assert "b/img_3.png" not in ids and len(ids) == len(good)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # a dataset that substitutes bad images itself would store features under wrong ids
    with pytest.raises(ValueError, match="skip_bad=False"):
        extract_features(model, ImageFolder(root, skip_bad=True), tmp_path / "x", **kw)


def test_labels_argument_and_checks(tmp_path):
    model = _model()
    data = ImageFolder(_folder(tmp_path / "data", sizes=SIZES[:3]))
    truth = np.array([[1, -1], [0, 1], [-1, -1]])
    kw = {"layer": "fc7", "view": "warp", "crop": CROP, "progress": False}
    out = extract_features(model, data, tmp_path / "out", labels=truth, **kw)
    np.testing.assert_array_equal(np.load(out / "labels.npy"), truth)
    assert np.load(out / "labels.npy").dtype == np.int64
    with pytest.raises(ValueError, match="N = 3"):
        extract_features(model, data, tmp_path / "o2", labels=np.zeros(4, dtype=int), **kw)
    with pytest.raises(ValueError, match="crop' or 'warp"):
        extract_features(model, data, tmp_path / "o3", layer="conv4", view="full")
    assert estimate_feature_bytes(model, "fc7", "full", 10) == 10 * 32 * 4


def test_voc_layout_gets_classification_truth(tmp_path):
    from sppnet.data.synthetic import generate_voc_dataset
    from sppnet.data.voc import VOCDetection
    from sppnet.evaluation.voc_classification import voc_image_labels

    root = generate_voc_dataset(tmp_path / "voc", sizes={"test": 3}, min_side=40, max_side=70)
    data = VOCDetection(root, "test")
    out = extract_features(
        _model(), data, tmp_path / "out", layer="fc7", view="full", size=SIZE, progress=False
    )
    labels = np.load(out / "labels.npy")
    expected = voc_image_labels(data.annotations, len(data.class_names))
    np.testing.assert_array_equal(labels, np.asarray(expected))
    assert labels.shape == (3, len(data.class_names))
    assert json.loads((out / "ids.json").read_text()) == data.ids


# ------------------------------------------------------------------------------- CLI
def test_cli_features_prints_the_size_first_and_writes_the_folder(tmp_path, capsys):
    from sppnet.cli import main
    from sppnet.engine.checkpoint import save_checkpoint

    model = create_model("zf5", num_classes=2, width=0.125, fc_dim=32)
    kwargs = dict(name="zf5", num_classes=2, spp_levels=[6, 3, 2, 1], width=0.125, fc_dim=32)
    kwargs.update(spp_mode="max", dropout=0.5)
    state = {"epoch": 1, "model": kwargs, "classes": ["a", "b"], "config": {"mean": 128.0}}
    save_checkpoint(tmp_path / "run", model=model, optimizer=None, state=state)
    data = _folder(tmp_path / "data", sizes=SIZES[:4])
    argv = ["features", "--checkpoint", str(tmp_path / "run"), "--data", str(data)]
    argv += ["--split", "all", "--layer", "spp", "--view", "full", "--size", str(SIZE)]
    argv += ["--out", str(tmp_path / "feats"), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 images x 1600 values (spp, view full)") and "MiB" in lines[0]
    assert np.load(tmp_path / "feats" / "features.npy").shape == (4, 1600)
    bad = [*argv[:7], "--layer", "conv4", "--view", "full", "--out", str(tmp_path / "f2")]
    assert main(bad) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_features_help_has_an_example(capsys):
    from sppnet.cli import main

    with pytest.raises(SystemExit):
        main(["features", "--help"])
    assert "sppnet features --checkpoint" in capsys.readouterr().out
