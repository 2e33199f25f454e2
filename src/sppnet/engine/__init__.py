"""The loops: classifier training (single/multi/random/variable size, DDP), checkpoints,
evaluation with the paper's test views, feature extraction and linear SVMs (transfer).
Only the engine and the CLI touch files and show progress."""

from sppnet.engine.checkpoint import (
    CHECKPOINT_SUBDIR,
    find_checkpoint,
    load_checkpoint,
    load_classifier,
    save_checkpoint,
)
from sppnet.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    init_distributed,
    process_group,
    shard_indices,
)
from sppnet.engine.evaluate_classifier import (
    EVAL_VIEWS,
    MULTIVIEW_SCALES,
    evaluate_classifier,
    feature_map_view_logits,
)
from sppnet.engine.extract_features import (
    FEATURE_LAYERS,
    FEATURE_VIEWS,
    MAP_LAYERS,
    estimate_feature_bytes,
    extract_features,
    feature_dim,
    feature_layers,
    image_representation,
    representation_input,
)
from sppnet.engine.feature_store import load_feature_dir
from sppnet.engine.onnx_detector import OnnxDetector, load_onnx_detector
from sppnet.engine.onnx_export import export_classifier, export_detector
from sppnet.engine.predict import Prediction, predict_images
from sppnet.engine.svm import (
    C_GRID,
    LinearSVMs,
    caltech_protocol,
    train_linear_svms,
    voc_classification_protocol,
)
from sppnet.engine.train_classifier import (
    MODEL_DEFAULT,
    SIZE_MODES,
    ClassifierTrainConfig,
    NonFiniteLossError,
    TrainResult,
    load_train_config,
    prepare_builtin_data,
    train_classifier,
)
from sppnet.engine.voc_results import read_voc_results, write_voc_results

__all__ = [
    "CHECKPOINT_SUBDIR",
    "C_GRID",
    "EVAL_VIEWS",
    "FEATURE_LAYERS",
    "FEATURE_VIEWS",
    "MAP_LAYERS",
    "MODEL_DEFAULT",
    "MULTIVIEW_SCALES",
    "SIZE_MODES",
    "ClassifierTrainConfig",
    "DistInfo",
    "LinearSVMs",
    "NonFiniteLossError",
    "OnnxDetector",
    "Prediction",
    "TrainResult",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "caltech_protocol",
    "cleanup_distributed",
    "estimate_feature_bytes",
    "evaluate_classifier",
    "export_classifier",
    "export_detector",
    "extract_features",
    "feature_dim",
    "feature_layers",
    "feature_map_view_logits",
    "find_checkpoint",
    "image_representation",
    "init_distributed",
    "load_checkpoint",
    "load_classifier",
    "load_feature_dir",
    "load_onnx_detector",
    "load_train_config",
    "predict_images",
    "prepare_builtin_data",
    "process_group",
    "read_voc_results",
    "representation_input",
    "save_checkpoint",
    "shard_indices",
    "train_classifier",
    "train_linear_svms",
    "voc_classification_protocol",
    "write_voc_results",
]
