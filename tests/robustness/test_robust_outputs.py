"""No output lost: outputs never replace inputs, earlier results or each other's parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, one_error, train_det_args

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


def _lock(out: Path, pid: int) -> Path:
    import socket

    path = out / ".sppnet.lock"
    record = {"pid": pid, "host": socket.gethostname(), "command": "sppnet train",
              "started": "2026-01-01 00:00:00 UTC"}  # fmt: skip
    path.write_text(json.dumps(record))
    return path


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_train_into_a_folder_in_use_is_refused(run, capsys):
    import os

    lock = _lock(run, os.getppid())  # a live process on this host
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    args = ["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]
    assert main(args) == 2
    one_error(capsys, "in use by another run", f"pid {os.getppid()}", "another --out")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert lock.is_file()  # not ours to remove


def test_stale_lock_is_named_and_cleared_by_deleting_it(run, capsys):
    pid = _dead_pid()
    lock = _lock(run, pid)
    args = ["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]
    assert main(args) == 2
    one_error(capsys, "stale lock", str(lock), f"pid {pid}", "delete that file")
    lock.unlink()  # what the message says
    assert main(args) == 0
    assert "epoch 2/2" in capsys.readouterr().out
    assert not lock.exists()  # the finished run removed its own lock


def test_train_det_into_a_folder_in_use_is_refused(voc, tmp_path, capsys):
    import os

    out = tmp_path / "det"
    out.mkdir()
    _lock(out, os.getppid())
    assert main(train_det_args(voc, out)) == 2
    one_error(capsys, "in use by another run")
    assert sorted(p.name for p in out.iterdir()) == [".sppnet.lock"]


def test_resume_with_nothing_to_resume_says_what_exists(tmp_path, capsys):
    out = tmp_path / "new"
    args = ["train", "--out", str(out), "--resume", "--epochs", "1", *TINY_TRAIN]
    assert main(args) == 2
    one_error(capsys, "holds no checkpoint", "does not exist", "without --resume")
    assert not out.exists()
    (out / "data").mkdir(parents=True)
    (out / "log.csv").write_text("epoch\n")
    assert main(args) == 2
    one_error(capsys, "holds no checkpoint", "data/, log.csv")


def test_a_refused_train_leaves_no_folder(data, tmp_path, capsys):
    out = tmp_path / "never"
    args = ["train", "--data", str(data), "--out", str(out), "--model", "nope", *TINY_TRAIN]
    assert main(args) == 2
    capsys.readouterr()
    assert not out.exists()


def _detect(image: Path, tmp_path: Path, **source: Path) -> list[str]:
    ((option, folder),) = source.items()
    return ["detect", str(image), f"--{option}", str(folder), "--out", str(tmp_path / "o"),
            "--max-proposals", "20"]  # fmt: skip


def test_detector_files_of_two_saves_are_refused(detector, image, tmp_path, capsys):
    from sppnet.detect.io import load_detector, save_detector

    det, meta = load_detector(detector)
    other = save_detector(tmp_path / "other", det, meta["model"])  # same network, new save
    shutil.copyfile(other / "detector.safetensors", detector / "detector.safetensors")
    assert main(_detect(image, tmp_path, detector=detector)) == 2
    one_error(capsys, "detector.json", "different saves", "train-det")
    assert main(_detect(image, tmp_path, detector=other)) == 0


def test_a_save_cut_short_leaves_the_earlier_detector(detector, image, tmp_path, monkeypatch):
    import sppnet.detect.io as detector_io

    before = {p.name: p.read_bytes() for p in detector.iterdir()}
    det, meta = detector_io.load_detector(detector)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the weights are written, the description is not

    monkeypatch.setattr(detector_io, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        detector_io.save_detector(detector, det, meta["model"])
    assert {p.name: p.read_bytes() for p in detector.iterdir()} == before
    assert not [p for p in detector.parent.iterdir() if p.name.startswith(".detector")]


def test_onnx_export_is_whole_and_its_graphs_belong_together(
    detector, image, tmp_path, capsys, monkeypatch
):
    import onnx

    import sppnet.export.onnx as onnx_export

    out = tmp_path / "onnx"
    assert main(["export", "--detector", str(detector), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def killed(*args, **kwargs):  # killed after conv.onnx, before windows.onnx
        calls.append(args[2].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = onnx_export._export
    monkeypatch.setattr(onnx_export, "_export", killed)
    # the command's Ctrl-C boundary: one 'interrupted:' line, exit 130
    assert main(["export", "--detector", str(detector), "--out", str(out)]) == 130
    monkeypatch.undo()
    assert calls == ["conv.onnx", "windows.onnx"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier export
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert main(_detect(image, tmp_path, onnx=out)) == 0
    # a conv.onnx of another export beside these files: refused
    conv = onnx.load(str(out / "conv.onnx"))
    for entry in conv.metadata_props:
        if entry.key == "sppnet.export_id":
            entry.value = "another-export"
    onnx.save(conv, str(out / "conv.onnx"))
    capsys.readouterr()
    assert main(_detect(image, tmp_path, onnx=out)) == 2
    one_error(capsys, "conv.onnx", "another export", "another-export")


def test_a_killed_features_run_leaves_no_folder_and_resumes(run, data, tmp_path, monkeypatch):
    import importlib

    import numpy as np

    extraction = importlib.import_module("sppnet.transfer.features")  # not the function

    out = tmp_path / "f"
    args = ["features", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--layer", "spp", "--view", "full", "--size", "64", "--out", str(out),
            "--device", "cpu", "--no-progress", "--batch-size", "4"]  # fmt: skip

    def killed(*args, **kwargs):  # every row written, the folder not yet finished
        raise KeyboardInterrupt

    monkeypatch.setattr(extraction, "compact_feature_dir", killed)
    assert main(args) == 130  # the command's Ctrl-C boundary: one line, exit 130
    monkeypatch.undo()
    assert not out.exists()  # only a finished folder ever appears at --out
    staged = json.loads((tmp_path / ".f.partial" / "meta.json").read_text())
    assert staged["rows_done"] == 9 and not staged["complete"]
    assert main(args) == 0
    assert np.load(out / "features.npy").shape[0] == 9
    assert not (tmp_path / ".f.partial").exists()
