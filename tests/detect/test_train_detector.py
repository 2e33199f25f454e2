"""Detector training: the staged pipeline, its resume, the CLI commands."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sppnet.cli import main
from sppnet.data.synthetic import generate_voc_dataset
from sppnet.data.voc import VOCDetection
from sppnet.detect import finetune, heads
from sppnet.detect import train as td
from sppnet.detect.io import load_detector
from sppnet.ops import box_iou

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voc(tiny_voc):
    return tiny_voc(train=8, test=3)


def _config(voc, out, **kw):
    base = {
        "data": str(voc), "out": str(out), "split": "train", "width": 0.125, "fc_dim": 32,
        "proposals": "edge_boxes", "max_proposals": 60, "scales": (120,),
        "finetune_iterations": 40, "finetune_batch": 32, "svm_initial_negatives": 10,
    }  # fmt: skip
    base.update(kw)
    return td.DetectorTrainConfig(**base)


def test_pipeline_writes_every_stage_and_resumes(voc, tmp_path, monkeypatch):
    lines = []
    summary = td.train_detector(_config(voc, tmp_path), log=lines.append)
    for rel in (
        "proposals/edge_boxes/settings.json", "cache_maps/meta.json", "finetune/fc.safetensors",
        "svm/svm.safetensors", "detector/detector.json", "detector/detector.safetensors",
        "train_summary.json",
    ):  # fmt: skip
        assert (tmp_path / rel).is_file(), rel
    assert len(list((tmp_path / "cache_maps" / "maps").glob("*.npy"))) == 8  # 1 scale
    assert not (tmp_path / "cache").exists()  # no pooled-window cache by default
    assert any(line.startswith("feature cache") and "MiB" in line for line in lines)
    assert set(summary["timing"]) >= {"proposals", "finetune", "svm", "box_regression"}
    assert summary["finetune_loss"]["iterations"] == 40
    assert all(n >= 1 for n in summary["svm"]["positives"])
    det, _ = load_detector(tmp_path)
    assert det.model.fc8.out_features == len(det.class_names) + 1 == 9
    assert det.svm_weight.shape == (8, 32) and det.box_weight.shape == (8, 1600, 4)

    # A second run loads the finished stages instead of recomputing them.
    def boom(*args, **kwargs):
        raise AssertionError("stage recomputed")

    monkeypatch.setattr(td, "finetune_fc", boom)
    monkeypatch.setattr(td, "train_svms", boom)
    monkeypatch.setattr(td.ConvMapCache, "add", boom)
    again = td.train_detector(_config(voc, tmp_path))
    assert again["svm"] == summary["svm"]
    det2, _ = load_detector(tmp_path)
    torch.testing.assert_close(det2.svm_weight, det.svm_weight)
    torch.testing.assert_close(det2.model.fc8.weight, det.model.fc8.weight)


def test_changed_settings_redo_their_stage_and_the_later_ones(voc, tmp_path, monkeypatch):
    first = td.train_detector(_config(voc, tmp_path, finetune_iterations=10))
    before, _ = load_detector(tmp_path)
    weight_before, fc8_before = before.svm_weight.clone(), before.model.fc8.weight.clone()
    calls = []

    def counted(name):
        real = getattr(td, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(td, "finetune_fc", counted("finetune_fc"))
    monkeypatch.setattr(td, "train_svms", counted("train_svms"))
    lines = []
    # a new SVM C: the SVMs are retrained, the fine-tuned fc layers reused
    again = td.train_detector(
        _config(voc, tmp_path, finetune_iterations=10, svm_c=0.5), log=lines.append
    )
    assert calls == ["train_svms"]
    assert any(line.startswith("svm: settings changed (svm_c 0.001 -> 0.5)") for line in lines)
    assert again["finetune_loss"] == first["finetune_loss"]
    det, _ = load_detector(tmp_path)
    assert not torch.equal(det.svm_weight, weight_before)  # the saved detector has the new SVMs
    torch.testing.assert_close(det.model.fc8.weight, fc8_before)
    # a new fine-tuning schedule: fine-tuning and everything after it are redone
    calls.clear()
    lines.clear()
    redone = td.train_detector(
        _config(voc, tmp_path, finetune_iterations=12, svm_c=0.5), log=lines.append
    )
    assert calls == ["finetune_fc", "train_svms"]
    assert redone["finetune_loss"]["iterations"] == 12
    assert any("finetune_iterations 10 -> 12" in line for line in lines)
    # the same settings once more: nothing is redone
    calls.clear()
    td.train_detector(_config(voc, tmp_path, finetune_iterations=12, svm_c=0.5))
    assert calls == []
    # fewer training images: the fine-tuning data changed
    td.train_detector(_config(voc, tmp_path, finetune_iterations=12, svm_c=0.5, max_images=6))
    assert calls == ["finetune_fc", "train_svms"]


def test_fc_finetuning_samples_by_the_rules_and_lowers_the_loss(voc, tmp_path):
    config = _config(voc, tmp_path, finetune_iterations=60, finetune_lr=0.01)
    dataset = VOCDetection(voc, "train")
    model, _, mean = td._open_model(config, 8)
    proposals = td.get_proposals(dataset, "edge_boxes", tmp_path / "p", 60)
    cache = td.PooledFeatureCache(tmp_path / "c", model, scales=(120,), mean=mean)
    td.build_feature_cache(cache, dataset, proposals)
    table = td._WindowTable(cache, list(dataset.ids))
    seen = []
    real = finetune.sample_finetune_batch

    def spy(*args, **kwargs):
        idx = real(*args, **kwargs)
        seen.append(idx)
        return idx

    finetune.sample_finetune_batch = spy
    try:
        losses = td.finetune_fc(model, table, 8, config)
    finally:
        finetune.sample_finetune_batch = real
    assert model.fc8.out_features == 9
    for idx in seen:
        iou = table.max_iou[idx]
        assert bool(((iou >= 0.5) | ((iou >= 0.1) & (iou < 0.5))).all())
        assert int((iou >= 0.5).sum()) == min(8, int((table.max_iou >= 0.5).sum()))  # 25% of 32
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_svm_candidates_follow_the_rules(voc, tmp_path):
    config = _config(voc, tmp_path, max_proposals=120)
    dataset = VOCDetection(voc, "train")
    model, _, mean = td._open_model(config, 8)
    proposals = td.get_proposals(dataset, "edge_boxes", tmp_path / "p", 120)
    cache = td.PooledFeatureCache(tmp_path / "c", model, scales=(120,), mean=mean)
    td.build_feature_cache(cache, dataset, proposals)
    table = td._WindowTable(cache, list(dataset.ids))
    pos_ids, negatives = heads._svm_candidates(table, 8)
    all_boxes = torch.from_numpy(np.concatenate([r["boxes"] for r in table.records]))
    is_gt = np.concatenate([r["is_gt"] for r in table.records])
    n_negatives = 0
    for c in range(8):
        # positives: exactly the non-difficult ground truth of class c
        expected = [
            int(table.offsets[i] + row)
            for i, r in enumerate(table.records)
            for row in np.nonzero(r["is_gt"])[0]
            if r["gt_labels"][~r["gt_difficult"]][row - (~r["is_gt"]).sum()] == c + 1
        ]
        assert sorted(pos_ids[c]) == expected
        for i, ids in enumerate(negatives[c]):
            rec = table.records[i]
            gt = torch.from_numpy(rec["gt_boxes"][rec["gt_labels"] == c + 1])  # difficult too
            boxes = all_boxes[torch.from_numpy(ids)]
            assert not is_gt[ids].any()  # ground truth is never a negative
            if gt.shape[0] and ids.size:
                assert float(box_iou(boxes, gt).max()) <= 0.3
            if ids.size > 1:  # deduplicated: no two negatives overlap by more than 0.7
                iou = box_iou(boxes, boxes) - torch.eye(ids.size)
                assert float(iou.max()) <= 0.7
            n_negatives += ids.size
    assert n_negatives > 0


def test_cli_train_eval_detect(voc, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train-det", "--data", str(voc), "--split", "train", "--out", str(out), "--width",
        "0.125", "--fc-dim", "32", "--proposals", "edge_boxes", "--max-proposals", "60",
        "--scales", "120", "--finetune-iterations", "20", "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "time per stage" in text and "detector:" in text
    assert main([
        "eval-det", "--detector", str(out), "--data", str(voc), "--split", "test",
        "--proposals", "edge_boxes", "--max-proposals", "60", "--rcnn-images", "1",
        "--no-progress",
    ]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "VOC07 mAP" in text and "R-CNN baseline" in text and "time per image" in text
    metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
    assert 0.0 <= (metrics["map"] or 0.0) <= 1.0
    assert metrics["rcnn"]["speedup"]["conv"] > 0
    for name in ("ap_table.md", "pr_curves.png"):
        assert (out / "eval_test" / name).is_file()
    # truncated-SVD fc layers (beyond the paper) run through the same evaluation
    assert main([
        "eval-det", "--detector", str(out), "--data", str(voc), "--split", "test",
        "--proposals", "edge_boxes", "--max-proposals", "60", "--svd-ranks", "8", "8",
        "--out", str(tmp_path / "svd"), "--no-progress", "--format", "coco",
    ]) == 0  # fmt: skip
    assert (tmp_path / "svd" / "metrics.json").is_file()
    assert "coco: 1 file(s)" in capsys.readouterr().out
    # --format: the evaluated detections as `detect --format` writes them, the same as
    # the evaluation's own COCO results (scores and boxes, image by image)
    written = json.loads(
        (tmp_path / "svd" / "detections_coco" / "detections_coco.json").read_text()
    )
    scored = json.loads((tmp_path / "svd" / "coco_results.json").read_text())
    assert len(written["annotations"]) == len(scored) > 0
    ours = sorted((a["score"], a["bbox"]) for a in written["annotations"])
    theirs = sorted((r["score"], r["bbox"]) for r in scored)
    for (score, box), (score2, box2) in zip(ours, theirs, strict=True):
        assert score == pytest.approx(score2, abs=1e-5)
        assert box == pytest.approx(box2, abs=0.02)  # both rounded to 2 decimals
    names = {im["file_name"] for im in written["images"]}
    assert all(Path(name).is_file() for name in names)
    assert main([
        "eval-det", "--detector", str(out), "--data", str(voc), "--split", "test",
        "--proposals", "edge_boxes", "--max-proposals", "60", "--max-images", "2",
        "--out", str(tmp_path / "yolo"), "--no-progress", "--format", "yolo",
    ]) == 0  # fmt: skip
    lines = [line.split() for f in (tmp_path / "yolo" / "detections_yolo").glob("*.txt")
             for line in f.read_text().splitlines()]  # fmt: skip
    assert len(list((tmp_path / "yolo" / "detections_yolo").glob("*.txt"))) == 2
    assert all(len(row) == 6 and all(0 <= float(v) <= 1 for v in row[1:5]) for row in lines)
    capsys.readouterr()
    # the speed benchmark also scores SPP-net against R-CNN with a trained detector
    bench = Path(__file__).parents[2] / "benchmarks" / "detection_speed.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--no-rcnn", "--width", "0.125", "--fc-dim", "32",
         "--windows", "10", "--repeats", "1", "--svd-ranks", "0", "0", "--threads", "1",
         "--image", "60", "80", "--detector", str(out), "--data", str(voc),
         "--accuracy-images", "1", "--max-proposals", "30", "--out", str(tmp_path / "b.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| R-CNN |" in done.stdout and "| SPP-net |" in done.stdout
    acc = json.loads((tmp_path / "b.json").read_text())["result"]["accuracy"]
    assert acc["images"] == 1 and acc["speedup"]["conv"] > 0
    image = next((voc / "JPEGImages").glob("*.jpg"))
    assert main(["detect", str(image), "--detector", str(out), "--out", str(tmp_path / "d"),
                 "--max-proposals", "50"]) == 0  # fmt: skip
    record = json.loads((tmp_path / "d" / f"{image.stem}.json").read_text())
    assert record["windows"] <= 50 and set(record["timing"]) >= {"proposals", "conv", "nms"}
    assert (tmp_path / "d" / f"{image.stem}.png").is_file()
    # bad input: a missing image is named and the exit code says so
    assert main(["detect", str(tmp_path / "nope.jpg"), "--detector", str(out)]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert main(["eval-det", "--detector", str(tmp_path / "none"), "--data", str(voc)]) == 2


def test_end_to_end_detector_learns_its_training_images(tmp_path):
    """Proposals -> cache -> fc fine-tuning -> SVMs -> box regression -> VOC07 mAP.

    A randomly initialised trunk (no pre-training fits in a test) gives chance-level mAP on
    held-out images, so this checks that the whole pipeline fits what it was trained on:
    VOC07 mAP on the 12 training images well above chance (about 0.01 here). Held-out
    numbers with a pre-trained trunk come from `sppnet demo` (README).
    """
    from sppnet.detect.evaluate import evaluate_detector

    voc = generate_voc_dataset(tmp_path / "voc", sizes={"train": 12}, seed=5, max_side=200)
    config = _config(
        voc, tmp_path / "run", fc_dim=64, max_proposals=100, scales=(160,),
        finetune_iterations=100, finetune_batch=128, finetune_lr=0.01, svm_c=1.0,
    )  # fmt: skip
    td.train_detector(config)
    detector, _ = load_detector(tmp_path / "run")
    dataset = VOCDetection(voc, "train")
    proposals = td.get_proposals(dataset, "edge_boxes", tmp_path / "run" / "proposals", 100)
    result = evaluate_detector(detector, dataset, proposals)
    assert result["map"] is not None and result["map"] >= 0.1
    # untrained SVMs (zero weights) score every window alike: chance level
    detector.svm_weight.zero_()
    detector.svm_bias.zero_()
    chance = evaluate_detector(detector, dataset, proposals)["map"]
    assert result["map"] > 3 * chance


def test_end_to_end_finetuning_moves_the_conv_layers(voc, tmp_path):
    """Beyond the paper: gradients flow through the window pyramid into conv1..conv5."""
    plain = td.train_detector(_config(voc, tmp_path / "plain", finetune_iterations=5))
    e2e = td.train_detector(
        _config(voc, tmp_path / "e2e", finetune_iterations=5, e2e_iterations=3, e2e_lr=0.01)
    )
    assert "end_to_end" in e2e["timing"] and "end_to_end" not in plain["timing"]
    assert math.isfinite(e2e["e2e_loss"]["first"])
    a, _ = load_detector(tmp_path / "plain")
    b, _ = load_detector(tmp_path / "e2e")
    conv_a, conv_b = a.model.features.conv1.weight, b.model.features.conv1.weight
    assert not torch.equal(conv_a, conv_b)
    # the SVMs and regressors were trained on features of the new trunk: a fresh cache
    assert (tmp_path / "e2e" / "cache_maps_e2e" / "meta.json").is_file()
    meta_old = json.loads((tmp_path / "e2e" / "cache_maps" / "meta.json").read_text())
    meta_new = json.loads((tmp_path / "e2e" / "cache_maps_e2e" / "meta.json").read_text())
    assert meta_old["model"] != meta_new["model"]
    # another end-to-end schedule: that stage is redone and its cache rebuilt, not refused
    td.train_detector(
        _config(voc, tmp_path / "e2e", finetune_iterations=5, e2e_iterations=2, e2e_lr=0.01)
    )
    meta_2 = json.loads((tmp_path / "e2e" / "cache_maps_e2e" / "meta.json").read_text())
    assert meta_2["model"] not in (meta_old["model"], meta_new["model"])


def test_map_cache_and_pooled_window_cache_train_the_same_detector(tmp_path):
    """The stages pool from cached maps what the pooled-window cache stores, to the bit.

    Max pooling commutes with rounding to float16 (rounding is monotone), so every window's
    pooled features, hence fine-tuning, SVMs (with hard negatives) and box regression, are
    the same floats either way: the tolerance is zero, for the weights and for the mAP.
    """
    from sppnet.detect.evaluate import evaluate_detector

    voc = generate_voc_dataset(tmp_path / "voc", sizes={"train": 6}, seed=7, max_side=200)
    runs = {}
    for layout in ("windows", "maps"):
        config = _config(
            voc, tmp_path / layout, cache=layout, max_proposals=80, scales=(96, 160),
            finetune_iterations=30, svm_c=1.0,
        )  # fmt: skip
        # liblinear (sklearn's LinearSVC, random_state unset) shuffles with numpy's global
        # generator: seed it so that both runs' SVMs see the same order.
        np.random.seed(0)
        runs[layout] = td.train_detector(config)
    assert (tmp_path / "windows" / "cache" / "features").is_dir()
    assert (tmp_path / "maps" / "cache_maps" / "maps").is_dir()
    assert runs["maps"]["finetune_loss"] == runs["windows"]["finetune_loss"]
    assert runs["maps"]["svm"] == runs["windows"]["svm"]  # hard negatives included
    a, _ = load_detector(tmp_path / "windows")
    b, _ = load_detector(tmp_path / "maps")
    for name in ("svm_weight", "svm_bias", "box_weight", "box_bias"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    dataset = VOCDetection(voc, "train")
    proposals = td.get_proposals(dataset, "edge_boxes", tmp_path / "maps" / "proposals", 80)
    map_a = evaluate_detector(a, dataset, proposals)["map"]
    map_b = evaluate_detector(b, dataset, proposals)["map"]
    assert map_a == map_b and map_a > 0


def test_cache_layout_is_checked(voc, tmp_path):
    with pytest.raises(ValueError, match="cache must be one of"):
        _config(voc, tmp_path, cache="pooled")
