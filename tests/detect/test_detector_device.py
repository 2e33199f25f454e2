"""eval-det's and detect's device: images go to the detector's device, detections come back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sppnet.data.voc import VOCDetection
from sppnet.detect.device import detector_device, postprocess_on_cpu
from sppnet.detect.evaluate import evaluate_detector
from sppnet.detect.images import ImageDetections, detect_images
from sppnet.detection.detector import Detector

pytestmark = pytest.mark.usefixtures("one_thread")


def _detector(tiny_zf5, classes):
    model = tiny_zf5(len(classes) + 1, spp_levels=(2, 1))
    return Detector(model=model, class_names=classes, scales=(64,))


class _OnMeta:
    """A detector whose network sits on the ``meta`` device: it records the device of each
    image it is given and scores a CPU copy with a real CPU detector."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.model = nn.Linear(1, 1, device="meta")
        self.scales, self.class_names = inner.scales, inner.class_names
        self.devices: list[torch.device] = []

    def score_windows(self, image, proposals):
        self.devices.append(image.device)
        torch.manual_seed(0)
        return self.inner.score_windows(torch.rand(image.shape) * 255, proposals)

    def postprocess(self, scored, image_size):
        return self.inner.postprocess(scored, image_size)

    def __getattr__(self, name):  # the stage-5 settings: nms_threshold, ...
        return getattr(self.inner, name)


def test_detector_device_is_the_networks(tiny_zf5):
    detector = _detector(tiny_zf5, ["a", "b"])
    assert detector_device(detector) == torch.device("cpu")
    assert detector_device(_OnMeta(detector)) == torch.device("meta")

    class NoNetwork:  # an ONNX Runtime detector: no torch network, the CPU
        scales = (64.0,)

    assert detector_device(NoNetwork()) == torch.device("cpu")


def test_postprocess_on_cpu_is_postprocess(tiny_zf5):
    detector = _detector(tiny_zf5, ["a", "b"])
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(9, 2, generator=g) * 40
    scored = {
        "scores": torch.rand(9, 2, generator=g),
        "boxes": torch.cat([xy, xy + 10], 1)[:, None].expand(9, 2, 4),
        "timing": {"conv": 0.0},
    }
    got = postprocess_on_cpu(detector, scored, (60, 60))
    want = detector.postprocess(scored, (60, 60))
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value) and got[key].device.type == "cpu"


def test_detect_images_sends_each_image_to_the_detectors_device(tiny_zf5, tmp_path):
    detector = _OnMeta(_detector(tiny_zf5, ["a", "b"]))
    Image.new("RGB", (50, 40), (90, 140, 30)).save(tmp_path / "x.png")
    (tmp_path / "props").mkdir()
    np.save(tmp_path / "props" / "x.npy", np.array([[0, 0, 30, 20], [5, 5, 45, 35]], "float32"))
    (done,) = detect_images(detector, [tmp_path / "x.png"], proposals=str(tmp_path / "props"))
    assert isinstance(done, ImageDetections)
    assert detector.devices == [torch.device("meta")]
    assert all(v.device.type == "cpu" for v in done.detections.values())


def test_evaluate_detector_sends_each_image_to_the_detectors_device(tiny_zf5, tiny_voc):
    voc = VOCDetection(tiny_voc(train=1, test=2, max_side=120), "test")
    detector = _OnMeta(_detector(tiny_zf5, voc.class_names))
    proposals = {i: torch.tensor([[0.0, 0.0, 30.0, 20.0], [5.0, 5.0, 60.0, 50.0]]) for i in voc.ids}
    result = evaluate_detector(detector, voc, proposals)
    assert detector.devices == [torch.device("meta")] * len(voc)
    for dets in result["detections"].values():
        assert all(v.device.type == "cpu" for v in dets.values())
