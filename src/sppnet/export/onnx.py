"""Export classifiers and detectors to ONNX with dynamic image size and window count.

Shape shorthand: N images, 3 x H x W pixels (minus the mean), C channels of the conv map
(h x w), R windows, L pyramid bins, K classes.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter, the
default of this torch version), opset 20 (its default; :data:`DEFAULT_OPSET`). The graphs use
the traceable pyramid ops of :mod:`sppnet.ops.traceable_pyramid_pool` in place of PyTorch's
adaptive pooling, which does not export correctly for sizes the output does not divide, and
an out-of-place LRN in place of the trunks' blocked in-place one; the weights and the rest
of the network are the model's own.

Graphs written:

* a classifier (:func:`export_classifier`): ``image: float[N, 3, H, W]`` -> ``logits:
  float[N, K]``; N, H, W dynamic for SPP networks, N only for the no-SPP baseline (its fc6
  needs the fixed pool5 grid of a 224 x 224 input). Classes, mean and minimum input size
  are stored in the model's metadata (``metadata_props``).
* a detector (:func:`export_detector`), a directory of ``conv.onnx`` (``image: float[N, 3,
  H, W]`` -> ``conv_map: float[N, C, h, w]``), ``windows.onnx`` (``conv_map: float[1, C, h,
  w]`` + ``windows: int64[R, 4]`` feature-map cells -> ``scores: float[R, K]`` after the SVMs
  or the softmax, and with box regression ``deltas: float[R, K, 4]``) and
  ``onnx_detector.json`` (classes, mean, scales, geometry, NMS settings): what
  :class:`~sppnet.export.onnx_detector.OnnxDetector` runs with our Python proposals,
  window mapping and NMS.

The window graph builds a sparse table with a fixed number of levels (chosen from
``max_image_side``), so it is exact for conv maps up to that size; the runner refuses larger
ones instead of returning wrong numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet._atomic import atomic_folder, atomic_path, atomic_write_json, new_write_id
from sppnet.detection.detector import Detector
from sppnet.detection.window_features import window_levels
from sppnet.models.efficientnet_lite import EfficientNetLite
from sppnet.models.from_trunk import TrunkSPPNet
from sppnet.models.lrn import LocalResponseNorm
from sppnet.models.spp_net import SPPNet
from sppnet.ops.traceable_pyramid_pool import (
    table_levels_for,
    traceable_spatial_pyramid_pool,
    traceable_window_pyramid_pool,
)

__all__ = [
    "DEFAULT_OPSET",
    "ONNX_EXTRA_HINT",
    "export_classifier",
    "export_detector",
    "require_onnx",
]

DEFAULT_OPSET = 20
ONNX_EXTRA_HINT = "pip install sppnet[onnx]"
DETECTOR_FILES = ("conv.onnx", "windows.onnx", "onnx_detector.json")
# The image side (pixels) a detector's window graph must handle, by default, relative to
# its largest scale: a 3:1 image resized to the shorter side 688 is 2064 pixels long.
_DEFAULT_SIDE_RATIO = 3
_NO_SPP_SIZE = 224


def require_onnx(runtime: bool = False) -> None:
    """Check that the ONNX packages are importable.

    Args:
        runtime: check ``onnxruntime`` (running graphs) instead of ``onnx`` and
            ``onnxscript`` (exporting them).

    Raises:
        ImportError: a package is missing; the message names ``pip install sppnet[onnx]``.
    """
    names = ("onnxruntime",) if runtime else ("onnx", "onnxscript")
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise ImportError(
            f"{', '.join(missing)} is not installed; ONNX export and inference need the onnx "
            f"extra: {ONNX_EXTRA_HINT}"
        )


# ------------------------------------------------------------------------------ graphs
def _traceable_lrn(x: Tensor, lrn: LocalResponseNorm) -> Tensor:
    """The trunk's LRN as plain out-of-place ops (same formula; its fast path is blocked)."""
    channels = x.shape[1]
    sq = F.pad(x * x, (0, 0, 0, 0, lrn.size // 2, (lrn.size - 1) // 2))  # zeros beyond 0..C-1
    acc = sq[:, 0:channels]
    for d in range(1, lrn.size):
        acc = acc + sq[:, d : d + channels]
    return x * (lrn.k + (lrn.alpha / lrn.size) * acc).pow(-lrn.beta)


def _trunk(model: SPPNet, x: Tensor) -> Tensor:
    """``Tensor[N, 3, H, W]`` -> ``Tensor[N, C, h, w]`` with traceable layers only."""
    if isinstance(model, EfficientNetLite):
        return model.forward_features(x)
    if isinstance(model, TrunkSPPNet):
        return model.forward_trunk(x)
    for layer in model.features:
        x = _traceable_lrn(x, layer) if isinstance(layer, LocalResponseNorm) else layer(x)
    return x


def _pool_mode(model: SPPNet) -> str:
    return model.spp_mode


class _ClassifierGraph(nn.Module):
    """Images -> logits, the model's forward with traceable pooling."""

    def __init__(self, model: SPPNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        features = _trunk(self.model, image)  # [N, C, h, w]
        if self.model.spp_levels is None:
            pooled = self.model.forward_pool(features)  # [N, C * 36]: pool5, already traceable
        else:
            pooled = traceable_spatial_pyramid_pool(
                features, self.model.spp_levels, _pool_mode(self.model)
            )  # [N, C * L]
        return self.model.forward_pooled(pooled)  # [N, K]


class _ConvGraph(nn.Module):
    """Images -> the trunk's last conv map."""

    def __init__(self, model: SPPNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        return _trunk(self.model, image)


class _WindowGraph(nn.Module):
    """Conv map + windows -> per-class scores (and box deltas): Detector.score_pooled's math."""

    def __init__(self, detector: Detector, table_levels: int) -> None:
        super().__init__()
        self.detector = detector
        self.levels = window_levels(detector.model)
        self.table_levels = table_levels

    def forward(self, conv_map: Tensor, windows: Tensor) -> tuple[Tensor, ...]:
        det = self.detector
        pooled = traceable_window_pyramid_pool(
            conv_map, windows, self.levels, self.table_levels
        )  # [R, P]
        if det.svm_weight is None:
            logits = det.model.forward_pooled(pooled)  # [R, K+1]
            scores = torch.softmax(logits, dim=1)[:, 1:]  # [R, K]; 0 is background
        else:
            fc7 = det.model.forward_pooled(pooled, pre_logits=True)  # [R, D]
            scores = (fc7 * det.svm_scale) @ det.svm_weight.T + det.svm_bias  # [R, K]
        if det.box_weight is None:
            return (scores,)
        deltas = torch.einsum("rd,kdt->rkt", pooled * det.box_scale, det.box_weight)
        return scores, deltas + det.box_bias  # [R, K], [R, K, 4]


# ----------------------------------------------------------------------------- export
def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict[str, dict[int, Any]],
    opset: int,
    metadata: dict[str, str],
) -> None:
    """Export ``module`` with the torch.export-based exporter, quietly, into one file."""
    import logging

    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    # The exporter prints its progress and warns about optional torchvision ops; the library
    # stays quiet (it prints nothing; only the CLI and the runs report progress).
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        registration.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                verbose=False,
            )
        finally:
            registration.setLevel(level)
    proto = program.model_proto
    written = {entry.domain: entry.version for entry in proto.opset_import}.get("", opset)
    if written != opset:  # reported settings are the ones used
        raise ValueError(f"the exporter wrote opset {written}, not the {opset} asked for")
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def _check_model(model: object) -> SPPNet:
    if not isinstance(model, SPPNet):
        raise TypeError(
            f"model must be an sppnet SPPNet / EfficientNetLite classifier, got "
            f"{type(model).__name__}"
        )
    if isinstance(model, EfficientNetLite) and model.padding != "symmetric":
        raise ValueError(
            f"{model.name} with padding={model.padding!r} pads by each layer's input parity, "
            "which the exported graph cannot follow at every size; export a model built with "
            "padding='symmetric' (the default of the SPP classifiers)"
        )
    return model


def _check_opset(opset: int) -> int:
    """``opset`` if the exporter writes graphs of it: 18 (its minimum) to the newest the
    installed ``onnx`` knows (asked for more, the exporter would quietly write opset 18)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 18 <= opset <= newest:
        raise ValueError(
            f"opset {opset!r} is not supported: the exporter writes opsets 18 to {newest} "
            f"(onnx {onnx.__version__}); pass --opset in that range"
        )
    return opset


def export_classifier(
    model: SPPNet,
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None = None,
    mean: float | list[float] = 128.0,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write a classifier as one ONNX file: ``image`` ``[N, 3, H, W]`` -> ``logits`` ``[N, K]``.

    SPP networks get dynamic N, H and W (any ``H, W >= model.min_input_size``; the pyramid's
    Appendix-A bins are computed from the traced map size); the no-SPP baseline gets a
    dynamic N and a fixed 224 x 224 input. Inputs are pixels minus the mean, as for the
    PyTorch model.

    Args:
        model: an :class:`~sppnet.models.SPPNet` (ZF-5 family or
            :class:`~sppnet.models.EfficientNetLite` with symmetric padding); exported in
            eval mode, and left in the mode it was in.
        path: the ``.onnx`` file to write (parent directories are created).
        classes: class names stored in the metadata (``classes``, JSON).
        mean: the pixel mean stored in the metadata (``mean``, JSON).
        opset: ONNX opset (18 to the installed onnx's newest).

    Returns:
        The written path.

    Raises:
        ImportError: ``onnx`` / ``onnxscript`` missing (``pip install sppnet[onnx]``).
        TypeError: not an SPPNet.
        ValueError: an EfficientNet-Lite with "same" padding, or a bad opset.
    """
    require_onnx()
    model = _check_model(model)
    opset = _check_opset(opset)
    path = Path(path)
    spp = model.spp_levels is not None
    # An odd, non-square example size: nothing about the sizes is traced as a constant.
    side = _NO_SPP_SIZE
    example = torch.zeros(2, 3, side, side if not spp else side + 19)
    dims: dict[int, Any] = {0: torch.export.Dim.DYNAMIC}
    if spp:
        dims.update({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC})
    metadata = {
        "sppnet.kind": "classifier",
        "sppnet.model": model.name,
        "classes": json.dumps(list(classes or [])),
        "mean": json.dumps(mean),
        "min_input_size": str(model.min_input_size),
        "input": "image: float32[N, 3, H, W], pixels 0..255 minus mean"
        + ("" if spp else f" (no-SPP: H = W = {_NO_SPP_SIZE})"),
    }
    was_training = model.training
    model.eval()
    try:
        _export(
            _ClassifierGraph(model),
            (example,),
            path,
            ["image"],
            ["logits"],
            {"image": dims},
            opset,
            metadata,
        )
    finally:
        model.train(was_training)
    return path


def export_detector(
    detector: Detector,
    directory: str | os.PathLike[str],
    *,
    max_image_side: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write a detector as ``conv.onnx`` + ``windows.onnx`` + ``onnx_detector.json``.

    See the module docstring for the graphs' inputs and outputs.

    Args:
        detector: a :class:`~sppnet.detection.Detector` with a max-pooling network.
        directory: created if needed.
        max_image_side: the longest resized image side (pixels) the window graph must be
            exact for; default ``max_long_side`` of the detector, else 3 x its largest scale.
        opset: ONNX opset (18 to the installed onnx's newest).

    Returns:
        The directory.

    Raises:
        ImportError: ``onnx`` / ``onnxscript`` missing (``pip install sppnet[onnx]``).
        TypeError: not a Detector.
        ValueError: an average-pooling network, "same"-padded Lite trunk, bad opset or side.
    """
    require_onnx()
    if not isinstance(detector, Detector):
        raise TypeError(f"detector must be a sppnet Detector, got {type(detector).__name__}")
    model = _check_model(detector.model)
    opset = _check_opset(opset)
    if _pool_mode(model) != "max":
        raise ValueError(
            f"the window graph pools windows by max (the paper's); {model.name} pools by "
            f"{_pool_mode(model)!r}"
        )
    max_image_side = _check_max_image_side(detector, model, max_image_side)
    levels = window_levels(model)
    max_map_side = max(model.feature_size(max_image_side, max_image_side))
    table_levels = table_levels_for(max_map_side, levels)
    export_id = new_write_id()  # recorded in all three files: readers check they match
    with atomic_folder(directory, DETECTOR_FILES) as tmp:  # the three appear together
        _export_detector_graphs(detector, model, tmp, table_levels, (opset, export_id))
        _write_detector_meta(tmp, detector, model, max_image_side, table_levels, opset, export_id)
    return Path(directory)


def _write_detector_meta(
    directory: Path,
    detector: Detector,
    model: SPPNet,
    max_image_side: int,
    table_levels: int,
    opset: int,
    export_id: str,
) -> None:
    """``onnx_detector.json``: the settings :class:`~sppnet.export.onnx_detector.OnnxDetector`
    runs with, and the ``export_id`` its graphs carry."""
    levels = window_levels(model)
    max_map_side = max(model.feature_size(max_image_side, max_image_side))
    meta = {
        **_detector_settings(detector),
        "feature_stride": model.feature_stride,
        "feature_offset": model.feature_offset,
        "min_input_size": model.min_input_size,
        "levels": list(levels),
        "max_image_side": max_image_side,
        "max_map_side": max_map_side,
        "table_levels": table_levels,
        "box_regression": detector.box_weight is not None,
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": opset,
        "torch": torch.__version__,
        "export_id": export_id,
    }
    atomic_write_json(directory / "onnx_detector.json", meta)


def _check_max_image_side(detector: Detector, model: SPPNet, max_image_side: object) -> int:
    """The longest resized image side the window graph is exact for (default: the
    detector's ``max_long_side``, else 3 x its largest scale), checked."""
    if max_image_side is None:
        longest = _DEFAULT_SIDE_RATIO * max(detector.scales)
        if detector.max_long_side is not None:
            longest = min(longest, detector.max_long_side)
        max_image_side = math.ceil(longest)
    if isinstance(max_image_side, bool) or not isinstance(max_image_side, int):
        raise ValueError(f"max_image_side must be an int of pixels, got {max_image_side!r}")
    if max_image_side < model.min_input_size:
        raise ValueError(
            f"max_image_side must be >= the network's minimum input {model.min_input_size}, "
            f"got {max_image_side}"
        )
    return max_image_side


def _export_detector_graphs(
    detector: Detector,
    model: SPPNet,
    directory: Path,
    table_levels: int,
    opset_and_id: tuple[int, str],
) -> None:
    """``conv.onnx`` (image -> conv map) and ``windows.onnx`` (map, windows -> scores and
    box deltas), traced in eval mode (the detector's mode restored after); both record the
    export's id (``sppnet.export_id``)."""
    opset, export_id = opset_and_id
    ids = {"sppnet.export_id": export_id}
    was_training = detector.training
    detector.eval()
    dyn = torch.export.Dim.DYNAMIC
    try:
        _export(
            _ConvGraph(model),
            (torch.zeros(1, 3, 224, 243),),
            directory / "conv.onnx",
            ["image"],
            ["conv_map"],
            {"image": {0: dyn, 2: dyn, 3: dyn}},
            opset,
            {"sppnet.kind": "detector-conv", "sppnet.model": model.name, **ids},
        )
        h, w = model.feature_size(224, 243)
        windows = torch.tensor([[0, 0, w, h], [1, 2, w - 1, h - 3], [2, 1, 5, 4]])
        outputs = ["scores"] if detector.box_weight is None else ["scores", "deltas"]
        _export(
            _WindowGraph(detector, table_levels),
            (torch.zeros(1, model.feature_channels, h, w), windows),
            directory / "windows.onnx",
            ["conv_map", "windows"],
            outputs,
            {"conv_map": {2: dyn, 3: dyn}, "windows": {0: dyn}},
            opset,
            {"sppnet.kind": "detector-windows", "sppnet.model": model.name, **ids},
        )
    finally:
        detector.train(was_training)


def _detector_settings(detector: Detector) -> dict[str, Any]:
    """The first entries of ``onnx_detector.json``: the detector's classes and settings."""
    mean = detector.mean
    return {
        "format": 1,
        "model": detector.model.name,
        "classes": detector.class_names,
        "mean": mean.tolist() if isinstance(mean, Tensor) else float(mean),
        "scales": list(detector.scales),
        "max_long_side": detector.max_long_side,
        "nms_threshold": detector.nms_threshold,
        "score_threshold": detector.score_threshold,
        "max_detections": detector.max_detections,
    }
