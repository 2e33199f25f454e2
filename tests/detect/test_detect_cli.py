"""``sppnet detect`` at dataset scale: folders, globs, @lists, --skip-bad, every --format.

Each format's file is read back independently (json, csv, pycocotools, plain text parsing)
and checked against the per-image JSON records of a ``--format json`` run.
"""

from __future__ import annotations

import csv
import json

import pytest

from sppnet.cli.app import main

pytestmark = pytest.mark.usefixtures("one_thread")


CLASSES = ["cat", "dog", "car", "bus"]  # the saved_detector fixture's
COMMON = ["--max-proposals", "30", "--no-progress"]


@pytest.fixture
def photos(tmp_path, scene):
    """photos/a.png, photos/sub/b.jpg (larger than the scale: a working copy), notes.txt."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    scene(root / "a.png")
    scene(root / "sub" / "b.jpg", (160, 120), seed=1)
    (root / "notes.txt").write_text("not an image")
    return root


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def test_a_folder_is_every_image_below_it_sorted(saved_detector, photos, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["detect", str(photos), "--detector", str(saved_detector), "--out", str(out),
                 *COMMON]) == 0  # fmt: skip
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "detections" in ln]
    assert [ln.split(":")[0] for ln in lines] == [str(photos / "a.png"), str(photos / "sub/b.jpg")]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "b.json", "b.png"]
    record = _records(out)["b"]
    assert record["image_size"] == [120, 160]
    row = record["detections"][0]
    assert 0 <= row["prob"] <= 1 and isinstance(row["score"], float)


def test_glob_and_list_and_no_pictures(saved_detector, photos, tmp_path):
    listing = tmp_path / "todo.txt"
    listing.write_text("# two images\nphotos/a.png\n\nphotos/sub\n")
    out = tmp_path / "o"
    argv = ["detect", f"@{listing}", str(photos / "**" / "*.jpg"), "--detector",
            str(saved_detector), "--out", str(out), "--no-pictures", *COMMON]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]  # b.jpg once


def test_empty_matches_are_one_error_line(saved_detector, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for arg, says in ((str(tmp_path / "empty"), "holds no image files"),
                      (str(tmp_path / "*.jpg"), "no image files match"),
                      (f"@{tmp_path / 'none.txt'}", "no such list file")):  # fmt: skip
        assert main(["detect", arg, "--detector", str(saved_detector)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_skip_bad_counts_the_skipped_images(saved_detector, photos, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "zz.png").write_bytes(b"")
    base = ["detect", str(photos), "--detector", str(saved_detector), "--no-pictures", *COMMON]
    assert main([*base, "--out", str(tmp_path / "strict")]) == 1  # some failed
    err = capsys.readouterr().err
    assert err.count("failed: ") == 2 and "broken.jpg" in err
    assert err.strip().splitlines()[-1].startswith("error: 2 of 4 images failed")
    assert main([*base, "--out", str(tmp_path / "lax"), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 4 images that could not be read" in err
    assert sorted(p.name for p in (tmp_path / "lax").iterdir()) == ["a.json", "b.json"]
    bad = [str(photos / "broken.jpg"), str(photos / "zz.png")]
    only_bad = ["detect", *bad, "--skip-bad", "--detector", str(saved_detector),
                "--out", str(tmp_path / "none"), *COMMON]  # fmt: skip
    assert main(only_bad) == 2  # nothing detected
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "error: all 2 images failed (each named above)"
    )


def test_outputs_never_overwrite_inputs(saved_detector, tmp_path, scene, capsys):
    scene(tmp_path / "a.png")
    argv = ["detect", str(tmp_path / "a.png"), "--detector", str(saved_detector),
            "--out", str(tmp_path), *COMMON]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "never overwrite inputs" in err and "a.png" in err
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def _run(saved_detector, photos, out, fmt):
    argv = ["detect", str(photos), "--detector", str(saved_detector), "--out", str(out),
            "--format", fmt, "--no-pictures", *COMMON]  # fmt: skip
    assert main(argv) == 0


@pytest.fixture
def reference(saved_detector, photos, tmp_path):
    """The per-image JSON records: ``{stem: (width, height, [(name, score, prob, box)])}``."""
    _run(saved_detector, photos, tmp_path / "ref", "json")
    return {
        stem: (r["image_size"][1], r["image_size"][0],
               [(d["name"], d["score"], d["prob"], d["box"]) for d in r["detections"]])
        for stem, r in _records(tmp_path / "ref").items()
    }  # fmt: skip


def test_format_coco(saved_detector, photos, tmp_path, reference):
    pycocotools = pytest.importorskip("pycocotools.coco")
    _run(saved_detector, photos, tmp_path / "o", "coco")
    coco = pycocotools.COCO(str(tmp_path / "o" / "detections_coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    results = coco.loadRes(coco.dataset["annotations"])  # the results list pycocotools takes
    for image in coco.loadImgs(coco.getImgIds()):
        width, height, rows = reference[image["file_name"].rsplit("/", 1)[1].split(".")[0]]
        assert (image["width"], image["height"]) == (width, height)
        anns = results.loadAnns(results.getAnnIds(imgIds=image["id"]))
        assert len(anns) == len(rows)
        for ann, (name, score, prob, box) in zip(anns, rows, strict=True):
            assert coco.loadCats(ann["category_id"])[0]["name"] == name
            assert ann["score"] == pytest.approx(score) and ann["prob"] == pytest.approx(
                prob, abs=1e-6
            )
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == pytest.approx(box, abs=0.02)


def test_format_voc(saved_detector, photos, tmp_path, reference):
    _run(saved_detector, photos, tmp_path / "o", "voc")
    files = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert files == sorted(f"comp4_det_test_{c}.txt" for c in CLASSES)
    got = []
    for name in CLASSES:
        for line in (tmp_path / "o" / f"comp4_det_test_{name}.txt").read_text().splitlines():
            image, score, *xyxy = line.split()
            got.append((image, name, float(score), [float(v) for v in xyxy]))
    want = [
        (stem, name, score, [box[0] + 1, box[1] + 1, box[2], box[3]])  # 1-based inclusive
        for stem, (_, _, rows) in reference.items()
        for name, score, _, box in rows
    ]
    assert len(got) == len(want) > 0
    for g, w in zip(sorted(got, key=str), sorted(want, key=str), strict=True):
        assert g[:2] == w[:2] and g[2] == pytest.approx(w[2], rel=1e-5)
        assert g[3] == pytest.approx(w[3], abs=0.02)


def test_format_yolo(saved_detector, photos, tmp_path, reference):
    _run(saved_detector, photos, tmp_path / "o", "yolo")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.txt", "b.txt"]
    for stem, (width, height, rows) in reference.items():
        lines = (tmp_path / "o" / f"{stem}.txt").read_text().splitlines()
        assert len(lines) == len(rows)
        for line, (name, score, _, (x1, y1, x2, y2)) in zip(lines, rows, strict=True):
            label, cx, cy, w, h, conf = line.split()
            assert CLASSES[int(label)] == name and float(conf) == pytest.approx(score, rel=1e-5)
            want = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
                    (y2 - y1) / height]  # fmt: skip
            assert [float(cx), float(cy), float(w), float(h)] == pytest.approx(want, abs=1e-3)


def test_format_csv(saved_detector, photos, tmp_path, reference):
    _run(saved_detector, photos, tmp_path / "o", "csv")
    with open(tmp_path / "o" / "detections.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    want = [(stem, width, height, row) for stem, (width, height, rs) in reference.items()
            for row in rs]  # fmt: skip
    assert len(rows) == len(want) > 0
    for got, (stem, width, height, (name, score, prob, box)) in zip(rows, want, strict=True):
        assert got["image"].endswith(stem + (".png" if stem == "a" else ".jpg"))
        assert (int(got["width"]), int(got["height"]), got["name"]) == (width, height, name)
        assert CLASSES[int(got["label"])] == name
        assert float(got["score"]) == pytest.approx(score, rel=1e-5)
        assert float(got["prob"]) == pytest.approx(prob, abs=1e-5)
        assert [float(got[k]) for k in ("x1", "y1", "x2", "y2")] == pytest.approx(box, abs=0.01)
