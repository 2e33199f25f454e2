"""Memory bounded by pixels: a resize over the cap is one named error, before the work.

A 3 x 5,000 strip at shorter side S would become S x 1,667 S pixels: every path that
resizes (eval views, features, predict, detect, eval-det, train-det) refuses it by name.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error, train_det_args
from PIL import Image

from sppnet.cli import main
from sppnet.limits import (
    MAX_RESIZED_PIXELS,
    MAX_RESIZED_SIDE,
    ImageTooLargeError,
    check_resized_size,
)


def _strip(path: Path, size: tuple[int, int] = (3, 5000)) -> Path:
    """A ``size`` (height, width) PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)
    return path


def test_the_cap_is_on_pixels_and_on_the_long_side():
    check_resized_size((1, 1), (4096, 4096), "x")  # exactly the pixel cap: allowed
    check_resized_size((1, 1), (1, MAX_RESIZED_SIDE), "x")
    with pytest.raises(ImageTooLargeError, match=r"4096x4097 = 16.8 M pixels"):
        check_resized_size((1, 1), (4096, 4097), "x")
    with pytest.raises(ImageTooLargeError, match=f"side over the memory cap of {MAX_RESIZED_SIDE}"):
        check_resized_size((1, 1), (1, MAX_RESIZED_SIDE + 1), "x")
    assert MAX_RESIZED_PIXELS == 4096 * 4096


def test_predict_refuses_an_elongated_image(run, tmp_path, capsys):
    strip = _strip(tmp_path / "strip.png")  # shorter side 72: 72 x 120,000
    assert main(["predict", str(strip), "--checkpoint", str(run)]) == 2
    line = one_error(capsys, "strip.png", "3x5000", "memory cap", f"{MAX_RESIZED_SIDE} pixels")
    assert "72x120000" in line


def test_predict_refuses_too_many_pixels_at_a_side_below_the_cap(run, tmp_path, capsys):
    image = _strip(tmp_path / "square.png", (400, 420))  # 4096 x 4301: 17.6 M pixels
    assert main(["predict", str(image), "--checkpoint", str(run), "--size", "4096"]) == 2
    one_error(capsys, "square.png", "4096x4301", "memory cap of 16.8 M pixels")


def test_eval_names_the_elongated_image(run, data, capsys):
    _strip(data / "red" / "strip.png")
    argv = ["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--views", "center", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    one_error(capsys, str(data / "red" / "strip.png"), "memory cap")


def test_eval_in_a_worker_process_keeps_one_line(run, data, capsys):
    _strip(data / "red" / "strip.png")
    argv = ["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--views", "full", "--no-progress", "--workers", "1"]  # fmt: skip
    assert main(argv) == 2
    line = one_error(capsys, "strip.png", "memory cap")
    assert "DataLoader" not in line and "Original Traceback" not in line


def test_features_name_the_elongated_image(run, data, tmp_path, capsys):
    _strip(data / "red" / "strip.png")
    argv = ["features", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--layer", "spp", "--view", "full", "--size", "72", "--out",
            str(tmp_path / "f"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    one_error(capsys, "strip.png", "memory cap")


def test_detect_refuses_the_image_before_its_proposals(detector, tmp_path, capsys, monkeypatch):
    from sppnet.detect import images as detect_images

    def no_proposals(*args, **kwargs):
        raise AssertionError("proposals computed for an image that is refused")

    monkeypatch.setattr(detect_images, "image_proposals", no_proposals)
    strip = _strip(tmp_path / "strip.png")  # detector scale 96: 96 x 160,000
    code = main(["detect", str(strip), "--detector", str(detector), "--out", str(tmp_path / "o")])
    assert code == 2
    line = one_error(capsys, "strip.png", "scale 96", "memory cap", "--scales")
    assert re.search(r"96x160000", line)


def _voc_with_a_strip(voc: Path, tmp_path: Path, split: str) -> tuple[Path, str]:
    """A copy of ``voc`` whose first ``split`` image says it is 200,000 pixels wide (its
    annotation; at most 120 high: at scale 96 over 160,000 wide)."""
    voc = Path(shutil.copytree(voc, tmp_path / "voc"))
    first = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[0]
    xml = voc / "Annotations" / f"{first}.xml"
    xml.write_text(re.sub(r"<width>\d+</width>", "<width>200000</width>", xml.read_text()))
    return voc, first


def test_eval_det_refuses_before_any_proposal(det_run, voc, tmp_path, capsys):
    voc, first = _voc_with_a_strip(voc, tmp_path, "test")
    argv = ["eval-det", "--detector", str(det_run), "--data", str(voc), "--split", "test",
            "--proposals", "edge_boxes", "--no-progress", "--out", str(tmp_path / "e")]  # fmt: skip
    assert main(argv) == 2
    one_error(capsys, f"{first}.jpg", "memory cap")
    assert not (tmp_path / "e" / "proposals").exists()


def test_train_det_refuses_before_any_work(voc, tmp_path, capsys):
    voc, first = _voc_with_a_strip(voc, tmp_path, "train")
    assert main(train_det_args(voc, tmp_path / "det")) == 2
    one_error(capsys, f"{first}.jpg", "memory cap")
    assert not (tmp_path / "det" / "proposals").exists()
