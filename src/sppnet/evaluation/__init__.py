"""Metrics: arrays in, numbers out (and the text of VOC result files). No file I/O; never
imports models or the runs (files and plots are :mod:`sppnet.detect`'s and
:mod:`sppnet.visualize`'s).

Three names that write or read files moved out; importing them from here (or from
``sppnet.evaluation.voc_detection``) still works, with a DeprecationWarning, through
:func:`~sppnet._moved.moved_name` (a lazy look-up by module name, not an import upward).
"""

from sppnet._moved import moved_name
from sppnet.evaluation.classification import topk_error, topk_errors
from sppnet.evaluation.coco_detection import coco_detection_metrics, coco_results
from sppnet.evaluation.voc_ap import voc_ap
from sppnet.evaluation.voc_classification import (
    mean_class_accuracy,
    voc_classification_ap,
    voc_image_labels,
)
from sppnet.evaluation.voc_detection import (
    _MOVED,
    format_voc_results,
    parse_voc_results,
    per_class_ap_rows,
    per_class_ap_table,
    voc_detection_map,
)


def __getattr__(name: str) -> object:
    return moved_name(name, __name__, _MOVED)


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
