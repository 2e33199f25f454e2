"""Helpers of the detection tests: a tiny saved detector and pictures with edges.

- ``scene(path, size=(100, 75), seed=0)``: writes rectangles on noise (EdgeBoxes finds
  windows there) and returns the path;
- ``save_tiny_detector(root, tiny_zf5)``: a tiny ZF-5 detector (4 classes, random SVMs on a
  ``K + 1``-way fc8 network, scale 80) saved as ``sppnet train-det`` saves it into
  ``root/det/detector``; returns ``root/det``.

(A module, not a conftest.py: tests elsewhere import ``conftest`` by name.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DETECTOR_CLASSES = ["cat", "dog", "car", "bus"]


def scene(path: Path, size: tuple[int, int] = (100, 75), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    for _ in range(4):
        x, y = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        pixels[y : y + 25, x : x + 28] = rng.integers(120, 255, 3, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def save_tiny_detector(root: Path, tiny_zf5: Callable[..., torch.nn.Module]) -> Path:
    """A tiny detector saved as train-det saves it (``<run>/detector/``); the run folder."""
    from sppnet.detect.io import save_detector
    from sppnet.detection import Detector

    gen = torch.Generator().manual_seed(3)
    k = len(DETECTOR_CLASSES)
    det = Detector(
        model=tiny_zf5(k + 1, seed=1), class_names=DETECTOR_CLASSES, scales=(80,),
        svm_weight=torch.randn(k, 16, generator=gen), svm_bias=torch.randn(k, generator=gen),
        max_detections=20,
    )  # fmt: skip
    out = root / "det"
    save_detector(out / "detector", det, {"name": "zf5"})
    return out
