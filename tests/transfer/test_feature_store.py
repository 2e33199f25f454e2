"""The feature directory's files: started, filled, compacted, read back; shard batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sppnet.transfer import store as fs


def _start(root, n=5, dim=3, labels=True):
    meta = {"num_images": n, "dim": dim, "rows_done": 0, "skipped": [], "complete": False}
    meta["labels_shape"] = [n] if labels else None
    label_arr = np.arange(n, dtype=np.int64) if labels else None
    fs.create_feature_dir(root, [f"im{i}" for i in range(n)], label_arr, meta)
    return meta


def test_a_started_folder_is_filled_compacted_and_loaded(tmp_path):
    meta = _start(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "features.npy", "ids.json", "labels.npy", "meta.json"
    ]  # fmt: skip
    assert fs.read_meta(tmp_path) == meta and fs.has_features(tmp_path)
    features = fs.open_features(tmp_path)
    features[:] = np.arange(15, dtype=np.float32).reshape(5, 3)
    features.flush()
    del features
    meta["rows_done"] = 5
    meta["skipped"] = [{"index": 1, "file": "im1.png"}, {"index": 3, "file": "im3.png"}]
    fs.compact_feature_dir(tmp_path, meta)
    x, y, back = fs.load_feature_dir(tmp_path)
    np.testing.assert_array_equal(x, np.arange(15, dtype=np.float32).reshape(5, 3)[[0, 2, 4]])
    np.testing.assert_array_equal(y, [0, 2, 4])
    assert json.loads((tmp_path / "ids.json").read_text()) == ["im0", "im2", "im4"]
    assert back["complete"] and back["rows"] == 3 and back["labels_shape"] == [3]
    fs.compact_feature_dir(tmp_path, back)  # again (a crash in there): nothing changes
    np.testing.assert_array_equal(fs.load_feature_dir(tmp_path)[0], x)


def test_unfinished_or_missing_folders_raise(tmp_path):
    assert fs.read_meta(tmp_path) is None
    with pytest.raises(FileNotFoundError, match=r"features\.npy"):
        fs.load_feature_dir(tmp_path)
    _start(tmp_path)
    with pytest.raises(ValueError, match="unfinished"):
        fs.load_feature_dir(tmp_path)


def test_shards_round_trip_and_restart_for_other_settings(tmp_path):
    fs.start_shards(tmp_path, {"rows_done": 0, "batch_size": 2})
    rows = np.ones((2, 3), dtype=np.float32)
    fs.write_shard(tmp_path, 0, rows, [{"index": 1, "file": "b.png"}])
    fs.write_shard(tmp_path, 1, rows * 2, [])
    assert fs.shard_written(tmp_path, 0) and not fs.shard_written(tmp_path, 2)
    got, skipped = fs.read_shard(tmp_path, 0)
    np.testing.assert_array_equal(got, rows)
    assert skipped == [{"index": 1, "file": "b.png"}]
    assert fs.read_shard(tmp_path, 1)[1] == []
    fs.start_shards(tmp_path, {"rows_done": 0, "batch_size": 2})  # same run: kept
    assert fs.shard_written(tmp_path, 1)
    fs.start_shards(tmp_path, {"rows_done": 2, "batch_size": 2})  # another run: emptied
    assert not fs.shard_written(tmp_path, 0)
    fs.clear_shards(tmp_path)
    assert not (tmp_path / fs.SHARDS_DIR).exists()
