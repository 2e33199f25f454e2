"""The pooling and fc layers of a trunk that is not built from a layer list.

EfficientNet-Lite and :func:`~sppnet.models.from_trunk` models build their trunks
themselves, then take the same head: SPP (or the no-SPP baseline's 3x3 / 2 max pool) and
fc layers initialised ~ N(0, 0.01) with zero biases (Sec. 4.2).
"""

from __future__ import annotations

from torch import nn

from sppnet.models.spp_net import PoolSpec, SPPNet
from sppnet.ops import SpatialPyramidPool

__all__ = ["attach_head"]


def attach_head(
    model: SPPNet,
    no_spp_bins: int,
    spp_mode: str,
    num_classes: int,
    fc_dim: int,
    dropout: float,
    fc_layers: int,
) -> None:
    """Give ``model`` (its trunk and ``spp_levels`` set) its pooling and fc layers.

    Args:
        model: the network being built.
        no_spp_bins: bins per side of the no-SPP pool (used when ``spp_levels`` is None).
        spp_mode: ``"max"`` or ``"avg"`` pooling in every SPP bin.
        num_classes, fc_dim, dropout, fc_layers: as :class:`~sppnet.models.SPPNet`.
    """
    if model.spp_levels is None:
        model.pool5_spec = PoolSpec(3, 2)
        model.pool = nn.MaxPool2d(3, 2)
        model._no_spp_bins = no_spp_bins
        bins = no_spp_bins**2
    else:
        model.pool = SpatialPyramidPool(model.spp_levels, spp_mode)
        bins = model.pool.num_bins
    model._build_head(bins, num_classes, fc_dim, dropout, fc_layers)
    for fc in model.fc_modules():
        if fc.weight.is_meta:  # built on the meta device: shapes only
            continue
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)
