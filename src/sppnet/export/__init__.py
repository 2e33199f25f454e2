"""ONNX export of a classifier or a detector, and the exported detector run with ONNX Runtime
(proposals, window mapping, box decoding and NMS in Python)."""

from sppnet.export.onnx import export_classifier, export_detector
from sppnet.export.onnx_detector import OnnxDetector, load_onnx_detector

__all__ = ["OnnxDetector", "export_classifier", "export_detector", "load_onnx_detector"]
