"""Fixtures of the detection tests that run a saved detector on pictures."""

from __future__ import annotations

import pytest
from detector_helpers import save_tiny_detector
from detector_helpers import scene as make_scene


@pytest.fixture
def scene():
    """``scene(path, size=(100, 75), seed=0)``: a picture with edges, written to ``path``."""
    return make_scene


@pytest.fixture
def saved_detector(tmp_path, tiny_zf5):
    """A tiny saved detector (4 classes, random SVMs, K + 1-way fc8); its run folder."""
    return save_tiny_detector(tmp_path, tiny_zf5)
