"""YOLO layout: reading (boxes by hand), data.yaml, splits, the root guard, named label errors
through the CLI, and the conversions (VOC -> YOLO -> VOC keeps boxes and classes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sppnet.cli import main
from sppnet.data import CocoDetection, VOCDetection, YoloDetection, parse_yolo_labels
from sppnet.data.yolo import yolo_label_lines, yolo_splits
from sppnet.data.yolo_convert import voc_to_yolo, yolo_to_coco, yolo_to_voc


def _image(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)


def _root(tmp_path, labels, names="names: [cat, dog]\n", split="train"):
    """A YOLO root with one 100 x 50 image a.png whose label file holds ``labels``."""
    root = tmp_path / "yolo"
    _image(root / "images" / split / "a.png", 100, 50)
    (root / "labels" / split).mkdir(parents=True)
    (root / "labels" / split / "a.txt").write_text(labels)
    if names is not None:
        (root / "data.yaml").write_text(names)
    return root


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_boxes_are_fractions_of_the_image_size(tmp_path):
    # by hand on a 100 x 50 image: cx 0.5 -> 50, w 0.2 -> 20 px: x 40..60; cy 0.5 -> 25,
    # h 0.4 -> 20 px: y 15..35. The second: x (0.1 - 0.05) * 100 = 5 .. 15, y 0 .. 50.
    root = _root(tmp_path, "0 0.5 0.5 0.2 0.4\n\n1 0.1 0.5 0.1 1\n")
    data = YoloDetection(root, "train")
    assert data.ids == ["a"] and data.class_names == ["cat", "dog"]
    ann = data.annotations[0]
    assert ann["boxes"].tolist() == [[40.0, 15.0, 60.0, 35.0], [5.0, 0.0, 15.0, 50.0]]
    assert ann["labels"].tolist() == [0, 1] and ann["names"] == ["cat", "dog"]
    assert (ann["width"], ann["height"], ann["filename"]) == (100, 50, "images/train/a.png")
    image, target = data[0]
    assert image.size == (100, 50) and target["image_id"] == "a"


def test_names_as_mapping_classes_option_and_no_names(tmp_path):
    root = _root(tmp_path, "1 0.5 0.5 0.2 0.2\n", names="nc: 2\nnames:\n  0: cat\n  1: dog\n")
    assert YoloDetection(root, "train").class_names == ["cat", "dog"]
    # classes given: the file's index goes through data.yaml's names (matched by name)
    swapped = YoloDetection(root, "train", classes=["dog", "cat", "bird"]).annotations[0]
    assert swapped["names"] == ["dog"] and swapped["labels"].tolist() == [0]
    with pytest.raises(ValueError, match=r"names classes \['cat'\] that are not among"):
        YoloDetection(root, "train", classes=["dog", "bird"])
    (root / "data.yaml").write_text("nc: 3\nnames: [cat, dog]\n")
    with pytest.raises(ValueError, match="nc is 3 but 'names' holds 2"):
        YoloDetection(root, "train")
    (root / "data.yaml").unlink()
    with pytest.raises(ValueError, match=r"no data\.yaml with 'names'; pass the classes"):
        YoloDetection(root, "train")
    assert YoloDetection(root, "train", classes=["x", "y"]).annotations[0]["names"] == ["y"]


def test_yaml_is_parsed_safely(tmp_path):
    root = _root(tmp_path, "", names="names: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError, match=r"data.yaml: cannot be read as YAML"):
        YoloDetection(root, "train")


def test_splits_and_paths_stay_inside_the_root(tmp_path):
    root = _root(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    assert yolo_splits(root) == ["train"]
    with pytest.raises(ValueError, match="has no split 'val'; its splits: train"):
        YoloDetection(root, "val")
    _image(tmp_path / "outside" / "b.png", 10, 10)
    (root / "data.yaml").write_text("names: [cat, dog]\nval: ../outside\n")
    with pytest.raises(ValueError, match="outside the dataset root"):
        YoloDetection(root, "val")
    (root / "list.txt").write_text("images/train/a.png\n../outside/b.png\n")
    (root / "data.yaml").write_text("names: [cat, dog]\nval: list.txt\n")
    with pytest.raises(ValueError, match=r"list.txt names .*b.png, which is outside"):
        YoloDetection(root, "val")
    (root / "list.txt").write_text("images/train/a.png\n")
    assert YoloDetection(root, "val").ids == ["a"]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("0 0.5 0.5 0.2", "expected 5 columns 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.2 0.4 0.1 0.1", "expected 5 columns 'class cx cy w h', got 7"),
        ("0 1.5 0.5 0.2 0.4", r"must be fractions in \[0, 1\]"),
        ("0 0.5 -0.1 0.2 0.4", r"must be fractions in \[0, 1\]"),
        ("2 0.5 0.5 0.2 0.4", r"unknown class index 2 \(the dataset has 2 classes: 0..1\)"),
        ("0.5 0.5 0.5 0.2 0.4", "unknown class index 0.5"),
        ("cat 0.5 0.5 0.2 0.4", "not numbers"),
    ],
)
def test_malformed_label_lines_are_named_through_the_cli(tmp_path, capsys, line, words):
    root = _root(tmp_path, f"0 0.5 0.5 0.2 0.2\n{line}\n")
    argv = ["convert", "yolo2voc", "--data", str(root), "--split", "train", "--out",
            str(tmp_path / "voc")]  # fmt: skip
    assert main(argv) == 2
    err = _error_line(capsys)
    assert f"{root / 'labels' / 'train' / 'a.txt'}:2:" in err
    assert pytest.importorskip("re").search(words, err), err


def test_train_det_names_a_bad_label_line_before_work(tmp_path, capsys):
    root = _root(tmp_path, "7 0.5 0.5 0.2 0.2\n")
    argv = ["train-det", "--data", str(root), "--split", "train", "--out", str(tmp_path / "r"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "a.txt:1: unknown class index 7" in _error_line(capsys)


def test_voc_to_yolo_to_voc_keeps_boxes_and_classes(tiny_voc, tmp_path, capsys):
    voc = tiny_voc()
    assert main(["convert", "voc2yolo", "--data", str(voc), "--split", "train", "--out",
                 str(tmp_path / "y")]) == 0  # fmt: skip
    assert "voc2yolo: 8 images" in capsys.readouterr().out
    assert main(["convert", "yolo2voc", "--data", str(tmp_path / "y"), "--split", "train",
                 "--out", str(tmp_path / "v")]) == 0  # fmt: skip
    before, after = VOCDetection(voc, "train"), VOCDetection(tmp_path / "v", "train")
    assert after.ids == sorted(before.ids) and after.class_names == before.class_names
    by_id = dict(zip(before.ids, before.annotations, strict=True))
    n = 0
    for image_id, ann in zip(after.ids, after.annotations, strict=True):
        old = by_id[image_id]
        assert ann["names"] == old["names"] and (ann["width"], ann["height"]) == (
            old["width"], old["height"])  # fmt: skip
        assert (ann["boxes"] - old["boxes"]).abs().max() <= 0.5 if len(ann["boxes"]) else True
        n += len(ann["boxes"])
    assert n > 0


def test_yolo_to_coco_reads_back_the_same_boxes(tmp_path):
    root = _root(tmp_path, "0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.3 0.1\n")
    done = yolo_to_coco(root, "train", tmp_path / "a.json")
    assert (done["images"], done["objects"]) == (1, 2)
    coco = CocoDetection(tmp_path / "a.json", root)
    yolo = YoloDetection(root, "train")
    np.testing.assert_allclose(coco.annotations[0]["boxes"], yolo.annotations[0]["boxes"],
                               atol=1e-3)  # fmt: skip
    assert coco.class_names == ["cat", "dog"]
    assert json.loads((tmp_path / "a.json").read_text())["images"][0]["file_name"] == (
        "images/train/a.png"
    )


def test_label_lines_round_trip_far_below_a_pixel():
    boxes = [[0.0, 0.0, 1999.0, 3.0], [10.25, 20.5, 30.75, 40.125]]
    lines = yolo_label_lines(boxes, [0, 1], 2000, 1000)
    path_boxes = []
    for line in lines:
        _, cx, cy, w, h = (float(v) for v in line.split())
        path_boxes.append([(cx - w / 2) * 2000, (cy - h / 2) * 1000, (cx + w / 2) * 2000,
                           (cy + h / 2) * 1000])  # fmt: skip
    np.testing.assert_allclose(path_boxes, boxes, atol=1e-5)


def test_flat_root_is_split_all_and_converters_refuse_other_names(tmp_path):
    root = tmp_path / "flat"
    _image(root / "images" / "a.png", 20, 20)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert YoloDetection(root, classes=["x"]).annotations[0]["boxes"].tolist() == [
        [5.0, 5.0, 15.0, 15.0]
    ]
    assert yolo_to_voc(root, "all", tmp_path / "v", classes=["x"])["objects"] == 1
    assert voc_to_yolo(tmp_path / "v", "all", tmp_path / "y")["objects"] == 1
    assert (tmp_path / "y" / "labels" / "a.txt").is_file()
    assert parse_yolo_labels(tmp_path / "y" / "labels" / "a.txt", 20, 20, 1) == [
        ([5.0, 5.0, 15.0, 15.0], 0)
    ]
