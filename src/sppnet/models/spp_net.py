"""SPP-net classifiers: a convolutional trunk, spatial pyramid pooling, three fc layers.

Shape shorthand: N images, 3 x H x W input pixels, C channels of the last conv map of size
h x w, L = sum(n * n) pyramid bins, D = fc_dim, K classes.

The four trunks of the paper (Sec. 3.1.1, Table 1) are written as layer lists
(:data:`ZF5`, :data:`CONVNET5`, :data:`OVERFEAT5`, :data:`OVERFEAT7`) and built by one
generic :class:`SPPNet`. Table 1 gives filters, strides, pools and map sizes for a 224x224
input, and says "the padding is adjusted to produce the expected output feature map size";
our paddings are the largest ``<= floor(p / 2)`` for a filter of size ``p`` that still give
Table 1's map sizes (the tests check the sizes), and pools are unpadded.

Geometry (Appendix A): with pixel ``i`` covering ``[i, i + 1)`` in continuous image
coordinates, the receptive field of conv-map cell ``(x', y')`` is centred at
``(feature_offset + feature_stride * x', feature_offset + feature_stride * y')``. The paper's
detection mapping assumes ``offset = 0`` (padding ``floor(p / 2)`` everywhere); ours is
computed from the actual layer list and exposed as :attr:`SPPNet.feature_offset`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch import Tensor, nn

from sppnet._validate import check_int
from sppnet.models.fused_conv import conv2d_activation, fused_conv_allowed
from sppnet.models.lrn import LocalResponseNorm
from sppnet.ops import SpatialPyramidPool, check_extents, check_levels

__all__ = [
    "CONVNET5",
    "OVERFEAT5",
    "OVERFEAT7",
    "ZF5",
    "ArchSpec",
    "ConvSpec",
    "LrnSpec",
    "PoolSpec",
    "SPPNet",
]


@dataclass(frozen=True)
class ConvSpec:
    """A convolution followed by an in-place ReLU (every conv of Table 1 has one)."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class PoolSpec:
    """An unpadded max pool (floor mode, as in Caffe/cuda-convnet for these sizes)."""

    kernel: int
    stride: int


@dataclass(frozen=True)
class LrnSpec:
    """Local response normalization; defaults are AlexNet's (size 5, 1e-4, 0.75, k=2)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


LayerSpec = ConvSpec | PoolSpec | LrnSpec


@dataclass(frozen=True)
class ArchSpec:
    """A named trunk: its layers and the no-SPP baseline's pool5 (6x6 maps at 224)."""

    name: str
    layers: tuple[LayerSpec, ...]
    pool5: PoolSpec


# ZF-5 (Table 1): 224 -> conv1 112 -> pool1 55 -> conv2 27 -> pool2 13 -> conv3..5 13.
ZF5 = ArchSpec(
    name="zf5",
    layers=(
        ConvSpec(96, 7, stride=2, padding=3),
        LrnSpec(),
        PoolSpec(3, 2),
        ConvSpec(256, 5, stride=2, padding=1),
        LrnSpec(),
        PoolSpec(3, 2),
        ConvSpec(384, 3, padding=1),
        ConvSpec(384, 3, padding=1),
        ConvSpec(256, 3, padding=1),
    ),
    pool5=PoolSpec(3, 2),
)

# Convnet*-5 (Table 1): AlexNet with its first two pools moved after conv2 and conv3.
# 224 -> conv1 55 -> conv2 55 -> pool2 27 -> conv3 27 -> pool3 13 -> conv4, conv5 13.
# The LRN after conv1 is AlexNet's: Table 1's conv1 cell for Convnet*-5 carries "LRN".
CONVNET5 = ArchSpec(
    name="convnet5",
    layers=(
        ConvSpec(96, 11, stride=4, padding=2),
        LrnSpec(),
        ConvSpec(256, 5, padding=2),
        LrnSpec(),
        PoolSpec(3, 2),
        ConvSpec(384, 3, padding=1),
        PoolSpec(3, 2),
        ConvSpec(384, 3, padding=1),
        ConvSpec(256, 3, padding=1),
    ),
    pool5=PoolSpec(3, 2),
)

# Overfeat-5 (Table 1): 224 -> conv1 110 -> pool1 36 (then LRN) -> conv2 36 -> pool2 18 ->
# conv3..5 18.
_OVERFEAT_STEM: tuple[LayerSpec, ...] = (
    ConvSpec(96, 7, stride=2, padding=1),
    PoolSpec(3, 3),
    LrnSpec(),
    ConvSpec(256, 5, padding=2),
    PoolSpec(2, 2),
    ConvSpec(512, 3, padding=1),
    ConvSpec(512, 3, padding=1),
    ConvSpec(512, 3, padding=1),
)
OVERFEAT5 = ArchSpec(name="overfeat5", layers=_OVERFEAT_STEM, pool5=PoolSpec(3, 3))

# Overfeat-7: Overfeat-5 plus conv6 and conv7, 512@3x3, still 18x18.
OVERFEAT7 = ArchSpec(
    name="overfeat7",
    layers=(*_OVERFEAT_STEM, ConvSpec(512, 3, padding=1), ConvSpec(512, 3, padding=1)),
    pool5=PoolSpec(3, 3),
)

# The no-SPP baseline's pool5 gives 6x6 maps at 224 (Sec. 3.1.2), so fc6 takes C * 36.
_NO_SPP_BINS = 6

# Where forward_pooled may stop: after fc6 or fc7 (ReLU and dropout included), or fc8 (logits).
FC_STAGES = ("fc6", "fc7", "fc8")

# fc layers before fc8: the paper's two (fc6, fc7), or none (a linear classifier).
FC_LAYERS = (0, 2)


def _out_size(size, kernel: int, stride: int, padding: int):
    """Floor-mode output size of a conv/pool; works on ints and integer tensors."""
    return (size + 2 * padding - kernel) // stride + 1


def _valid_mask(x: Tensor, extents: Tensor) -> Tensor:
    """``BoolTensor[N, 1, H, W]``: True inside each sample's top-left ``extents`` region."""
    height, width = x.shape[-2:]
    ext = extents.to(x.device)
    rows = torch.arange(height, device=x.device) < ext[:, :1]  # [N, H]
    cols = torch.arange(width, device=x.device) < ext[:, 1:]  # [N, W]
    return rows[:, None, :, None] & cols[:, None, None, :]


class SPPNet(nn.Module):
    """A Table 1 trunk + SPP (or the no-SPP pool5) + fc6, fc7 (dropout) + fc8.

    ``forward_features(x)`` -> ``forward_head(features)`` -> logits, timm-style, so feature
    extraction (Sec. 3.2: conv5, pool5, fc6, fc7) never slices ``children()``;
    ``forward_pool`` + ``forward_pooled(pooled, stop_at=...)`` run the two halves of the head
    apart (windows pooled from shared maps, Sec. 4). :meth:`config` is what a checkpoint
    records to rebuild the network, and :meth:`reset_classifier` gives it a new fc8.

    Args:
        name: architecture name, used in error messages and ``repr``.
        layers: the trunk's layer list; a ReLU follows every :class:`ConvSpec`.
        pool5: the no-SPP baseline's pool5 (used only when ``spp_levels`` is None).
        num_classes: K, outputs of fc8.
        spp_levels: pyramid levels (bins per side) replacing pool5, e.g. ``(6, 3, 2, 1)``;
            None builds the paper's "no SPP" baseline (plain pool5 to 6x6, Sec. 3.1.2).
        spp_mode: ``"max"`` (the paper) or ``"avg"``.
        dropout: drop probability after fc6 and fc7 (0.5, Sec. 3.1).
        width: multiplies every conv's channel count (rounded, at least 1) for narrow
            variants; 1.0 is the paper's network.
        fc_dim: D, width of fc6 and fc7 (4096 in the paper).

    Raises:
        TypeError / ValueError: for arguments of the wrong type or out of range.
    """

    #: The :func:`~sppnet.models.create_model` arguments :meth:`config` records (with
    #: ``"name"``); a subclass with more architecture settings extends it.
    CONFIG_KEYS: tuple[str, ...] = (
        "num_classes",
        "spp_levels",
        "width",
        "fc_dim",
        "spp_mode",
        "dropout",
        "fc_layers",
    )

    def __init__(
        self,
        *,
        name: str,
        layers: Sequence[LayerSpec],
        pool5: PoolSpec,
        num_classes: int = 1000,
        spp_levels: Sequence[int] | None = (6, 3, 2, 1),
        spp_mode: str = "max",
        dropout: float = 0.5,
        width: float = 1.0,
        fc_dim: int = 4096,
        fc_layers: int = 2,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, min=1)
        check_int("fc_dim", fc_dim, min=1)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
            raise ValueError(f"width must be a number > 0, got {width!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float in [0, 1), got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not layers or not any(isinstance(layer, ConvSpec) for layer in layers):
            raise ValueError(f"layers must hold at least one ConvSpec, got {layers!r}")

        self.name = name
        self._set_head(num_classes, width, fc_dim, spp_levels, spp_mode)
        self.layer_specs: tuple[LayerSpec, ...] = tuple(layers)
        self.pool5_spec = pool5

        self.features = self._build_trunk(self.layer_specs, self.width)
        # (kernel, stride, padding) of every spatial layer, in order: the geometry below.
        self._geometry: tuple[tuple[int, int, int], ...] = tuple(
            (s.kernel, s.stride, s.padding if isinstance(s, ConvSpec) else 0)
            for s in self.layer_specs
            if isinstance(s, (ConvSpec, PoolSpec))
        )
        self.feature_channels: int = self._channels(
            [s for s in self.layer_specs if isinstance(s, ConvSpec)][-1].out_channels
        )
        self.feature_stride, self.feature_offset, self.receptive_field = self._trunk_geometry()
        self.min_input_size: int = self._min_input_size()

        if self.spp_levels is None:
            self.pool: nn.Module = nn.MaxPool2d(pool5.kernel, pool5.stride)
            self._no_spp_bins = _NO_SPP_BINS
            bins = _NO_SPP_BINS * _NO_SPP_BINS
        else:
            self.pool = SpatialPyramidPool(self.spp_levels, spp_mode)
            bins = self.pool.num_bins
        self._build_head(bins, num_classes, fc_dim, dropout, fc_layers)

        self._init_weights()
        # channels_last weights: oneDNN convolutions then run without reordering them.
        self.features.to(memory_format=torch.channels_last)

    # ----------------------------------------------------------------------------- build
    def _channels(self, channels: int) -> int:
        return max(1, round(channels * self.width))

    def _set_head(
        self,
        num_classes: int,
        width: float,
        fc_dim: int,
        spp_levels: Sequence[int] | None,
        spp_mode: str,
    ) -> None:
        """Record the settings every SPP-net (paper trunk, Lite, any trunk) keeps alike."""
        self.num_classes = num_classes
        self.width = float(width)
        self.fc_dim = fc_dim
        self.spp_levels = None if spp_levels is None else check_levels(spp_levels)
        self.spp_mode = spp_mode  # as given; the no-SPP pool5 is a max pool whatever it says

    def _build_trunk(self, layers: Sequence[LayerSpec], width: float) -> nn.Sequential:
        """conv{i} relu{i} [lrn{i}] [pool{i}], numbered after the latest conv (Table 1)."""
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels, index = 3, 0
        for spec in layers:
            if isinstance(spec, ConvSpec):
                index += 1
                out_channels = self._channels(spec.out_channels)
                modules[f"conv{index}"] = nn.Conv2d(
                    in_channels, out_channels, spec.kernel, spec.stride, spec.padding
                )
                modules[f"relu{index}"] = nn.ReLU(inplace=True)
                in_channels = out_channels
            elif isinstance(spec, PoolSpec):
                if index == 0:
                    raise ValueError("layers must start with a ConvSpec")
                modules[f"pool{index}"] = nn.MaxPool2d(spec.kernel, spec.stride)
            elif isinstance(spec, LrnSpec):
                if index == 0:
                    raise ValueError("layers must start with a ConvSpec")
                # In place: its input is a ReLU output nothing else reads (ignored under
                # autograd, where the backward pass needs it).
                modules[f"lrn{index}"] = LocalResponseNorm(
                    spec.size, spec.alpha, spec.beta, spec.k, inplace=True
                )
            else:
                raise TypeError(f"unknown layer spec {spec!r}")
        return nn.Sequential(modules)

    def _build_head(
        self, bins: int, num_classes: int, fc_dim: int, dropout: float, fc_layers: int = 2
    ) -> None:
        """fc6 (C * bins -> D), fc7 (D -> D), both ReLU + dropout, fc8 (D -> K).

        ``fc_layers=0`` (beyond the paper): no fc6 / fc7, only dropout and fc8 on the pooled
        vector (a linear classifier, the head that fine-tuning an ImageNet trunk on small
        data favours); ``fc6``, ``fc7`` and their ReLUs are then identities, so every path
        through the head (``forward_pooled(stop_at=...)``) stays the same code.
        """
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float in [0, 1), got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if fc_layers not in FC_LAYERS or isinstance(fc_layers, bool):
            raise ValueError(
                f"fc_layers must be 2 (fc6 and fc7, the paper) or 0 (a linear classifier on "
                f"the pooled vector), got {fc_layers!r}"
            )
        self.dropout = float(dropout)
        self.fc_layers = fc_layers
        pooled = self.feature_channels * bins
        if fc_layers == 0:
            self.fc6: nn.Module = nn.Identity()
            self.relu6: nn.Module = nn.Identity()
            self.drop6 = nn.Dropout(dropout)
            self.fc7: nn.Module = nn.Identity()
            self.relu7: nn.Module = nn.Identity()
            self.drop7: nn.Module = nn.Identity()
            self.fc8 = nn.Linear(pooled, num_classes)
            return
        self.fc6 = nn.Linear(pooled, fc_dim)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(fc_dim, num_classes)

    def fc_modules(self) -> tuple[nn.Linear, ...]:
        """The head's linear layers: ``(fc6, fc7, fc8)``, or ``(fc8,)`` with ``fc_layers=0``."""
        return (self.fc6, self.fc7, self.fc8) if self.fc_layers else (self.fc8,)

    def _init_weights(self) -> None:
        # Convs: He et al.'s own "Delving deep into rectifiers" (2015) init, which keeps the
        # ReLU activations' scale through the trunk whatever its depth or width, so the
        # narrow and 7-conv variants train from scratch without per-model tuning (the
        # paper's cuda-convnet runs used hand-set Gaussians). fc layers: N(0, 0.01) as in
        # the paper's fine-tuning (Sec. 4.2). Biases 0. A model built on the meta device
        # (shapes only, e.g. for `sppnet models`) has no values to draw.
        for module in self.modules():
            if getattr(getattr(module, "weight", None), "is_meta", False):
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def _trunk_geometry(self) -> tuple[int, float, int]:
        """(stride, offset, receptive field) of a conv-map cell, from the layer list.

        Going from a layer's output index ``j`` back to its input, the window centre is at
        input index ``stride * j - padding + (kernel - 1) / 2``; composing those affine maps
        from the image (pixel ``i`` centred at ``i + 0.5``) gives ``offset + S * j``.
        """
        stride, offset, field = 1, 0.5, 1
        for kernel, s, padding in self._geometry:
            offset += stride * ((kernel - 1) / 2 - padding)
            field += (kernel - 1) * stride
            stride *= s
        return stride, offset, field

    def _min_input_size(self) -> int:
        """Smallest side giving a conv map of at least 1x1 (layer arithmetic, backwards)."""
        size = 1
        for kernel, stride, padding in reversed(self._geometry):
            # out >= size  <=>  in + 2p - k >= (size - 1) * stride
            size = max(1, (size - 1) * stride + kernel - 2 * padding)
        return size

    # ---------------------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """What :func:`~sppnet.models.create_model` needs to rebuild this network.

        ``create_model(**model.config())`` (``"name"`` is the first argument) builds the
        same architecture with fresh weights, so a checkpoint stores this dict and the
        ``state_dict()``. JSON-ready: ``spp_levels`` is a list (or None).

        Returns:
            ``{"name": ..., **{key: value for key in CONFIG_KEYS}}``.
        """
        out: dict[str, Any] = {"name": self.name}
        for key in self.CONFIG_KEYS:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def reset_classifier(
        self, num_classes: int, *, generator: torch.Generator | None = None
    ) -> None:
        """Replace fc8 by a new ``num_classes``-way layer ~ N(0, 0.01), bias 0 (Sec. 4.2).

        timm's ``reset_classifier``: the detector's ``K + 1``-way fine-tuning starts from a
        classifier this way. The new layer takes the old one's device and dtype.

        Args:
            num_classes: K, outputs of the new fc8.
            generator: draws the weights (the global RNG when None).

        Raises:
            TypeError / ValueError: ``num_classes`` is not an int >= 1.
        """
        check_int("num_classes", num_classes, min=1)
        old = self.fc8.weight
        fc8 = nn.Linear(self.fc8.in_features, num_classes)
        with torch.no_grad():
            fc8.weight.copy_(torch.randn(fc8.weight.shape, generator=generator) * 0.01)
            fc8.bias.zero_()
        self.fc8 = fc8.to(device=old.device, dtype=old.dtype)
        self.num_classes = num_classes

    @property
    def pool_mode(self) -> str:
        """How the pyramid pools: ``spp_mode`` with SPP; ``"max"`` for the no-SPP pool5."""
        return str(getattr(self.pool, "mode", "max"))

    @property
    def pooled_dim(self) -> int:
        """Length of the pooled vector fc6 takes: ``C * L`` (``L = 36`` for no-SPP pool5)."""
        return int(self.fc_modules()[0].in_features)

    # -------------------------------------------------------------------------- geometry
    @overload
    def feature_size(self, height: int, width: int) -> tuple[int, int]: ...

    @overload
    def feature_size(self, height: Tensor, width: None = None) -> Tensor: ...

    def feature_size(self, height, width=None):
        """Size of the last conv map for an input size, by the layers' arithmetic.

        Args:
            height: input height in pixels, or ``LongTensor[N, 2]`` of ``(height, width)``
                per image (with ``width`` omitted), e.g. a padded batch's extents.
            width: input width in pixels (only with an int ``height``).

        Returns:
            ``(h, w)`` of the conv map, or ``LongTensor[N, 2]`` of them.

        Raises:
            TypeError: for non-integer sizes.
            ValueError: if a size is below :attr:`min_input_size`.
        """
        if isinstance(height, Tensor):
            if width is not None:
                raise TypeError("pass either (height, width) ints or one LongTensor[N, 2]")
            return self.feature_extents(height)
        height = check_int("height", height, min=0)
        width = check_int("width", width, min=0)
        self._check_min_size(height, width)
        return self._map_side(height), self._map_side(width)

    def _map_side(self, size):
        """Map side for an input side (an int or an integer tensor), by the layers' arithmetic."""
        for kernel, stride, padding in self._geometry:
            size = _out_size(size, kernel, stride, padding)
        return size

    def feature_extents(self, extents: Tensor) -> Tensor:
        """Map image extents to conv-map extents (for padded batches).

        Args:
            extents: ``LongTensor[N, 2]`` of valid ``(height, width)`` in pixels.

        Returns:
            ``LongTensor[N, 2]`` of valid ``(h, w)`` in conv-map cells.

        Raises:
            TypeError: ``extents`` is not an integer tensor.
            ValueError: wrong shape, or an extent below :attr:`min_input_size`.
        """
        if not isinstance(extents, Tensor) or extents.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"extents must be an integer LongTensor[N, 2], got {extents!r}")
        if extents.dim() != 2 or extents.shape[1] != 2:
            raise ValueError(
                f"extents must be LongTensor[N, 2] of (height, width), got shape "
                f"{tuple(extents.shape)}"
            )
        out = extents.long()
        if out.numel() and int(out.min()) < self.min_input_size:
            raise ValueError(
                f"{self.name} needs inputs of at least {self.min_input_size}x"
                f"{self.min_input_size} pixels, got extents {out.tolist()}"
            )
        return self._map_side(out)

    def _check_min_size(self, height: int, width: int) -> None:
        if min(height, width) < self.min_input_size:
            raise ValueError(
                f"{self.name} needs inputs of at least {self.min_input_size}x"
                f"{self.min_input_size} pixels, got {height}x{width}"
            )

    # --------------------------------------------------------------------------- forward
    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x must be Tensor[N, 3, H, W] (4 dims), got shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"x must have 3 (RGB) channels, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        self._check_min_size(x.shape[2], x.shape[3])

    def _check_extents(self, x: Tensor, extents: Tensor) -> Tensor:
        n_img, _, height, width = x.shape
        note = f" pixels ({self.name}'s minimum input is {self.min_input_size})"
        return check_extents(extents, n_img, height, width, self.min_input_size, note)

    def forward_features(self, x: Tensor, extents: Tensor | None = None) -> Tensor:
        """Run the trunk: images -> last conv map (after its ReLU).

        Args:
            x: ``Tensor[N, 3, H, W]``, floating point, ``H, W >= min_input_size``.
            extents: optional ``LongTensor[N, 2]`` of each image's valid ``(height, width)``
                in pixels, anchored top-left (a padded batch, beyond the paper). The region
                outside each image is zeroed before every padded conv, so the valid cells
                equal those of the image run alone (the zeros its own padding would see).

        Returns:
            ``Tensor[N, C, h, w]`` (channels_last memory), ``(h, w) = feature_size(H, W)``.

        Raises:
            TypeError: ``x`` is not a floating tensor, or ``extents`` not an integer tensor.
            ValueError: wrong shape or channels, an input smaller than ``min_input_size``,
                or extents outside ``min_input_size..H`` x ``min_input_size..W``.
        """
        self._check_input(x)
        # channels_last: oneDNN convs and CPU max pooling are several times faster in it.
        x = x.contiguous(memory_format=torch.channels_last)
        if extents is None:
            return self._run_trunk(x)
        ext = self._check_extents(x, extents)
        if bool((ext[:, 0] == x.shape[2]).all()) and bool((ext[:, 1] == x.shape[3]).all()):
            return self._run_trunk(x)
        for layer in self.features:
            if isinstance(layer, nn.Conv2d) and layer.padding[0] > 0:
                x = x.masked_fill(~_valid_mask(x, ext), 0.0)
            x = layer(x)
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                kernel, stride, padding = (
                    (layer.kernel_size[0], layer.stride[0], layer.padding[0])
                    if isinstance(layer, nn.Conv2d)
                    else (layer.kernel_size, layer.stride, layer.padding)
                )
                ext = _out_size(ext, kernel, stride, padding)
        return x

    def _run_trunk(self, x: Tensor) -> Tensor:
        """``self.features(x)``; at inference each conv + ReLU pair is one oneDNN call.

        The ReLU becomes the conv's post-op (:func:`~sppnet.models.fused_conv.conv2d_activation`):
        the same values bit for bit, one pass less over every conv map.
        """
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in self.features.modules())
        if hooked or not fused_conv_allowed(x):  # hooks must see every layer run
            return self.features(x)
        layers = list(self.features.children())
        i = 0
        while i < len(layers):
            layer = layers[i]
            if (
                type(layer) is nn.Conv2d
                and i + 1 < len(layers)
                and type(layers[i + 1]) is nn.ReLU
                and layer.padding_mode == "zeros"
            ):
                x = conv2d_activation(x, layer, "relu")
                i += 2
            else:
                x = layer(x)
                i += 1
        return x

    @property
    def conv_layer_names(self) -> tuple[str, ...]:
        """Names of the conv layers in order: ``conv1`` .. ``conv5`` (``conv7`` for Overfeat-7)."""
        return tuple(name for name, m in self.features.named_children() if isinstance(m, nn.Conv2d))

    def forward_intermediates(
        self, x: Tensor, layers: Sequence[str] = ("conv5",)
    ) -> dict[str, Tensor]:
        """Run the trunk up to the deepest requested layer and return those layers' maps.

        ``convN`` is the output of that conv after its ReLU (the maps Sec. 3.2 takes features
        from: conv4, conv5, ...); ``poolN`` / ``lrnN`` are also accepted. Stops after the
        deepest requested layer, so ``("conv4",)`` skips conv5.

        Args:
            x: ``Tensor[N, 3, H, W]``, floating point, ``H, W >= min_input_size``.
            layers: names from ``conv_layer_names`` (or ``poolN``/``lrnN`` of the trunk).

        Returns:
            ``{name: Tensor[N, C_name, h_name, w_name]}`` for each requested name.

        Raises:
            ValueError: an unknown layer name (the message lists the valid ones), or the
                input checks of :meth:`forward_features`.
        """
        self._check_input(x)
        wanted = set(layers)
        names = [name for name, _ in self.features.named_children()]
        valid = set(names) | {n.replace("relu", "conv") for n in names if n.startswith("relu")}
        unknown = wanted - valid
        if not wanted or unknown:
            raise ValueError(
                f"layers must name layers of {self.name}'s trunk, one of {sorted(valid)}; "
                f"got {sorted(unknown) or list(layers)}"
            )
        x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        for name, layer in self.features.named_children():
            x = layer(x)
            # a conv's map is taken after its ReLU; the in-place ReLU would otherwise
            # overwrite the conv's output that we return
            key = name.replace("relu", "conv") if name.startswith("relu") else name
            if key in wanted and not name.startswith("conv"):
                if len(out) + 1 == len(wanted):
                    out[key] = x
                    break
                # later in-place layers (ReLU, LRN) would overwrite a map we keep
                out[key] = x.clone()
        return out

    def _reject_extents(self) -> None:
        raise ValueError(
            f"the no-SPP {self.name} (spp_levels=None) needs one fixed input size and "
            "cannot pool padded batches; pass extents=None or build it with spp_levels"
        )

    def _pool5(self, features: Tensor, extents: Tensor | None, image_size: str = "") -> Tensor:
        """SPP (``Tensor[N, C * L]``) or the no-SPP pool5 (``Tensor[N, C * 36]``)."""
        if self.spp_levels is not None:
            return self.pool(features, extents)
        if extents is not None:
            self._reject_extents()
        h, w = features.shape[-2:]
        kernel, stride = self.pool.kernel_size, self.pool.stride
        ph, pw = _out_size(h, kernel, stride, 0), _out_size(w, kernel, stride, 0)
        n = self._no_spp_bins
        if (ph, pw) != (n, n):
            raise ValueError(
                f"the no-SPP {self.name} (spp_levels=None) needs a conv map that pools to "
                f"{n}x{n} (a 224x224 input); got {h}x{w}{image_size}, "
                f"which pools to {ph}x{pw}"
            )
        return self.pool(features).flatten(1)

    def forward_head(
        self, features: Tensor, pre_logits: bool = False, extents: Tensor | None = None
    ) -> Tensor:
        """Pool the conv map and run fc6, fc7 (and fc8).

        Args:
            features: ``Tensor[N, C, h, w]`` from :meth:`forward_features`.
            pre_logits: return fc7's output (after its ReLU and dropout) instead of logits.
            extents: optional ``LongTensor[N, 2]`` of valid ``(h, w)`` in conv-map cells, for
                padded batches (see :meth:`feature_extents`); SPP models only.

        Returns:
            ``Tensor[N, K]`` logits, or ``Tensor[N, D]`` with ``pre_logits``.

        Raises:
            ValueError: wrong channel count; for the no-SPP model, extents given or a map
                that does not pool to 6x6.
        """
        return self._head(self.forward_pool(features, extents), pre_logits)

    def forward_pool(self, features: Tensor, extents: Tensor | None = None) -> Tensor:
        """Pool whole conv maps: SPP, or the no-SPP pool5 (the input of fc6).

        The R-CNN baseline (Sec. 4.3) and feature extraction use it on warped windows;
        :meth:`forward_pooled` then runs the fc layers.

        Args:
            features: ``Tensor[N, C, h, w]`` from :meth:`forward_features`.
            extents: optional ``LongTensor[N, 2]`` valid ``(h, w)`` cells (SPP models only).

        Returns:
            ``Tensor[N, C * L]`` (``L = 36`` for the no-SPP pool5).

        Raises:
            ValueError: wrong shape or channels; for the no-SPP model, extents given or a
                map that does not pool to 6x6.
        """
        if not isinstance(features, Tensor) or features.dim() != 4:
            raise ValueError(
                f"features must be Tensor[N, C, h, w], got "
                f"{tuple(features.shape) if isinstance(features, Tensor) else type(features)}"
            )
        if features.shape[1] != self.feature_channels:
            raise ValueError(
                f"features must have {self.feature_channels} channels, got shape "
                f"{tuple(features.shape)}"
            )
        return self._pool5(features, extents)

    def forward_pooled(
        self, pooled: Tensor, pre_logits: bool = False, *, stop_at: str | None = None
    ) -> Tensor:
        """Run fc6, fc7 (and fc8) on already pooled vectors.

        For windows pooled from shared conv maps with :func:`sppnet.ops.window_pyramid_pool`
        (multi-view testing on feature maps, Sec. 3.1.5; detection, Sec. 4), whose rows use
        the same ``(C, n, n)``-per-level order as :meth:`forward_head`'s pooling.

        Args:
            pooled: ``Tensor[N, C * L]`` for this model's ``feature_channels`` and pyramid
                (``L = 36`` for the no-SPP pool5).
            pre_logits: return fc7's output (after its ReLU and dropout) instead of logits;
                the same as ``stop_at="fc7"``.
            stop_at: ``"fc6"`` or ``"fc7"`` (that layer's output after its ReLU and
                dropout: the fc6 / fc7 features of Sec. 3.2 in eval mode) or ``"fc8"``
                (logits); None means ``"fc7"`` with ``pre_logits``, else ``"fc8"``.

        Returns:
            ``Tensor[N, K]`` logits, or ``Tensor[N, D]`` for fc6 / fc7.

        Raises:
            ValueError: ``pooled`` is not ``Tensor[N, pooled_dim]``, an unknown
                ``stop_at``, or ``pre_logits`` with a ``stop_at`` other than ``"fc7"``.
        """
        if stop_at is None:
            stop_at = "fc7" if pre_logits else "fc8"
        elif stop_at not in FC_STAGES:
            raise ValueError(f"stop_at must be one of {FC_STAGES}, got {stop_at!r}")
        elif pre_logits and stop_at != "fc7":
            raise ValueError(f"pre_logits=True stops at fc7; got stop_at={stop_at!r}")
        expected = self.pooled_dim
        if not isinstance(pooled, Tensor) or pooled.dim() != 2 or pooled.shape[1] != expected:
            got = tuple(pooled.shape) if isinstance(pooled, Tensor) else type(pooled).__name__
            raise ValueError(f"pooled must be Tensor[N, {expected}] (C * L), got {got}")
        return self._head(pooled, stop_at=stop_at)

    def _head(self, pooled: Tensor, pre_logits: bool = False, stop_at: str = "fc8") -> Tensor:
        x = self.drop6(self.relu6(self.fc6(pooled)))  # [N, D]
        if stop_at == "fc6":
            return x
        x = self.drop7(self.relu7(self.fc7(x)))  # [N, D]
        return x if pre_logits or stop_at == "fc7" else self.fc8(x)  # [N, K]

    def forward(self, x: Tensor, extents: Tensor | None = None) -> Tensor:
        """Images -> logits.

        Args:
            x: ``Tensor[N, 3, H, W]``, any ``H, W >= min_input_size`` with SPP; the no-SPP
                model needs a 224x224-like input (its pool5 must give 6x6).
            extents: optional ``LongTensor[N, 2]`` of each image's valid ``(height, width)``
                in pixels, anchored top-left, for a zero-padded batch of different-size
                images; each image is then classified as if run alone (SPP models only).

        Returns:
            ``Tensor[N, K]`` logits.

        Raises:
            TypeError / ValueError: see :meth:`forward_features` and :meth:`forward_head`.
        """
        if extents is not None and self.spp_levels is None:
            self._reject_extents()
        features = self.forward_features(x, extents)
        feature_extents = None if extents is None else self.feature_extents(extents)
        if self.spp_levels is None:
            image_size = f" from a {x.shape[2]}x{x.shape[3]} input"
            return self._head(self._pool5(features, None, image_size), pre_logits=False)
        return self._head(self._pool5(features, feature_extents), pre_logits=False)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, spp_levels={self.spp_levels}, width={self.width}, "
            f"feature_stride={self.feature_stride}, feature_offset={self.feature_offset}"
        )
