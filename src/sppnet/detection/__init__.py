"""SPP-net detection (Sec. 4): proposals, scale choice, shared conv maps and window
pyramids, training targets, SVMs, box regression, the detector and the R-CNN baseline.

The training loops live in :mod:`sppnet.detect.train`.
"""

from sppnet.detection.box_regression import apply_box_regression, fit_ridge
from sppnet.detection.detector import Detector, combine_scored_windows, postprocess_detections
from sppnet.detection.linear_svm import TARGET_FEATURE_NORM, feature_norm_scale, fit_linear_svm
from sppnet.detection.proposals import (
    ProposalCache,
    edge_boxes,
    load_proposals,
    load_rcnn_mat,
    selective_search,
)
from sppnet.detection.rcnn import rcnn_pooled_features, rcnn_window_features, warp_windows
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
    assign_window_cells,
    compute_conv_maps,
    pool_windows,
    window_levels,
)

__all__ = [
    "DETECTION_SCALES_1",
    "DETECTION_SCALES_5",
    "TARGET_FEATURE_NORM",
    "ConvMaps",
    "Detector",
    "ProposalCache",
    "apply_box_regression",
    "assign_window_cells",
    "choose_window_scales",
    "combine_scored_windows",
    "compute_conv_maps",
    "edge_boxes",
    "feature_norm_scale",
    "fit_linear_svm",
    "fit_ridge",
    "hard_negative_round",
    "image_scale_factors",
    "label_windows",
    "load_proposals",
    "load_rcnn_mat",
    "pool_windows",
    "postprocess_detections",
    "rcnn_pooled_features",
    "rcnn_window_features",
    "regression_targets",
    "sample_finetune_batch",
    "select_hard_negatives",
    "select_regression_windows",
    "selective_search",
    "svm_negatives",
    "svm_positives",
    "warp_windows",
    "window_levels",
]
