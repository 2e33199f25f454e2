"""sppnet: spatial pyramid pooling networks (He et al., TPAMI 2015) in PyTorch.

The most used names are re-exported here; the full API lives in ``sppnet.ops`` (pooling,
window mapping, boxes), ``sppnet.models`` (the paper's networks and the registry), and the
runs: ``sppnet.classify``, ``sppnet.detect``, ``sppnet.transfer`` and ``sppnet.export``.
``load_classifier`` and ``load_detector`` read back what a training run saved.

The re-exports are imported on first use (PEP 562): ``import sppnet`` alone does not
import torch, so that the ``sppnet`` command answers ``--help`` and rejects a bad option
without the second or two that importing torch takes.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sppnet.api import load_classifier, load_detector
    from sppnet.models import SPPNet, create_model, list_models
    from sppnet.ops import (
        SpatialPyramidPool,
        batched_nms,
        box_iou,
        map_windows_to_features,
        nms,
        spatial_pyramid_pool,
        window_pyramid_pool,
    )

__version__ = "0.1.0"

# re-exported name -> the module that defines it
_EXPORTS = {
    "SPPNet": "sppnet.models",
    "create_model": "sppnet.models",
    "list_models": "sppnet.models",
    "SpatialPyramidPool": "sppnet.ops",
    "batched_nms": "sppnet.ops",
    "box_iou": "sppnet.ops",
    "map_windows_to_features": "sppnet.ops",
    "nms": "sppnet.ops",
    "spatial_pyramid_pool": "sppnet.ops",
    "window_pyramid_pool": "sppnet.ops",
    "load_classifier": "sppnet.api",
    "load_detector": "sppnet.api",
}

__all__ = [
    "SPPNet",
    "SpatialPyramidPool",
    "__version__",
    "batched_nms",
    "box_iou",
    "create_model",
    "list_models",
    "load_classifier",
    "load_detector",
    "map_windows_to_features",
    "nms",
    "spatial_pyramid_pool",
    "window_pyramid_pool",
]


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its module, or a subpackage (``sppnet.ops`` after a
    bare ``import sppnet``), the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"sppnet.{name}") is not None:
        value = importlib.import_module(f"sppnet.{name}")
    else:
        raise AttributeError(f"module 'sppnet' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported re-exports included."""
    return sorted(set(globals()) | set(_EXPORTS))
