"""Metrics: arrays in, numbers out (plus VOC result files and plots). Never imports
models or engine."""

from sppnet.evaluation.classification import topk_error, topk_errors
from sppnet.evaluation.coco_detection import coco_detection_metrics, coco_results
from sppnet.evaluation.voc_ap import voc_ap
from sppnet.evaluation.voc_classification import (
    mean_class_accuracy,
    voc_classification_ap,
    voc_image_labels,
)
from sppnet.evaluation.voc_detection import (
    per_class_ap_table,
    plot_precision_recall,
    read_voc_results,
    voc_detection_map,
    write_voc_results,
)

__all__ = [
    "coco_detection_metrics",
    "coco_results",
    "mean_class_accuracy",
    "per_class_ap_table",
    "plot_precision_recall",
    "read_voc_results",
    "topk_error",
    "topk_errors",
    "voc_ap",
    "voc_classification_ap",
    "voc_detection_map",
    "voc_image_labels",
    "write_voc_results",
]
