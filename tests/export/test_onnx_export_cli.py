"""`sppnet export` and `sppnet detect --onnx` through the CLI, including the expected failures."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import onnxruntime as ort

from sppnet.cli import main
from sppnet.detect.io import save_detector
from sppnet.detection.detector import Detector
from sppnet.engine.checkpoint import load_classifier, save_checkpoint
from sppnet.models import create_model

MODEL = {"name": "zf5", "num_classes": 3, "spp_levels": [3, 2, 1], "width": 0.125, "fc_dim": 16}
MODEL.update({"spp_mode": "max", "dropout": 0.5})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    kwargs = {k: v for k, v in MODEL.items() if k != "name"}
    model = create_model("zf5", **{**kwargs, "spp_levels": (3, 2, 1)})
    state = {"epoch": 1, "model": MODEL, "classes": ["a", "b", "c"], "config": {"mean": 128.0}}
    save_checkpoint(run, model=model, optimizer=None, state=state)
    return run


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory, tiny_zf5):
    root = tmp_path_factory.mktemp("det")
    model = tiny_zf5(3)
    gen = torch.Generator().manual_seed(1)
    det = Detector(
        model=model,
        class_names=["cat", "dog"],
        scales=(150,),
        svm_weight=torch.randn(2, 16, generator=gen),
        svm_bias=torch.randn(2, generator=gen),
        box_weight=torch.randn(2, model.fc6.in_features, 4, generator=gen) * 1e-3,
        box_bias=torch.randn(2, 4, generator=gen) * 0.05,
    )
    kwargs = {"name": "zf5", "num_classes": 3, "width": 0.125, "fc_dim": 16}
    save_detector(root / "det", det, kwargs)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (130, 170, 3), np.uint8))
    image.save(root / "img.png")
    (root / "props").mkdir()
    xy = np.random.default_rng(1).uniform(0, 100, (60, 2))
    boxes = np.concatenate([xy, xy + np.random.default_rng(2).uniform(8, 60, (60, 2))], 1)
    np.save(root / "props" / "img.npy", boxes.astype(np.float32))
    return root


def test_export_classifier_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "m" / "cls.onnx"
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out)]) == 0
    assert "N, H, W dynamic" in capsys.readouterr().out
    model, _ = load_classifier(run_dir)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for h, w in [(57, 91), (model.min_input_size, 40)]:
        x = torch.rand(2, 3, h, w) * 255 - 128
        got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, model(x), atol=1e-4, rtol=1e-4)


def test_export_detector_and_detect_with_onnx_equals_pytorch(detector_dir, tmp_path, capsys):
    onnx_dir = tmp_path / "onnx"
    assert main(["export", "--detector", str(detector_dir / "det"), "--out", str(onnx_dir)]) == 0
    assert "--onnx" in capsys.readouterr().out
    common = [str(detector_dir / "img.png"), "--proposals", str(detector_dir / "props")]
    assert main(["detect", *common, "--onnx", str(onnx_dir), "--out", str(tmp_path / "o")]) == 0
    assert main(["detect", *common, "--detector", str(detector_dir / "det"),
                 "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    got = json.loads((tmp_path / "o" / "img.json").read_text())
    want = json.loads((tmp_path / "p" / "img.json").read_text())
    assert got["windows"] == want["windows"] == 60
    assert len(got["detections"]) == len(want["detections"]) > 0
    for a, b in zip(got["detections"], want["detections"], strict=True):
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["box"] == pytest.approx(b["box"], abs=1e-3)


def test_expected_failures_are_one_line_and_exit_2(run_dir, detector_dir, tmp_path, capsys):
    def fails(argv, *words):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        for word in words:
            assert word in err

    fails(["export", "--checkpoint", str(tmp_path / "none"), "--out", "x.onnx"], "none")
    fails(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path)], "directory")
    (tmp_path / "file").write_text("")
    fails(["export", "--detector", str(detector_dir / "det"), "--out", str(tmp_path / "file")])
    fails(["export", "--detector", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "none")
    fails(["export", "--checkpoint", str(run_dir), "--out", "x.onnx", "--opset", "9"], "opset")
    image = str(detector_dir / "img.png")
    fails(["detect", image, "--onnx", str(tmp_path / "none")], "sppnet export")
    fails(["detect", image, "--onnx", str(tmp_path), "--svd-ranks", "4", "4"], "--svd-ranks")
    with pytest.raises(SystemExit) as exc:  # exactly one source
        main(["export", "--checkpoint", "a", "--detector", "b", "--out", "c"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_missing_onnx_packages_name_the_extra(run_dir, detector_dir, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("onnx") else real(name, *a),
    )
    for argv in (
        ["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "x.onnx")],
        ["detect", str(detector_dir / "img.png"), "--onnx", str(tmp_path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "pip install sppnet[onnx]" in err
    assert not (tmp_path / "x.onnx").exists()


def test_load_detector_opens_an_onnx_export(detector_dir, tmp_path):
    import sppnet

    onnx_dir = tmp_path / "onnx"
    assert main(["export", "--detector", str(detector_dir / "det"), "--out", str(onnx_dir)]) == 0
    windows = [torch.from_numpy(np.load(detector_dir / "props" / "img.npy"))]
    image = detector_dir / "img.png"
    (got,) = sppnet.load_detector(onnx_dir).predict(image, proposals=windows)
    (want,) = sppnet.load_detector(detector_dir / "det", device="cpu").predict(
        image, proposals=windows
    )
    assert "probs" not in got and "probs" in want  # the window graph gives SVM scores only
    assert got["names"] == want["names"] and len(got["names"]) > 0
    torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="runs on the CPU"):
        sppnet.load_detector(onnx_dir, device="cuda")
