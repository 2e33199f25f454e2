"""``sppnet.load_detector(...).predict(...)``: the command's boxes, every input kind, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sppnet
from sppnet.detection import Detector

pytestmark = pytest.mark.usefixtures("one_thread")


CLASSES = ["cat", "dog", "car", "bus"]  # the saved_detector fixture's


def test_predict_gives_the_boxes_of_the_detect_command(saved_detector, tmp_path, scene):
    from sppnet.detect.images import detect_images
    from sppnet.detect.io import load_detector

    # the second image is larger than the scale: detected on a copy, boxes scaled back
    paths = [scene(tmp_path / "a.png"), scene(tmp_path / "b.png", (200, 150), seed=1)]
    predictor = sppnet.load_detector(saved_detector, device="cpu")
    got = predictor.predict(paths, max_proposals=60)
    engine, _ = load_detector(saved_detector)
    for result, done in zip(got, detect_images(engine, paths, max_proposals=60), strict=True):
        dets = done.detections
        assert len(dets["scores"]) > 0
        assert torch.equal(result["boxes"], dets["boxes"] / done.factor)
        assert torch.equal(result["scores"], dets["scores"])
        assert torch.equal(result["labels"], dets["labels"])
        assert result["names"] == [CLASSES[int(c)] for c in dets["labels"]]


def test_every_input_kind_gives_the_same_detections(saved_detector, tmp_path, scene):
    path = scene(tmp_path / "a.png")
    pil = Image.open(path).convert("RGB")
    array = np.array(pil)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    windows = torch.tensor([[0, 0, 60, 50], [10, 5, 90, 70], [40, 30, 99, 74.0]])
    predictor = sppnet.load_detector(saved_detector, device="cpu")
    results = predictor.predict([path, str(path), pil, array, tensor], proposals=[windows] * 5)
    for result in results[1:]:
        for key in ("boxes", "scores", "labels", "probs"):
            assert torch.equal(result[key], results[0][key]), key
    (one,) = predictor.predict(pil, proposals=[windows])  # one image, not a list
    assert torch.equal(one["boxes"], results[0]["boxes"])


def test_probs_are_the_fc8_softmax_at_the_detected_window(saved_detector, tmp_path, scene):
    from sppnet.data.transforms import to_tensor
    from sppnet.detect.io import load_detector

    path = scene(tmp_path / "a.png")
    windows = torch.tensor([[0, 0, 60, 50], [10, 5, 90, 70], [40, 30, 99, 74.0]])
    predictor = sppnet.load_detector(saved_detector, device="cpu")
    (result,) = predictor.predict(path, proposals=[windows])
    assert predictor.has_probs and len(result["probs"]) == len(result["scores"]) > 0
    # the reference: the same network without SVMs scores every window by fc8's softmax
    engine, _ = load_detector(saved_detector)
    softmax = Detector(model=engine.model, class_names=CLASSES, scales=(80,))
    table = softmax.score_windows(to_tensor(Image.open(path).convert("RGB")), windows)["scores"]
    for box, label, prob in zip(result["boxes"], result["labels"], result["probs"], strict=True):
        (row,) = [r for r in range(len(windows)) if torch.equal(windows[r], box)]  # no regression
        assert prob == pytest.approx(float(table[row, label]), abs=1e-6)
        assert 0 <= prob <= 1


def test_score_threshold_and_the_detector_call_still_work(saved_detector, tmp_path, scene):
    from sppnet.data.transforms import to_tensor

    path = scene(tmp_path / "a.png")
    windows = torch.tensor([[0, 0, 60, 50], [10, 5, 90, 70], [40, 30, 99, 74.0]])
    predictor = sppnet.load_detector(saved_detector, device="cpu")
    (every,) = predictor.predict(path, proposals=[windows])
    cut = float(every["scores"].median())
    (kept,) = predictor.predict(path, proposals=[windows], score_threshold=cut)
    assert torch.equal(kept["scores"], every["scores"][every["scores"] > cut])
    direct = predictor.detector(to_tensor(Image.open(path).convert("RGB")), windows)
    assert torch.equal(direct["boxes"], every["boxes"])


def test_errors_name_the_image(saved_detector, tmp_path, scene):
    good = scene(tmp_path / "a.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    predictor = sppnet.load_detector(saved_detector, device="cpu")
    with pytest.raises(ValueError, match=r"image 1 \(.*bad\.jpg\)"):
        predictor.predict([good, bad], max_proposals=20)
    with pytest.raises(FileNotFoundError, match=r"image 2 \(.*gone\.jpg\): no such image file"):
        predictor.predict([good, good, tmp_path / "gone.jpg"])
    with pytest.raises(ValueError, match=r"image 1: a NumPy image must be uint8"):
        predictor.predict([good, np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match=r"image 0: tensor values must lie in \[0, 1\]"):
        predictor.predict(torch.full((3, 40, 40), 200.0))
    with pytest.raises(TypeError, match=r"image 0: expected a path"):
        predictor.predict([42])
    with pytest.raises(ValueError, match="2 images but 1 proposal tensors"):
        predictor.predict([good, good], proposals=[torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="proposals must be one of"):
        predictor.predict(good, proposals="sliding")


def test_load_detector_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved detector"):
        sppnet.load_detector(tmp_path / "nothing")
