"""An SPP-net on any trunk: ``from_trunk(trunk, num_classes=K)`` (beyond the paper).

Shape shorthand: N images, 3 x H x W input pixels, C channels of the trunk's map of size
h x w, L pyramid bins, D = fc_dim, K classes.

The paper puts its pyramid on ZF-5 / Overfeat conv5 maps; nothing in SPP needs those
trunks. :func:`from_trunk` puts the same head (SPP, fc6, fc7 with dropout, fc8) on any
module mapping ``Tensor[N, 3, H, W]`` to a conv map, and measures what the rest of sppnet
needs from a trunk (:mod:`sppnet.models.trunk_geometry`): channels, stride, the
receptive-field offset that window mapping uses (Appendix A), the least input size, and the
map size of every input size. The result is a :class:`TrunkSPPNet`, an
:class:`~sppnet.models.SPPNet`, so training, multi-view testing, feature extraction, the
detector and ONNX export take it unchanged.

Input convention: every sppnet model takes 0..255 pixels minus the constant 128 (Appendix
A). Trunks pretrained elsewhere expect ``(pixel / 255 - mean) / std`` per channel, so the
trunk is fed exactly that; ``mean`` and ``std`` default to the ImageNet statistics of
torchvision and timm. Padded batches (``extents``) run each image alone on its own size
(exact for any trunk) and pad the maps.

Checkpoints: :meth:`TrunkSPPNet.config` records the trunk's *source* (an import path
``package.module:factory``, ``trunk/NAME`` or ``timm/NAME``, see
:mod:`sppnet.models.trunk_source`) with its JSON arguments and the measured geometry, so
``create_model(**config, trust_model_code=...)`` rebuilds it without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sppnet._validate import check_int
from sppnet.models.spp_net import SPPNet
from sppnet.models.trunk_geometry import TrunkGeometry, measure_trunk_geometry, select_map
from sppnet.models.trunk_head import attach_head
from sppnet.models.trunk_source import build_trunk, check_trunk_args

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TrunkSPPNet", "from_trunk"]

# torchvision's and timm's ImageNet normalisation, in 0..1 pixel units
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _triple(name: str, value: Sequence[float], positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(v == v and abs(v) != float("inf") for v in out):
        raise ValueError(f"{name} must be 3 finite numbers (R, G, B in 0..1 units), got {value!r}")
    if positive and min(out) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return out  # type: ignore[return-value]


class TrunkSPPNet(SPPNet):
    """Any trunk + SPP (or the no-SPP fixed pool) + fc6, fc7 (dropout) + fc8.

    Build it with :func:`from_trunk`. Args as there; ``geometry`` is the measured one and
    ``source`` / ``trunk_args`` / ``feature_index`` what :meth:`config` records.
    """

    # the trunk's source is the "name"; these fix the rest of the architecture
    CONFIG_KEYS = (
        *SPPNet.CONFIG_KEYS,
        "trunk_args",
        "feature_key",
        "feature_index",
        "feature_stride",
        "feature_offset",
        "mean",
        "std",
    )

    def __init__(
        self,
        trunk: nn.Module,
        geometry: TrunkGeometry,
        *,
        num_classes: int,
        spp_levels: Sequence[int] | None = (6, 3, 2, 1),
        spp_mode: str = "max",
        dropout: float = 0.5,
        fc_dim: int = 4096,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        feature_key: str | int | None = None,
        source: str | None = None,
        trunk_args: dict[str, Any] | None = None,
        feature_index: int | None = None,
        fc_layers: int = 2,
    ) -> None:
        nn.Module.__init__(self)  # SPPNet.__init__ builds a Table 1 trunk; we take this one
        check_int("num_classes", num_classes, min=1)
        check_int("fc_dim", fc_dim, min=1)
        self.name = source or type(trunk).__name__
        self.source = source
        self.trunk_args = check_trunk_args(trunk_args)
        self.feature_index = feature_index
        self.feature_key = feature_key
        self._set_head(num_classes, 1.0, fc_dim, spp_levels, spp_mode)
        self.mean = _triple("mean", mean, positive=False)
        self.std = _triple("std", std, positive=True)
        # trunk input = (x + 128) / 255 - mean) / std = x * scale + shift, per channel
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std])
        shift = torch.tensor(
            [(128.0 / 255.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        )
        self.register_buffer("_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.features = trunk
        self.geometry = geometry
        self.feature_channels: int = geometry.channels
        self.feature_stride: int = geometry.stride
        self.feature_offset: float = geometry.offset
        self.receptive_field = geometry.receptive_field
        self.min_input_size: int = geometry.min_input_size
        # no SPP: 3x3 / 2 like the paper's pool5 on its 13 x 13 map at 224
        side = geometry.map_side(224) if self.min_input_size <= 224 else 0
        no_spp_bins = (side - 3) // 2 + 1 if side >= 3 else 0
        if self.spp_levels is None and no_spp_bins < 1:
            raise ValueError(
                f"the no-SPP baseline pools the 224x224 input's map with a 3x3 / 2 max "
                f"pool; {self.name}'s map at 224 is {side}x{side}, too small: use spp_levels"
            )
        attach_head(self, no_spp_bins, spp_mode, num_classes, fc_dim, dropout, fc_layers)

    # ---------------------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """What ``create_model`` needs to rebuild this network (its trunk by source).

        Returns:
            ``{"name": source, ...CONFIG_KEYS}``; JSON-ready.

        Raises:
            ValueError: the trunk was given as a module instance, which a checkpoint cannot
                name (build it from a source instead).
        """
        if self.source is None:
            raise ValueError(
                f"this model's trunk was given as a module ({type(self.features).__name__}), "
                "which a checkpoint cannot rebuild; build it from a source: "
                "from_trunk('package.module:factory', trunk_args={...}), a registered "
                "'trunk/NAME' or 'timm/NAME'"
            )
        out = super().config()
        out["name"] = self.source
        for key in ("mean", "std"):
            out[key] = list(out[key])
        return out

    # -------------------------------------------------------------------------- geometry
    def _map_side(self, size):
        """Map side for an input side (an int or an integer tensor), as measured."""
        return self.geometry.map_side(size)

    # --------------------------------------------------------------------------- forward
    def forward_trunk(self, x: Tensor) -> Tensor:
        """The trunk's chosen map of ``Tensor[N, 3, H, W]`` (pixels - 128), unchecked (for
        tracing and export; :meth:`forward_features` checks the input and the map)."""
        return select_map(self.features(x * self._scale + self._shift), self.feature_key)

    def forward_features(self, x: Tensor, extents: Tensor | None = None) -> Tensor:
        """Run the trunk: ``Tensor[N, 3, H, W]`` (pixels - 128) -> ``Tensor[N, C, h, w]``.

        Args:
            x: floating, ``H, W >= min_input_size``.
            extents: optional ``LongTensor[N, 2]`` valid ``(height, width)`` per image of a
                zero-padded batch; each image then runs alone on its own region and its map
                is padded with zeros to the batch's map size.

        Returns:
            ``Tensor[N, C, h, w]`` with ``(h, w) = feature_size(H, W)``.

        Raises:
            TypeError / ValueError: see :meth:`SPPNet.forward_features`, or a trunk whose
                map is not the size measured.
        """
        self._check_input(x)
        if extents is not None:
            ext = self._check_extents(x, extents)
            full = bool((ext[:, 0] == x.shape[2]).all()) and bool((ext[:, 1] == x.shape[3]).all())
            if not full:
                return self._padded_forward(x, ext)
        fmap = self.forward_trunk(x)
        want = (self.feature_channels, *self.feature_size(x.shape[2], x.shape[3]))
        if tuple(fmap.shape[1:]) != want:
            raise ValueError(
                f"{self.name}'s map for a {x.shape[2]}x{x.shape[3]} input is "
                f"{tuple(fmap.shape[1:])}, not the measured {want}"
            )
        return fmap

    def _padded_forward(self, x: Tensor, ext: Tensor) -> Tensor:
        h, w = self.feature_size(x.shape[2], x.shape[3])
        maps = []
        for i, (eh, ew) in enumerate(ext.tolist()):
            fmap = self.forward_trunk(x[i : i + 1, :, :eh, :ew])  # [1, C, h_i, w_i]
            maps.append(nn.functional.pad(fmap, (0, w - fmap.shape[3], 0, h - fmap.shape[2])))
        return torch.cat(maps)  # [N, C, h, w]

    @property
    def conv_layer_names(self) -> tuple[str, ...]:
        """The one named map: ``("trunk",)``."""
        return ("trunk",)

    def forward_intermediates(
        self, x: Tensor, layers: Sequence[str] = ("trunk",)
    ) -> dict[str, Tensor]:
        """``{"trunk": Tensor[N, C, h, w]}``, the map the head pools.

        Raises:
            ValueError: a name other than ``"trunk"``.
        """
        if set(layers) != {"trunk"}:
            raise ValueError(f"{self.name} has one named map, 'trunk'; got {list(layers)}")
        return {"trunk": self.forward_features(x)}

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, spp_levels={self.spp_levels}, feature_stride="
            f"{self.feature_stride}, feature_offset={self.feature_offset}, "
            f"min_input_size={self.min_input_size}"
        )


def from_trunk(
    trunk: nn.Module | str,
    *,
    num_classes: int,
    spp_levels: Sequence[int] | None = (6, 3, 2, 1),
    fc_dim: int = 4096,
    dropout: float = 0.5,
    spp_mode: str = "max",
    feature_stride: int | None = None,
    feature_offset: float | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    feature_key: str | int | None = None,
    trunk_args: dict[str, Any] | None = None,
    trust_model_code: bool | str = False,
    pretrained: bool = False,
    feature_index: int | None = None,
    width: float = 1.0,
    fc_layers: int = 2,
) -> TrunkSPPNet:
    """An SPP classifier on any trunk, its geometry measured (module docstring).

    Args:
        trunk: a module mapping ``Tensor[N, 3, H, W]`` to a map (or dict / list of maps),
            or a source string (``"package.module:factory"``, ``"trunk/NAME"``,
            ``"timm/NAME"``) built with ``trunk_args``; only a source can be saved in
            checkpoints.
        num_classes: K, outputs of fc8.
        spp_levels: pyramid levels; None: the no-SPP baseline (a 3x3 / 2 max pool,
            224x224 inputs only).
        fc_dim: D, width of fc6 and fc7.
        dropout: after fc6 and fc7.
        spp_mode: ``"max"`` (the paper) or ``"avg"``.
        feature_stride: checked against the measured stride when given.
        feature_offset: used instead of measuring (for trunks whose offset cannot be
            measured: a global operation inside, or TensorFlow "same" padding).
        mean, std: the trunk's input normalisation in 0..1 units (ImageNet's by default).
        feature_key: which map of a dict / list output.
        trunk_args: JSON keyword arguments of a source's factory.
        trust_model_code: allow importing an import-path source (True, or the same path).
        pretrained: timm sources: ImageNet weights from timm's local cache.
        feature_index: timm sources: the ``features_only`` stage (None: stride 16).
        width: must be 1.0 (the trunk fixes its widths); accepted so ``create_model``'s
            common arguments pass through.
        fc_layers: 2 (fc6 and fc7) or 0 (dropout and fc8 on the pooled vector).

    Returns:
        The :class:`TrunkSPPNet`, in training mode.

    Raises:
        ValueError: a trunk whose map is not 4-D, does not grow with the input by one fixed
            stride, a ``feature_stride`` other than the measured one, an offset that cannot
            be measured, or bad arguments.
        sppnet.models.trunk_source.UntrustedModelCodeError: an import path not trusted.
        ImportError: a source that cannot be imported (timm: the message says why).
    """
    if width != 1.0:
        raise ValueError(f"a trunk fixes its own channel widths; width must be 1.0, got {width!r}")
    source = None
    if isinstance(trunk, str):
        source = trunk
        trunk = build_trunk(
            source, trunk_args, trust_model_code=trust_model_code, pretrained=pretrained,
            feature_index=feature_index, where=f"model {source!r}",
        )  # fmt: skip
    elif not isinstance(trunk, nn.Module):
        raise TypeError(f"trunk must be an nn.Module or a source string, got {trunk!r}")
    elif trunk_args is not None or pretrained or feature_index is not None:
        raise ValueError("trunk_args, pretrained and feature_index go with a source string")
    geometry = measure_trunk_geometry(trunk, feature_key=feature_key, feature_offset=feature_offset)
    if feature_stride is not None and feature_stride != geometry.stride:
        raise ValueError(
            f"feature_stride {feature_stride} was given, but the trunk's map grows by one "
            f"cell every {geometry.stride} pixels"
        )
    return TrunkSPPNet(
        trunk, geometry, num_classes=num_classes, spp_levels=spp_levels, spp_mode=spp_mode,
        dropout=dropout, fc_dim=fc_dim, mean=mean, std=std, feature_key=feature_key,
        source=source, trunk_args=trunk_args, feature_index=feature_index, fc_layers=fc_layers,
    )  # fmt: skip
