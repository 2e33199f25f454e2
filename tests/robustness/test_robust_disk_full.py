"""A full disk mid-write: one ``error:`` line naming the file and the free space; what was
written before stays intact and the same command goes on once there is space.

The disk is "filled" by making one writer raise ``OSError(ENOSPC)`` (or safetensors' own
error quoting it), in-process through ``sppnet.cli.main``.
"""

from __future__ import annotations

import errno
import os
import shutil

from conftest import TINY_TRAIN, one_error, train_det_args

from sppnet.cli import main


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_checkpoint_on_a_full_disk(run, capsys, monkeypatch):
    from safetensors import SafetensorError

    import sppnet.engine.checkpoint as checkpoint

    def full(*args, **kwargs):  # what safetensors raises when the write fails
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    monkeypatch.setattr(checkpoint, "save_file", full)
    args = ["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]
    assert main(args) == 2
    one_error(capsys, "epoch_0002/model.safetensors", "no space left", "free in", "--resume")
    found = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "epoch_0001" in found and "epoch_0002" not in found
    assert not [n for n in found if n.startswith(".tmp-")]  # the half-written one is gone
    monkeypatch.undo()
    assert main(args) == 0  # space again: the same command goes on from epoch 1
    assert "epoch 2/2" in capsys.readouterr().out


def test_detector_save_on_a_full_disk(det_run, voc, capsys, monkeypatch):
    import sppnet._atomic as atomic

    shutil.rmtree(det_run / "detector")
    real_fsync = atomic.fsync_file

    def fsync(path):  # fsync is where a delayed-allocation file system reports it
        if "detector.safetensors" in str(path):
            _full()
        real_fsync(path)

    monkeypatch.setattr(atomic, "fsync_file", fsync)
    assert main(train_det_args(voc, det_run)) == 2
    one_error(capsys, "detector/detector.safetensors", "no space left", "free in")
    assert not (det_run / "detector").exists()  # written whole or not at all
    assert not [p for p in det_run.iterdir() if p.name.startswith(".detector")]
    assert (det_run / "svm" / "svm.safetensors").is_file()  # the stages before: intact
    monkeypatch.undo()
    assert main(train_det_args(voc, det_run)) == 0


def test_features_on_a_full_disk_fail_before_any_work(run, data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", _full)
    out = tmp_path / "f"
    args = ["features", "--checkpoint", str(run), "--data", str(data), "--split", "all",
            "--layer", "spp", "--view", "full", "--size", "64", "--out", str(out),
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    one_error(capsys, "features.npy", "no space left", "free in")
    assert not (out / "features.npy").exists()
    monkeypatch.undo()
    assert main(args) == 0


def test_any_other_full_disk_is_one_line(run, capsys, monkeypatch):
    import sppnet.cli.classify as classify

    monkeypatch.setattr(classify, "_train", _full)  # a writer that does not name its file
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *TINY_TRAIN]) == 2
    one_error(capsys, "no space left", "free in")
