"""Trunks of the paper (ZF-5, Convnet*-5, Overfeat-5/7) with SPP heads, and the registry."""

from sppnet.models.lrn import LocalResponseNorm, local_response_norm
from sppnet.models.registry import create_model, list_models, register_model
from sppnet.models.spp_net import (
    CONVNET5,
    OVERFEAT5,
    OVERFEAT7,
    ZF5,
    ArchSpec,
    ConvSpec,
    LrnSpec,
    PoolSpec,
    SPPNet,
)
from sppnet.models.truncated_svd import LowRankLinear, compress_fc, truncated_svd_linear

__all__ = [
    "CONVNET5",
    "OVERFEAT5",
    "OVERFEAT7",
    "ZF5",
    "ArchSpec",
    "ConvSpec",
    "LocalResponseNorm",
    "LowRankLinear",
    "LrnSpec",
    "PoolSpec",
    "SPPNet",
    "compress_fc",
    "create_model",
    "list_models",
    "local_response_norm",
    "register_model",
    "truncated_svd_linear",
]
