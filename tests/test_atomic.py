"""The shared atomic writers: the destination holds the old file or the new one, never half."""

import json

import numpy as np
import pytest

from sppnet._atomic import (
    atomic_link_or_copy,
    atomic_path,
    atomic_save_figure,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
)


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    dst = tmp_path / "sub" / "a.txt"
    with atomic_path(dst) as tmp:
        assert tmp.parent == dst.parent and tmp.exists() and not dst.exists()
        tmp.write_text("new")
    assert dst.read_text() == "new"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(dst) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert dst.read_text() == "new"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["a.txt"]


def test_atomic_write_json_and_text(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": [1, 2]})
    text = (tmp_path / "a.json").read_text()
    assert text.endswith("\n") and json.loads(text) == {"x": [1, 2]}
    atomic_write_json(tmp_path / "b.json", [1], indent=None)
    assert (tmp_path / "b.json").read_text() == "[1]\n"
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "c.json", float("nan"), allow_nan=False)
    assert not (tmp_path / "c.json").exists()
    atomic_write_text(tmp_path / "d.txt", "é\n")
    assert (tmp_path / "d.txt").read_bytes() == "é\n".encode()


def test_atomic_save_npy_round_trips(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_save_npy(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr)


def test_atomic_save_figure_writes_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot(1, 1, 1).plot([0, 1])
    out = atomic_save_figure(tmp_path / "f.png", fig, dpi=20)
    assert out == tmp_path / "f.png"
    assert out.read_bytes().startswith(b"\x89PNG")


def test_atomic_link_or_copy_replaces_the_destination(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc")
    dst = tmp_path / "out" / "dst.bin"
    atomic_link_or_copy(src, dst)
    assert dst.read_bytes() == b"abc"
    src2 = tmp_path / "src2.bin"
    src2.write_bytes(b"xyz")
    atomic_link_or_copy(src2, dst)
    assert dst.read_bytes() == b"xyz"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.bin"]
