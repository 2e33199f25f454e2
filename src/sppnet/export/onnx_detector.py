"""Detection with an exported detector: ONNX Runtime graphs, our Python pre/post-processing.

The directory written by :func:`~sppnet.export.onnx.export_detector` holds the conv-map
graph, the window graph and ``onnx_detector.json``. :class:`OnnxDetector` does what
:class:`~sppnet.detection.Detector` does (Sec. 4.1-4.2), with the two graphs in place of the
network: resize the image to each scale and subtract the mean, run ``conv.onnx`` once per
scale, give each window the scale where its area is closest to 224 x 224, map it onto that
conv map (Appendix A), score all windows of a scale in one ``windows.onnx`` call, apply the
box deltas, then per-class NMS. The numbers equal the PyTorch detector's (float rounding
apart).

Shape shorthand: R windows, K classes, C conv-map channels (h x w).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sppnet.data.transforms import check_mean, resize_tensor, subtract_mean
from sppnet.detection.detector import PostprocessStage, await_proposals
from sppnet.detection.scales import choose_window_scales, image_scale_factors
from sppnet.errors import UserError
from sppnet.export.onnx import DETECTOR_FILES, require_onnx
from sppnet.ops.boxes import check_boxes, decode_boxes
from sppnet.ops.window_mapping import map_windows_to_features

__all__ = ["OnnxDetector", "load_onnx_detector"]

_OVERRIDES = ("scales", "max_long_side", "nms_threshold", "score_threshold", "max_detections")


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxDetector(PostprocessStage):
    """An exported SPP-net detector run by ONNX Runtime (see the module docstring).

    Build it with :func:`load_onnx_detector`. Same interface as the PyTorch detector's
    inference: :meth:`score_windows`, :meth:`postprocess`, and calling it on
    ``(image, proposals)``.

    Args:
        directory: the export directory.
        meta: the parsed ``onnx_detector.json`` (with any overrides applied).
        threads: ONNX Runtime intra-op threads (None: its default).
    """

    def __init__(self, directory: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        self.directory = directory
        self.meta = meta
        self.class_names: list[str] = list(meta["classes"])
        mean = meta.get("mean", 128.0)
        self.mean = check_mean(torch.tensor(mean) if isinstance(mean, list) else float(mean))
        self.scales = tuple(float(s) for s in meta["scales"])
        self.max_long_side = meta.get("max_long_side")
        self.nms_threshold = float(meta.get("nms_threshold", 0.3))
        self.score_threshold = meta.get("score_threshold")
        self.max_detections = int(meta.get("max_detections", 100))
        self.feature_stride = meta["feature_stride"]
        self.feature_offset = float(meta["feature_offset"])
        self.min_input_size = int(meta["min_input_size"])
        self.max_map_side = int(meta["max_map_side"])
        self.box_regression = bool(meta["box_regression"])
        self.conv_session = _session(directory / "conv.onnx", threads)
        self.window_session = _session(directory / "windows.onnx", threads)
        self._check_same_export()

    def _check_same_export(self) -> None:
        """The two graphs must carry the ``export_id`` of ``onnx_detector.json``.

        Raises:
            UserError: a file of another export (a cut-short or mixed copy).
        """
        expected = self.meta.get("export_id")
        graphs = (("conv.onnx", self.conv_session), ("windows.onnx", self.window_session))
        for name, session in graphs:
            found = session.get_modelmeta().custom_metadata_map.get("sppnet.export_id")
            if found != expected:
                raise UserError(
                    f"{self.directory / name} belongs to another export than "
                    f"onnx_detector.json (export ids {found} and {expected}): the files do not "
                    "belong together; run `sppnet export --detector DIR --out "
                    f"{self.directory}` again"
                )

    @property
    def num_classes(self) -> int:
        """K, the object classes."""
        return len(self.class_names)

    def conv_maps(self, image: Tensor) -> tuple[list[float], list[tuple[int, int]], list]:
        """Stage 1: ``(factors, resized sizes, conv maps as float32[1, C, h, w] arrays)``.

        Raises:
            ValueError: a bad image, a resized image below the network's minimum input, or a
                conv map larger than the window graph was exported for.
        """
        if not isinstance(image, Tensor) or not image.is_floating_point() or image.dim() != 3:
            raise ValueError("image must be a floating Tensor[3, H, W] of 0..255 pixels")
        if image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"image must be Tensor[3, H, W], got shape {tuple(image.shape)}")
        height, width = int(image.shape[1]), int(image.shape[2])
        factors = image_scale_factors(height, width, self.scales, self.max_long_side)
        sizes, maps = [], []
        for s, f in zip(self.scales, factors, strict=True):
            size = (max(1, round(height * f)), max(1, round(width * f)))
            if min(size) < self.min_input_size:
                raise ValueError(
                    f"image of {height}x{width} resized for scale {s} is {size[0]}x{size[1]}, "
                    f"smaller than the network's minimum input {self.min_input_size}"
                )
            x = subtract_mean(resize_tensor(image.float(), size), self.mean)  # [3, h', w']
            fmap = self.conv_session.run(None, {"image": x.unsqueeze(0).numpy()})[0]
            if max(fmap.shape[-2:]) > self.max_map_side:
                raise ValueError(
                    f"image resized to {size[0]}x{size[1]} gives a {fmap.shape[2]}x"
                    f"{fmap.shape[3]} conv map; the window graph is exact up to "
                    f"{self.max_map_side} cells (max_image_side "
                    f"{self.meta.get('max_image_side')}): export again with a larger "
                    "--max-image-side, or set max_long_side"
                )
            sizes.append(size)
            maps.append(fmap)
        return factors, sizes, maps

    def score_windows(self, image: Tensor, proposals: Tensor | Future[Tensor]) -> dict[str, object]:
        """Stages 1-4: every window scored for every class (no NMS).

        Args:
            image: ``Tensor[3, H, W]`` float pixels 0..255.
            proposals: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)`` in image pixels, or a
                :class:`~concurrent.futures.Future` of them, awaited after the conv maps
                (as :meth:`sppnet.detection.Detector.score_windows`).

        Returns:
            ``{"scores": Tensor[R, K], "boxes": Tensor[R, K, 4], "timing": {stage: s}}``;
            ``timing`` holds ``"proposals_wait"`` when ``proposals`` was a future.
        """
        if not isinstance(proposals, Future):  # checked before any work
            check_boxes(proposals, "proposals")
        t0 = time.perf_counter()
        factors, sizes, maps = self.conv_maps(image)
        t1 = time.perf_counter()
        timing = {"conv": t1 - t0}
        proposals, t1 = await_proposals(proposals, t1, timing)
        height, width = int(image.shape[1]), int(image.shape[2])
        n_win, k = proposals.shape[0], self.num_classes
        scores = torch.zeros(n_win, k)
        deltas = torch.zeros(n_win, k, 4)
        b = proposals.detach().cpu().to(torch.float64)
        which = choose_window_scales(b, factors) if n_win else torch.zeros(0, dtype=torch.long)
        for s, (fmap, (h, w)) in enumerate(zip(maps, sizes, strict=True)):
            rows = torch.nonzero(which == s).flatten()
            if rows.numel() == 0:
                continue
            scale = torch.tensor([w / width, h / height] * 2, dtype=torch.float64)
            cells = map_windows_to_features(
                b[rows] * scale, self.feature_stride, tuple(fmap.shape[-2:]), self.feature_offset
            )  # [R_s, 4]
            out = self.window_session.run(None, {"conv_map": fmap, "windows": cells.numpy()})
            scores[rows] = torch.from_numpy(out[0])
            if self.box_regression:
                deltas[rows] = torch.from_numpy(out[1])
        t2 = time.perf_counter()
        p = proposals.detach().cpu().float()
        if self.box_regression and n_win:
            boxes = decode_boxes(p, deltas.reshape(-1, 4 * k)).reshape(-1, k, 4)
        else:
            boxes = p[:, None, :].expand(-1, k, 4)
        timing["windows"] = t2 - t1
        return {"scores": scores, "boxes": boxes, "timing": timing}

    def __call__(self, image: Tensor, proposals: Tensor) -> dict[str, Tensor]:
        """Detect objects: ``{"boxes": Tensor[M, 4], "scores": Tensor[M], "labels": ...}``."""
        scored = self.score_windows(image, proposals)
        return self.postprocess(scored, (int(image.shape[1]), int(image.shape[2])))


def load_onnx_detector(
    directory: str | os.PathLike[str], *, threads: int | None = None, **overrides: Any
) -> OnnxDetector:
    """Open an exported detector directory for ONNX Runtime.

    Args:
        directory: written by :func:`~sppnet.export.onnx.export_detector`.
        threads: ONNX Runtime intra-op threads (None: its default).
        **overrides: settings to change, as for the PyTorch detector (``scales``,
            ``max_long_side``, ``nms_threshold``, ``score_threshold``, ``max_detections``);
            None values are ignored.

    Returns:
        An :class:`OnnxDetector`.

    Raises:
        ImportError: onnxruntime missing (``pip install sppnet[onnx]``).
        FileNotFoundError: a file of the export is missing.
        ValueError: a malformed ``onnx_detector.json``.
        TypeError: an unknown override.
    """
    require_onnx(runtime=True)
    directory = Path(directory)
    for name in DETECTOR_FILES:
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name}: not an exported detector (run `sppnet export --detector "
                "DIR --out DIR` first)"
            )
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise TypeError(f"unknown detector overrides {unknown}; allowed: {list(_OVERRIDES)}")
    path = directory / "onnx_detector.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        missing = [
            k
            for k in ("classes", "scales", "feature_stride", "feature_offset", "max_map_side")
            if k not in meta
        ]
        if missing:
            raise KeyError(f"lacks {missing}")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed export description ({err})") from err
    meta.update({k: v for k, v in overrides.items() if v is not None})
    if "scales" in overrides and overrides["scales"] is not None:
        meta["scales"] = [float(s) for s in overrides["scales"]]
    return OnnxDetector(directory, meta, threads)
