"""Detection pieces (Sec. 4): scale choice per window, training targets and sampling.

The full detector (proposals, shared conv maps, window pooling, fine-tuning, SVMs, box
regression, inference) builds on these; see the README's feature table for what exists.
"""

from sppnet.detection.scales import (
    DETECTION_SCALES_1,
    DETECTION_SCALES_5,
    choose_window_scales,
    image_scale_factors,
)
from sppnet.detection.targets import (
    hard_negative_round,
    label_windows,
    regression_targets,
    sample_finetune_batch,
    select_hard_negatives,
    select_regression_windows,
    svm_negatives,
    svm_positives,
)

__all__ = [
    "DETECTION_SCALES_1",
    "DETECTION_SCALES_5",
    "choose_window_scales",
    "hard_negative_round",
    "image_scale_factors",
    "label_windows",
    "regression_targets",
    "sample_finetune_batch",
    "select_hard_negatives",
    "select_regression_windows",
    "svm_negatives",
    "svm_positives",
]
