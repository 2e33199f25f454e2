"""Metrics: arrays in, numbers out. Never imports models or engine."""

from sppnet.evaluation.classification import topk_error, topk_errors
from sppnet.evaluation.voc_ap import voc_ap
from sppnet.evaluation.voc_classification import (
    mean_class_accuracy,
    voc_classification_ap,
    voc_image_labels,
)

__all__ = [
    "mean_class_accuracy",
    "topk_error",
    "topk_errors",
    "voc_ap",
    "voc_classification_ap",
    "voc_image_labels",
]
