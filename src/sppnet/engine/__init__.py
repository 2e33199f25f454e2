"""Shared loop machinery of the training and evaluation runs: checkpoints, distributed
(DDP) helpers, a clock for stage timings that waits for the device, resumable stages, the
SGD step, JSON files and safe loading of what a run wrote. The runs themselves live in
:mod:`sppnet.classify`, :mod:`sppnet.detect` and :mod:`sppnet.transfer`.

The paths the README once documented here (``sppnet.engine.write_voc_results``,
``sppnet.engine.OnnxDetector``, ``sppnet.engine.visualize``, ``sppnet.engine.detector_io``,
``sppnet.engine.detect_images``) still work, with a DeprecationWarning naming the new home.
"""

import importlib

from sppnet._clock import device_clock
from sppnet._moved import forward_modules, moved_name
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
    "device_clock",
    "find_checkpoint",
    "init_distributed",
    "load_checkpoint",
    "load_classifier",
    "process_group",
    "save_checkpoint",
    "shard_indices",
]

# Old paths the README documented: they still work, with a DeprecationWarning naming the
# new home (looked up by name on use, so the engine imports no task package).
_MOVED = {
    "OnnxDetector": "sppnet.export.onnx_detector",
    "read_voc_results": "sppnet.detect.voc_results",
    "write_voc_results": "sppnet.detect.voc_results",
}
_MOVED_MODULES = {
    "detect_images": "sppnet.detect.images",
    "detector_io": "sppnet.detect.io",
    "visualize": "sppnet.visualize",
}
forward_modules({f"{__name__}.{old}": new for old, new in _MOVED_MODULES.items()})


def __getattr__(name: str) -> object:
    if name in _MOVED_MODULES:  # ``sppnet.engine.visualize`` after ``import sppnet.engine``
        return importlib.import_module(f"{__name__}.{name}")
    return moved_name(name, __name__, _MOVED)
