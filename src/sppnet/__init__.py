"""sppnet: spatial pyramid pooling networks (He et al., TPAMI 2015) in PyTorch."""

from sppnet.ops import SpatialPyramidPool, spatial_pyramid_pool

__version__ = "0.1.0"

__all__ = ["SpatialPyramidPool", "__version__", "spatial_pyramid_pool"]
