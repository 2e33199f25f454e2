"""Detection on image files: output names, the bounded working copy, failures per image."""

from __future__ import annotations

import torch
from PIL import Image

from sppnet.detect.images import (
    ImageFailure,
    detect_images,
    detection_copy,
    output_names,
)


def test_output_names_never_collide():
    assert output_names(["a/x.jpg", "b/x.jpg", "c/y.png", "x-2.jpg", "d/x.png"]) == [
        "x", "x-2", "y", "x-2-2", "x-3"
    ]  # fmt: skip


def test_detection_copy_keeps_small_images_and_shrinks_large_ones():
    small = Image.new("RGB", (60, 40))
    same, factor = detection_copy(small, 100)
    assert same is small and torch.equal(factor, torch.ones(4))
    large = Image.new("RGB", (300, 200))
    copy, factor = detection_copy(large, 100)  # shorter side 200 -> 100
    assert copy.size == (150, 100)
    assert torch.allclose(factor, torch.tensor([0.5, 0.5, 0.5, 0.5]))


def test_unreadable_image_is_a_failure_not_an_exception(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")

    class NoDetector:
        scales = (96,)

    done = list(detect_images(NoDetector(), [bad, tmp_path / "missing.jpg"]))
    assert [type(d) for d in done] == [ImageFailure, ImageFailure]
    assert done[0].path == bad and "missing.jpg" in done[1].message


def test_computed_proposals_run_beside_the_trunk(tmp_path, monkeypatch, tiny_zf5):
    import threading

    import sppnet.detect.images as detect_mod
    from sppnet.detection import Detector
    from sppnet.detection import detector as detector_mod

    Image.new("RGB", (90, 70), (120, 80, 40)).save(tmp_path / "a.png")
    conv_started = threading.Event()
    real_maps = detector_mod.compute_conv_maps
    ran_in: list[str] = []

    def maps(*args, **kwargs):
        conv_started.set()
        return real_maps(*args, **kwargs)

    def proposals(image, method, max_proposals):
        ran_in.append(threading.current_thread().name)
        assert conv_started.wait(timeout=30), "proposals were computed before the trunk ran"
        return torch.tensor([[0.0, 0.0, 40.0, 30.0], [10.0, 5.0, 80.0, 60.0]])

    monkeypatch.setattr(detector_mod, "compute_conv_maps", maps)
    monkeypatch.setattr(detect_mod, "image_proposals", proposals)
    det = Detector(model=tiny_zf5(5), class_names=[f"c{i}" for i in range(4)], scales=(80,))
    (done,) = list(detect_images(det, [tmp_path / "a.png"], proposals_beside_conv=True))
    assert not isinstance(done, ImageFailure), done
    assert ran_in and ran_in[0].startswith("proposals")
    assert done.windows == 2
    assert {"proposals", "conv", "proposals_wait", "nms", "total"} <= set(done.timing)
    assert done.timing["total"] >= done.timing["conv"]


def test_on_the_cpu_proposals_come_first_by_default(tmp_path, monkeypatch, tiny_zf5):
    import threading

    import sppnet.detect.images as detect_mod
    from sppnet.detection import Detector

    Image.new("RGB", (90, 70), (120, 80, 40)).save(tmp_path / "a.png")
    ran_in: list[threading.Thread] = []

    def proposals(image, method, max_proposals):
        ran_in.append(threading.current_thread())
        return torch.tensor([[0.0, 0.0, 40.0, 30.0]])

    monkeypatch.setattr(detect_mod, "image_proposals", proposals)
    det = Detector(model=tiny_zf5(5), class_names=[f"c{i}" for i in range(4)], scales=(80,))
    (done,) = list(detect_images(det, [tmp_path / "a.png"]))
    assert ran_in == [threading.main_thread()] and done.windows == 1
    assert "proposals_wait" not in done.timing and done.timing["total"] > 0
