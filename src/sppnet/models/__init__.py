"""Trunks of the paper (ZF-5, Convnet*-5, Overfeat-5/7) and ImageNet-pretrained EfficientNet-Lite,
with SPP heads, the registry, and SPP heads on any trunk (from_trunk)."""

from sppnet.models.efficientnet_lite import (
    LITE_VARIANTS,
    EfficientNetLite,
    EfficientNetLiteImageNet,
    lite_pretrained_path,
    set_bn_folding,
)
from sppnet.models.from_trunk import IMAGENET_MEAN, IMAGENET_STD, TrunkSPPNet, from_trunk
from sppnet.models.fused_conv import conv2d_activation, fused_conv_allowed
from sppnet.models.lrn import LocalResponseNorm, local_response_norm
from sppnet.models.registry import create_model, list_models, pretrained_models, register_model
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
from sppnet.models.trunk_geometry import TrunkGeometry, measure_trunk_geometry
from sppnet.models.trunk_source import (
    UntrustedModelCodeError,
    build_trunk,
    list_trunks,
    register_trunk,
)

__all__ = [
    "CONVNET5",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_VARIANTS",
    "OVERFEAT5",
    "OVERFEAT7",
    "ZF5",
    "ArchSpec",
    "ConvSpec",
    "EfficientNetLite",
    "EfficientNetLiteImageNet",
    "LocalResponseNorm",
    "LowRankLinear",
    "LrnSpec",
    "PoolSpec",
    "SPPNet",
    "TrunkGeometry",
    "TrunkSPPNet",
    "UntrustedModelCodeError",
    "build_trunk",
    "compress_fc",
    "conv2d_activation",
    "create_model",
    "from_trunk",
    "fused_conv_allowed",
    "list_models",
    "list_trunks",
    "lite_pretrained_path",
    "local_response_norm",
    "measure_trunk_geometry",
    "pretrained_models",
    "register_model",
    "register_trunk",
    "set_bn_folding",
    "truncated_svd_linear",
]
