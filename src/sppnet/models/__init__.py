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

__all__ = [
    "CONVNET5",
    "OVERFEAT5",
    "OVERFEAT7",
    "ZF5",
    "ArchSpec",
    "ConvSpec",
    "LocalResponseNorm",
    "LrnSpec",
    "PoolSpec",
    "SPPNet",
    "create_model",
    "list_models",
    "local_response_norm",
    "register_model",
]
