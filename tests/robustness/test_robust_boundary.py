"""The CLI's one error boundary: expected failures are one line and exit 2, bugs are not."""

from __future__ import annotations

import pytest
from conftest import one_error, train_det_args

from sppnet.cli import classify, main


def test_missing_checkpoint_is_one_line(tmp_path, data, capsys):
    code = main(["eval", "--checkpoint", str(tmp_path / "nope"), "--data", str(data)])
    assert code == 2
    one_error(capsys, "no checkpoint found", "nope")


def test_debug_flag_shows_the_traceback(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["--debug", "eval", "--checkpoint", str(tmp_path / "nope"), "--data", str(data)])


def test_debug_environment_variable_shows_the_traceback(tmp_path, data, monkeypatch):
    monkeypatch.setenv("SPPNET_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["eval", "--checkpoint", str(tmp_path / "nope"), "--data", str(data)])


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(classify, "_cmd_models", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["models"])


def test_os_errors_name_the_file(monkeypatch, tmp_path, capsys):
    def unreadable(args):
        open(tmp_path / "secret.txt", encoding="utf-8")  # noqa: SIM115

    monkeypatch.setattr(classify, "_cmd_models", unreadable)
    assert main(["models"]) == 2
    one_error(capsys, "secret.txt", "No such file")


def test_non_finite_loss_exits_1(monkeypatch, capsys):
    from sppnet.classify.train import NonFiniteLossError

    def diverged(args):
        raise NonFiniteLossError(epoch=1, step=0, lr=10.0, checkpoint=None)

    monkeypatch.setattr(classify, "_cmd_models", diverged)
    assert main(["models"]) == 1
    one_error(capsys, "non-finite training loss", "--lr")


def test_eval_classes_that_differ_are_named(run, data, capsys):
    (data / "red").rename(data / "yellow")
    assert main(["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all"]) == 2
    one_error(capsys, "differ from the checkpoint", "yellow")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["train"], ("required: --out", "sppnet train --help")),
        (["bogus"], ("invalid choice: 'bogus'", "sppnet --help")),
        (["export", "--checkpoint", "r", "--out", "x", "--opset", "1e12"],
         ("--opset", "invalid int value: '1e12'", "sppnet export --help")),
        (["export", "--checkpoint", "r", "--out", "x", "--max-image-side", "1e12"],
         ("--max-image-side", "'1e12'")),
        (["models", "--input", "3x4x5"], ("--input", "HEIGHTxWIDTH", "sppnet models --help")),
        (["detect"], ("required: IMAGE",)),
        (["train", "--out", "o", "--frob"],
         ("unrecognized arguments: --frob", "sppnet train --help")),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)  # fmt: skip
def test_argument_errors_are_one_line(argv, needles, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err and err.count("\n") == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, (needle, err)


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    assert "usage: sppnet train" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "target", "needle"),
    [
        ("train", "sppnet.classify.train.train_classifier", "--resume"),
        ("eval", "sppnet.classify.evaluate.evaluate_classifier", "nothing"),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(command, target, needle, run, data, tmp_path,
                                         monkeypatch, capsys):  # fmt: skip
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import importlib

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    argv = {
        "train": ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--epochs", "2"],
        "eval": ["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all"],
    }[command]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ") and err.count("\n") == 1, err
    assert needle in err and "Traceback" not in err


def test_ctrl_c_in_a_real_training_run(data, tmp_path):
    """SIGINT to a running ``sppnet train``: one line, exit 130, and --resume continues."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import TINY_TRAIN

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "sppnet", "train", "--data", str(data), "--out", str(out),
            "--epochs", "500", *TINY_TRAIN]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        # mid-training once any epoch is saved (tiny epochs: epoch_0001 may already be
        # pruned, only the last two are kept, when this loop looks)
        while not any((out / "checkpoints").glob("epoch_*")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == 130, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted: ") and "--resume" in lines[-1], text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


def test_train_det_nan_advice_names_its_own_options(voc, tmp_path, monkeypatch, capsys):
    """A diverged fc fine-tuning in train-det: exit 1, advice with train-det's options (it
    has no --lr and no --resume)."""
    import torch.nn.functional as F

    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    assert main(train_det_args(voc, tmp_path / "det")) == 1
    line = one_error(capsys, "non-finite training loss", "--finetune-lr", "same command again")
    assert "--resume" not in line and "(--lr)" not in line
