"""The CLI's one error boundary: expected failures are one line and exit 2, bugs are not."""

from __future__ import annotations

import pytest
from conftest import one_error

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
        (["train", "--out", "o", "--frob"], ("unrecognized arguments: --frob", "--help")),
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
