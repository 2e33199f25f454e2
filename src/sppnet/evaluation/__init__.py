"""Metrics: arrays in, numbers out (and the text of VOC result files). No file I/O; never
imports models or engine (files and plots are :mod:`sppnet.engine`'s)."""

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
