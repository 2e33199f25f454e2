"""Tests for sppnet.visualize: PNGs written at the right size, validation, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.evaluation import voc_detection_map
from sppnet.models import create_model
from sppnet.visualize import (
    bin_pixel_edges,
    detections_to_json,
    draw_detections,
    draw_pyramid_bins,
    plot_precision_recall,
    save_json,
)

NAMES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model(tiny_zf5):
    return tiny_zf5(3)


def _detections(kind="torch"):
    boxes = [[10.0, 5.0, 60.0, 50.0], [70.5, 40.25, 130.0, 97.0], [0.0, 0.0, 20.0, 10.0]]
    scores = [0.9, 0.5, 0.2]
    labels = [0, 1, 2]
    if kind == "torch":
        return {
            "boxes": torch.tensor(boxes),
            "scores": torch.tensor(scores),
            "labels": torch.tensor(labels),
        }
    return {"boxes": np.array(boxes), "scores": np.array(scores), "labels": np.array(labels)}


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


# ---------------------------------------------------------------------- draw_detections


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_draw_detections_writes_png_of_image_size(tmp_path, image, kind):
    gt = {"boxes": np.array([[12.0, 6.0, 58.0, 52.0]]), "labels": np.array([0])}
    out = draw_detections(
        image, _detections(kind), NAMES, tmp_path / "sub" / "det.png", ground_truth=gt
    )
    assert out == tmp_path / "sub" / "det.png"
    assert _png_size(out) == (131, 97)
    assert [p.name for p in out.parent.iterdir()] == ["det.png"]  # no temporary left


def test_draw_detections_threshold_limit_empty_and_other_modes(tmp_path, image):
    det = _detections()
    draw_detections(image, det, NAMES, tmp_path / "a.png", score_threshold=0.6, max_boxes=1)
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()}
    draw_detections(image, empty, NAMES, tmp_path / "b.png", max_boxes=0)
    gray = image.convert("L").resize((33, 21))
    draw_detections(gray, det, NAMES, tmp_path / "c.png", ground_truth={"boxes": det["boxes"]})
    assert _png_size(tmp_path / "a.png") == (131, 97)
    assert _png_size(tmp_path / "b.png") == (131, 97)
    assert _png_size(tmp_path / "c.png") == (33, 21)


def _replace(key, value):
    det = _detections()
    det[key] = value
    return det


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((np.zeros((5, 5, 3)), _detections(), NAMES), {}, TypeError, r"PIL\.Image"),
        ((None, [1, 2], NAMES), {}, TypeError, "mapping with 'boxes'"),
        ((None, {"boxes": torch.zeros(0, 4)}, NAMES), {}, ValueError, r"lacks \['scores'"),
        ((None, _replace("boxes", torch.zeros(3, 5)), NAMES), {}, ValueError, r"\[N, 4\]"),
        ((None, _replace("boxes", [[0, 0, 1, 1]] * 3), NAMES), {}, TypeError, "numpy array"),
        ((None, _replace("scores", torch.zeros(2)), NAMES), {}, ValueError, r"\[N\] = \[3\]"),
        ((None, _replace("labels", torch.zeros(3, 1)), NAMES), {}, ValueError, r"\[N\] = \[3\]"),
        ((None, _replace("labels", torch.tensor([1.0, 2, 3])), NAMES), {}, TypeError, "0..K-1"),
        ((None, _replace("labels", torch.tensor([1, -1, 2])), NAMES), {}, ValueError, "= -1"),
        ((None, _replace("labels", torch.tensor([1, 3, 2])), NAMES), {}, ValueError, "0..2"),
        (
            (None, _replace("boxes", torch.tensor([[5.0, 0, 1, 1]] * 3)), NAMES),
            {},
            ValueError,
            "x2 >= x1",
        ),
        (
            (None, _replace("scores", torch.tensor([0.1, float("nan"), 0.3])), NAMES),
            {},
            ValueError,
            "finite",
        ),
        ((None, _detections(), []), {}, ValueError, "at least one class"),
        ((None, _detections(), "cat"), {}, TypeError, "sequence of str"),
        ((None, _detections(), NAMES), {"max_boxes": -1}, ValueError, "max_boxes must be >= 0"),
        ((None, _detections(), NAMES), {"score_threshold": "0.5"}, TypeError, "real number"),
        (
            (None, _detections(), NAMES),
            {"ground_truth": {"boxes": torch.zeros(2, 3)}},
            ValueError,
            r"ground_truth\['boxes'\] must have shape \[N, 4\]",
        ),
        (
            (None, _detections(), NAMES),
            {"ground_truth": {"boxes": torch.zeros(2, 4), "labels": torch.tensor([0])}},
            ValueError,
            r"ground_truth\['labels'\] must have shape \[N\] = \[2\]",
        ),
    ],
)
def test_draw_detections_validation(tmp_path, image, args, kwargs, exc, match):
    img, det, names = args
    path = tmp_path / "x.png"
    with pytest.raises(exc, match=match):
        draw_detections(image if img is None else img, det, names, path, **kwargs)
    assert not path.exists()


# -------------------------------------------------------------------- draw_pyramid_bins


def test_bin_pixel_edges_hand_computed():
    # 13 cells, 6 bins: cells [floor(13i/6), ceil(13(i+1)/6)) = [0,3) [2,5) [4,7) [6,9)
    # [8,11) [10,13); cell j centred at 14.5 + 16 j, spanning +-8 -> start 6.5 + 16 * start.
    got = bin_pixel_edges(13, 6, 16, 14.5)
    cells = [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)]
    expected = [(6.5 + 16 * a, 6.5 + 16 * b) for a, b in cells]
    np.testing.assert_allclose(got, expected)
    assert got.shape == (6, 2)
    assert got.dtype == np.float64


def test_bin_pixel_edges_small_cases():
    # one bin covers the whole map: first cell's left edge to last cell's right edge
    np.testing.assert_allclose(bin_pixel_edges(5, 1, 16, 0.0), [[-8.0, 72.0]])
    # more bins than cells (2 cells, 3 bins): [0,1) [0,2) [1,2), stride 4, offset 2
    np.testing.assert_allclose(bin_pixel_edges(2, 3, 4, 2.0), [[0, 4], [0, 8], [4, 8]])
    # n divides the map: bins tile it exactly
    np.testing.assert_allclose(bin_pixel_edges(6, 3, 10, 5.0), [[0, 20], [20, 40], [40, 60]])


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((0, 2, 16, 0.0), ValueError, "map_size must be >= 1"),
        ((4, 0, 16, 0.0), ValueError, "n must be >= 1"),
        ((4, 2, 0, 0.0), ValueError, "stride must be > 0"),
        ((4.0, 2, 16, 0.0), TypeError, "map_size must be an int"),
        ((4, 2, 16, float("nan")), ValueError, "offset must be finite"),
    ],
)
def test_bin_pixel_edges_validation(args, exc, match):
    with pytest.raises(exc, match=match):
        bin_pixel_edges(*args)


def test_draw_pyramid_bins_writes_png(tmp_path, image, model):
    out = draw_pyramid_bins(image, model, path=tmp_path / "pyr.png")
    width, height = _png_size(out)
    assert (width, height) == (840, 490)  # two 4.2 x 4.9 inch panels at 100 dpi
    out2 = draw_pyramid_bins(
        image, model, path=tmp_path / "pyr2.png", sizes=(100,), levels=(4, 1), keep_aspect=True
    )
    assert _png_size(out2) == (420, 490)


def test_draw_pyramid_bins_validation(tmp_path, image, model):
    path = tmp_path / "p.png"
    with pytest.raises(ValueError, match="minimum input"):
        draw_pyramid_bins(image, model, path=path, sizes=(10, 224))
    with pytest.raises(ValueError, match="non-empty sequence"):
        draw_pyramid_bins(image, model, path=path, sizes=())
    with pytest.raises(TypeError, match="every size must be an int"):
        draw_pyramid_bins(image, model, path=path, sizes=(180.0,))
    with pytest.raises(ValueError, match=">= 1 bin"):
        draw_pyramid_bins(image, model, path=path, levels=(3, 0))
    with pytest.raises(TypeError, match=r"PIL\.Image"):
        draw_pyramid_bins(np.zeros((9, 9, 3)), model, path=path)
    no_spp = create_model("zf5", num_classes=3, width=0.125, fc_dim=16, spp_levels=None)
    with pytest.raises(ValueError, match="spp_levels=None"):
        draw_pyramid_bins(image, no_spp, path=path)
    assert not path.exists()
    draw_pyramid_bins(image, no_spp, path=path, sizes=(224,), levels=(6, 3, 2, 1))
    assert path.exists()


# ------------------------------------------------------------------------------- JSON


def test_detections_to_json_round_trip(tmp_path):
    det = _detections()
    det["boxes"] = torch.tensor([[10.123, 5.0, 60.456, 50.0], [0.0, 0.0, 1.0, 1.0]])
    det["scores"] = torch.tensor([0.875, 0.25], dtype=torch.float64)
    det["labels"] = torch.tensor([2, 0])
    obj = detections_to_json(det, NAMES, image="000001.jpg", image_size=(97, 131))
    assert obj == {
        "image": "000001.jpg",
        "image_size": [97, 131],
        "detections": [
            {"box": [10.12, 5.0, 60.46, 50.0], "label": 2, "name": "car", "score": 0.875},
            {"box": [0.0, 0.0, 1.0, 1.0], "label": 0, "name": "cat", "score": 0.25},
        ],
    }
    path = save_json(obj, tmp_path / "out" / "det.json")
    assert path == tmp_path / "out" / "det.json"
    assert json.loads(path.read_text(encoding="utf-8")) == obj
    assert [p.name for p in path.parent.iterdir()] == ["det.json"]
    assert detections_to_json(_detections("numpy"), NAMES)["image"] is None
    assert detections_to_json(_detections("numpy"), NAMES)["image_size"] is None


def test_detections_to_json_validation(tmp_path):
    with pytest.raises(ValueError, match="image_size must be"):
        detections_to_json(_detections(), NAMES, image_size=(97,))
    with pytest.raises(ValueError, match="image_size entries must be >= 1"):
        detections_to_json(_detections(), NAMES, image_size=(0, 5))
    with pytest.raises(TypeError, match="image must be a str"):
        detections_to_json(_detections(), NAMES, image=3)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        detections_to_json(_replace("labels", torch.tensor([1, 2, 9])), NAMES)
    with pytest.raises(ValueError, match="Out of range float"):
        save_json({"x": float("nan")}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_plot_precision_recall(tmp_path):
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    anns = {
        "im": {
            "boxes": box,
            "labels": torch.tensor([0, 1]),
            "difficult": torch.tensor([False, True]),
        }
    }
    dets = {"im": {"boxes": box[:1], "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}}
    result = voc_detection_map(dets, anns, class_names=["cat", "dog"])
    png = plot_precision_recall(result, tmp_path / "pr.png")
    assert png == tmp_path / "pr.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TypeError, match="'recall' and 'precision'"):
        plot_precision_recall({"ap": result["ap"]}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
