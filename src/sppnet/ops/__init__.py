"""Pure tensor operations: spatial pyramid pooling, window mapping, boxes."""

from sppnet.ops.boxes import (
    batched_nms,
    box_area,
    box_iou,
    check_boxes,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nms,
    remove_small_boxes,
)
from sppnet.ops.pyramid_bins import bin_edges, check_levels, num_pyramid_bins
from sppnet.ops.spatial_pyramid_pool import (
    SpatialPyramidPool,
    check_extents,
    check_feature_map,
    spatial_pyramid_pool,
)
from sppnet.ops.traceable_pyramid_pool import (
    table_levels_for,
    traceable_spatial_pyramid_pool,
    traceable_window_pyramid_pool,
)
from sppnet.ops.window_mapping import map_windows_to_features
from sppnet.ops.window_pyramid_pool import window_pyramid_pool

__all__ = [
    "SpatialPyramidPool",
    "batched_nms",
    "bin_edges",
    "box_area",
    "box_iou",
    "check_boxes",
    "check_extents",
    "check_feature_map",
    "check_levels",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "map_windows_to_features",
    "nms",
    "num_pyramid_bins",
    "remove_small_boxes",
    "spatial_pyramid_pool",
    "table_levels_for",
    "traceable_spatial_pyramid_pool",
    "traceable_window_pyramid_pool",
    "window_pyramid_pool",
]
