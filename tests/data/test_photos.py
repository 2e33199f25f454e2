"""Tests for sppnet.data.photos: development data made from bundled real photographs."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage", reason="the photo data need scikit-image's pictures")

from sppnet.cli import main
from sppnet.data.image_folder import ImageFolder
from sppnet.data.photos import (
    _BANDS,
    PHOTO_CLASSES,
    PHOTO_KINDS,
    _band,
    generate_photo_dataset,
    render_photo_image,
)
from sppnet.data.synthetic import image_seed
from sppnet.data.voc import VOCDetection, parse_voc_xml, read_split_ids

SIZES = {"train": 10, "val": 4, "test": 4}
SIDES = {"min_side": 96, "max_side": 224}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module", params=PHOTO_KINDS)
def made(request, tmp_path_factory) -> tuple[str, Path, dict]:
    root = tmp_path_factory.mktemp(request.param) / "data"
    meta = generate_photo_dataset(root, request.param, sizes=SIZES, seed=5, **SIDES)
    return request.param, root, meta


def _split_lines(kind: str, root: Path) -> dict[str, list[str]]:
    if kind == "detect":
        return {s: read_split_ids(root, s) for s in SIZES}
    return {s: (root / "splits" / f"{s}.txt").read_text().split() for s in SIZES}


def test_deterministic_for_a_seed(made, tmp_path):
    kind, root, _ = made
    again = generate_photo_dataset(tmp_path / "again", kind, sizes=SIZES, seed=5, **SIDES)
    assert again["counts"] == {s: n for s, n in SIZES.items()}
    assert _files(tmp_path / "again") == _files(root)
    other = generate_photo_dataset(tmp_path / "other", kind, sizes=SIZES, seed=6, **SIDES)
    assert _files(tmp_path / "other") != _files(root)
    assert other["seed"] == 6


def test_splits_disjoint_and_complete(made):
    kind, root, meta = made
    lines = _split_lines(kind, root)
    assert {s: len(v) for s, v in lines.items()} == SIZES
    seen = [x for v in lines.values() for x in v]
    assert len(seen) == len(set(seen))
    assert json.loads((root / "generator.json").read_text())["counts"] == SIZES
    assert meta["classes"] == list(PHOTO_CLASSES[kind])


def test_bands_are_disjoint_and_cover_the_picture():
    for box in ((0, 0, 500, 300), (10, 20, 110, 420)):
        bands = [_band(box, s) for s in ("train", "val", "test")]
        longer = 0 if box[2] - box[0] >= box[3] - box[1] else 1
        spans = [(b[longer], b[longer + 2]) for b in bands]
        assert spans[0][0] == box[longer] and spans[-1][1] == box[longer + 2]
        for (_, hi), (lo, _) in itertools.pairwise(spans):
            assert hi == pytest.approx(lo)  # touching, not overlapping
        assert all(b[1 - longer] == box[1 - longer] for b in bands)
    assert set(_BANDS) == {"train", "val", "test"}


def test_images_vary_in_size_and_boxes_lie_inside(made):
    kind, root, _ = made
    sizes = set()
    for path in sorted(root.rglob("*.jpg")):
        with Image.open(path) as image:
            sizes.add(image.size)
            assert 96 <= max(image.size) <= 224 and image.mode == "RGB"
    assert len(sizes) >= 8  # sizes and aspect ratios vary
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    if kind != "detect":
        return
    counts, areas = Counter(), []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        ann = parse_voc_xml(xml, {c: i for i, c in enumerate(PHOTO_CLASSES[kind])})
        w, h = ann["width"], ann["height"]
        counts[len(ann["names"])] += 1
        for x1, y1, x2, y2 in ann["boxes"].tolist():
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            areas.append((x2 - x1) * (y2 - y1) / (w * h))
    assert len(counts) >= 2  # one to four objects per image
    assert max(areas) > 4 * min(areas)  # many sizes


def test_sets_load_with_the_project_readers(made):
    kind, root, _ = made
    if kind == "detect":
        ds = VOCDetection(root, split="trainval")
        assert len(ds) == SIZES["train"] + SIZES["val"]
        return
    ds = ImageFolder(root, split="test")
    assert ds.classes == sorted(PHOTO_CLASSES[kind])
    assert len(ds) == SIZES["test"]
    train = ImageFolder(root, split="train")
    labels = Counter(y for _, y in train.samples)
    assert max(labels.values()) - min(labels.values()) <= 1 or len(labels) < len(ds.classes)


def test_object_box_matches_pasted_pixels():
    # a detection image's box covers the pasted object: its pixels differ from an image
    # rendered from the same seed with no object at all
    seed = image_seed(1, "val", 3)
    with_obj, objs = render_photo_image("detect", seed, "val", classes=[2], **SIDES)
    bare, none = render_photo_image("detect", seed, "val", classes=[], **SIDES)
    assert none == [] and len(objs) == 1
    diff = np.abs(np.asarray(with_obj, float) - np.asarray(bare, float)).sum(axis=2)
    ys, xs = np.nonzero(diff > 30)
    x1, y1, x2, y2 = objs[0]["box"]
    assert xs.min() >= x1 - 1 and xs.max() < x2 + 1 and ys.min() >= y1 - 1 and ys.max() < y2 + 1
    assert (xs.max() - xs.min()) > 0.5 * (x2 - x1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "segment"}, "kind must be one of"),
        ({"sizes": {"train": 1, "dev": 1}}, "splits must be among"),
        ({"sizes": {"train": -1}}, "sizes must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"min_side": 300, "max_side": 200}, "min_side <= max_side"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, match):
    args = {"kind": "classify-a", "sizes": {"train": 1}, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_photo_dataset(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_cli_writes_a_set(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["make-data", "photos", "--kind", "classify-b", "--out", str(out),
                 "--sizes", "3", "1", "1", "--sides", "96", "128"])  # fmt: skip
    assert code == 0
    assert "classify-b: train 3, val 1, test 1 images, 8 classes" in capsys.readouterr().out
    assert len(ImageFolder(out, split="train")) == 3


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--sides", "32", "128"], "min_side <= max_side"),
        (["--sizes", "-1", "1", "1"], "--sizes"),
        (["--seed", "-3"], "--seed"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, match):
    code = main(["make-data", "photos", "--kind", "detect", "--out", str(tmp_path / "d"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and match in err and err.count("\n") == 1
