"""Where a detector computes, and its scored windows brought back to the CPU.

``sppnet eval-det`` and ``sppnet detect`` load the detector onto ``--device``
(:func:`~sppnet.detect.io.load_detector` with ``map_location``). Each image goes
to that device for the conv, pooling, fc and SVM stages (proposals are computed on the
CPU, as ever); the scored windows come back to the CPU for stage 5, NMS (a greedy loop
over NumPy arrays on any device), and so do the detections that evaluation and the output
files read. On the CPU every step here is a no-op.

Shape shorthand: R windows, K classes, M detections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["detector_device", "postprocess_on_cpu"]


def detector_device(detector: Any) -> torch.device:
    """The device of ``detector``'s network (its first parameter's).

    Args:
        detector: a :class:`~sppnet.detection.Detector`, or anything with ``score_windows``
            (an ONNX Runtime detector, which has no torch network, computes on the CPU).

    Returns:
        The device the detector's images should be on.
    """
    model = getattr(detector, "model", None)
    param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return param.device if param is not None else torch.device("cpu")


def postprocess_on_cpu(
    detector: Any,
    scored: Mapping[str, Any],
    image_size: tuple[int, int],
    *,
    probs: bool = False,
    score_threshold: float | None = None,
) -> dict[str, Tensor]:
    """Stage 5 (per-class NMS, threshold, cap) of ``detector`` on the CPU.

    Args:
        detector: anything with ``postprocess`` (a :class:`~sppnet.detection.Detector`).
        scored: ``{"scores": Tensor[R, K], "boxes": Tensor[R, K, 4], ...}`` on any device,
            as ``score_windows`` returns it.
        image_size: ``(height, width)`` of the image.
        probs: also return ``"probs"`` ``Tensor[M]`` (each detection's class at its window
            in ``scored["probs"]``, the fc8 softmax) when ``scored`` has them.
        score_threshold: in place of the detector's own (``None``: the detector's).

    Returns:
        ``{"boxes": Tensor[M, 4], "scores": Tensor[M], "labels": LongTensor[M]}`` on the CPU
        (and ``"probs"``).
    """
    on_cpu = {"scores": scored["scores"].cpu(), "boxes": scored["boxes"].cpu()}
    with_probs = probs and scored.get("probs") is not None
    if not with_probs and score_threshold is None:
        return detector.postprocess(on_cpu, image_size)
    from sppnet.detection.detector import postprocess_detections

    dets = postprocess_detections(
        on_cpu["scores"], on_cpu["boxes"], image_size, detector.nms_threshold,
        detector.score_threshold if score_threshold is None else score_threshold,
        detector.max_detections, return_windows=True,
    )  # fmt: skip
    windows = dets.pop("windows")
    if with_probs:
        dets["probs"] = scored["probs"].cpu()[windows, dets["labels"]]
    return dets
