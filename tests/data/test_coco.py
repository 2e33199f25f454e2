"""CocoDetection: xywh -> xyxy, iscrowd as difficult, category ids <-> labels, images without
objects, named errors; coco_ground_truth gives the file back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from image_tree_helpers import make_image

from sppnet.data import CocoDetection, coco_ground_truth


def _coco(tmp_path: Path, **changes) -> tuple[Path, Path]:
    images = tmp_path / "img"
    for name, size in (("a.jpg", (40, 30)), ("sub/b.png", (50, 20)), ("c.jpg", (10, 10))):
        make_image(images / name, size)
    data = {
        "images": [
            {"id": 11, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 5, "file_name": "sub/b.png", "width": 50, "height": 20},
            {"id": 9, "file_name": "c.jpg", "width": 10, "height": 10},  # no objects
        ],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 7, "bbox": [1.5, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
            {"id": 3, "image_id": 5, "category_id": 7, "bbox": [-0.5, 3, 20.5, 17.5]},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    data.update(changes)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, images


def test_boxes_labels_crowd_and_ids(tmp_path: Path) -> None:
    path, images = _coco(tmp_path)
    ds = CocoDetection(path, images)
    assert ds.ids == ["11", "5", "9"] and ds.coco_ids == [11, 5, 9]
    # labels follow the category ids: 3 (cat) -> 0, 7 (dog) -> 1; and back
    assert ds.class_names == ["cat", "dog"] and ds.category_ids == [3, 7]
    assert ds.category_to_label == {3: 0, 7: 1}
    a = ds.annotations[0]
    # [x, y, w, h] -> (x, y, x + w, y + h): the same continuous coordinates, nothing shifted
    assert a["boxes"].tolist() == [[1.5, 2.0, 11.5, 22.0], [0.0, 0.0, 40.0, 30.0]]
    assert a["labels"].tolist() == [1, 0] and a["difficult"].tolist() == [False, True]
    assert a["names"] == ["dog", "cat"]
    # half a pixel outside the image: clipped, as VOC's one-pixel tolerance
    assert ds.annotations[1]["boxes"].tolist() == [[0.0, 3.0, 20.0, 20.0]]
    assert ds.annotations[2]["boxes"].shape == (0, 4) and len(ds.annotations[2]["labels"]) == 0
    assert ds.sizes == [(30, 40), (20, 50), (10, 10)]
    image, target = ds[1]
    assert image.size == (50, 20) and target["image_id"] == "5"
    assert torch.equal(target["size"], torch.tensor([20, 50]))
    # classes given: their order sets the labels
    ds2 = CocoDetection(path, images, classes=["dog", "cat", "bird"])
    assert ds2.category_ids == [7, 3, None]
    assert ds2.annotations[0]["labels"].tolist() == [0, 1]


def test_ground_truth_dict_gives_the_file_back(tmp_path: Path) -> None:
    path, images = _coco(tmp_path)
    gt = coco_ground_truth(CocoDetection(path, images))
    assert [i["id"] for i in gt["images"]] == [11, 5, 9]
    assert gt["categories"] == [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    first = gt["annotations"][0]
    assert first["bbox"] == [1.5, 2.0, 10.0, 20.0] and first["category_id"] == 7
    assert first["area"] == 200.0 and first["iscrowd"] == 0
    assert gt["annotations"][1]["iscrowd"] == 1
    assert gt["annotations"][2]["bbox"] == [0.0, 3.0, 20.0, 17.0]  # the clipped box


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"annotations": {}}, ValueError, "'annotations' must be a list"),
        ({"images": [{"id": "x", "file_name": "a.jpg", "width": 1, "height": 1}]}, ValueError,
         r"images\[0\] needs an integer 'id'"),
        ({"images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 1}],
          "annotations": []}, ValueError, "positive size"),
        ({"categories": [{"id": 7, "name": "dog"}, {"id": 7, "name": "cat"}]}, ValueError,
         "category id 7 appears twice"),
    ],
)  # fmt: skip
def test_malformed_files_are_named(tmp_path: Path, change, error, match) -> None:
    path, images = _coco(tmp_path, **change)
    with pytest.raises(error, match=match) as info:
        CocoDetection(path, images)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("bbox", "match"),
    [
        ([1, 2, 0, 5], "zero or negative width"),
        ([1, 2, 3], "4 finite numbers"),
        ([1, 2, float("nan"), 3], "4 finite numbers"),
        ([30, 0, 20, 10], "outside the 40 x 30 image"),
    ],
)
def test_bad_boxes_are_named(tmp_path: Path, bbox, match) -> None:
    ann = [{"id": 42, "image_id": 11, "category_id": 7, "bbox": bbox}]
    path, images = _coco(tmp_path, annotations=ann)
    with pytest.raises(ValueError, match=match) as info:
        CocoDetection(path, images)
    assert "id 42" in str(info.value) and str(path) in str(info.value)
    ds = CocoDetection(path, images, skip_bad=True)
    assert ds.ids == ["5", "9"] and ds.skipped_ids == ["11"]


def test_other_errors(tmp_path: Path) -> None:
    path, images = _coco(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        CocoDetection(bad, images)
    with pytest.raises(FileNotFoundError, match="no COCO annotation file"):
        CocoDetection(tmp_path / "none.json", images)
    with pytest.raises(FileNotFoundError, match="no image folder"):
        CocoDetection(path, tmp_path / "nowhere")
    (images / "c.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"c\.jpg \(image id 9"):
        CocoDetection(path, images)
    assert CocoDetection(path, images, skip_bad=True).skipped_ids == ["9"]
    ann = [{"id": 1, "image_id": 99, "category_id": 7, "bbox": [0, 0, 1, 1]}]
    path, images = _coco(tmp_path, annotations=ann)
    with pytest.raises(ValueError, match="image_id 99"):
        CocoDetection(path, images)
    with pytest.raises(ValueError, match=r"'dog' .* not one of the classes"):
        CocoDetection(_coco(tmp_path)[0], images, classes=["cat"])
