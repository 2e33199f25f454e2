"""Option values checked before any work: each bad value is one named error, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, one_error

from sppnet.cli import MAX_IMAGE_SIDE, main


def _eval(run: Path, data: Path, *extra: str) -> list[str]:
    return ["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--views", "center", "--no-progress", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["models", "--width", "0"], "--width"),
        (["models", "--width", "nan"], "--width"),
        (["predict", "x.jpg", "--size", "100000"], "--size"),
        (["features", "--pretrained", "--model", "efficientnet_lite0", "--data", "d",
          "--layer", "spp", "--view", "full", "--out", "OUT", "--size", "100000"], "--size"),
        (["features", "--pretrained", "--model", "efficientnet_lite0", "--data", "d",
          "--layer", "spp", "--view", "crop", "--out", "OUT", "--crop", "0"], "--crop"),
        (["eval", "--checkpoint", "r", "--data", "d", "--crop", "0"], "--crop"),
        (["eval", "--checkpoint", "r", "--data", "d", "--scales", "224", "-3"], "--scales"),
        (["train", "--out", "OUT", "--lr", "nan"], "--lr"),
        (["train", "--out", "OUT", "--lr", "0"], "--lr"),
        (["train", "--out", "OUT", "--epochs", "0"], "--epochs"),
        (["train", "--out", "OUT", "--crop", "5000"], "--crop"),
        (["train-det", "--out", "OUT", "--max-images", "0"], "--max-images"),
        (["train-det", "--out", "OUT", "--svm-c", "inf"], "--svm-c"),
        (["eval-det", "--detector", "x", "--data", "d", "--rcnn-images", "-1"], "--rcnn-images"),
        (["eval-det", "--detector", "x", "--data", "d", "--score-threshold", "nan"],
         "--score-threshold"),
        (["eval-det", "--detector", "x", "--data", "d", "--max-images", "0"], "--max-images"),
        (["detect", "x.jpg", "--detector", "x", "--draw-threshold", "nan"], "--draw-threshold"),
        (["detect", "x.jpg", "--detector", "x", "--nms-threshold", "1.5"], "--nms-threshold"),
        (["svm", "--features", "f", "--protocol", "caltech", "--C", "nan"], "--C"),
        (["svm", "--features", "f", "--protocol", "caltech", "--n-train", "0"], "--n-train"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)  # fmt: skip
def test_bad_number_is_named(argv, option, tmp_path, capsys):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    one_error(capsys, option)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_size_limit_is_stated(capsys):
    assert main(["predict", "x.jpg", "--size", str(MAX_IMAGE_SIDE + 1)]) == 2
    one_error(capsys, "--size", f"<= {MAX_IMAGE_SIDE}", "memory")


def test_nan_score_threshold_in_detect(detector, image, tmp_path, capsys):
    argv = ["detect", str(image), "--detector", str(detector), "--out", str(tmp_path / "o")]
    assert main([*argv, "--score-threshold", "nan"]) == 2
    one_error(capsys, "--score-threshold", "finite")


@pytest.mark.parametrize(
    "command", ["train", "eval", "features", "train-det", "predict", "eval-det", "detect"]
)
def test_cuda_without_gpu(command, run, data, detector, image, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = {
        "train": ["train", "--data", str(data), "--out", str(tmp_path / "o"), *TINY_TRAIN],
        "eval": _eval(run, data),
        "features": ["features", "--checkpoint", str(run), "--data", str(data), "--split",
                     "all", "--layer", "spp", "--view", "full", "--out", str(tmp_path / "o")],
        "train-det": ["train-det", "--out", str(tmp_path / "o"), "--data", str(data)],
        "predict": ["predict", str(next(data.rglob("*.png"))), "--checkpoint", str(run)],
        "eval-det": ["eval-det", "--detector", str(detector), "--data", str(data),
                     "--out", str(tmp_path / "o")],
        "detect": ["detect", str(image), "--detector", str(detector),
                   "--out", str(tmp_path / "o")],
    }[command]  # fmt: skip
    assert main([*argv, "--device", "cuda"]) == 2
    one_error(capsys, "--device cuda", "no CUDA device", "--device cpu")
    assert not (tmp_path / "o").exists()


def test_onnx_detect_refuses_a_gpu(image, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # --device cuda passes
    argv = ["detect", str(image), "--onnx", str(tmp_path / "onnx"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--device", "cuda"]) == 2
    one_error(capsys, "--device cuda", "--onnx", "CPU", "--detector")
    assert not (tmp_path / "o").exists()


def test_unknown_device(run, data, capsys):
    assert main([*_eval(run, data), "--device", "gpu0"]) == 2
    one_error(capsys, "--device gpu0", "not a device")


@pytest.mark.parametrize("device", ["meta", "xpu", "cpu:x", "CUDA"])
def test_only_real_devices_on_a_healthy_checkpoint(device, run, data, capsys):
    """torch knows ``meta``: loading there made a healthy checkpoint look damaged."""
    assert main([*_eval(run, data), "--device", device]) == 2
    line = one_error(capsys, f"--device {device}", "cpu, cuda, cuda:N, mps or auto")
    assert "damaged" not in line and "delete" not in line


def test_out_that_is_a_file(data, tmp_path, capsys):
    target = tmp_path / "run.txt"
    target.write_text("keep me", encoding="utf-8")
    argv = ["train", "--data", str(data), "--out", str(target), "--epochs", "1", *TINY_TRAIN]
    assert main(argv) == 2
    one_error(capsys, "--out", "run.txt", "is a file")
    assert target.read_text(encoding="utf-8") == "keep me"


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "run"
    if os.access("/sys", os.W_OK) and Path("/sys").is_dir():  # root: a read-only file system
        try:
            with open("/sys/.sppnet_probe", "w"):
                pass
        except OSError:
            return Path("/sys/sppnet_run")
    pytest.skip("no read-only folder available to this user")


def test_out_in_a_read_only_folder_fails_before_the_first_epoch(data, tmp_path, capsys):
    out = _read_only_folder(tmp_path)
    argv = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY_TRAIN]
    assert main(argv) == 2
    line = one_error(capsys, "--out", "cannot write")
    assert "epoch" not in capsys.readouterr().out and "epoch 1" not in line


def test_json_that_is_a_folder(run, data, tmp_path, capsys):
    assert main([*_eval(run, data), "--json", str(tmp_path)]) == 2
    one_error(capsys, "--json", "is a folder")


# the least argv each command parses with (the values are never read: the checks come first)
_BASE = {
    "models": [],
    "eval": ["--checkpoint", "r", "--data", "d"],
    "train": ["--out", "OUT"],
    "svm": ["--features", "f", "--protocol", "caltech"],
    "features": ["--data", "d", "--layer", "spp", "--view", "full", "--out", "OUT"],
    "train-det": ["--out", "OUT"],
    "eval-det": ["--detector", "x", "--data", "d"],
    "detect": ["x.jpg", "--detector", "x", "--out", "OUT"],
    "export": ["--checkpoint", "r", "--out", "OUT.onnx"],
    "predict": ["x.jpg"],
    "demo": ["--out", "OUT"],
}


def _numeric_options() -> list[tuple[str, str, int]]:
    """(command, option, values it takes) of every int/float/size option of every command."""
    import argparse

    from sppnet.cli import build_parser
    from sppnet.cli._common import parse_size

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if action.type in (int, float, parse_size) and action.option_strings:
                nargs = action.nargs if isinstance(action.nargs, int) else 1
                found.append((command, action.option_strings[0], nargs))
    return found


@pytest.mark.parametrize(("command", "option", "nargs"), _numeric_options(), ids=str)
def test_every_number_has_an_upper_bound(command, option, nargs, tmp_path, capsys):
    if command == "export":
        pytest.importorskip("onnx")
    base = [a.replace("OUT", str(tmp_path / "out")) for a in _BASE[command]]
    assert main([command, *base, option, *["1000000000000"] * nargs]) == 2
    line = one_error(capsys, option, "<")
    assert "1000000000000" in line
    assert not (tmp_path / "out").exists()  # refused before any work


def test_the_command_table_covers_every_command():
    import argparse

    from sppnet.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {c for c, _, _ in _numeric_options()} <= set(_BASE)
    assert set(sub.choices) - set(_BASE) == {"convert"}  # no number options


@pytest.mark.parametrize("value", ["-0.1", "1", "1.5"])
def test_dropout_has_one_range(value, tmp_path, capsys):
    """One check and one wording: 1 passed the option check ("<= 1") and then failed in
    the training config with another range ("[0, 1)")."""
    argv = ["train", "--out", str(tmp_path / "o"), "--dropout", value]
    assert main(argv) == 2
    one_error(capsys, f"--dropout must be >= 0 and < 1, got {value}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["train", "--data", "DATA", "--out", "DATA/red/run", "--epochs", "1"], "--data"),
        (["train", "--data", "DATA", "--out", "DATA", "--epochs", "1"], "--data"),
        (["features", "--checkpoint", "RUN", "--data", "DATA", "--layer", "spp", "--view",
          "full", "--out", "DATA/green/f"], "--data"),
        (["train-det", "--data", "VOC", "--split", "train", "--out", "VOC/JPEGImages/det"],
         "--data"),
        (["eval-det", "--detector", "DET", "--data", "VOC", "--out", "VOC/eval"], "--data"),
        (["convert", "coco2voc", "--data", "x.json", "--images", "DATA/red", "--out",
          "DATA/red/voc"], "--images"),
    ],
    ids=lambda v: " ".join(v[:1]) if isinstance(v, list) else v,
)  # fmt: skip
def test_out_inside_the_input_data_is_refused(argv, option, data, run, voc, detector,
                                              tmp_path, capsys):  # fmt: skip
    voc_copy = tmp_path / "voc"
    voc_copy.symlink_to(voc)  # seen through a link: the real paths are compared
    names = {"DATA": str(data), "RUN": str(run), "VOC": str(voc_copy), "DET": str(detector)}
    argv = [next((a.replace(k, v) for k, v in names.items() if a.startswith(k)), a)
            for a in argv]  # fmt: skip
    before = sorted(p for p in data.rglob("*"))
    assert main(argv) == 2
    one_error(capsys, "--out", f"inside {option}", "outside")
    assert sorted(p for p in data.rglob("*")) == before  # nothing written into the data


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--width", "0.25"], ["--width 0.25 (the checkpoint's: 0.125)"]),
        (["--model", "overfeat5", "--fc-dim", "64"],
         ["--model overfeat5 (the checkpoint's: zf5)", "--fc-dim 64 (the checkpoint's: 16)"]),
        (["--spp-levels", "4", "2", "1"], ["--spp-levels 4 2 1 (the checkpoint's: 3 2 1)"]),
        (["--pretrained"], ["--pretrained with --checkpoint"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v[0].startswith("--") else None,
)  # fmt: skip
def test_checkpoint_and_network_options_that_disagree(extra, needles, run, tmp_path, capsys):
    argv = ["train-det", "--checkpoint", str(run), "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    one_error(capsys, *needles)
    assert not (tmp_path / "o").exists()


def test_checkpoint_with_network_options_that_agree(run, tmp_path, capsys):
    argv = ["train-det", "--checkpoint", str(run), "--out", str(tmp_path / "o"), "--model",
            "zf5", "--width", "0.125", "--fc-dim", "16", "--spp-levels", "3", "2", "1",
            "--data", str(tmp_path / "no_such_voc")]  # fmt: skip
    assert main(argv) == 2  # past the network check: the missing data is what stops it
    line = one_error(capsys, "no_such_voc")
    assert "disagree" not in line
