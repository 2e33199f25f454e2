"""Detection on image files: output names, the bounded working copy, failures per image."""

from __future__ import annotations

import torch
from PIL import Image

from sppnet.engine.detect_images import (
    ImageFailure,
    detect_images,
    detection_copy,
    output_names,
)


def test_output_names_never_collide():
    assert output_names(["a/x.jpg", "b/x.jpg", "c/y.png", "x-2.jpg", "d/x.png"]) == [
        "x", "x-2", "y", "x-2-2", "x-3"
    ]  # fmt: skip


def test_detection_copy_keeps_small_images_and_shrinks_large_ones():
    small = Image.new("RGB", (60, 40))
    same, factor = detection_copy(small, 100)
    assert same is small and torch.equal(factor, torch.ones(4))
    large = Image.new("RGB", (300, 200))
    copy, factor = detection_copy(large, 100)  # shorter side 200 -> 100
    assert copy.size == (150, 100)
    assert torch.allclose(factor, torch.tensor([0.5, 0.5, 0.5, 0.5]))


def test_unreadable_image_is_a_failure_not_an_exception(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")

    class NoDetector:
        scales = (96,)

    done = list(detect_images(NoDetector(), [bad, tmp_path / "missing.jpg"]))
    assert [type(d) for d in done] == [ImageFailure, ImageFailure]
    assert done[0].path == bad and "missing.jpg" in done[1].message
