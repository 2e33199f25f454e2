"""Shared loop machinery of the training and evaluation runs: checkpoints, distributed
(DDP) helpers, resumable stages, the SGD step and safe loading of what a run wrote. The runs
themselves live in :mod:`sppnet.classify`, :mod:`sppnet.detect` and :mod:`sppnet.transfer`."""

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

__all__ = [
    "CHECKPOINT_SUBDIR",
    "DistInfo",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "find_checkpoint",
    "init_distributed",
    "load_checkpoint",
    "load_classifier",
    "process_group",
    "save_checkpoint",
    "shard_indices",
]
