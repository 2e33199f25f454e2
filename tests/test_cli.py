import subprocess
import sys

import pytest

from sppnet.cli import build_parser, main


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "sppnet models" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: sppnet" in capsys.readouterr().out


def test_models_lists_geometry(capsys):
    assert main(["models", "--width", "0.25", "--input", "224", "180x240", "20"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == {"convnet5", "overfeat5", "overfeat7", "zf5"}
    assert "13x13" in lines["zf5"] and "10x14" in lines["zf5"] and "too small" in lines["zf5"]
    assert "18x18" in lines["overfeat7"]


@pytest.mark.parametrize("bad", ["0", "axb", "3x4x5", "-5"])
def test_bad_size_is_an_argument_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["models", "--input", bad])
    assert exit_info.value.code == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_console_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "sppnet", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("sppnet ")
