"""Results never silently wrong: skipped images, --resume --lr, same-named detect inputs,
proposals on huge images, Pillow's pixel limit at every decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, one_error
from PIL import Image

from sppnet.cli import main


def _eval(run: Path, data: Path, json_path: Path, *extra: str) -> list[str]:
    return ["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--views", "center", "full", "--no-progress", "--json", str(json_path),
            *extra]  # fmt: skip


def test_skip_bad_leaves_bad_images_out_of_the_count(run, data, tmp_path, capsys):
    bad = data / "green" / "1.png"
    bad.write_bytes(b"not a png")
    assert main(_eval(run, data, tmp_path / "a.json", "--skip-bad")) == 0
    captured = capsys.readouterr()
    assert "8 images" in captured.out
    assert "1 undecodable image(s) left out of the 9" in captured.err and "1.png" in captured.err
    # the same numbers as on the data without that file
    bad.unlink()
    assert main(_eval(run, data, tmp_path / "b.json")) == 0
    with_bad = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    without = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert with_bad["num_images"] == without["num_images"] == 8
    for view in ("center", "full"):
        a, b = with_bad["results"][view], without["results"][view]
        assert a["num_images"] == 8 and a["skipped_files"] == [str(data / "green" / "1.png")]
        assert (a["top1_error"], a["top5_error"]) == (b["top1_error"], b["top5_error"])


def test_bad_image_without_skip_bad_is_named(run, data, tmp_path, capsys):
    (data / "red" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(_eval(run, data, tmp_path / "a.json")) == 2
    one_error(capsys, "0.png", "cannot decode")


def _lrs(run: Path) -> list[float]:
    log = json.loads((run / "log.json").read_text(encoding="utf-8"))
    return [row["lr"] for row in log["history"]]


def test_resume_with_lr_continues_at_that_rate(run, capsys):
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--lr", "0.003",
                 *TINY_TRAIN]) == 0  # fmt: skip
    assert "lr 0.003" in capsys.readouterr().out
    assert _lrs(run) == [0.01, 0.003]
    # and the rate sticks on a later resume without --lr
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", *TINY_TRAIN]) == 0
    assert _lrs(run) == [0.01, 0.003, 0.003]


def test_resume_without_lr_keeps_the_schedule(run):
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]) == 0
    assert _lrs(run) == [0.01, 0.01]


def test_detect_keeps_same_named_images_apart(detector, image, tmp_path, capsys):
    other = tmp_path / "other" / "x.png"
    other.parent.mkdir()
    Image.fromarray(np.full((50, 60, 3), 200, np.uint8)).save(other)
    out = tmp_path / "out"
    argv = ["detect", str(image), str(other), "--detector", str(detector), "--out", str(out),
            "--max-proposals", "20"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads((out / "x.json").read_text(encoding="utf-8"))
    second = json.loads((out / "x-2.json").read_text(encoding="utf-8"))
    assert first["image"] == str(image) and first["image_size"] == [70, 80]
    assert second["image"] == str(other) and second["image_size"] == [50, 60]
    assert (out / "x.png").is_file() and (out / "x-2.png").is_file()
    assert "warning" not in capsys.readouterr().err
    assert main(argv) == 0  # a rerun replaces, and says so
    err = capsys.readouterr().err
    assert "warning: replacing" in err and "x-2.json" in err


def test_proposals_of_a_huge_image_run_on_a_bounded_copy(detector, tmp_path, monkeypatch):
    from sppnet.detection import proposals

    seen = []
    real = proposals._edge_and_orientation

    def spy(rgb, cv2):
        seen.append(rgb.shape[:2])
        return real(rgb, cv2)

    monkeypatch.setattr(proposals, "_edge_and_orientation", spy)
    monkeypatch.setattr(proposals, "PROPOSAL_MAX_SIDE", 128)
    arr = np.full((150, 600, 3), 30, np.uint8)
    for x in range(20, 600, 90):  # bright blocks across the whole width
        arr[40:110, x : x + 50] = 230
    path = tmp_path / "wide.png"
    Image.fromarray(arr).save(path)
    out = tmp_path / "out"
    argv = ["detect", str(path), "--detector", str(detector), "--out", str(out),
            "--max-proposals", "50"]  # fmt: skip
    assert main(argv) == 0
    assert seen == [(32, 128)]  # the edge map of a 128-px copy, not of 150 x 600
    boxes = np.array([d["box"] for d in json.loads((out / "wide.json").read_text())["detections"]])
    assert boxes.size and boxes[:, 2].max() > 128 and boxes[:, 2].max() <= 600  # scaled back


def test_pillow_pixel_limit_applies_to_every_decode(run, image, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 70 x 80 = 5600 pixels: refused
    assert main(["predict", str(image), "--checkpoint", str(run)]) == 2
    one_error(capsys, "x.png", "decompression bomb")


def test_pixel_limit_in_image_folder_headers(data, monkeypatch):
    from sppnet.data.decode import ImageDecodeError
    from sppnet.data.image_folder import ImageFolder

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # the header read, no full decode
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        ImageFolder(str(data)).image_sizes()


def test_detect_on_an_image_larger_than_the_scale_works_on_a_copy(detector, tmp_path):
    arr = np.full((400, 500, 3), 30, np.uint8)  # the detector's scale: 96
    for x in range(20, 480, 80):
        arr[100:300, x : x + 40] = 230
    path = tmp_path / "big.png"
    Image.fromarray(arr).save(path)
    out = tmp_path / "out"
    argv = ["detect", str(path), "--detector", str(detector), "--out", str(out),
            "--max-proposals", "50"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "big.json").read_text(encoding="utf-8"))
    assert record["image_size"] == [400, 500]
    boxes = np.array([d["box"] for d in record["detections"]])
    assert boxes.size and boxes[:, 2].max() > 120 and boxes[:, 2].max() <= 500
    assert boxes[:, 3].max() <= 400
    with Image.open(out / "big.png") as picture:
        assert picture.size == (120, 96)  # drawn on the working copy


def _detect(detector: Path, out: Path, *images: Path) -> list[str]:
    return ["detect", *map(str, images), "--detector", str(detector), "--out", str(out),
            "--max-proposals", "20"]  # fmt: skip


def test_detect_exit_code_says_how_many_failed(detector, image, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(_detect(detector, out, bad)) == 2  # the one image failed: one line
    one_error(capsys, "bad.png", "cannot decode")
    assert main(_detect(detector, out, image, bad)) == 1  # some failed: the others written
    err = capsys.readouterr().err
    assert "failed: " in err and "bad.png" in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [f"error: 1 of 2 images failed (each named above); the detections of "
                     f"the other 1 are in {out}"]  # fmt: skip
    assert (out / "x.json").is_file()
    other = tmp_path / "other.png"
    other.write_bytes(b"")
    assert main(_detect(detector, out, bad, other)) == 2  # all failed
    err = capsys.readouterr().err
    assert err.count("failed: ") == 2 and "error: all 2 images failed" in err


def test_export_refuses_an_opset_it_would_not_write(run, tmp_path, capsys):
    import onnx

    newest = onnx.defs.onnx_opset_version()
    out = tmp_path / "c.onnx"
    args = ["export", "--checkpoint", str(run), "--out", str(out)]
    assert main([*args, "--opset", str(newest + 2)]) == 2
    one_error(capsys, "--opset", ">= 18", f"<= {newest}", f"got {newest + 2}")
    assert not out.exists()
    assert main([*args, "--opset", "21"]) == 0
    assert "opset 21" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert {e.domain: e.version for e in proto.opset_import}[""] == 21
