"""Checked against reality: recorded sizes, classes without examples, cached artefacts."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import one_error, train_det_args

from sppnet.cli import main


@pytest.fixture
def voc_copy(voc, tmp_path) -> Path:
    """A copy of the tiny VOC root (train: 3, test: 2) the test may change."""
    return Path(shutil.copytree(voc, tmp_path / "voc"))


def _double_size(xml: Path) -> None:
    """Record twice the real size (the boxes stay inside it: only the decode can tell)."""
    text = xml.read_text()
    for tag in ("width", "height"):
        value = int(re.search(f"<{tag}>(\\d+)</{tag}>", text).group(1))
        text = text.replace(f"<{tag}>{value}</{tag}>", f"<{tag}>{2 * value}</{tag}>", 1)
    xml.write_text(text)


def _eval_det(det_run: Path, voc: Path, out: Path) -> list[str]:
    return ["eval-det", "--detector", str(det_run), "--data", str(voc), "--split", "test",
            "--proposals", "edge_boxes", "--max-proposals", "30", "--out", str(out),
            "--no-progress"]  # fmt: skip


def test_recorded_size_that_is_not_the_image_is_named(det_run, voc_copy, tmp_path, capsys):
    _double_size(voc_copy / "Annotations" / "000004.xml")
    assert main(_eval_det(det_run, voc_copy, tmp_path / "ev")) == 2
    one_error(capsys, "000004.jpg", "but its annotation says", "--fix-sizes")


def test_fix_sizes_rescales_the_boxes_with_a_warning(det_run, voc_copy, tmp_path, capsys):
    from sppnet.data import VOCDetection

    xml = voc_copy / "Annotations" / "000004.xml"
    truth = VOCDetection(voc_copy, "test").annotations[0]["boxes"]
    _double_size(xml)
    with pytest.warns(UserWarning, match="1 annotation"):
        fixed = VOCDetection(voc_copy, "test", fix_sizes=True)
    # the boxes were read as drawn on a picture twice the size: halved onto the real one
    assert fixed.annotations[0]["boxes"].tolist() == (truth / 2).tolist()
    assert (fixed.annotations[0]["width"], fixed.annotations[0]["height"]) == (120, 120)
    assert fixed.resized == 1
    with pytest.warns(UserWarning, match="rescaled"):
        assert main([*_eval_det(det_run, voc_copy, tmp_path / "ev"), "--fix-sizes"]) == 0


def test_coco2voc_checks_recorded_sizes(voc, tmp_path, capsys):
    coco = tmp_path / "c.json"
    assert main(["convert", "voc2coco", "--data", str(voc), "--split", "train",
                 "--out", str(coco)]) == 0  # fmt: skip
    data = json.loads(coco.read_text())
    data["images"][1]["width"] += 40
    coco.write_text(json.dumps(data))
    capsys.readouterr()
    args = ["convert", "coco2voc", "--data", str(coco), "--images", str(voc / "JPEGImages"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "000002.jpg", "but its annotation says", "--fix-sizes")
    with pytest.warns(UserWarning, match="000002.jpg 160x120 -> 120x120"):
        assert main([*args, "--fix-sizes"]) == 0


def test_classes_without_examples_are_left_out_with_a_warning(voc, tmp_path, capsys):
    from sppnet.detect.io import load_detector

    out = tmp_path / "det"
    args = train_det_args(voc, out)
    assert main(args) == 0
    captured = capsys.readouterr()
    present = {"ell", "frame", "star", "triangle"}  # the objects of the 3 training scenes
    absent = ["circle", "crescent", "cross", "ring"]
    assert f"4 of 8 classes have no training object ({', '.join(absent)})" in captured.err
    assert "no SVM for 4 class(es)" in captured.out
    detector, _ = load_detector(out / "detector")
    for c, name in enumerate(detector.class_names):
        assert (detector.svm_bias[c].item() == float("-inf")) == (name not in present), name
    image = voc / "JPEGImages" / "000004.jpg"
    assert main(["detect", str(image), "--detector", str(out / "detector"),
                 "--out", str(tmp_path / "o"), "--max-proposals", "30"]) == 0  # fmt: skip
    found = json.loads((tmp_path / "o" / "000004.json").read_text())["detections"]
    assert found and {d["name"] for d in found} <= present


def _features(run: Path, data: Path, out: Path) -> list[str]:
    return ["features", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--layer", "spp", "--view", "full", "--size", "64", "--out", str(out),
            "--device", "cpu", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("damage", ["truncate", "rows", "ids"])
def test_reused_features_are_verified(run, data, tmp_path, capsys, damage):
    import numpy as np

    out = tmp_path / "f"
    assert main(_features(run, data, out)) == 0
    good = np.load(out / "features.npy")
    if damage == "truncate":  # the header still says [9, D]: only the length tells
        raw = (out / "features.npy").read_bytes()
        (out / "features.npy").write_bytes(raw[: len(raw) - 100])
        needles = ["features.npy", "damaged"]
    elif damage == "rows":
        np.save(out / "features.npy", good[:5])
        needles = ["features.npy", f"[9, {good.shape[1]}]"]
    else:
        (out / "ids.json").write_text(json.dumps(["a"]))
        needles = ["ids.json", "1 ids for 9 rows"]
    capsys.readouterr()
    assert main(_features(run, data, out)) == 2
    one_error(capsys, *needles, f"delete {out}")
    shutil.rmtree(out)  # what the message says
    assert main(_features(run, data, out)) == 0
    assert np.array_equal(np.load(out / "features.npy"), good)


def test_reused_pooled_windows_are_verified_row_for_row(det_run, voc, capsys):
    import numpy as np

    args = [*train_det_args(voc, det_run), "--cache", "windows"]
    assert main(args) == 0
    capsys.readouterr()
    victim = sorted((det_run / "cache" / "features").glob("*.npy"))[0]
    np.save(victim, np.load(victim)[:-3])  # a whole, readable file of too few rows
    (det_run / "finetune" / "settings.json").unlink()  # the fc stage reads the cache again
    assert main(args) == 2
    one_error(capsys, victim.name, "rows for the", "delete it to recompute")
