"""Damaged files anywhere: named, with "the checkpoint is damaged" or "delete it to recompute"."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, checkpoint_file, one_error, train_det_args

from sppnet.cli import main


def _eval(run: Path, data: Path) -> list[str]:
    return ["eval", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--views", "center", "--no-progress", "--device", "cpu"]  # fmt: skip


def _truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_truncated_model_safetensors(run, data, capsys):
    _truncate(checkpoint_file(run, "model.safetensors"))
    assert main(_eval(run, data)) == 2
    one_error(capsys, "model.safetensors", "the checkpoint is damaged")


def test_garbage_model_safetensors(run, data, capsys):
    checkpoint_file(run, "model.safetensors").write_bytes(b"\xff" * 64)
    assert main(_eval(run, data)) == 2
    one_error(capsys, "model.safetensors", "the checkpoint is damaged")


def test_state_json_that_is_not_json(run, data, capsys):
    checkpoint_file(run, "state.json").write_text('{"epoch": 1, "model": ', encoding="utf-8")
    assert main(_eval(run, data)) == 2
    one_error(capsys, "state.json", "the checkpoint is damaged")


def test_eval_never_loads_the_optimizer(run, data, capsys):
    checkpoint_file(run, "optimizer.pt").write_bytes(b"garbage, not a torch file")
    assert main(_eval(run, data)) == 0
    assert "9 images" in capsys.readouterr().out


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickled_optimizer_is_refused_on_resume(run, capsys):
    with open(checkpoint_file(run, "optimizer.pt"), "wb") as f:
        pickle.dump({"state": _Evil()}, f)
    args = ["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]
    assert main(args) == 2
    line = one_error(capsys, "optimizer.pt", "refused", "the checkpoint is damaged")
    assert "pickle code ran" not in line


def test_truncated_optimizer_on_resume(run, capsys):
    _truncate(checkpoint_file(run, "optimizer.pt"), 100)
    args = ["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]
    assert main(args) == 2
    one_error(capsys, "optimizer.pt", "the checkpoint is damaged")


def test_truncated_detector_safetensors(detector, image, tmp_path, capsys):
    _truncate(detector / "detector.safetensors")
    args = ["detect", str(image), "--detector", str(detector), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    one_error(capsys, "detector.safetensors", "damaged", "train-det")


def test_detector_json_that_is_not_json(detector, image, tmp_path, capsys):
    (detector / "detector.json").write_text("{", encoding="utf-8")
    args = ["detect", str(image), "--detector", str(detector), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    one_error(capsys, "detector.json", "damaged")


def _features(root: Path, features: np.ndarray, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "features.npy", features, allow_pickle=True)
    np.save(root / "labels.npy", np.arange(n) % 2)
    meta = {"layer": "spp", "view": "full", "num_images": n, "rows_done": n, "complete": True}
    (root / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _svm(root: Path) -> list[str]:
    return ["svm", "--features", str(root), "--protocol", "caltech", "--n-train", "1",
            "--n-test", "2", "--splits", "1", "--C", "1"]  # fmt: skip


def test_features_npy_truncated(tmp_path, capsys):
    root = _features(tmp_path / "f", np.ones((6, 8), np.float32))
    _truncate(root / "features.npy", 140)
    assert main(_svm(root)) == 2
    one_error(capsys, "features.npy", "damaged", "sppnet features")


def test_features_npy_object_array(tmp_path, capsys):
    root = _features(tmp_path / "f", np.array([None] * 6, dtype=object))
    assert main(_svm(root)) == 2
    one_error(capsys, "features.npy", "damaged", "sppnet features")


def test_features_with_nan_are_refused(tmp_path, capsys):
    features = np.ones((6, 8), np.float32)
    features[4, 3] = np.nan
    root = _features(tmp_path / "f", features)
    assert main(_svm(root)) == 2
    one_error(capsys, "features.npy", "row 4", "NaN")


def test_features_meta_json_that_is_not_json(tmp_path, capsys):
    root = _features(tmp_path / "f", np.ones((6, 8), np.float32))
    (root / "meta.json").write_text('{"layer": "spp", "view": ', encoding="utf-8")
    assert main(_svm(root)) == 2
    one_error(capsys, "meta.json", "damaged")


def test_good_features_still_train(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = _features(tmp_path / "f", rng.normal(size=(6, 8)).astype(np.float32))
    assert main(_svm(root)) == 0
    assert "mean accuracy" in capsys.readouterr().out


def test_damaged_finetune_stage_cache(det_run, voc, capsys):
    _truncate(det_run / "finetune" / "fc.safetensors")
    assert main(train_det_args(voc, det_run)) == 2
    one_error(capsys, "fc.safetensors", "delete it to recompute")


def test_damaged_svm_stats_json(det_run, voc, capsys):
    (det_run / "svm" / "stats.json").write_text("[1, 2", encoding="utf-8")
    assert main(train_det_args(voc, det_run)) == 2
    one_error(capsys, "stats.json", "delete it to recompute")


def test_damaged_feature_cache_meta(det_run, voc, capsys):
    (det_run / "cache_maps" / "meta.json").write_bytes(b"\x00\x01")
    assert main(train_det_args(voc, det_run)) == 2
    one_error(capsys, "meta.json", "delete it to recompute")


def test_damaged_feature_cache_file(det_run, voc, capsys):
    victim = sorted((det_run / "cache_maps" / "maps").glob("*.npy"))[0]
    _truncate(victim, 100)
    (det_run / "finetune" / "settings.json").unlink()  # the fc stage reads the cache again
    assert main(train_det_args(voc, det_run)) == 2
    one_error(capsys, victim.name, "delete it to recompute")


def test_damaged_pooled_window_cache_file(det_run, voc, capsys):
    args = [*train_det_args(voc, det_run), "--cache", "windows"]
    assert main(args) == 0
    capsys.readouterr()
    victim = sorted((det_run / "cache" / "features").glob("*.npy"))[0]
    _truncate(victim, 100)
    (det_run / "finetune" / "settings.json").unlink()  # the fc stage reads the cache again
    assert main(args) == 2
    one_error(capsys, victim.name, "delete it to recompute")


def _voc_copy(voc: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(voc, tmp_path / "voc"))


def _eval_det(det_run: Path, voc: Path, *extra: str) -> list[str]:
    return ["eval-det", "--detector", str(det_run), "--data", str(voc), "--split", "test",
            "--no-progress", *extra]  # fmt: skip


def test_proposal_npy_object_array(det_run, voc, tmp_path, capsys):
    props = tmp_path / "props"
    props.mkdir()
    np.save(props / "000004.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    assert main(_eval_det(det_run, voc, "--proposals", str(props))) == 2
    one_error(capsys, "000004.npy", "damaged", "write it again")


def test_proposal_json_that_is_not_json(det_run, voc, tmp_path, capsys):
    props = tmp_path / "props"
    props.mkdir()
    (props / "000004.json").write_text('{"boxes": [[1, 2,', encoding="utf-8")
    assert main(_eval_det(det_run, voc, "--proposals", str(props))) == 2
    one_error(capsys, "000004.json", "damaged", "not valid JSON")


def test_empty_split_in_eval_det(det_run, voc, tmp_path, capsys):
    voc = _voc_copy(voc, tmp_path)
    (voc / "ImageSets" / "Main" / "empty.txt").write_text("", encoding="utf-8")
    argv = _eval_det(det_run, voc, "--proposals", "edge_boxes")
    assert main([*argv, "--split", "empty"]) == 2
    one_error(capsys, "--split empty", "no images")


def test_empty_split_in_train_det(voc, tmp_path, capsys):
    voc = _voc_copy(voc, tmp_path)
    (voc / "ImageSets" / "Main" / "empty.txt").write_text("", encoding="utf-8")
    argv = train_det_args(voc, tmp_path / "det")
    argv[argv.index("--split") + 1] = "empty"
    assert main(argv) == 2
    one_error(capsys, "empty.txt", "no images", "--split")


def test_convert_names_the_real_output_not_its_temporary(voc, tmp_path, capsys):
    coco = tmp_path / "test.json"
    assert main(["convert", "voc2coco", "--data", str(voc), "--split", "test", "--out",
                 str(coco)]) == 0  # fmt: skip
    out = tmp_path / "back"
    (out / "classes.txt").mkdir(parents=True)  # the file it writes is a folder
    argv = [
        "convert",
        "coco2voc",
        "--data",
        str(coco),
        "--images",
        str(voc / "JPEGImages"),
        "--out",
        str(out),
        "--merge",
    ]  # fmt: skip (--merge: into a folder that holds one)
    assert main(argv) == 2
    line = one_error(capsys, str(out / "classes.txt"))
    assert ".tmp" not in line and ".classes.txt." not in line


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "--checkpoint", "RUN", "--out", "FILE/cls.onnx"],
        ["export", "--detector", "DET", "--out", "FILE/det"],
        ["convert", "voc2coco", "--data", "VOC", "--out", "FILE/x.json"],
        ["convert", "coco2voc", "--data", "x.json", "--images", "VOC", "--out", "FILE/voc"],
    ],
    ids=lambda v: " ".join(v[:2]),
)
def test_export_and_convert_check_out_before_any_work(argv, run, detector, voc, tmp_path,
                                                      capsys):  # fmt: skip
    (tmp_path / "file").write_text("a file", encoding="utf-8")
    names = {"RUN": str(run), "DET": str(detector), "VOC": str(voc)}
    argv = [names.get(a, a.replace("FILE", str(tmp_path / "file"))) for a in argv]
    assert main(argv) == 2
    one_error(capsys, "--out", str(tmp_path / "file"), "is a file")
