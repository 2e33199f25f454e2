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
