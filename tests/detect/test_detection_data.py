"""Own classes, COCO in and out: the converter (voc2coco -> coco2voc gives the same
annotations back), --classes, and a detector trained on the same tiny data in COCO and VOC
layout giving the same numbers (issue 13, items 2 and 3)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from sppnet.cli import main
from sppnet.data import (
    SYNTHETIC_CLASSES,
    VOCDetection,
    collect_class_names,
    generate_voc_dataset,
    parse_voc_xml,
)
from sppnet.data.convert import coco_to_voc, voc_to_coco
from sppnet.detect import train as td
from sppnet.detect.data import open_detection_dataset, parse_classes

pytestmark = pytest.mark.usefixtures("one_thread")

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """The built-in data with its classes.txt removed: VOC layout with its own class names."""
    root = tmp_path_factory.mktemp("voc")
    generate_voc_dataset(root, sizes={"train": 6, "test": 3}, seed=5, max_side=160)
    (root / "classes.txt").unlink()
    return root


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_parse_classes(tmp_path):
    assert parse_classes("a, b,c") == ["a", "b", "c"]
    (tmp_path / "c.txt").write_text("x\ny\n")
    assert parse_classes(str(tmp_path / "c.txt")) == ["x", "y"]
    for bad, match in (("a,,b", "empty"), ("a,a", "twice"), ("nope.txt", "no such class file")):
        with pytest.raises(ValueError, match=match):
            parse_classes(bad)


def test_voc2coco_coco2voc_round_trip(custom, tmp_path, capsys):
    classes = ",".join(SYNTHETIC_CLASSES)
    out = tmp_path / "train.json"
    assert main(["convert", "voc2coco", "--data", str(custom), "--split", "train",
                 "--classes", classes, "--out", str(out)]) == 0  # fmt: skip
    assert "voc2coco: 6 images" in capsys.readouterr().out
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC_CLASSES)
    back = tmp_path / "back"
    images = str(custom / "JPEGImages")
    assert main(["convert", "coco2voc", "--data", str(out), "--images", images,
                 "--split", "train", "--out", str(back)]) == 0  # fmt: skip
    ids = (custom / "ImageSets" / "Main" / "train.txt").read_text()
    assert (back / "ImageSets" / "Main" / "train.txt").read_text() == ids
    assert (back / "classes.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    for image_id in ids.split():
        a = parse_voc_xml(custom / "Annotations" / f"{image_id}.xml")
        b = parse_voc_xml(back / "Annotations" / f"{image_id}.xml")
        for key in ("filename", "width", "height", "names"):
            assert a[key] == b[key], (image_id, key)
        for key in ("boxes", "difficult"):
            assert torch.equal(a[key], b[key]), (image_id, key)
        assert (back / "JPEGImages" / a["filename"]).read_bytes() == (
            custom / "JPEGImages" / a["filename"]
        ).read_bytes()
    # the converted root reads as VOC with its own classes (classes.txt written)
    assert VOCDetection(back, "train").class_names == list(SYNTHETIC_CLASSES)


def test_coco2voc_escapes_names_and_cli_errors(custom, tmp_path, capsys):
    from PIL import Image

    with Image.open(custom / "JPEGImages" / "000001.jpg") as img:  # the real size
        width, height = img.size
    coco = {
        "images": [{"id": 1, "file_name": "000001.jpg", "width": width, "height": height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [1.25, 2, 3, 4]}],
        "categories": [{"id": 4, "name": "a<b&c>"}],
    }
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(coco))
    assert coco_to_voc(path, custom / "JPEGImages", tmp_path / "odd")["objects"] == 1
    ann = parse_voc_xml(tmp_path / "odd" / "Annotations" / "000001.xml")
    assert ann["names"] == ["a<b&c>"]
    assert ann["boxes"].tolist() == [[1.0, 2.0, 5.0, 6.0]]  # grown to whole pixels
    # named failures: exit 2, one line
    cases = [
        (["convert", "coco2voc", "--data", str(path), "--out", str(tmp_path / "x")], "--images"),
        (["convert", "voc2coco", "--data", str(custom), "--split", "train", "--out",
          str(tmp_path / "y.json")], "--classes"),
        (["convert", "coco2voc", "--data", str(tmp_path / "none.json"), "--images",
          str(custom), "--out", str(tmp_path / "z")], "none.json"),
        (["train-det", "--data", str(path), "--out", str(tmp_path / "r")], "--images DIR"),
        (["train-det", "--data", str(custom), "--split", "train", "--classes", "a,a",
          "--out", str(tmp_path / "r")], "--classes"),
    ]  # fmt: skip
    for argv, needle in cases:
        assert main(argv) == 2, argv
        assert needle in _error_line(capsys), argv
    path.write_text("{not json")
    assert main(["convert", "coco2voc", "--data", str(path), "--images", str(custom),
                 "--out", str(tmp_path / "z")]) == 2  # fmt: skip
    line = _error_line(capsys)
    assert "odd.json" in line and "not valid JSON" in line


def _config(data, out, **kw):
    base = {
        "data": str(data), "out": str(out), "split": "train", "width": 0.125, "fc_dim": 32,
        "proposals": "edge_boxes", "max_proposals": 40, "scales": (100,),
        "finetune_iterations": 20, "finetune_batch": 32, "svm_initial_negatives": 10,
    }  # fmt: skip
    base.update(kw)
    return td.DetectorTrainConfig(**base)


def test_custom_classes_and_coco_train_and_evaluate_alike(custom, tmp_path, capsys):
    # no classes.txt and no --classes: the error names the fix
    assert main(["train-det", "--data", str(custom), "--split", "train", "--out",
                 str(tmp_path / "none"), "--no-progress"]) == 2  # fmt: skip
    line = _error_line(capsys)
    assert "is not a Pascal VOC class" in line
    assert "--classes " + ",".join(collect_class_names(custom, "train")) in line
    classes = tuple(SYNTHETIC_CLASSES)
    voc_summary = td.train_detector(_config(custom, tmp_path / "voc", classes=classes))
    for split in ("train", "test"):
        voc_to_coco(custom, split, tmp_path / f"{split}.json", classes=classes)
    images = str(custom / "JPEGImages")
    coco_summary = td.train_detector(
        _config(tmp_path / "train.json", tmp_path / "coco", images=images)
    )
    assert voc_summary["classes"] == coco_summary["classes"] == list(classes)
    for rel in ("finetune/fc.safetensors", "detector/detector.safetensors"):
        a, b = load_file(tmp_path / "voc" / rel), load_file(tmp_path / "coco" / rel)
        assert a.keys() == b.keys()
        for key in a:
            # proposals, cache, fine-tuning, SVMs (liblinear seeded) and box regression
            assert torch.equal(a[key], b[key]), (rel, key)
    assert voc_summary["svm"] == coco_summary["svm"]  # same positives, negatives, mining
    # a rerun into the same folder with other classes is refused (its cache has old labels)
    with pytest.raises(ValueError, match="other --out"):
        td.train_detector(_config(custom, tmp_path / "voc", classes=classes[::-1]))

    common = ["--proposals", "edge_boxes", "--max-proposals", "40", "--no-progress"]
    assert (
        main(
            [
                "eval-det",
                "--detector",
                str(tmp_path / "voc" / "detector"),
                "--data",
                str(custom),
                "--split",
                "test",
                "--out",
                str(tmp_path / "ev"),
                *common,
            ]
        )
        == 0
    )
    text_voc = capsys.readouterr().out
    assert main(["eval-det", "--detector", str(tmp_path / "coco" / "detector"), "--data",
                 str(tmp_path / "test.json"), "--images", images,
                 "--out", str(tmp_path / "ec"), *common]) == 0  # fmt: skip
    text_coco = capsys.readouterr().out
    assert "COCO (pycocotools): AP" in text_coco
    m_voc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    m_coco = json.loads((tmp_path / "ec" / "metrics.json").read_text())
    assert m_voc["map"] == pytest.approx(m_coco["map"], abs=1e-3)
    assert set(m_coco["coco"]) >= {"AP", "AP50", "AP75"}
    for key in ("AP", "AP50", "AP75"):
        assert m_voc["coco"][key] == pytest.approx(m_coco["coco"][key], abs=1e-3), key
    assert text_voc.count("VOC07 mAP") == text_coco.count("VOC07 mAP") == 1
    results = json.loads((tmp_path / "ec" / "coco_results.json").read_text())
    test_ids = {i["id"] for i in json.loads((tmp_path / "test.json").read_text())["images"]}
    assert results and {r["image_id"] for r in results} <= test_ids
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_coco_image_without_objects_trains(custom, tmp_path):
    """COCO keeps images without annotations; the pipeline takes one (negatives only)."""
    voc_to_coco(custom, "train", tmp_path / "t.json", classes=tuple(SYNTHETIC_CLASSES))
    data = json.loads((tmp_path / "t.json").read_text())
    first = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first]
    (tmp_path / "t.json").write_text(json.dumps(data))
    config = _config(
        tmp_path / "t.json", tmp_path / "run", images=str(custom / "JPEGImages"),
        finetune_iterations=5, max_images=3,
    )  # fmt: skip
    summary = td.train_detector(config)
    assert summary["images"] == 3 and (tmp_path / "run" / "detector" / "detector.json").is_file()


def test_more_cli_errors(custom, tmp_path, capsys):
    cases = [
        (["train-det", "--images", str(custom), "--out", str(tmp_path / "r")], "--images needs"),
        (["convert", "voc2coco", "--data", str(custom), "--classes", "a", "--images", "x",
          "--out", str(tmp_path / "a.json")], "--images is for coco2voc"),
        (["convert", "voc2coco", "--data", str(custom), "--split", "train", "--classes",
          ",".join(SYNTHETIC_CLASSES), "--out", str(tmp_path)], "is a folder"),
    ]  # fmt: skip
    for argv, needle in cases:
        assert main(argv) == 2, argv
        assert needle in _error_line(capsys), argv
    with pytest.raises(ValueError, match="is a folder"):
        open_detection_dataset(custom, "test", images=custom / "JPEGImages")


def test_coco_metrics_without_pycocotools_say_how_to_install(monkeypatch):
    import sys

    from sppnet.evaluation import coco_detection_metrics

    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ModuleNotFoundError, match=r"sppnet\[coco\]"):
        coco_detection_metrics({"images": [], "annotations": [], "categories": []}, [])
