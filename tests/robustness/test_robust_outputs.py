"""No output lost: outputs never replace inputs, earlier results or each other's parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import one_error

from sppnet.cli import main


@pytest.fixture
def coco(voc, tmp_path) -> Path:
    """The tiny VOC root's train split as a COCO file (images: ``voc/JPEGImages``)."""
    out = tmp_path / "c.json"
    assert main(["convert", "voc2coco", "--data", str(voc), "--split", "train",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def test_coco2voc_into_a_non_empty_folder_needs_merge(voc, coco, tmp_path, capsys):
    out = Path(shutil.copytree(voc, tmp_path / "existing"))
    before = (out / "Annotations" / "000001.xml").read_bytes()
    data = json.loads(coco.read_text())
    data["annotations"] = []  # the same stems, no objects: would replace the annotations
    coco.write_text(json.dumps(data))
    capsys.readouterr()
    args = ["convert", "coco2voc", "--data", str(coco), "--images", str(voc / "JPEGImages"),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, str(out), "not empty", "--merge")
    assert (out / "Annotations" / "000001.xml").read_bytes() == before
    assert main([*args, "--split", "extra", "--merge"]) == 0
    assert (out / "ImageSets" / "Main" / "extra.txt").read_text().split() == [
        "000001", "000002", "000003"]  # fmt: skip
    assert (out / "ImageSets" / "Main" / "test.txt").is_file()  # the rest is kept
    assert "<object>" not in (out / "Annotations" / "000001.xml").read_text()


def test_coco2voc_into_an_empty_folder_is_fine(voc, coco, tmp_path):
    (tmp_path / "empty").mkdir()
    args = ["convert", "coco2voc", "--data", str(coco), "--images", str(voc / "JPEGImages"),
            "--out", str(tmp_path / "empty")]  # fmt: skip
    assert main(args) == 0


def test_voc2coco_refuses_merge(voc, tmp_path, capsys):
    args = ["convert", "voc2coco", "--data", str(voc), "--split", "train",
            "--out", str(tmp_path / "c.json"), "--merge"]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "--merge is for coco2voc")


def test_detect_never_replaces_its_input_image(detector, tmp_path, capsys):
    photo = tmp_path / "photos" / "photo.png"
    photo.parent.mkdir()
    from PIL import Image

    Image.new("RGB", (60, 50), (200, 10, 10)).save(photo)
    before = photo.read_bytes()
    args = ["detect", str(photo), "--detector", str(detector), "--out", str(photo.parent)]
    assert main(args) == 2
    one_error(capsys, str(photo), "would replace the input image", "another --out")
    assert photo.read_bytes() == before
    assert not (photo.parent / "photo.json").exists()  # refused before any work


def test_detect_never_replaces_the_detector_files(detector, tmp_path, capsys):
    photo = tmp_path / "detector.png"
    from PIL import Image

    Image.new("RGB", (60, 50), (200, 10, 10)).save(photo)
    before = (detector / "detector.json").read_bytes()
    args = ["detect", str(photo), "--detector", str(detector), "--out", str(detector)]
    assert main(args) == 2
    one_error(capsys, "detector.json", "--detector")
    assert (detector / "detector.json").read_bytes() == before
