"""device_clock: a stage's time is read after the device has finished its queued work."""

import torch

from sppnet import _clock


def test_device_clock_waits_for_cuda_work_only(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    assert isinstance(_clock.device_clock(torch.device("cpu")), float)
    assert isinstance(_clock.device_clock(None), float)
    assert waited == []
    _clock.device_clock(torch.device("cuda", 0))
    assert waited == [torch.device("cuda", 0)]


def test_detector_stages_read_the_device_clock(monkeypatch):
    # the detector times its stages with the clock of the image's device
    from sppnet.detection import Detector
    from sppnet.detection import detector as detector_mod
    from sppnet.models import create_model

    seen = []

    def clock(device):
        seen.append(device)
        return 0.0

    monkeypatch.setattr(detector_mod, "device_clock", clock)
    net = create_model("zf5", num_classes=3, width=0.125, fc_dim=16).eval()
    detector = Detector(model=net, class_names=["a", "b"], scales=(100,))
    detector(torch.rand(3, 90, 120) * 255, torch.tensor([[0.0, 0.0, 60.0, 50.0]]))
    assert seen and set(seen) == {torch.device("cpu")}
