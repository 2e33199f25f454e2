import subprocess
import sys
from pathlib import Path

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
    assert set(lines) == {"convnet5", "overfeat5", "overfeat7", "zf5"} | {
        f"efficientnet_lite{i}" for i in range(3)
    }
    assert "13x13" in lines["zf5"] and "10x14" in lines["zf5"] and "too small" in lines["zf5"]
    assert "18x18" in lines["overfeat7"]
    # the pretrained trunk: stride 16, 112 channels, any input size (ceil(side / 16))
    assert lines["efficientnet_lite0"].split()[1:4] == ["16", "0.5", "112"]
    assert "14x14" in lines["efficientnet_lite0"] and "12x15" in lines["efficientnet_lite0"]
    # the table builds its models on the meta device: the counts are the real models' own
    from sppnet.models import create_model

    for name, width in (("zf5", 0.25), ("efficientnet_lite0", 1.0)):
        model = create_model(name, width=width)
        assert float(lines[name].split()[5]) == round(
            sum(p.numel() for p in model.parameters()) / 1e6, 1
        )


@pytest.mark.parametrize("bad", ["0", "axb", "3x4x5", "-5"])
def test_bad_size_is_an_argument_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["models", "--input", bad])
    assert exit_info.value.code == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_help_and_option_errors_do_not_import_torch():
    # `sppnet --help` and a mistyped option answer at once: torch (1-2 s to import) is
    # loaded only by the commands that run
    code = (
        "import sys\n"
        "from sppnet.cli import main\n"
        "for argv in (['--help'], ['train', '--bogus']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_console_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "sppnet", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("sppnet ")


def test_predict_names_imagenet_classes(capsys):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    china = Path(sklearn_datasets.__file__).parent / "images" / "china.jpg"
    assert main(["predict", str(china), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "china.jpg (640x427):" in out
    assert {"bell cote", "palace", "monastery", "stupa"} & {
        line.split(".", 1)[1].rsplit("%", 1)[0].rsplit(None, 1)[0].strip()
        for line in out.splitlines()[1:]
    }


def test_predict_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such image file") and err.count("\n") == 1
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["predict", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.jpg" in err and err.count("\n") == 1
    assert main(["predict", str(bad), "--top", "0"]) == 2


def test_lite_model_names_in_cli_match_registry():
    from sppnet.cli import _LITE_MODELS
    from sppnet.models import pretrained_models

    assert list(_LITE_MODELS) == pretrained_models()
