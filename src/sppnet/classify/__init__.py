"""Classification runs: training (single/multi/random/variable size, DDP) with the paper's
or the fine-tuning recipe, evaluation with the paper's test views, prediction on image files,
the built-in data a run can use, and :func:`load_classifier` (a trained classifier back from
its run's checkpoint).

The re-exports are imported on first use (PEP 562), so ``sppnet.classify.recipes`` (which
``sppnet train --help`` reads) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sppnet.classify.builtin_data import prepare_builtin_data, shared_builtin_data
    from sppnet.classify.evaluate import (
        EVAL_VIEWS,
        MULTIVIEW_SCALES,
        evaluate_classifier,
        feature_map_view_logits,
    )
    from sppnet.classify.predict import Prediction, predict_images
    from sppnet.classify.recipes import PAPER_RECIPE, PRETRAINED_RECIPE, TrainRecipe
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

# re-exported name -> the module that defines it
_EXPORTS = {
    "prepare_builtin_data": "sppnet.classify.builtin_data",
    "shared_builtin_data": "sppnet.classify.builtin_data",
    "EVAL_VIEWS": "sppnet.classify.evaluate",
    "MULTIVIEW_SCALES": "sppnet.classify.evaluate",
    "evaluate_classifier": "sppnet.classify.evaluate",
    "feature_map_view_logits": "sppnet.classify.evaluate",
    "Prediction": "sppnet.classify.predict",
    "predict_images": "sppnet.classify.predict",
    "PAPER_RECIPE": "sppnet.classify.recipes",
    "PRETRAINED_RECIPE": "sppnet.classify.recipes",
    "TrainRecipe": "sppnet.classify.recipes",
    "MODEL_DEFAULT": "sppnet.classify.train",
    "SIZE_MODES": "sppnet.classify.train",
    "ClassifierTrainConfig": "sppnet.classify.train",
    "NonFiniteLossError": "sppnet.classify.train",
    "TrainResult": "sppnet.classify.train",
    "load_train_config": "sppnet.classify.train",
    "train_classifier": "sppnet.classify.train",
    "load_classifier": "sppnet.engine.checkpoint",
}

__all__ = [
    "EVAL_VIEWS",
    "MODEL_DEFAULT",
    "MULTIVIEW_SCALES",
    "PAPER_RECIPE",
    "PRETRAINED_RECIPE",
    "SIZE_MODES",
    "ClassifierTrainConfig",
    "NonFiniteLossError",
    "Prediction",
    "TrainRecipe",
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


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sppnet.classify' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value
