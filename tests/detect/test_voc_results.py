"""VOC result files: written and read back, one file per class, VOC's 1-based boxes."""

from __future__ import annotations

import random

import pytest
import torch

from sppnet.detect.voc_results import read_voc_results, write_voc_results
from sppnet.evaluation import format_voc_results

A = (0.0, 0.0, 10.0, 10.0)
B = (20.0, 20.0, 30.0, 30.0)


def _det(boxes, scores, labels=None) -> dict[str, torch.Tensor]:
    n = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels if labels is not None else [0] * n, dtype=torch.int64),
    }


def _random_detections(seed: int, k: int) -> dict[str, dict[str, torch.Tensor]]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    dets = {}
    for i in range(5):
        n = rng.randint(0, 6)
        xy = torch.randint(0, 30, (n, 2)).float()
        wh = torch.randint(1, 15, (n, 2)).float()
        boxes = torch.cat([xy, xy + wh], 1) + torch.rand(n, 1) * 0.5  # fractional coordinates
        dets[f"{i:06d}"] = {
            "boxes": boxes,
            "scores": torch.rand(n),
            "labels": torch.randint(0, k, (n,)),
        }
    return dets


def test_result_files_round_trip(tmp_path) -> None:
    names = ["aeroplane", "bicycle", "bird"]
    dets = _random_detections(0, len(names))
    paths = write_voc_results(dets, tmp_path / "res", names)
    assert [p.name for p in paths] == [f"comp4_det_test_{c}.txt" for c in names]
    assert [p.read_text() for p in paths] == format_voc_results(dets, names)
    back = read_voc_results(tmp_path / "res", names)
    for image_id, d in dets.items():
        if len(d["boxes"]) == 0:
            assert image_id not in back
            continue
        got = back[image_id]
        # read_voc_results groups an image's detections by class, keeping the order within one.
        order = torch.argsort(d["labels"], stable=True)
        torch.testing.assert_close(got["labels"], d["labels"][order])
        torch.testing.assert_close(got["boxes"], d["boxes"][order], atol=6e-4, rtol=0)
        torch.testing.assert_close(got["scores"], d["scores"][order], atol=0, rtol=6e-6)


def test_result_file_uses_voc_one_based_inclusive_boxes(tmp_path) -> None:
    dets = {"000005": _det([(0.0, 0.0, 10.0, 10.0), B], [0.5, 0.123456789], labels=[1, 0])}
    write_voc_results(dets, tmp_path, ["cat", "dog"], prefix="p_")
    assert (tmp_path / "p_dog.txt").read_text() == "000005 0.5 1.000 1.000 10.000 10.000\n"
    assert (tmp_path / "p_cat.txt").read_text() == "000005 0.123457 21.000 21.000 30.000 30.000\n"
    back = read_voc_results(tmp_path, ["cat", "dog"], prefix="p_")
    assert back["000005"]["boxes"].tolist() == [list(B), [0.0, 0.0, 10.0, 10.0]]


def test_bad_result_files_raise(tmp_path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        write_voc_results({"a b": _det([A], [0.9])}, tmp_path, ["cat"])
    with pytest.raises(ValueError, match=r"outside 0\.\.0"):
        write_voc_results({"im": _det([A], [0.9], labels=[1])}, tmp_path, ["cat"])
    assert list(tmp_path.iterdir()) == []  # nothing written for invalid detections
    with pytest.raises(FileNotFoundError, match="'dog'"):
        read_voc_results(tmp_path, ["dog"])
    with pytest.raises(TypeError, match="sequence of strings"):
        read_voc_results(tmp_path, "dog")  # names are checked before any file is opened
    (tmp_path / "comp4_det_test_cat.txt").write_text("im 0.9 1 1 10 10\nim 0.8 1 1 10\n")
    with pytest.raises(ValueError, match=r"comp4_det_test_cat.txt:2: expected"):
        read_voc_results(tmp_path, ["cat"])
    (tmp_path / "comp4_det_test_cat.txt").write_text("im 0.9 5 1 1 10\n")
    with pytest.raises(ValueError, match=f"in {tmp_path}"):
        read_voc_results(tmp_path, ["cat"])
