"""Detection pieces (Sec. 4): proposals, scale choice per window, training targets.

The full detector (proposals, shared conv maps, window pooling, fine-tuning, SVMs, box
regression, inference) builds on these; see the README's feature table for what exists.
"""

from sppnet.detection.proposals import (
    ProposalCache,
    edge_boxes,
    load_proposals,
    load_rcnn_mat,
    selective_search,
)
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
from sppnet.detection.window_features import (
    ConvMaps,
    compute_conv_maps,
    pool_windows,
    window_levels,
)

__all__ = [
    "DETECTION_SCALES_1",
    "DETECTION_SCALES_5",
    "ConvMaps",
    "ProposalCache",
    "choose_window_scales",
    "compute_conv_maps",
    "edge_boxes",
    "hard_negative_round",
    "image_scale_factors",
    "label_windows",
    "load_proposals",
    "load_rcnn_mat",
    "pool_windows",
    "regression_targets",
    "sample_finetune_batch",
    "select_hard_negatives",
    "select_regression_windows",
    "selective_search",
    "svm_negatives",
    "svm_positives",
    "window_levels",
]
