"""Fixtures of the robustness suite: a tiny trained run, a tiny detector, tiny images.

Every case drives ``sppnet.cli.main`` the way a user meets it and checks the one-line
``error:`` contract (see :func:`one_error`). The fixtures are written once per session
with the library (no training) and copied before a test damages them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CLASSES = ["blue", "green", "red"]
TINY_MODEL = {"name": "zf5", "num_classes": 3, "spp_levels": [3, 2, 1], "width": 0.125,
              "fc_dim": 16, "spp_mode": "max", "dropout": 0.0}  # fmt: skip


def one_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The single ``error:`` line on stderr; it must hold every needle, and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every robustness test runs on one torch thread (the shared ``one_thread``)."""


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("SPPNET_DEBUG", raising=False)


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (70, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


# a 1-epoch run of a narrow ZF-5 on 64-px crops: about 3 s
TINY_TRAIN = ["--width", "0.125", "--fc-dim", "16", "--crop", "64", "--small-crop", "52",
              "--shorter", "72", "--batch-size", "3", "--spp-levels", "3", "2", "1",
              "--no-progress"]  # fmt: skip


@pytest.fixture(scope="session")
def _store(tmp_path_factory) -> Path:
    from sppnet.cli import main
    from sppnet.detect.io import save_detector
    from sppnet.detection.detector import Detector
    from sppnet.models import create_model

    root = tmp_path_factory.mktemp("robust")
    rng = np.random.default_rng(0)
    for name in CLASSES:  # 3 images per class, ImageFolder layout
        for i in range(3):
            _image(root / "data" / name / f"{i}.png", rng)
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    args = ["train", "--data", str(root / "data"), "--out", str(root / "run"), "--epochs", "1"]
    assert main([*args, *TINY_TRAIN]) == 0
    torch.set_num_threads(before)
    kwargs = {k: v for k, v in TINY_MODEL.items() if k not in ("name", "num_classes")}
    det_model = create_model("zf5", num_classes=4, **kwargs)
    detector = Detector(model=det_model, class_names=CLASSES, scales=(96,))
    save_detector(root / "detector", detector, {"name": "zf5", "num_classes": 4, **kwargs})
    return root


@pytest.fixture
def data(_store, tmp_path) -> Path:
    """An image folder: 3 classes x 3 PNGs of 70x80 (a copy the test may damage)."""
    return Path(shutil.copytree(_store / "data", tmp_path / "data"))


@pytest.fixture
def run(_store, tmp_path) -> Path:
    """A ``sppnet train`` run of 1 epoch on ``data`` (a copy)."""
    return Path(shutil.copytree(_store / "run", tmp_path / "run"))


@pytest.fixture
def detector(_store, tmp_path) -> Path:
    """A saved tiny detector (untrained SVMs: fc8 scores), a copy."""
    return Path(shutil.copytree(_store / "detector", tmp_path / "detector"))


def checkpoint_file(run: Path, name: str) -> Path:
    """``run/checkpoints/epoch_0001/name``."""
    return run / "checkpoints" / "epoch_0001" / name


@pytest.fixture
def image(tmp_path) -> Path:
    """One 70x80 PNG."""
    path = tmp_path / "img" / "x.png"
    _image(path, np.random.default_rng(1))
    return path


def train_det_args(voc: Path, out: Path) -> list[str]:
    """A ``sppnet train-det`` command of about 5 s on ``voc`` (3 training scenes)."""
    return ["train-det", "--data", str(voc), "--split", "train", "--out", str(out),
            "--width", "0.125", "--fc-dim", "16", "--spp-levels", "2", "1",
            "--proposals", "edge_boxes", "--max-proposals", "30", "--scales", "96",
            "--finetune-iterations", "3", "--no-box-regression", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="session")
def _det_store(tmp_path_factory) -> Path:
    from sppnet.cli import main
    from sppnet.data.synthetic import generate_voc_dataset

    root = tmp_path_factory.mktemp("robust_det")
    voc = generate_voc_dataset(root / "voc", sizes={"train": 3, "test": 2}, seed=5, max_side=120)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(train_det_args(voc, root / "det")) == 0
    torch.set_num_threads(before)
    return root


@pytest.fixture
def voc(_det_store) -> Path:
    """The VOC-layout scenes of ``det_run`` (train: 3, test: 2; not to be damaged)."""
    return _det_store / "voc"


@pytest.fixture
def det_run(_det_store, tmp_path) -> Path:
    """A finished ``train-det`` output on ``voc`` (a copy the test may damage)."""
    return Path(shutil.copytree(_det_store / "det", tmp_path / "det"))
