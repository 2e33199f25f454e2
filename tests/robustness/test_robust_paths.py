"""Paths read from dataset files stay inside the folder the user named.

A COCO ``file_name``, a VOC ``<filename>`` or split id that is absolute, climbs out with
``..`` or is a symbolic link leading out is one ``error:`` line naming the file and the
record; nothing outside is read, linked or copied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import one_error

from sppnet.cli import main


@pytest.fixture
def voc_copy(voc, tmp_path) -> Path:
    """A copy of the tiny VOC root (train: 3, test: 2) the test may change."""
    return Path(shutil.copytree(voc, tmp_path / "voc"))


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside every dataset folder: an image, so only the check can stop it."""
    path = tmp_path / "private" / "secret.jpg"
    path.parent.mkdir()
    shutil.copyfile(next((Path(__file__).parent).glob("*.py")), path)  # any bytes
    return path


def _coco(voc_copy: Path, tmp_path: Path) -> Path:
    out = tmp_path / "c.json"
    assert main(["convert", "voc2coco", "--data", str(voc_copy), "--split", "train",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def _set_file_name(coco: Path, name: str) -> None:
    data = json.loads(coco.read_text())
    data["images"][0]["file_name"] = name
    coco.write_text(json.dumps(data))


def _coco2voc(coco: Path, images: Path, out: Path) -> list[str]:
    return ["convert", "coco2voc", "--data", str(coco), "--images", str(images),
            "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_coco_file_name_outside_images_is_refused(voc_copy, secret, tmp_path, capsys, kind):
    coco = _coco(voc_copy, tmp_path)
    images = voc_copy / "JPEGImages"
    name = str(secret) if kind == "absolute" else f"../../private/{secret.name}"
    _set_file_name(coco, name)
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(_coco2voc(coco, images, out)) == 2
    one_error(capsys, str(coco), "image id 1", repr(name), "outside")
    assert not (out / "JPEGImages" / secret.name).exists()


def test_coco_symlink_leading_outside_is_refused(voc_copy, secret, tmp_path, capsys):
    coco = _coco(voc_copy, tmp_path)
    images = voc_copy / "JPEGImages"
    (images / "link.jpg").symlink_to(secret)
    _set_file_name(coco, "link.jpg")
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(_coco2voc(coco, images, out)) == 2
    one_error(capsys, "link.jpg", "outside")
    assert not (out / "JPEGImages").exists()


def test_coco_symlinked_image_folder_is_fine(voc_copy, tmp_path, capsys):
    coco = _coco(voc_copy, tmp_path)
    linked = tmp_path / "linked_images"
    linked.symlink_to(voc_copy / "JPEGImages")  # the folder itself may be a link
    assert main(_coco2voc(coco, linked, tmp_path / "out")) == 0
    assert len(list((tmp_path / "out" / "JPEGImages").iterdir())) == 3


def test_eval_det_never_reads_a_coco_image_outside(det_run, voc_copy, secret, tmp_path, capsys):
    coco = _coco(voc_copy, tmp_path)
    _set_file_name(coco, str(secret))
    capsys.readouterr()
    images = voc_copy / "JPEGImages"
    args = ["eval-det", "--detector", str(det_run), "--data", str(coco), "--images",
            str(images), "--out", str(tmp_path / "ev"), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "file_name", "outside")


def test_voc_filename_outside_is_refused(det_run, voc_copy, capsys, tmp_path):
    xml = voc_copy / "Annotations" / "000004.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<filename>000004.jpg", "<filename>../../../../etc/passwd"))
    args = ["eval-det", "--detector", str(det_run), "--data", str(voc_copy), "--split", "test",
            "--out", str(tmp_path / "ev"), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "000004.xml", "<filename>", "etc/passwd", "outside")


@pytest.mark.parametrize("bad_id", ["../../../../etc/passwd", "/etc/hostname"])
def test_voc_split_id_outside_is_refused(voc_copy, tmp_path, capsys, bad_id):
    split = voc_copy / "ImageSets" / "Main" / "train.txt"
    split.write_text(split.read_text() + bad_id + "\n")
    args = ["convert", "voc2coco", "--data", str(voc_copy), "--split", "train",
            "--out", str(tmp_path / "c.json")]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "train.txt", "line 4", "outside")
    assert not (tmp_path / "c.json").exists()


def test_voc_annotation_symlink_outside_is_refused(voc_copy, tmp_path, capsys):
    outside = tmp_path / "elsewhere.xml"
    xml = voc_copy / "Annotations" / "000001.xml"
    shutil.move(xml, outside)
    xml.symlink_to(outside)
    args = ["convert", "voc2coco", "--data", str(voc_copy), "--split", "train",
            "--out", str(tmp_path / "c.json")]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "train.txt", "000001", "outside")


def test_proposal_file_leading_outside_is_refused(voc, tmp_path, capsys):
    import numpy as np
    from conftest import train_det_args

    folder = tmp_path / "props"
    folder.mkdir()
    boxes = np.array([[0, 0, 30, 30], [10, 10, 60, 50]], np.float32)
    for image_id in ("000001", "000003"):
        np.save(folder / f"{image_id}.npy", boxes)
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, boxes)  # a readable file: only the check stops it
    (folder / "000002.npy").symlink_to(outside)
    args = train_det_args(voc, tmp_path / "det")
    args[args.index("--proposals") + 1] = str(folder)
    assert main(args) == 2
    one_error(capsys, "000002", "outside", str(folder))
