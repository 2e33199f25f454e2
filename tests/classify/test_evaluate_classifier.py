"""The test views of Sec. 3.1.2-3.1.5 on a tiny model and tiny images (CPU, a few seconds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sppnet.classify.evaluate import (
    EVAL_VIEWS,
    _ViewInputs,
    evaluate_classifier,
    feature_map_view_logits,
)
from sppnet.data.transforms import hflip, subtract_mean, to_tensor
from sppnet.data.views import feature_map_view_boxes, ten_view_boxes
from sppnet.models import create_model
from sppnet.ops import map_windows_to_features, spatial_pyramid_pool, window_pyramid_pool

CROP, SHORTER, SCALES = 64, 72, (64, 80, 96)


class _TinyImages:
    """(PIL RGB image, label) pairs of random non-square sizes, like an ImageFolder."""

    def __init__(self, labels: list[int], seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i, label in enumerate(labels):
            short = int(torch.randint(64, 90, (1,), generator=g))
            long = short + int(torch.randint(9, 40, (1,), generator=g))
            h, w = (short, long) if i % 2 == 0 else (long, short)
            pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
            self.items.append((Image.fromarray(pixels.numpy(), "RGB"), label))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def _model(num_classes: int = 3, spp: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    return create_model(
        "zf5",
        num_classes=num_classes,
        width=0.125,
        fc_dim=32,
        spp_levels=(4, 2, 1) if spp else None,
    )


def _pair(img: Image.Image) -> torch.Tensor:
    t = to_tensor(img)
    return torch.stack([subtract_mean(t, 128.0), subtract_mean(hflip(t), 128.0)])


def test_end_to_end_errors_in_range_and_view_counts():
    data = _TinyImages([0, 1, 2])
    model = _model()
    model.train()
    out = evaluate_classifier(
        model, data, scales=SCALES, crop=CROP, shorter=SHORTER, batch_size=7, progress=False
    )
    assert list(out) == list(EVAL_VIEWS)
    for view, res in out.items():
        assert res is not None, view
        assert res["num_images"] == 3
        assert 0.0 <= res["top5_error"] <= res["top1_error"] <= 1.0
        assert res["top5_error"] == 0.0  # 3 classes: top-5 is computed at k = K
    assert out["center"]["views_per_image"] == 1
    assert out["ten"]["views_per_image"] == 10
    assert out["full"]["views_per_image"] == 1
    # non-square images: 3 distinct windows at s = crop (6 with flips), 9 (18) above, plus
    # the 2 full-image views
    assert out["multiview"]["views_per_image"] == 6 + 18 + 18 + 2
    assert model.training, "the model's mode must be restored"


def test_perfect_and_constant_models_give_the_expected_error():
    labels = [0, 1, 5, 0]
    data = _TinyImages(labels, seed=1)
    model = _model(num_classes=6)
    # fc8 ignores its input and ranks classes 0 > 1 > ... > 5 in every view.
    with torch.no_grad():
        model.fc8.weight.zero_()
        model.fc8.bias.copy_(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0]))
    out = evaluate_classifier(
        model, data, scales=SCALES, crop=CROP, shorter=SHORTER, progress=False
    )
    for view in EVAL_VIEWS:
        assert out[view]["top1_error"] == pytest.approx(2 / 4), view  # labels != 0
        assert out[view]["top5_error"] == pytest.approx(1 / 4), view  # label 5 is ranked 6th


def test_no_spp_model_reports_none_for_full_and_multiview():
    data = _TinyImages([1], seed=2)
    model = _model(spp=False)
    out = evaluate_classifier(model, data, scales=(224,), progress=False)  # 224: pool5 is 6x6
    assert out["full"] is None and out["multiview"] is None
    assert 0.0 <= out["center"]["top1_error"] <= 1.0
    assert out["ten"]["views_per_image"] == 10


def test_view_inputs_are_the_paper_crops():
    data = _TinyImages([1], seed=3)
    inputs = _ViewInputs(data, EVAL_VIEWS, SCALES, CROP, SHORTER, 128.0)
    item = inputs[0]
    img = data[0][0]
    w, h = img.size
    base = img.resize(
        (SHORTER, round(h * SHORTER / w)) if w <= h else (round(w * SHORTER / h), SHORTER),
        Image.Resampling.BILINEAR,
    )
    boxes, flipped = ten_view_boxes(base.width, base.height, CROP)
    assert item["crops"].shape == (10, 3, CROP, CROP)
    for crop, box, flip in zip(item["crops"], boxes.long().tolist(), flipped, strict=True):
        want = to_tensor(base.crop(tuple(box))) - 128.0
        assert torch.equal(crop, want.flip(-1) if flip else want)
    assert torch.equal(item["full"][0], to_tensor(base) - 128.0)
    assert torch.equal(item["full"][1], to_tensor(base).flip(-1) - 128.0)
    assert [tuple(p.shape[-2:]) for p, _ in item["scales"]] == [
        (s, round(w * s / h)) if h <= w else (round(h * s / w), s) for s in SCALES
    ]
    for pair, view_boxes in item["scales"]:
        assert torch.equal(view_boxes, feature_map_view_boxes(pair.shape[-1], pair.shape[-2], CROP))


def test_feature_map_views_equal_pooling_separately_computed_maps():
    """Each window's logits = forward_head of the cropped conv map (independent SPP path);
    a flipped view = the mirrored box on the separately computed map of the flipped image."""
    data = _TinyImages([0], seed=4)
    model = _model().eval()
    img = data[0][0]
    pair = _pair(img)  # [2, 3, H, W]
    width = pair.shape[-1]
    boxes = feature_map_view_boxes(width, pair.shape[-2], CROP)
    with torch.inference_mode():
        logits = feature_map_view_logits(model, pair, boxes)  # [2V, K]
        n_view = boxes.shape[0]
        assert logits.shape == (2 * n_view, 3)
        alone = model.forward_features(pair[:1])  # the image alone
        mirror = model.forward_features(hflip(to_tensor(img))[None] - 128.0)  # flipped, alone
        size = tuple(alone.shape[-2:])
        cells = map_windows_to_features(boxes, model.feature_stride, size, model.feature_offset)
        mirrored = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
        )
        mcells = map_windows_to_features(mirrored, model.feature_stride, size, model.feature_offset)
        # pooling the windows of the separately computed map gives the same pooled vectors
        pooled = window_pyramid_pool(alone, cells, levels=model.spp_levels)
        for v in range(n_view):
            x0, y0, x1, y1 = cells[v].tolist()
            ref = spatial_pyramid_pool(alone[:, :, y0:y1, x0:x1], model.spp_levels)
            torch.testing.assert_close(pooled[v : v + 1], ref)
            head = model.forward_head(alone[:, :, y0:y1, x0:x1])
            torch.testing.assert_close(logits[v : v + 1], head, rtol=1e-4, atol=1e-5)
            x0, y0, x1, y1 = mcells[v].tolist()
            head = model.forward_head(mirror[:, :, y0:y1, x0:x1])
            torch.testing.assert_close(
                logits[n_view + v : n_view + v + 1], head, rtol=1e-4, atol=1e-5
            )


def test_multiview_scores_are_the_average_of_all_views():
    """One image: evaluate_classifier's multiview ranking equals averaging the softmax of the
    feature-map views of every scale and the 2 full-image views, computed here by hand."""
    data = _TinyImages([2], seed=5)
    model = _model(num_classes=4).eval()
    img = data[0][0]
    probs = []
    with torch.inference_mode():
        for s in SCALES:
            w, h = img.size
            size = (s, round(h * s / w)) if w <= h else (round(w * s / h), s)
            scaled = img.resize(size, Image.Resampling.BILINEAR)
            pair = _pair(scaled)
            boxes = feature_map_view_boxes(scaled.width, scaled.height, CROP)
            probs.append(F.softmax(feature_map_view_logits(model, pair, boxes), 1))
        w, h = img.size
        size = (SHORTER, round(h * SHORTER / w)) if w <= h else (round(w * SHORTER / h), SHORTER)
        probs.append(F.softmax(model(_pair(img.resize(size, Image.Resampling.BILINEAR))), 1))
    mean = torch.cat(probs).mean(0)
    label = int(mean.argmax())
    order = mean.argsort(descending=True).tolist()
    for target, want in [(label, 0.0), (order[-1], 1.0)]:
        data.items[0] = (img, target)
        out = evaluate_classifier(
            model,
            data,
            views=["multiview"],
            scales=SCALES,
            crop=CROP,
            shorter=SHORTER,
            progress=False,
        )
        assert list(out) == ["multiview"]
        assert out["multiview"]["top1_error"] == want


def test_validation():
    data = _TinyImages([0])
    model = _model()
    kw = dict(crop=CROP, shorter=SHORTER, scales=SCALES, progress=False)
    with pytest.raises(ValueError, match="center, ten, full, multiview"):
        evaluate_classifier(model, data, views=("center", "twelve"), **kw)
    with pytest.raises(ValueError, match="scale"):
        evaluate_classifier(model, data, views=("multiview",), **{**kw, "scales": (48, 64)})
    with pytest.raises(ValueError, match="shorter"):
        evaluate_classifier(model, data, **{**kw, "shorter": 60})
    with pytest.raises(ValueError, match="minimum input"):
        evaluate_classifier(model, data, **{**kw, "crop": 16})
    with pytest.raises(ValueError, match="empty"):
        evaluate_classifier(model, _TinyImages([]), **kw)
    with pytest.raises(TypeError, match="SPPNet"):
        evaluate_classifier(torch.nn.Linear(2, 2), data, **kw)
    with pytest.raises(ValueError, match="pair"):
        feature_map_view_logits(model, torch.zeros(1, 3, 64, 64), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="boxes"):
        feature_map_view_logits(model, torch.zeros(2, 3, 64, 64), torch.zeros(4))
    with pytest.raises(ValueError, match="SPP"):
        feature_map_view_logits(_model(spp=False), torch.zeros(2, 3, 64, 64), torch.zeros(1, 4))
    with pytest.raises(TypeError, match="PIL"):
        evaluate_classifier(model, [(torch.zeros(3, 64, 64), 0)], **kw)


def _image_folder(root, classes, per_class=2, seed=0):
    """An image-folder tree with a split file ``splits/test.txt`` listing every image."""
    g = torch.Generator().manual_seed(seed)
    lines = []
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = int(torch.randint(64, 90, (1,), generator=g)), 100
            pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy(), "RGB").save(root / name / f"{i}.png")
            lines.append(f"{name}/{i}.png")
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("\n".join(lines) + "\n")
    return root


def _checkpoint(run_dir, classes):
    from sppnet.engine.checkpoint import save_checkpoint

    kwargs = dict(
        name="zf5",
        num_classes=len(classes),
        spp_levels=[4, 2, 1],
        width=0.125,
        fc_dim=32,
        spp_mode="max",
        dropout=0.5,
    )
    model = create_model(
        "zf5", num_classes=len(classes), spp_levels=(4, 2, 1), width=0.125, fc_dim=32
    )
    state = {
        "epoch": 1,
        "model": kwargs,
        "classes": list(classes),
        "config": {"mean": 128.0, "crop": CROP, "shorter": SHORTER},
    }
    save_checkpoint(run_dir, model=model, optimizer=None, state=state)
    return run_dir


def test_cli_eval_prints_a_table_and_writes_json(tmp_path, capsys):
    import json

    from sppnet.cli import main

    classes = ["cat", "dog", "eel"]
    data = _image_folder(tmp_path / "data", classes)
    run = _checkpoint(tmp_path / "run", classes)
    out_json = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(run), "--data", str(data), "--device", "cpu"]
    argv += ["--scales", "64", "80", "--json", str(out_json), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for view in EVAL_VIEWS:
        assert view in printed
    report = json.loads(out_json.read_text())
    assert report["num_images"] == 6 and report["scales"] == [64, 80]
    assert report["crop"] == CROP and report["shorter"] == SHORTER
    for view in EVAL_VIEWS:
        assert 0.0 <= report["results"][view]["top1_error"] <= 1.0
    assert report["results"]["multiview"]["views_per_image"] == 6 + 18 + 2

    # only some views, default scales (the paper's six times crop / 224)
    assert main([*argv[:7], "--views", "center", "--no-progress"]) == 0
    assert "multiview" not in capsys.readouterr().out


def test_cli_eval_refuses_mismatched_classes(tmp_path, capsys):
    from sppnet.cli import main

    data = _image_folder(tmp_path / "data", ["a", "b"], per_class=1)
    run = _checkpoint(tmp_path / "run", ["a", "c"])
    argv = ["eval", "--checkpoint", str(run), "--data", str(data), "--device", "cpu"]
    assert main([*argv, "--no-progress"]) == 2
    assert "differ" in capsys.readouterr().err
    missing = ["eval", "--checkpoint", str(tmp_path / "nothing"), "--data", str(data)]
    assert main([*missing, "--device", "cpu", "--no-progress"]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_eval_help_has_an_example(capsys):
    from sppnet.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "sppnet eval --checkpoint" in capsys.readouterr().out
