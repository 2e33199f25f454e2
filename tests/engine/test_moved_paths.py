"""The old ``sppnet.engine`` paths the README documented still work, with a warning naming
the new home; ``sppnet.engine`` itself exports only the loop machinery."""

import importlib
import subprocess
import sys

import pytest

import sppnet.engine


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("write_voc_results", "sppnet.detect.voc_results"),
        ("read_voc_results", "sppnet.detect.voc_results"),
        ("OnnxDetector", "sppnet.export.onnx_detector"),
    ],
)
def test_moved_engine_name_still_imports(name: str, home: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"sppnet\.engine\.{name} moved to {home}"):
        found = getattr(sppnet.engine, name)
    assert found is getattr(importlib.import_module(home), name)


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("sppnet.engine.visualize", "sppnet.visualize", "plot_precision_recall"),
        ("sppnet.engine.detector_io", "sppnet.detect.io", "load_detector"),
        ("sppnet.engine.detect_images", "sppnet.detect.images", "detect_images"),
    ],
)
def test_moved_engine_module_still_imports(old: str, new: str, name: str) -> None:
    module = importlib.import_module(old)  # ``import sppnet.engine.visualize``
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        found = getattr(module, name)
    assert found is getattr(importlib.import_module(new), name)
    # the attribute path after a bare ``import sppnet.engine``
    assert getattr(sppnet.engine, old.rpartition(".")[2]) is module
    assert name in dir(module)


def test_from_import_of_a_moved_module_warns_in_a_fresh_process() -> None:
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "try:\n"
        "    from sppnet.engine.detector_io import load_detector\n"
        "except DeprecationWarning as w:\n"
        "    print(w)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sppnet.engine.detector_io.load_detector moved to sppnet.detect.io" in done.stdout


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        sppnet.engine.no_such_name  # noqa: B018
    module = importlib.import_module("sppnet.engine.visualize")
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sppnet.engine.train_classifier")  # never documented


def test_engine_exports_only_the_loop_machinery() -> None:
    homes = {
        getattr(sppnet.engine, name).__module__
        for name in sppnet.engine.__all__
        if hasattr(getattr(sppnet.engine, name), "__module__")
    }
    assert homes <= {"sppnet.engine.checkpoint", "sppnet.engine.distributed", "sppnet._clock"}
