"""Transfer runs: a trained network's features of whole images (the paper's Tables 6 and 7),
the on-disk feature store, and linear SVMs trained on those features."""

from sppnet.transfer.features import extract_features
from sppnet.transfer.representation import (
    FEATURE_LAYERS,
    FEATURE_VIEWS,
    MAP_LAYERS,
    estimate_feature_bytes,
    feature_dim,
    feature_layers,
    image_representation,
    representation_input,
)
from sppnet.transfer.store import load_feature_dir
from sppnet.transfer.svm import (
    C_GRID,
    LinearSVMs,
    caltech_protocol,
    train_linear_svms,
    voc_classification_protocol,
)

__all__ = [
    "C_GRID",
    "FEATURE_LAYERS",
    "FEATURE_VIEWS",
    "MAP_LAYERS",
    "LinearSVMs",
    "caltech_protocol",
    "estimate_feature_bytes",
    "extract_features",
    "feature_dim",
    "feature_layers",
    "image_representation",
    "load_feature_dir",
    "representation_input",
    "train_linear_svms",
    "voc_classification_protocol",
]
