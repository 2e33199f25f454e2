"""The package's top-level names: imported on first use, the same objects as their modules'."""

import subprocess
import sys

import pytest

import sppnet


def test_reexports_are_the_modules_objects():
    import importlib

    for name in sppnet.__all__:
        if name == "__version__":
            continue
        module = importlib.import_module(sppnet._EXPORTS[name])
        assert module.__name__.startswith(("sppnet.models", "sppnet.ops", "sppnet.api"))
        assert getattr(sppnet, name) is getattr(module, name)
        assert name in dir(sppnet)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'spp_pool'"):
        sppnet.spp_pool  # noqa: B018
    assert not hasattr(sppnet, "not_a_name")


def test_import_alone_does_not_import_torch():
    code = "import sys, sppnet; print(sppnet.__version__, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [sppnet.__version__, "False"]
    code = "import sppnet; from sppnet import window_pyramid_pool; print(window_pyramid_pool)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "window_pyramid_pool" in done.stdout


def test_all_lists_every_reexport():
    assert set(sppnet.__all__) == set(sppnet._EXPORTS) | {"__version__"}


def test_subpackages_are_reachable_after_a_bare_import():
    code = "import sppnet; print(sppnet.ops.nms.__module__, sppnet.models.SPPNet.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["sppnet.ops.boxes", "SPPNet"]
