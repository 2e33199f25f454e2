"""Classification runs: training (single/multi/random/variable size, DDP), evaluation with
the paper's test views, prediction on image files, the built-in data a run can use, and
:func:`load_classifier` (a trained classifier back from its run's checkpoint)."""

from sppnet.classify.builtin_data import prepare_builtin_data, shared_builtin_data
from sppnet.classify.evaluate import (
    EVAL_VIEWS,
    MULTIVIEW_SCALES,
    evaluate_classifier,
    feature_map_view_logits,
)
from sppnet.classify.predict import Prediction, predict_images
from sppnet.classify.train import (
    MODEL_DEFAULT,
    SIZE_MODES,
    ClassifierTrainConfig,
    NonFiniteLossError,
    TrainResult,
    load_train_config,
    train_classifier,
)
from sppnet.engine.checkpoint import load_classifier

__all__ = [
    "EVAL_VIEWS",
    "MODEL_DEFAULT",
    "MULTIVIEW_SCALES",
    "SIZE_MODES",
    "ClassifierTrainConfig",
    "NonFiniteLossError",
    "Prediction",
    "TrainResult",
    "evaluate_classifier",
    "feature_map_view_logits",
    "load_classifier",
    "load_train_config",
    "predict_images",
    "prepare_builtin_data",
    "shared_builtin_data",
    "train_classifier",
]
