"""The loops: classifier training (single/multi/random/variable size, DDP), checkpoints,
and evaluation with the paper's test views. Only the engine and the CLI touch files and
show progress."""

from sppnet.engine.checkpoint import (
    CHECKPOINT_SUBDIR,
    find_checkpoint,
    load_checkpoint,
    load_classifier,
    save_checkpoint,
)
from sppnet.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    init_distributed,
    shard_indices,
)
from sppnet.engine.evaluate_classifier import (
    EVAL_VIEWS,
    MULTIVIEW_SCALES,
    evaluate_classifier,
    feature_map_view_logits,
)
from sppnet.engine.train_classifier import (
    SIZE_MODES,
    ClassifierTrainConfig,
    NonFiniteLossError,
    TrainResult,
    load_train_config,
    prepare_builtin_data,
    train_classifier,
)

__all__ = [
    "CHECKPOINT_SUBDIR",
    "EVAL_VIEWS",
    "MULTIVIEW_SCALES",
    "SIZE_MODES",
    "ClassifierTrainConfig",
    "DistInfo",
    "NonFiniteLossError",
    "TrainResult",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "evaluate_classifier",
    "feature_map_view_logits",
    "find_checkpoint",
    "init_distributed",
    "load_checkpoint",
    "load_classifier",
    "load_train_config",
    "prepare_builtin_data",
    "save_checkpoint",
    "shard_indices",
    "train_classifier",
]
