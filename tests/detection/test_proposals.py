"""Tests for sppnet.detection.proposals: selective search, EdgeBoxes, files, cache."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.detection.proposals import (
    ProposalCache,
    edge_boxes,
    load_proposals,
    load_rcnn_mat,
    selective_search,
)
from sppnet.ops.boxes import box_iou

pytest.importorskip("cv2.ximgproc")

# A drawn rectangle covering pixels x 50..149, y 40..119 -> (50, 40, 150, 120).
_RECT = torch.tensor([[50.0, 40.0, 150.0, 120.0]])


def _image(height: int = 160, width: int = 200) -> np.ndarray:
    """Mild noise with one high-contrast rectangle, uint8 [H, W, 3] RGB."""
    rng = np.random.default_rng(0)
    img = (110 + rng.integers(-8, 9, size=(height, width, 3))).astype(np.uint8)
    img[40:120, 50:150] = (240, 30, 30)
    return img


def _inside(boxes: torch.Tensor, height: int, width: int) -> bool:
    return bool(
        (boxes[:, 0] >= 0).all()
        and (boxes[:, 1] >= 0).all()
        and (boxes[:, 2] <= width).all()
        and (boxes[:, 3] <= height).all()
        and (boxes[:, 2] > boxes[:, 0]).all()
        and (boxes[:, 3] > boxes[:, 1]).all()
    )


@pytest.fixture(scope="module")
def ss_boxes() -> torch.Tensor:
    return selective_search(_image())


def test_selective_search_inside_and_finds_rectangle(ss_boxes: torch.Tensor) -> None:
    assert ss_boxes.dtype == torch.float32 and ss_boxes.dim() == 2 and ss_boxes.shape[1] == 4
    assert ss_boxes.shape[0] > 0
    assert _inside(ss_boxes, 160, 200)
    assert float(box_iou(ss_boxes, _RECT).max()) > 0.7


def test_selective_search_is_deterministic(ss_boxes: torch.Tensor) -> None:
    again = selective_search(Image.fromarray(_image()))  # PIL input gives the same boxes
    assert torch.equal(ss_boxes, again)


def test_selective_search_max_proposals_and_min_size(ss_boxes: torch.Tensor) -> None:
    few = selective_search(_image(), max_proposals=5)
    assert torch.equal(few, ss_boxes[:5])
    big = selective_search(_image(), min_size=30)
    assert bool(((big[:, 2] - big[:, 0]) >= 30).all() and ((big[:, 3] - big[:, 1]) >= 30).all())


def test_selective_search_validation() -> None:
    with pytest.raises(ValueError, match="mode"):
        selective_search(_image(), mode="slow")
    with pytest.raises(ValueError, match="max_proposals"):
        selective_search(_image(), max_proposals=0)
    with pytest.raises(TypeError, match="uint8"):
        selective_search(_image().astype(np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        selective_search(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="PIL image"):
        selective_search([[1, 2, 3]])


def test_edge_boxes_inside_sorted_and_finds_rectangle() -> None:
    boxes, scores = edge_boxes(_image(), max_boxes=300)
    assert boxes.shape[0] == scores.shape[0] > 0
    assert boxes.shape[0] <= 300
    assert boxes.dtype == scores.dtype == torch.float32
    assert _inside(boxes, 160, 200)
    assert bool((scores[:-1] >= scores[1:]).all())
    assert float(box_iou(boxes, _RECT).max()) > 0.5
    again, again_scores = edge_boxes(_image(), max_boxes=300)
    assert torch.equal(boxes, again) and torch.equal(scores, again_scores)


def test_edge_boxes_flat_image_is_empty() -> None:
    boxes, scores = edge_boxes(np.full((40, 50, 3), 7, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_edge_boxes_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        edge_boxes(_image(), alpha=0.0)
    with pytest.raises(ValueError, match="beta"):
        edge_boxes(_image(), beta=1.5)
    with pytest.raises(ValueError, match="max_boxes"):
        edge_boxes(_image(), max_boxes=-1)
    with pytest.raises(ValueError, match="min_score"):
        edge_boxes(_image(), min_score=-0.1)


def test_load_proposals_npy_and_json(tmp_path) -> None:
    boxes = np.array([[0, 0, 10, 10], [5.5, 2, 20, 30]], np.float32)
    np.save(tmp_path / "a.npy", boxes)
    (tmp_path / "a.json").write_text(json.dumps({"boxes": boxes.tolist()}))
    for name in ("a.npy", "a.json"):
        out = load_proposals(tmp_path / name)
        assert out.dtype == torch.float32
        assert torch.equal(out, torch.from_numpy(boxes))
    # Clipping to the image and dropping the degenerate box.
    np.save(tmp_path / "b.npy", np.array([[-5, -5, 10, 300], [50, 50, 60, 60]], np.float32))
    out = load_proposals(tmp_path / "b.npy", image_size=(40, 30))
    assert out.tolist() == [[0.0, 0.0, 10.0, 40.0]]
    (tmp_path / "e.json").write_text(json.dumps({"boxes": []}))
    assert load_proposals(tmp_path / "e.json").shape == (0, 4)


def test_load_proposals_errors(tmp_path) -> None:
    missing = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match=r"nope\.npy"):
        load_proposals(missing)
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[R, 4\]"):
        load_proposals(tmp_path / "bad.npy")
    np.save(tmp_path / "inv.npy", np.array([[10, 0, 5, 5]], np.float32))
    with pytest.raises(ValueError, match="x2 >= x1"):
        load_proposals(tmp_path / "inv.npy")
    (tmp_path / "x.json").write_text(json.dumps({"rects": []}))
    with pytest.raises(ValueError, match="boxes"):
        load_proposals(tmp_path / "x.json")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match=r"\.npy or \.json"):
        load_proposals(tmp_path / "x.txt")


def test_load_rcnn_mat_converts_one_based_yx(tmp_path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    images = np.empty((2, 1), dtype=object)
    images[0, 0] = "000005"
    images[1, 0] = "000007"
    boxes = np.empty((2, 1), dtype=object)
    # R-CNN: 1-based inclusive [y1 x1 y2 x2]; pixels x 0..9, y 4..19 (0-based).
    boxes[0, 0] = np.array([[5.0, 1.0, 20.0, 10.0], [1.0, 2.0, 3.0, 4.0]])
    boxes[1, 0] = np.zeros((0, 4))
    path = tmp_path / "voc_2007_test.mat"
    scipy_io.savemat(str(path), {"images": images, "boxes": boxes})
    out = load_rcnn_mat(path)
    assert list(out) == ["000005", "000007"]
    assert out["000005"].tolist() == [[0.0, 4.0, 10.0, 20.0], [1.0, 0.0, 4.0, 3.0]]
    assert out["000007"].shape == (0, 4)


def test_load_rcnn_mat_errors(tmp_path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    with pytest.raises(FileNotFoundError, match=r"missing\.mat"):
        load_rcnn_mat(tmp_path / "missing.mat")
    scipy_io.savemat(str(tmp_path / "a.mat"), {"images": np.array(["x"], dtype=object)})
    with pytest.raises(ValueError, match="boxes"):
        load_rcnn_mat(tmp_path / "a.mat")
    images = np.empty((1, 1), dtype=object)
    images[0, 0] = "x"
    boxes = np.empty((1, 1), dtype=object)
    boxes[0, 0] = np.zeros((2, 3))
    scipy_io.savemat(str(tmp_path / "b.mat"), {"images": images, "boxes": boxes})
    with pytest.raises(ValueError, match=r"\[R, 4\]"):
        load_rcnn_mat(tmp_path / "b.mat")


def test_proposal_cache_computes_once_and_reloads(tmp_path) -> None:
    calls = []

    def loader() -> np.ndarray:
        calls.append(1)
        return _image(80, 100)

    cache = ProposalCache(tmp_path, method="edge_boxes", max_boxes=50)
    first = cache.get("img1", loader)
    assert len(calls) == 1
    assert (tmp_path / "edge_boxes" / "img1.npy").is_file()
    assert (tmp_path / "edge_boxes" / "settings.json").is_file()
    assert "img1" in cache
    second = ProposalCache(tmp_path, method="edge_boxes", max_boxes=50).get("img1", loader)
    assert len(calls) == 1
    assert torch.equal(first, second)
    assert not [p for p in (tmp_path / "edge_boxes").iterdir() if p.name.endswith(".tmp")]


def test_proposal_cache_selective_search_with_image(tmp_path) -> None:
    cache = ProposalCache(tmp_path, mode="fast", max_proposals=20)
    boxes = cache.get("a", _image(60, 70))
    assert 0 < boxes.shape[0] <= 20
    assert torch.equal(boxes, cache.get("a", lambda: pytest.fail("must not recompute")))


def test_proposal_cache_errors(tmp_path) -> None:
    ProposalCache(tmp_path, method="edge_boxes", max_boxes=50).get("i", _image(60, 70))
    with pytest.raises(ValueError, match="max_boxes"):
        ProposalCache(tmp_path, method="edge_boxes", max_boxes=60)
    with pytest.raises(ValueError, match="method"):
        ProposalCache(tmp_path, method="sliding")
    with pytest.raises(TypeError):
        ProposalCache(tmp_path, method="edge_boxes", mode="fast")
    # Defaults are filled in: leaving out max_boxes=2000 or giving it is the same cache.
    ProposalCache(tmp_path / "d", method="edge_boxes").get("i", _image(60, 70))
    ProposalCache(tmp_path / "d", method="edge_boxes", max_boxes=2000)
    cache = ProposalCache(tmp_path, method="edge_boxes", max_boxes=50)
    with pytest.raises(ValueError, match="separator"):
        cache.get("../x", _image(60, 70))


def test_selective_search_in_threads_matches_one_at_a_time(ss_boxes: torch.Tensor) -> None:
    # the rank generators are process-wide: concurrent searches must not share a sequence
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: selective_search(_image()), range(3)))
    for boxes in results:
        assert torch.equal(boxes, ss_boxes)
