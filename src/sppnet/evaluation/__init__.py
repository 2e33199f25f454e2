"""Metrics: arrays in, numbers out (and the text of VOC result files). No file I/O; never
imports models or engine (files and plots are :mod:`sppnet.engine`'s).

Three names that write or read files moved to the engine; importing them from here (or from
``sppnet.evaluation.voc_detection``) still works, with a DeprecationWarning, through
:func:`moved_name` (a lazy look-up by module name, not an import of the engine).
"""

import importlib
import warnings

from sppnet.evaluation.classification import topk_error, topk_errors
from sppnet.evaluation.coco_detection import coco_detection_metrics, coco_results
from sppnet.evaluation.voc_ap import voc_ap
from sppnet.evaluation.voc_classification import (
    mean_class_accuracy,
    voc_classification_ap,
    voc_image_labels,
)
from sppnet.evaluation.voc_detection import (
    format_voc_results,
    parse_voc_results,
    per_class_ap_rows,
    per_class_ap_table,
    voc_detection_map,
)

# name -> the module that holds it now (they write or read files, which evaluation does not)
_MOVED = {
    "write_voc_results": "sppnet.detect.voc_results",
    "read_voc_results": "sppnet.detect.voc_results",
    "plot_precision_recall": "sppnet.visualize",
}


def moved_name(name: str, where: str) -> object:
    """The object a name that left ``where`` for the engine now refers to.

    Args:
        name: the attribute asked for.
        where: the module it was asked of (named in the error and the warning).

    Returns:
        The engine's object, after a DeprecationWarning naming its new home.

    Raises:
        AttributeError: ``name`` never lived here.
    """
    if name not in _MOVED:
        raise AttributeError(f"module {where!r} has no attribute {name!r}")
    home = _MOVED[name]
    warnings.warn(
        f"{where}.{name} moved to {home}.{name} (evaluation does no file I/O); "
        "import it from there",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(home), name)


def __getattr__(name: str) -> object:
    return moved_name(name, __name__)


__all__ = [
    "coco_detection_metrics",
    "coco_results",
    "format_voc_results",
    "mean_class_accuracy",
    "parse_voc_results",
    "per_class_ap_rows",
    "per_class_ap_table",
    "topk_error",
    "topk_errors",
    "voc_ap",
    "voc_classification_ap",
    "voc_detection_map",
    "voc_image_labels",
]
