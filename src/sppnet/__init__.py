"""sppnet: spatial pyramid pooling networks (He et al., TPAMI 2015) in PyTorch.

The most used names are re-exported here; the full API lives in ``sppnet.ops`` (pooling,
window mapping, boxes) and ``sppnet.models`` (the paper's networks and the registry).
"""

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

__all__ = [
    "SPPNet",
    "SpatialPyramidPool",
    "__version__",
    "batched_nms",
    "box_iou",
    "create_model",
    "list_models",
    "map_windows_to_features",
    "nms",
    "spatial_pyramid_pool",
    "window_pyramid_pool",
]
