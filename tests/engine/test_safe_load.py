"""sppnet.engine.safe_load: good files load, damaged ones are named DamagedFileErrors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sppnet.engine.safe_load import (
    load_json_file,
    load_npy_file,
    load_safetensors_file,
    load_torch_state_file,
)
from sppnet.errors import DamagedFileError, UserError


def test_safetensors_good_truncated_missing(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6.0)}, str(path))
    assert torch.equal(load_safetensors_file(path)["a"], torch.arange(6.0))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DamagedFileError, match=r"w\.safetensors is damaged .*delete it to"):
        load_safetensors_file(path)
    with pytest.raises(FileNotFoundError):
        load_safetensors_file(tmp_path / "missing.safetensors")


def test_torch_state_refuses_pickles_and_names_the_fix(tmp_path):
    path = tmp_path / "optimizer.pt"
    torch.save({"state": {0: {"momentum": torch.ones(2)}}, "lr": 0.1}, path)
    assert load_torch_state_file(path)["lr"] == 0.1
    with open(path, "wb") as f:
        pickle.dump({"x": pickle.Pickler}, f)  # a class reference: not plain data
    with pytest.raises(DamagedFileError, match="refused") as info:
        load_torch_state_file(path, fix="the checkpoint is damaged: retrain")
    assert str(info.value).endswith("the checkpoint is damaged: retrain")
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_json_position_and_file(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text('{"a": 1}', encoding="utf-8")
    assert load_json_file(path) == {"a": 1}
    path.write_text('{"a": ', encoding="utf-8")
    with pytest.raises(DamagedFileError, match=r"meta\.json is damaged \(not valid JSON: .*column"):
        load_json_file(path)


def test_npy_object_truncated_and_nan_rows(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.ones((5, 3), np.float32))
    assert load_npy_file(path, mmap_mode="r", finite=True).shape == (5, 3)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DamagedFileError, match=r"not a readable \.npy array"):
        load_npy_file(path)
    arr = np.ones((5, 3), np.float32)
    arr[3, 1] = np.inf
    np.save(path, arr)
    assert load_npy_file(path).shape == (5, 3)  # finite=False: not scanned
    with pytest.raises(DamagedFileError, match="row 3 holds NaN or infinite"):
        load_npy_file(path, mmap_mode="r", finite=True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DamagedFileError, match=r"f\.npy is damaged"):
        load_npy_file(path, mmap_mode="r")
