"""The library's front door: open what a training run or an export saved, in one call.

``sppnet.load_detector`` and ``sppnet.load_classifier`` are these functions. They sit above
the run packages because a detector may come from either of two of them: a ``sppnet
train-det`` output (:mod:`sppnet.detect`) or an ONNX export (:mod:`sppnet.export`).
"""

from __future__ import annotations

import os
from pathlib import Path

from sppnet.classify.predictor import ClassificationPredictor, load_classifier
from sppnet.detect.predictor import DetectionPredictor, open_saved_detector

__all__ = ["ClassificationPredictor", "DetectionPredictor", "load_classifier", "load_detector"]


def load_detector(path: str | os.PathLike[str], device: str = "auto") -> DetectionPredictor:
    """Open a trained detector for :meth:`~sppnet.detect.predictor.DetectionPredictor.predict`.

    Args:
        path: a ``sppnet train-det`` output folder (or its ``detector/``), or an exported
            ONNX detector directory (``sppnet export --detector``, holding
            ``onnx_detector.json``).
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``
            or ``"mps"``; an ONNX detector runs on the CPU.

    Returns:
        The predictor.

    Raises:
        FileNotFoundError: no detector there.
        ValueError: a damaged detector, or a device other than the CPU for ONNX.
    """
    directory = Path(path)
    if (directory / "onnx_detector.json").is_file():
        if device not in ("auto", "cpu"):
            raise ValueError(f"device {device!r}: an ONNX detector runs on the CPU")
        from sppnet.export.onnx_detector import load_onnx_detector

        return DetectionPredictor(load_onnx_detector(directory), str(directory))
    return open_saved_detector(directory, device)
