"""Names that moved out of sppnet.evaluation (file writers, a plot) still import, with a warning."""

import importlib

import pytest

import sppnet.evaluation
import sppnet.evaluation.voc_detection


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("write_voc_results", "sppnet.detect.voc_results"),
        ("read_voc_results", "sppnet.detect.voc_results"),
        ("plot_precision_recall", "sppnet.visualize"),
    ],
)
@pytest.mark.parametrize("where", [sppnet.evaluation, sppnet.evaluation.voc_detection])
def test_moved_name_still_imports(where, name: str, home: str) -> None:
    with pytest.warns(DeprecationWarning, match=home):
        found = getattr(where, name)
    assert found is getattr(importlib.import_module(home), name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        sppnet.evaluation.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_name"):
        sppnet.evaluation.voc_detection.no_such_name  # noqa: B018
