"""Detector stages against step-by-step references; saving and loading; model combination."""

from __future__ import annotations

import pytest
import torch

from sppnet.detect.io import load_detector, save_detector
from sppnet.detection import compute_conv_maps, pool_windows
from sppnet.detection.detector import Detector, combine_scored_windows, postprocess_detections
from sppnet.models import create_model

K = 3


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_postprocess(scores, boxes, size, nms, thr, cap):
    """Per class: clip, drop empty and low boxes, greedy NMS; then all classes by score."""
    h, w = size
    out = []
    for c in range(scores.shape[1]):
        cands = []
        for r in range(scores.shape[0]):
            x1, y1, x2, y2 = boxes[r, c].tolist()
            box = [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]
            s = float(scores[r, c])
            if box[2] <= box[0] or box[3] <= box[1] or (thr is not None and s <= thr):
                continue
            cands.append((s, r, box))
        cands.sort(key=lambda t: (-t[0], t[1]))
        kept = []
        for s, _, box in cands:
            if all(_iou(box, k[1]) <= nms for k in kept):
                kept.append((s, box))
        out += [(s, c, box) for s, box in kept]
    out.sort(key=lambda t: -t[0])
    return out[:cap]


@pytest.mark.parametrize("thr", [None, 0.2])
def test_postprocess_matches_reference(thr):
    g = torch.Generator().manual_seed(0)
    r = 40
    xy = torch.rand(r, K, 2, generator=g) * 60 - 5
    boxes = torch.cat([xy, xy + 3 + torch.rand(r, K, 2, generator=g) * 30], dim=2)
    scores = torch.rand(r, K, generator=g)
    got = postprocess_detections(scores, boxes, (50, 70), 0.3, thr, 25)
    ref = _reference_postprocess(scores, boxes, (50, 70), 0.3, thr, 25)
    assert got["scores"].tolist() == pytest.approx([s for s, _, _ in ref])
    assert got["labels"].tolist() == [c for _, c, _ in ref]
    torch.testing.assert_close(got["boxes"], torch.tensor([b for _, _, b in ref]).view(-1, 4))


def test_postprocess_shared_boxes_empty_and_validation():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [100.0, 100, 120, 120]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.5, 0.5]])
    out = postprocess_detections(scores, boxes, (50, 50))
    # the window outside the image is dropped; per class the overlapping lower one goes
    assert out["labels"].tolist() == [0, 1]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7])
    empty = postprocess_detections(torch.zeros(0, 2), torch.zeros(0, 4), (5, 5))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.long
    with pytest.raises(ValueError, match=r"boxes must be Tensor\[3, 2, 4\]"):
        postprocess_detections(scores, torch.zeros(3, 3, 4), (5, 5))
    with pytest.raises(ValueError, match="max_detections"):
        postprocess_detections(scores, boxes, (5, 5), max_detections=-1)


def _model(num_classes):
    torch.manual_seed(0)
    return create_model("zf5", num_classes=num_classes, width=0.125, fc_dim=32).eval()


def _image_and_windows():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 61, 83, generator=g) * 255
    xy = torch.rand(12, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 4 + torch.rand(12, 2, generator=g) * 30], dim=1)
    return image, boxes


def test_svm_detector_scores_follow_the_stages():
    model = _model(K + 1)
    image, boxes = _image_and_windows()
    g = torch.Generator().manual_seed(2)
    svm_w, svm_b = torch.randn(K, 32, generator=g), torch.randn(K, generator=g)
    box_w, box_b = (
        torch.randn(K, 1600, 4, generator=g) * 1e-3,
        torch.randn(K, 4, generator=g) * 0.01,
    )
    det = Detector(
        model=model, class_names=["a", "b", "c"], scales=(100,), svm_weight=svm_w, svm_bias=svm_b,
        svm_scale=3.0, box_weight=box_w, box_bias=box_b, box_scale=0.5,
    )  # fmt: skip
    scored = det.score_windows(image, boxes)
    with torch.no_grad():
        pooled = pool_windows(model, compute_conv_maps(model, image, (100,)), boxes)
        fc7 = model.forward_pooled(pooled, pre_logits=True)
    expected = torch.stack([(fc7[r] * 3.0 * svm_w).sum(1) + svm_b for r in range(12)])
    torch.testing.assert_close(scored["scores"], expected, rtol=1e-4, atol=1e-4)
    # class-specific boxes: per window and class, decoded with that class's regressor
    for c in range(K):
        deltas = (pooled * 0.5) @ box_w[c] + box_b[c]
        w = boxes[:, 2] - boxes[:, 0]
        cx = boxes[:, 0] + w / 2 + w * deltas[:, 0]
        torch.testing.assert_close(
            (scored["boxes"][:, c, 0] + scored["boxes"][:, c, 2]) / 2, cx, rtol=1e-4, atol=1e-3
        )
    assert set(scored["timing"]) == {"conv", "pooling", "fc", "svm"}
    out = det(image, boxes)
    assert set(out) == {"boxes", "scores", "labels"}
    assert out["labels"].max() < K and out["scores"].shape[0] == out["boxes"].shape[0] <= 100


def test_softmax_detector_and_validation():
    model = _model(K + 1)
    image, boxes = _image_and_windows()
    det = Detector(model=model, class_names=["a", "b", "c"], scales=(100,))
    scored = det.score_windows(image, boxes)
    with torch.no_grad():
        pooled = pool_windows(model, compute_conv_maps(model, image, (100,)), boxes)
        probs = torch.softmax(model.forward_pooled(pooled), 1)[:, 1:]
    torch.testing.assert_close(scored["scores"], probs)
    torch.testing.assert_close(scored["boxes"], boxes[:, None].expand(12, K, 4))
    with pytest.raises(ValueError, match="must be 3-way"):
        Detector(model=_model(K + 1), class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"svm_weight must be Tensor\[3, 32\]"):
        Detector(
            model=model,
            class_names=["a", "b", "c"],
            svm_weight=torch.zeros(3, 5),
            svm_bias=torch.zeros(3),
        )
    with pytest.raises(ValueError, match="at least one class"):
        Detector(model=model, class_names=[])


def test_combine_scored_windows():
    a = {
        "scores": torch.tensor([[0.9, 0.1]]),
        "boxes": torch.zeros(1, 2, 4) + torch.tensor([0.0, 0, 10, 10]),
    }
    b = {
        "scores": torch.tensor([[0.5, 0.95]]),
        "boxes": torch.zeros(1, 2, 4) + torch.tensor([1.0, 1, 11, 11]),
    }
    both = combine_scored_windows([a, b])
    assert both["scores"].shape == (2, 2) and both["boxes"].shape == (2, 2, 4)
    out = postprocess_detections(both["scores"], both["boxes"], (20, 20))
    # per class, NMS keeps the better model's window: class 0 from a, class 1 from b
    assert out["scores"].tolist() == pytest.approx([0.95, 0.9])
    assert out["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least one"):
        combine_scored_windows([])
    with pytest.raises(ValueError, match="same classes"):
        combine_scored_windows([a, {"scores": torch.zeros(1, 3), "boxes": torch.zeros(1, 3, 4)}])


def test_save_and_load_detector_round_trip(tmp_path):
    model = _model(K + 1)
    image, boxes = _image_and_windows()
    det = Detector(
        model=model, class_names=["a", "b", "c"], scales=(100,), svm_weight=torch.randn(K, 32),
        svm_bias=torch.randn(K), svm_scale=2.0, box_weight=torch.randn(K, 1600, 4) * 1e-3,
        box_bias=torch.zeros(K, 4), max_detections=7,
    )  # fmt: skip
    kwargs = {"name": "zf5", "num_classes": K + 1, "width": 0.125, "fc_dim": 32,
              "spp_levels": [6, 3, 2, 1], "spp_mode": "max", "dropout": 0.5}  # fmt: skip
    save_detector(tmp_path / "detector", det, kwargs)
    loaded, meta = load_detector(tmp_path)  # a run directory holding detector/ works too
    assert meta["classes"] == ["a", "b", "c"] and loaded.max_detections == 7
    a, b = det(image, boxes), loaded(image, boxes)
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(a[key], b[key])
    again, _ = load_detector(tmp_path / "detector", max_detections=2, scales=[90])
    assert again.max_detections == 2 and again.scales == (90.0,)
    with pytest.raises(TypeError, match="unknown detector overrides"):
        load_detector(tmp_path / "detector", colour="red")
    with pytest.raises(FileNotFoundError, match="no saved detector"):
        load_detector(tmp_path / "nothing")
    (tmp_path / "detector" / "detector.json").write_text('{"classes": ["a"]}')
    with pytest.raises(ValueError, match="malformed detector description"):
        load_detector(tmp_path / "detector")
    (tmp_path / "detector" / "detector.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"detector\.json is damaged .*sppnet train-det"):
        load_detector(tmp_path / "detector")


def test_extra_repr_names_the_settings():
    det = Detector(model=_model(K + 1), class_names=["a", "b", "c"], scales=(100, 200))
    assert det.extra_repr() == (
        "classes=3, scales=(100.0, 200.0), svm=False, box_regression=False, nms_threshold=0.3"
    )


def test_proposals_as_a_future_are_awaited_after_the_convolutions(monkeypatch):
    import threading
    from concurrent.futures import Future, ThreadPoolExecutor

    from sppnet.detection import detector as detector_mod

    model = _model(K + 1)
    image, boxes = _image_and_windows()
    det = Detector(model=model, class_names=["a", "b", "c"], scales=(100,))
    want = det.score_windows(image, boxes)
    # the proposals can only finish once the trunk has started: a detector that waited for
    # them before its convolutions would hang here (the timeout fails the test instead)
    conv_started = threading.Event()
    real_maps = detector_mod.compute_conv_maps

    def maps(*args, **kwargs):
        conv_started.set()
        return real_maps(*args, **kwargs)

    def slow_proposals():
        assert conv_started.wait(timeout=30), "the detector waited for proposals before conv"
        return boxes

    monkeypatch.setattr(detector_mod, "compute_conv_maps", maps)
    with ThreadPoolExecutor(1) as pool:
        got = det.score_windows(image, pool.submit(slow_proposals))
    assert torch.equal(got["scores"], want["scores"]) and torch.equal(got["boxes"], want["boxes"])
    assert set(got["timing"]) == {"conv", "proposals_wait", "pooling", "fc", "svm"}
    # a future that failed, or that brings bad boxes, fails the call with its own error
    failed: Future = Future()
    failed.set_exception(ValueError("no proposals for this image"))
    with pytest.raises(ValueError, match="no proposals for this image"):
        det.score_windows(image, failed)
    bad: Future = Future()
    bad.set_result(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="proposals"):
        det.score_windows(image, bad)


def test_proposals_are_checked_once_per_detection(monkeypatch):
    from concurrent.futures import Future

    from sppnet.detection import detector as detector_mod
    from sppnet.detection import window_features as window_mod
    from sppnet.ops import window_mapping as mapping_mod

    checked = []
    real = detector_mod.check_boxes

    def counting(boxes, name="boxes"):
        checked.append(name)
        return real(boxes, name)

    for module in (detector_mod, window_mod, mapping_mod):
        if hasattr(module, "check_boxes"):
            monkeypatch.setattr(module, "check_boxes", counting)
    model = _model(K + 1)
    image, boxes = _image_and_windows()
    det = Detector(model=model, class_names=["a", "b", "c"], scales=(100, 140))  # two scales
    det(image, boxes)
    assert checked == ["proposals"]  # at the detector's boundary, not in pooling or mapping
    checked.clear()
    arrived: Future = Future()
    arrived.set_result(boxes)
    det.score_windows(image, arrived)
    assert checked == ["proposals"]  # a future's windows: once, when they arrive
    with pytest.raises(ValueError, match=r"proposals must have x2 >= x1"):
        det(image, torch.tensor([[10.0, 10.0, 5.0, 20.0]]))  # still refused, by that one check
