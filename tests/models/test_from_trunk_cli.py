"""An SPP head on your own trunk through the CLI: train, resume, features, ONNX export, and
a tiny detection run on YOLO-layout data (train-det, eval-det); the import-path guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TRUNK = "toy_trunks:resnet_s16"
ARGS = ["--model", TRUNK, "--model-args", '{"width": 4}']


def _folder(root):
    """Two colour classes, 8 + 4 images each side 64..100, splits/train.txt, val.txt."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for split, n in (("train", 16), ("val", 8)):
        for i in range(n):
            name = ("red", "blue")[i % 2]
            arr = rng.integers(0, 110, (int(rng.integers(64, 101)), 80, 3))
            arr[..., 0 if name == "red" else 2] += 130
            path = root / name / f"{split}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.astype(np.uint8)).save(path)
            lines[split].append(f"{name}/{path.name}")
    (root / "splits").mkdir()
    for split, rows in lines.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trunk_cli")
    data = _folder(root / "data")
    flags = ["--data", str(data), "--fc-dim", "16", "--crop", "64", "--small-crop", "52",
             "--shorter", "72", "--batch-size", "8", "--no-progress"]  # fmt: skip
    assert main(["train", "--out", str(root / "run"), "--epochs", "1", *ARGS, *flags]) == 0
    return root, flags


def test_train_records_the_source_and_resume_needs_it_named_again(run, capsys):
    root, _ = run
    state = json.loads(next((root / "run" / "checkpoints").glob("epoch_*/state.json")).read_text())
    assert state["model"]["name"] == TRUNK and state["model"]["trunk_args"] == {"width": 4}
    assert state["model"]["feature_stride"] == 16 and state["model"]["feature_offset"] == 0.5
    capsys.readouterr()
    resume = ["train", "--out", str(root / "run"), "--resume", "--epochs", "2", "--no-progress"]
    assert main(resume) == 2
    line = _error(capsys)
    assert f"asks to import '{TRUNK}'" in line and f"--model {TRUNK}" in line
    assert not (root / "run" / "checkpoints" / "epoch_0002").exists()
    assert main([*resume, "--model", TRUNK]) == 0
    assert (root / "run" / "checkpoints" / "epoch_0002").is_dir()


def test_features_and_export_with_the_trunk_named(run, tmp_path, capsys):
    root, _ = run
    feats = ["features", "--checkpoint", str(root / "run"), "--data", str(root / "data"),
             "--split", "val", "--layer", "fc7", "--view", "full", "--size", "80", "--out",
             str(tmp_path / "f"), "--no-progress"]  # fmt: skip
    assert main(feats) == 2
    assert "asks to import" in _error(capsys)
    assert main([*feats, "--model", TRUNK]) == 0
    assert np.load(tmp_path / "f" / "features.npy").shape == (8, 16)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    from sppnet.engine.checkpoint import load_classifier

    export = ["export", "--checkpoint", str(root / "run"), "--out", str(tmp_path / "m.onnx")]
    assert main(export) == 2
    assert "asks to import" in _error(capsys)
    assert main([*export, "--model", TRUNK]) == 0
    model, _ = load_classifier(root / "run", trust_model_code=True)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((64, 64), (77, 101)):
        x = torch.randn(2, 3, h, w) * 50
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_detection_smoke_on_yolo_data(tiny_voc, tmp_path, capsys):
    voc = tiny_voc()
    for split in ("train", "test"):
        assert main(["convert", "voc2yolo", "--data", str(voc), "--split", split, "--out",
                     str(tmp_path / "yolo")]) == 0  # fmt: skip
    common = ["--proposals", "edge_boxes", "--max-proposals", "40", "--no-progress"]
    det = tmp_path / "det"
    train = ["train-det", "--data", str(tmp_path / "yolo"), "--split", "train", "--out", str(det),
             "--model", "toy_trunks:odd_s8", "--fc-dim", "16", "--scales", "100",
             "--finetune-iterations", "5", *common]  # fmt: skip
    assert main(train) == 0
    capsys.readouterr()
    evaluate = ["eval-det", "--detector", str(det / "detector"), "--data", str(tmp_path / "yolo"),
                "--split", "test", "--out", str(tmp_path / "ev"), *common]  # fmt: skip
    assert main(evaluate) == 2
    assert "detector.json asks to import 'toy_trunks:odd_s8'" in _error(capsys)
    assert main([*evaluate, "--model", "toy_trunks:odd_s8"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= 1.0 and metrics["images"] == 3


def test_bad_model_args_and_missing_timm(tmp_path, capsys, monkeypatch):
    base = ["train", "--out", str(tmp_path / "r"), "--epochs", "1", "--no-progress"]
    assert main([*base, "--model", TRUNK, "--model-args", "[1]"]) == 2
    assert "--model-args must be a JSON object" in _error(capsys)
    from sppnet.models import trunk_source

    real = trunk_source.importlib.import_module

    def no_timm(name):
        if name == "timm":
            raise ModuleNotFoundError("No module named 'timm'", name="timm")
        return real(name)

    monkeypatch.setattr(trunk_source.importlib, "import_module", no_timm)
    (tmp_path / "data").mkdir()
    train = [*base, "--data", str(tmp_path / "data")]
    for argv in (train, ["train-det", "--out", str(tmp_path / "d")]):
        assert main([*argv, "--model", "timm/resnet18"]) == 2  # before any data is read
        assert "timm trunks need timm, which is not installed" in _error(capsys)
