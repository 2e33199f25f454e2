"""Tests for sppnet.data.voc: the XML reader/writer, split files and VOCDetection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from sppnet.data.decode import ImageDecodeError
from sppnet.data.voc import (
    VOC_CLASSES,
    VOCDetection,
    collect_class_names,
    parse_voc_xml,
    read_class_file,
    read_class_names,
    read_split_ids,
    write_voc_xml,
)

CLASSES = {"cat": 0, "dog": 1}


def _obj(name="cat", box=(1, 1, 10, 10), extra="") -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name>{extra}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def _xml(objects: str, width=40, height=30, size: str | None = None) -> str:
    if size is None:
        size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation><filename>a.jpg</filename>{size}{objects}</annotation>"


def _write(tmp_path: Path, text: str, name: str = "ann_0001.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- parsing
def test_parse_converts_one_based_inclusive_boxes(tmp_path):
    objs = _obj("cat", (1, 1, 10, 10), "<difficult>1</difficult>") + _obj(
        "dog", (5, 7, 40, 30), "<truncated>1</truncated><difficult>0</difficult>"
    )
    ann = parse_voc_xml(_write(tmp_path, _xml(objs)), CLASSES)
    # VOC pixels 1..10 are our pixels 0..9, i.e. the continuous box (0, 10)
    assert ann["boxes"].tolist() == [[0, 0, 10, 10], [4, 6, 40, 30]]
    assert ann["boxes"].dtype == torch.float32
    assert ann["labels"].tolist() == [0, 1] and ann["labels"].dtype == torch.int64
    assert ann["difficult"].tolist() == [True, False]
    assert ann["truncated"].tolist() == [False, True]  # absent flags read as 0
    assert ann["names"] == ["cat", "dog"]
    assert (ann["filename"], ann["width"], ann["height"]) == ("a.jpg", 40, 30)
    assert ann["num_skipped"] == 0


def test_parse_without_class_map_and_empty_image(tmp_path):
    ann = parse_voc_xml(_write(tmp_path, _xml(_obj("zebra"))))
    assert ann["labels"].tolist() == [-1] and ann["names"] == ["zebra"]
    empty = parse_voc_xml(_write(tmp_path, _xml(""), "empty.xml"), CLASSES)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_parse_ignores_part_boxes_and_clips_within_one_pixel(tmp_path):
    part = "<part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>3</xmax>"
    part += "<ymax>3</ymax></bndbox></part>"
    # xmin = 0 (a 0-based slip found in real VOC files) and xmax = width + 1: clipped
    objs = _obj("cat", (0, 1, 41, 30), part)
    ann = parse_voc_xml(_write(tmp_path, _xml(objs)), CLASSES)
    assert ann["boxes"].tolist() == [[0, 0, 40, 30]]


def test_parse_float_coordinates(tmp_path):
    ann = parse_voc_xml(_write(tmp_path, _xml(_obj("cat", ("2.5", "3.0", "10.5", "12")))))
    assert ann["boxes"].tolist() == [[1.5, 2.0, 10.5, 12.0]]


def test_parse_zero_size_reads_image_header(tmp_path):
    Image.new("RGB", (37, 23)).save(tmp_path / "a.jpg")
    path = _write(tmp_path, _xml(_obj(), width=0, height=0))
    ann = parse_voc_xml(path, CLASSES, image_path=tmp_path / "a.jpg")
    assert (ann["width"], ann["height"]) == (37, 23)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*width or height 0"):
        parse_voc_xml(path, CLASSES)
    with pytest.raises(ValueError, match="cannot be read for its size"):
        parse_voc_xml(path, CLASSES, image_path=tmp_path / "missing.jpg")


ERROR_CASES = {
    "malformed": ("<annotation><size>", "malformed"),
    "root": ("<notes/>", "root element"),
    "no_size": ("<annotation><filename>a.jpg</filename></annotation>", "no <size>"),
    "no_width": (_xml("", size="<size><height>3</height></size>"), "<size> has no <width>"),
    "bad_size": (_xml("", width="4.5"), "non-negative integers"),
    "no_name": (_xml(_obj() + "<object><bndbox/></object>"), "object 1 has no <name>"),
    "no_bndbox": (_xml(_obj() + "<object><name>cat</name></object>"), "object 1 .* no <bndbox>"),
    "no_xmax": (
        _xml(
            "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>2</ymax>"
            "</bndbox></object>"
        ),
        "object 0 .*<bndbox> has no <xmax>",
    ),
    "not_number": (_xml(_obj("cat", (1, "one", 5, 5))), "object 0 .*<ymin> is not a number"),
    "nan": (_xml(_obj("cat", (1, 1, "nan", 5))), "not finite"),
    "x_inverted": (_xml(_obj() + _obj("cat", (9, 1, 5, 5))), "object 1 .*xmax < xmin"),
    "y_inverted": (_xml(_obj("cat", (1, 9, 5, 5))), "object 0 .*ymax < ymin"),
    "outside": (_xml(_obj("cat", (1, 1, 43, 10))), "object 0 .*outside the 40 x 30 image"),
    "outside_neg": (_xml(_obj("cat", (-1, 1, 4, 10))), "outside"),
    "unknown_class": (_xml(_obj() + _obj("horse")), "object 1 \\('horse'\\).*unknown class"),
    "bad_flag": (_xml(_obj("cat", extra="<difficult>maybe</difficult>")), "must be 0 or 1"),
    "degenerate": (_xml(_obj("cat", (41, 1, 41, 10))), "object 0 .*zero area"),
    "entities": (
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "xxxxxxxx">]><annotation>&e;</annotation>',
        "malformed or unsafe",
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_parse_errors_name_file_and_object(tmp_path, case):
    text, message = ERROR_CASES[case]
    path = _write(tmp_path, text, f"bad_{case}.xml")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*(" + message + ")"):
        parse_voc_xml(path, CLASSES)


def test_parse_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.xml: no such file"):
        parse_voc_xml(tmp_path / "nope.xml")


def test_skip_degenerate_drops_and_counts(tmp_path):
    objs = _obj("cat", (41, 1, 41, 10)) + _obj("dog", (2, 2, 5, 5))
    ann = parse_voc_xml(_write(tmp_path, _xml(objs)), CLASSES, skip_degenerate=True)
    assert ann["num_skipped"] == 1
    assert ann["names"] == ["dog"] and ann["boxes"].tolist() == [[1, 1, 5, 5]]


# ----------------------------------------------------------------------------- writing
def test_write_parse_round_trip_integer_boxes(tmp_path):
    gen = torch.Generator().manual_seed(0)
    w, h = 97, 61
    xy1 = torch.stack(
        [
            torch.randint(0, w - 1, (30,), generator=gen),
            torch.randint(0, h - 1, (30,), generator=gen),
        ],
        1,
    )
    wh = torch.stack(
        [torch.randint(1, w, (30,), generator=gen), torch.randint(1, h, (30,), generator=gen)], 1
    )
    xy2 = torch.minimum(xy1 + wh, torch.tensor([w, h]))
    boxes = torch.cat([xy1, xy2], 1).float()
    flags = torch.rand(30, 2, generator=gen) < 0.5
    objects = [
        {
            "name": ["cat", "dog"][i % 2],
            "box": boxes[i],
            "difficult": bool(flags[i, 0]),
            "truncated": bool(flags[i, 1]),
        }
        for i in range(30)
    ]
    path = tmp_path / "sub" / "rt.xml"
    write_voc_xml(path, filename="rt.jpg", width=w, height=h, objects=objects)
    ann = parse_voc_xml(path, CLASSES)
    assert torch.equal(ann["boxes"], boxes)
    assert torch.equal(ann["difficult"], flags[:, 0]) and torch.equal(ann["truncated"], flags[:, 1])
    assert ann["names"] == [o["name"] for o in objects]
    assert (ann["filename"], ann["width"], ann["height"]) == ("rt.jpg", w, h)
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed away


def test_write_rounds_non_integer_boxes_outwards(tmp_path):
    objects = [
        {"name": "cat", "box": (2.3, 4.7, 9.2, 9.9)},
        {"name": "cat", "box": (2.99999999, 3.00000001, 7.00000001, 8.0)},  # float noise
        {"name": "cat", "box": (5.2, 5.2, 5.4, 5.4)},  # inside one pixel
    ]
    path = tmp_path / "r.xml"
    write_voc_xml(path, filename="r.jpg", width=20, height=20, objects=objects)
    ann = parse_voc_xml(path, CLASSES)
    # the smallest pixel box containing each box
    assert ann["boxes"].tolist() == [[2, 4, 10, 10], [3, 3, 7, 8], [5, 5, 6, 6]]
    text = path.read_text()
    assert "<xmin>3</xmin>" in text and "<xmax>10</xmax>" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "positive integers"),
        ({"objects": [{"name": "", "box": (0, 0, 1, 1)}]}, "objects\\[0\\] needs a non-empty"),
        ({"objects": [{"name": "cat"}]}, "needs a 'box'"),
        ({"objects": [{"name": "cat", "box": (0, 0, 1)}]}, "4 numbers"),
        ({"objects": [{"name": "cat", "box": (3, 0, 3, 5)}]}, "zero-area"),
        ({"objects": [{"name": "cat", "box": (0, 0, 11, 5)}]}, "inside the 10 x 10 image"),
        ({"objects": [{"name": "cat", "box": (0, 0, float("inf"), 5)}]}, "finite"),
    ],
)
def test_write_validation(tmp_path, kwargs, message):
    args = {"filename": "x.jpg", "width": 10, "height": 10, "objects": []} | kwargs
    with pytest.raises(ValueError, match=message):
        write_voc_xml(tmp_path / "x.xml", **args)


# ----------------------------------------------------------------------------- splits, classes
def test_read_split_ids(tmp_path):
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("000005\n\n000007  -1\n000009 1\n")
    assert read_split_ids(tmp_path, "train") == ["000005", "000007", "000009"]
    (main / "dup.txt").write_text("1\n2\n1\n")
    with pytest.raises(ValueError, match=r"dup\.txt lists image id '1' more than once"):
        read_split_ids(tmp_path, "dup")
    with pytest.raises(ValueError, match=re.escape(str(main / "test.txt"))):
        read_split_ids(tmp_path, "test")


def test_read_class_names(tmp_path):
    assert read_class_names(tmp_path) == list(VOC_CLASSES) and len(VOC_CLASSES) == 20
    (tmp_path / "classes.txt").write_text("dog\ncat\n\n")
    assert read_class_names(tmp_path) == ["dog", "cat"]
    (tmp_path / "classes.txt").write_text("dog\ndog\n")
    with pytest.raises(ValueError, match="distinct"):
        read_class_names(tmp_path)


# ----------------------------------------------------------------------------- dataset
def _make_voc(root: Path, n: int = 3) -> list[str]:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(1, n + 1)]
    for k, image_id in enumerate(ids):
        w, h = 30 + 10 * k, 20 + 5 * k
        Image.new("RGB", (w, h), (10 * k, 50, 90)).save(root / "JPEGImages" / f"{image_id}.jpg")
        write_voc_xml(
            root / "Annotations" / f"{image_id}.xml",
            filename=f"{image_id}.jpg",
            width=w,
            height=h,
            objects=[{"name": "dog", "box": (1, 2, 11, 12), "difficult": k == 1}],
        )
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / "classes.txt").write_text("cat\ndog\n")
    return ids


def test_voc_detection_items(tmp_path):
    ids = _make_voc(tmp_path)
    ds = VOCDetection(tmp_path, "train")
    assert ds.ids == ids and len(ds) == 3
    assert ds.class_names == ["cat", "dog"] and ds.sizes == [(20, 30), (25, 40), (30, 50)]
    image, target = ds[1]
    assert isinstance(image, Image.Image) and image.size == (40, 25)
    assert target["boxes"].tolist() == [[1, 2, 11, 12]]
    assert target["labels"].tolist() == [1]
    assert target["difficult"].tolist() == [True] and target["truncated"].tolist() == [False]
    assert target["image_id"] == ids[1] and target["size"].tolist() == [25, 40]
    ds2 = VOCDetection(tmp_path, "train", classes=["dog", "cat"], transform=lambda im: im.size)
    assert ds2[-1][0] == (50, 30) and ds2[0][1]["labels"].tolist() == [0]
    with pytest.raises(IndexError):
        ds[3]
    assert "images=3" in repr(ds)


def test_voc_detection_bad_annotation_and_image(tmp_path):
    ids = _make_voc(tmp_path)
    bad_xml = tmp_path / "Annotations" / f"{ids[0]}.xml"
    bad_xml.write_text("<annotation>")
    with pytest.raises(ValueError, match=re.escape(str(bad_xml))):
        VOCDetection(tmp_path, "train")
    ds = VOCDetection(tmp_path, "train", skip_bad=True)
    assert ds.ids == ids[1:] and ds.skipped == 1 and ds.skipped_ids == [ids[0]]

    bad_xml.unlink()
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text(f"{ids[1]}\n{ids[2]}\n")
    bad_jpg = tmp_path / "JPEGImages" / f"{ids[1]}.jpg"
    bad_jpg.write_bytes(b"not a jpeg")
    with pytest.raises(ImageDecodeError, match=re.escape(str(bad_jpg))):
        VOCDetection(tmp_path, "train")[0]
    ds = VOCDetection(tmp_path, "train", skip_bad=True)
    _, target = ds[0]  # replaced by the next readable image
    assert target["image_id"] == ids[2] and ds.skipped == 1

    with pytest.raises(ValueError, match="unknown class"):
        VOCDetection(tmp_path, "train", classes=["cat"], skip_bad=False)


def test_own_classes_without_a_class_list_say_how_to_fix_it(tmp_path):
    """A VOC root whose annotations name their own classes and that has no
    classes.txt is an error naming the file, the split's classes and both fixes."""
    _make_voc(tmp_path)
    write_voc_xml(
        tmp_path / "Annotations" / "000002.xml", filename="000002.jpg", width=40, height=25,
        objects=[{"name": "widget", "box": (1, 2, 11, 12)}, {"name": "dog", "box": (0, 0, 5, 5)}],
    )  # fmt: skip
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(ValueError) as info:
        VOCDetection(tmp_path, "train", skip_bad=True)  # not skipped: every image would be
    message = str(info.value)
    assert "000002.xml" in message and "'widget' is not a Pascal VOC class" in message
    assert "--classes dog,widget" in message and str(tmp_path / "classes.txt") in message
    assert collect_class_names(tmp_path, "train") == ["dog", "widget"]
    ds = VOCDetection(tmp_path, "train", classes=["widget", "dog"])
    assert ds.annotations[1]["labels"].tolist() == [0, 1]
    # given classes that miss one: the plain unknown-name error (the caller chose the list)
    with pytest.raises(ValueError, match="unknown class name; known: dog"):
        VOCDetection(tmp_path, "train", classes=["dog"])


def test_read_class_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("b\n\na\n")
    assert read_class_file(path) == ["b", "a"]
    with pytest.raises(FileNotFoundError, match="no class file"):
        read_class_file(tmp_path / "none.txt")
    path.write_text("\n")
    with pytest.raises(ValueError, match="distinct"):
        read_class_file(path)
