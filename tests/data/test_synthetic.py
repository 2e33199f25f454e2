"""Tests for sppnet.data.synthetic: the built-in VOC-layout generator and its ImageFolder view."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppnet.data.synthetic import (
    SYNTHETIC_CLASSES,
    generate_voc_dataset,
    image_seed,
    make_classification_view,
    render_synthetic_image,
)
from sppnet.data.voc import VOCDetection, parse_voc_xml, read_split_ids

SIZES = {"train": 8, "val": 2, "test": 2}  # 12 tiny images
SIDES = {"min_side": 64, "max_side": 128}
C2I = {c: i for i, c in enumerate(SYNTHETIC_CLASSES)}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return generate_voc_dataset(
        tmp_path_factory.mktemp("synthetic") / "voc", sizes=SIZES, seed=3, **SIDES
    )


def test_layout(voc_root):
    assert (voc_root / "classes.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    assert list(SYNTHETIC_CLASSES) == sorted(SYNTHETIC_CLASSES)  # same labels as ImageFolder
    meta = json.loads((voc_root / "generator.json").read_text())
    assert meta["seed"] == 3 and meta["sizes"] == SIZES and meta["min_side"] == 64
    ids = {sp: read_split_ids(voc_root, sp) for sp in [*SIZES, "trainval"]}
    assert ids["train"] == [f"{i:06d}" for i in range(1, 9)]
    assert ids["val"] == ["000009", "000010"] and ids["test"] == ["000011", "000012"]
    assert ids["trainval"] == ids["train"] + ids["val"]
    for image_id in ids["train"] + ids["test"]:
        with Image.open(voc_root / "JPEGImages" / f"{image_id}.jpg") as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert 64 <= img.width <= 128 and 64 <= img.height <= 128
        ann = parse_voc_xml(voc_root / "Annotations" / f"{image_id}.xml", C2I)
        assert (ann["width"], ann["height"]) == img.size
        assert 1 <= len(ann["names"]) <= 4
    assert not list(voc_root.rglob("*.tmp"))


def test_determinism(voc_root, tmp_path):
    again = generate_voc_dataset(tmp_path / "again", sizes=SIZES, seed=3, **SIDES)
    assert _files(again) == _files(voc_root)  # byte-identical, generator.json included
    other = generate_voc_dataset(tmp_path / "other", sizes={"train": 2}, seed=4, **SIDES)
    first = _files(voc_root)
    for name in ("JPEGImages/000001.jpg", "JPEGImages/000002.jpg"):
        assert _files(other)[name] != first[name]


def test_image_does_not_depend_on_other_splits(voc_root, tmp_path):
    # image i of a split is seeded by (seed, split, i): the first test image is the same when
    # the train split is smaller (only its id moves)
    root = generate_voc_dataset(tmp_path / "small", sizes={"train": 1, "test": 1}, seed=3, **SIDES)
    assert (root / "JPEGImages" / "000002.jpg").read_bytes() == (
        voc_root / "JPEGImages" / "000011.jpg"
    ).read_bytes()


def test_resume_rewrites_only_missing_files(tmp_path):
    root = generate_voc_dataset(tmp_path / "voc", sizes={"train": 4, "val": 2}, seed=1, **SIDES)
    before = _files(root)
    stats = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    victim = root / "JPEGImages" / "000003.jpg"
    victim.unlink()
    (root / "Annotations" / "000005.xml").unlink()  # a pair missing its xml: redone too
    generate_voc_dataset(root, sizes={"train": 4, "val": 2}, seed=1, **SIDES)
    assert _files(root) == before
    rewritten = {
        str(p.relative_to(root))
        for p, st in stats.items()
        if (p.stat().st_ino, p.stat().st_mtime_ns) != st
    }
    assert rewritten == {
        "JPEGImages/000003.jpg",
        "Annotations/000003.xml",
        "JPEGImages/000005.jpg",
        "Annotations/000005.xml",
    }


def test_other_settings_refused_unless_overwrite(tmp_path):
    root = generate_voc_dataset(tmp_path / "voc", sizes={"train": 2}, seed=1, **SIDES)
    with pytest.raises(ValueError, match=r"generator\.json describes a dataset made with other"):
        generate_voc_dataset(root, sizes={"train": 2}, seed=2, **SIDES)
    generate_voc_dataset(root, sizes={"train": 2}, seed=2, overwrite=True, **SIDES)
    fresh = generate_voc_dataset(tmp_path / "fresh", sizes={"train": 2}, seed=2, **SIDES)
    assert _files(root) == _files(fresh)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sizes": {"train": -1}}, ValueError, "int >= 0"),
        ({"sizes": {"a/b": 1}}, ValueError, "alphanumeric"),
        ({"sizes": {"trainval": 1}}, ValueError, "trainval"),
        ({"sizes": [1]}, TypeError, "mapping"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"min_side": 8}, ValueError, "16 <= min_side"),
        ({"min_side": 100, "max_side": 50}, ValueError, "min_side <= max_side"),
    ],
)
def test_generate_validation(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        generate_voc_dataset(tmp_path / "x", **kwargs)


def test_boxes_are_tight_around_visible_pixels():
    for i in range(10):
        image, objects = render_synthetic_image(
            image_seed(0, "check", i), min_side=64, max_side=160
        )
        w, h = image.size
        assert objects
        for obj in objects:
            x1, y1, x2, y2 = (int(v) for v in obj["box"])
            assert obj["box"] == (x1, y1, x2, y2)  # integer pixel borders
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            mask = obj["mask"]
            assert mask.shape == (h, w)
            ys, xs = np.nonzero(mask)
            # our convention: pixels x1..x2-1 -> box (x1, x2)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            assert obj["name"] == SYNTHETIC_CLASSES[obj["label"]]
        # visible masks of different objects never share a pixel
        total = sum(o["mask"].astype(int) for o in objects)
        assert total.max() == 1


def test_objects_differ_from_background():
    # the object's pixels and the ring of pixels just outside its box differ in mean colour:
    # objects are drawn with a colour chosen to stand out from what lies under them
    diffs = []
    for i in range(12):
        image, objects = render_synthetic_image(image_seed(5, "px", i), min_side=100, max_side=160)
        arr = np.asarray(image, dtype=np.float64)
        obj = objects[0]
        x1, y1, x2, y2 = (int(v) for v in obj["box"])
        around = np.zeros(obj["mask"].shape, dtype=bool)
        around[max(y1 - 3, 0) : y2 + 3, max(x1 - 3, 0) : x2 + 3] = True
        around[y1:y2, x1:x2] = False
        if around.sum() < 20 or obj["mask"].sum() < 20:
            continue
        inside = arr[obj["mask"]].mean(axis=0)
        diffs.append(np.abs(inside - arr[around].mean(axis=0)).sum())
    assert len(diffs) >= 8 and np.median(diffs) > 40


def test_xml_matches_rendering(voc_root):
    ids = read_split_ids(voc_root, "val")
    for index, image_id in enumerate(ids):
        ann = parse_voc_xml(voc_root / "Annotations" / f"{image_id}.xml", C2I)
        _, objects = render_synthetic_image(
            image_seed(3, "val", index), **SIDES, main_class=int(ann["labels"][0])
        )
        assert ann["boxes"].tolist() == [list(o["box"]) for o in objects]
        assert ann["difficult"].tolist() == [o["difficult"] for o in objects]
        assert ann["truncated"].tolist() == [o["truncated"] for o in objects]
        assert ann["names"] == [o["name"] for o in objects]


def test_difficult_and_truncated_flags():
    flags = Counter()
    for i in range(40):
        _, objects = render_synthetic_image(image_seed(1, "flags", i), min_side=64, max_side=200)
        for o in objects:
            x1, y1, x2, y2 = o["box"]
            tiny = max(x2 - x1, y2 - y1) < 16
            assert o["difficult"] == (tiny or o["visible_fraction"] < 0.4)
            flags["difficult"] += o["difficult"]
            flags["truncated"] += o["truncated"]
            flags["objects"] += 1
        x1, y1, x2, y2 = objects[0]["box"]
        assert max(x2 - x1, y2 - y1) >= 16  # the main object is never tiny
    # tiny images (64 px) make many small objects difficult, but never most of them
    assert flags["difficult"] >= 3 and flags["truncated"] >= 3
    assert flags["difficult"] < 0.5 * flags["objects"]


def test_main_object_classes_balanced(tmp_path):
    root = generate_voc_dataset(tmp_path / "bal", sizes={"train": 16}, min_side=32, max_side=48)
    ds = VOCDetection(root, "train")
    main = Counter(ds.class_names[int(a["labels"][0])] for a in ds.annotations)
    assert main == dict.fromkeys(SYNTHETIC_CLASSES, 2)  # each class leads 16 / 8 images
    every = Counter(n for a in ds.annotations for n in a["names"])
    assert set(every) == set(SYNTHETIC_CLASSES)


def test_classification_view(voc_root, tmp_path):
    out = make_classification_view(voc_root, tmp_path / "cls")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        [*SYNTHETIC_CLASSES, "splits"]
    )
    summary = json.loads((out / "view.json").read_text())
    for split in SIZES:
        lines = (out / "splits" / f"{split}.txt").read_text().splitlines()
        assert sum(summary["counts"][split].values()) == len(lines)
        assert len(lines) + summary["skipped_images"][split] == SIZES[split]
        for line in lines:
            cls, name = line.split("/")
            image_id = name.removesuffix(".jpg")
            # the whole image, labelled by its largest non-difficult object
            assert (out / line).read_bytes() == (voc_root / "JPEGImages" / name).read_bytes()
            ann = parse_voc_xml(voc_root / "Annotations" / f"{image_id}.xml", C2I)
            areas = [
                (b[2] - b[0]) * (b[3] - b[1]) if not d else -1
                for b, d in zip(ann["boxes"].tolist(), ann["difficult"].tolist(), strict=True)
            ]
            assert ann["names"][int(np.argmax(areas))] == cls
    counts = Counter(p.parent.name for p in out.rglob("*.jpg"))
    total = sum(summary["counts"][s][c] for s in SIZES for c in SYNTHETIC_CLASSES)
    assert sum(counts.values()) == total
    # same arguments: fine (rewrites the same files); other arguments into the same root: refused
    make_classification_view(voc_root, out)
    with pytest.raises(ValueError, match="other arguments"):
        make_classification_view(voc_root, out, crop_objects=True)


def test_classification_view_crops(voc_root, tmp_path):
    out = make_classification_view(
        voc_root, tmp_path / "crops", splits=("val",), crop_objects=True, context=0.1
    )
    lines = (out / "splits" / "val.txt").read_text().splitlines()
    expected = []
    for image_id in read_split_ids(voc_root, "val"):
        ann = parse_voc_xml(voc_root / "Annotations" / f"{image_id}.xml", C2I)
        for j, (box, diff) in enumerate(
            zip(ann["boxes"].tolist(), ann["difficult"].tolist(), strict=True)
        ):
            if diff:
                continue
            expected.append(f"{ann['names'][j]}/{image_id}_{j}.jpg")
            x1, y1, x2, y2 = box
            with Image.open(out / expected[-1]) as crop:
                mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
                assert crop.width >= x2 - x1 and crop.height >= y2 - y1
                assert crop.width <= x2 - x1 + 2 * mx + 2 and crop.height <= y2 - y1 + 2 * my + 2
    assert lines == expected
    with pytest.raises(ValueError, match="context must be >= 0"):
        make_classification_view(voc_root, tmp_path / "neg", crop_objects=True, context=-1)
    with pytest.raises(ValueError, match=r"no split file .*nosuch\.txt"):
        make_classification_view(voc_root, tmp_path / "ns", splits=("nosuch",))
