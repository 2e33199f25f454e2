"""Sharded work under torchrun (2 CPU processes, gloo) equals one process, for ``features``,
``train-det`` and ``eval-det``; proposals in worker processes equal serial ones."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.cli import main
from sppnet.data.synthetic import generate_voc_dataset
from sppnet.data.voc import VOCDetection
from sppnet.detect.io import load_detector
from sppnet.detect.proposal_workers import map_in_processes
from sppnet.detect.proposals import get_proposals
from sppnet.engine.checkpoint import save_checkpoint
from sppnet.models import create_model

_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
_TRAIN = [
    "--split", "train", "--width", "0.125", "--fc-dim", "32", "--proposals", "edge_boxes",
    "--max-proposals", "40", "--scales", "100", "--finetune-iterations", "15", "--no-progress",
]  # fmt: skip
_EVAL = ["--split", "test", "--proposals", "edge_boxes", "--max-proposals", "40", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _alone(monkeypatch):
    for key in _DIST_ENV:  # the in-process runs are one process whatever the environment
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    return generate_voc_dataset(root, sizes={"train": 5, "test": 5}, seed=3, max_side=160)


@pytest.fixture(scope="module")
def one_process_run(voc, tmp_path_factory):
    """``train-det`` in this process: the reference run (and a detector to evaluate)."""
    out = tmp_path_factory.mktemp("one") / "det"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train-det", "--data", str(voc), "--out", str(out), *_TRAIN]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    env["OMP_NUM_THREADS"] = "1"  # as the one-process run: the same float sums
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "sppnet", *args,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    return done


def _files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if "timing" not in k}
    return obj


def test_train_det_on_two_processes_equals_one(voc, one_process_run, tmp_path):
    two = tmp_path / "det"
    done = _torchrun("train-det", "--data", str(voc), "--out", str(two), *_TRAIN)
    assert done.stdout.count("detector:") == 1  # rank 0 alone trains and reports
    one = one_process_run
    # every per-image file (proposals, conv maps, window records, cache meta) is identical
    for stage in ("proposals", "cache_maps"):
        ones, twos = _files(one / stage), _files(two / stage)
        assert len(ones) == 1 + 5 * (1 if stage == "proposals" else 2)  # + meta or settings
        assert ones.keys() == twos.keys() and ones == twos, stage
    for name in ("finetune/loss.json", "svm/stats.json", "finetune/fc.safetensors"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    a, _ = load_detector(one)
    b, _ = load_detector(two)
    for key, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[key]), key
    for key in ("svm_weight", "svm_bias", "box_weight", "box_bias"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    summary = json.loads((two / "train_summary.json").read_text())
    reference = json.loads((one / "train_summary.json").read_text())
    assert summary.pop("detector") == str(two / "detector")
    reference.pop("detector")
    assert _without_timing(summary) == _without_timing(reference)
    assert summary["images"] == 5 and summary["svm"]["positives"] == reference["svm"]["positives"]


def test_eval_det_on_two_processes_equals_one(voc, one_process_run, tmp_path):
    det = str(one_process_run)
    assert main(["eval-det", "--detector", det, "--data", str(voc), *_EVAL,
                 "--out", str(tmp_path / "one")]) == 0  # fmt: skip
    # the sharded run also computes its proposals in 2 worker processes per rank
    done = _torchrun("eval-det", "--detector", det, "--data", str(voc), *_EVAL,
                     "--out", str(tmp_path / "two"), "--proposal-workers", "2")  # fmt: skip
    assert done.stdout.count("VOC07 mAP") == 1
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:  # VOC result files, COCO results, AP table, proposals, the plot
        if name != "metrics.json":
            assert one[name] == two[name], name
    metrics_one = json.loads(one["metrics.json"])
    metrics_two = json.loads(two["metrics.json"])
    assert _without_timing(metrics_one) == _without_timing(metrics_two)
    assert metrics_one["images"] == 5 and set(metrics_two["timing"]) >= {"conv", "fc", "nms"}
    assert any(name.startswith("results/") for name in one)  # VOC result files compared


def _classifier_run(root: Path) -> Path:
    model = create_model("zf5", num_classes=2, width=0.125, fc_dim=32)
    kwargs = dict(name="zf5", num_classes=2, spp_levels=[6, 3, 2, 1], width=0.125, fc_dim=32)
    kwargs.update(spp_mode="max", dropout=0.5)
    state = {"epoch": 1, "model": kwargs, "classes": ["a", "b"], "config": {"mean": 128.0}}
    save_checkpoint(root, model=model, optimizer=None, state=state)
    return root


def test_features_on_two_processes_equal_one(tmp_path):
    run = _classifier_run(tmp_path / "run")
    rng = np.random.default_rng(0)
    sizes = [(40, 57), (64, 64), (40, 57), (77, 51), (90, 61), (64, 64), (45, 101), (50, 50)]
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / "data" / "ab"[i % 2] / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 5:
            path.write_bytes(b"not a png")  # left out, listed in meta.json, by both runs
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    argv = ["features", "--checkpoint", str(run), "--data", str(tmp_path / "data"), "--split",
            "all", "--layer", "fc7", "--view", "full", "--size", "60", "--batch-size", "3",
            "--device", "cpu", "--skip-bad", "--no-progress"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    # 3 batches of 3, 3, 2 images: batch k on rank k % 2, the same neighbours as alone
    done = _torchrun(*argv, "--out", str(tmp_path / "two"))
    assert done.stdout.count("wrote ") == 1 and "1 undecodable" in done.stderr
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(one) == ["features.npy", "ids.json", "labels.npy", "meta.json"]
    assert one == two  # bit-equal features; shards/ removed once assembled
    features = np.load(tmp_path / "two" / "features.npy")
    assert features.shape == (7, 32) and np.all(np.linalg.norm(features, axis=1) > 0.99)
    meta = json.loads(one["meta.json"])
    assert meta["skipped"][0]["file"].endswith("img_5.png") and meta["complete"]


def test_sharded_features_resume_from_written_batches(tmp_path, monkeypatch):
    """The sharding in this process, ranks played one after the other: a killed rank 0
    resumes with its missing batch, and the folder equals a one-process extraction."""
    from sppnet.data.image_folder import ImageFolder
    from sppnet.engine.checkpoint import load_classifier
    from sppnet.engine.distributed import DistInfo

    ef = importlib.import_module("sppnet.transfer.features")  # the module, not the function
    model, _ = load_classifier(_classifier_run(tmp_path / "run"), "latest")
    rng = np.random.default_rng(1)
    for i in range(5):
        path = tmp_path / "data" / "ab"[i % 2] / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48 + i, 60, 3), dtype=np.uint8)).save(path)
    data = ImageFolder(tmp_path / "data")
    kw = dict(layer="spp", view="full", size=50, batch_size=2, progress=False)
    ef.extract_features(model, data, tmp_path / "one", **kw)

    monkeypatch.setattr(ef, "barrier", lambda info: None)
    calls, real = [], ef._batch_rows

    def counted(*args):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt  # the run is killed
        return real(*args)

    monkeypatch.setattr(ef, "_batch_rows", counted)
    rank0, rank1 = DistInfo(rank=0, world_size=2), DistInfo(rank=1, world_size=2)
    out = tmp_path / "two"
    stop_at = 2  # rank 0 (batches 0 and 2 of [0, 1], [2, 3], [4]) is killed in batch 2
    with pytest.raises(KeyboardInterrupt):
        ef.extract_features(model, data, out, **kw, info=rank0)
    staged = tmp_path / ".two.partial"  # built there, renamed to `out` once finished
    assert sorted(p.name for p in (staged / "shards").iterdir()) == [
        "batch_000000.npz", "settings.json"
    ]  # fmt: skip
    stop_at = 0
    ef.extract_features(model, data, out, **kw, info=rank1)  # batch 1, then it returns
    assert len(calls) == 3 and not json.loads((staged / "meta.json").read_text())["complete"]
    assert not out.exists()
    ef.extract_features(model, data, out, **kw, info=rank0)  # batch 2 again, then assembles
    assert len(calls) == 4
    assert _files(tmp_path / "one") == _files(out)


def test_each_rank_computes_its_share_of_proposals_and_cache(voc, tmp_path, monkeypatch):
    dp = importlib.import_module("sppnet.detect.proposals")
    dw = importlib.import_module("sppnet.detect.windows")
    from sppnet.detect.cache import ConvMapCache
    from sppnet.engine.distributed import DistInfo

    data = VOCDetection(voc, "train")
    for module in (dp, dw):
        monkeypatch.setattr(module, "barrier", lambda info: None)  # rank 1 played alone
    monkeypatch.setattr(dw, "all_reduce_sum", lambda values, info: values)
    rank1 = DistInfo(rank=1, world_size=2)
    computed = []
    real = dp._proposal_work
    monkeypatch.setattr(dp, "_proposal_work", lambda job, i: computed.append(i) or real(job, i))
    proposals = dp.get_proposals(data, "edge_boxes", tmp_path / "p", 40, info=rank1)
    assert computed == [1, 3]  # images 1 and 3 of 5 (the rest come from the cache's loader)
    assert len(proposals) == 5
    model = create_model("zf5", num_classes=9, width=0.125, fc_dim=32)
    cache = ConvMapCache(tmp_path / "c", model, scales=(100,))
    assert dw.build_feature_cache(cache, data, proposals, info=rank1) == 2
    done = sorted(p.stem for p in (tmp_path / "c" / "windows").iterdir())
    assert done == [data.ids[1], data.ids[3]]


def _square(offset: int, x: int) -> int:
    if x < 0:
        raise ValueError(f"negative item {x}")
    return offset + x * x


def test_map_in_processes_keeps_order_and_raises():
    items = list(range(23))
    assert map_in_processes(_square, 1, items, 3) == [1 + x * x for x in items]
    assert map_in_processes(_square, 1, items, 0) == [1 + x * x for x in items]
    with pytest.raises(ValueError, match="negative item -4"):
        map_in_processes(_square, 0, [1, 2, -4, 5], 2)
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        map_in_processes(_square, 0, items, -1)


def test_proposal_workers_give_the_serial_proposals(voc, tmp_path):
    data = VOCDetection(voc, "train")
    serial = get_proposals(data, "edge_boxes", tmp_path / "serial", 40)
    pooled = get_proposals(data, "edge_boxes", tmp_path / "pooled", 40, workers=2)
    assert list(pooled) == list(serial) == data.ids
    for image_id, boxes in serial.items():
        assert boxes.shape[0] > 0 and torch.equal(pooled[image_id], boxes), image_id
    assert _files(tmp_path / "serial") == _files(tmp_path / "pooled")


def test_detect_with_proposal_workers_equals_serial(voc, one_process_run, tmp_path, capsys):
    images = sorted(str(p) for p in (voc / "JPEGImages").glob("*.jpg"))[:3]
    images.append(str(tmp_path / "missing.jpg"))
    common = ["--detector", str(one_process_run), "--max-proposals", "40"]
    assert main(["detect", *images, *common, "--out", str(tmp_path / "serial")]) == 1
    serial_err = capsys.readouterr().err
    assert main(["detect", *images, *common, "--out", str(tmp_path / "pool"),
                 "--proposal-workers", "2"]) == 1  # fmt: skip
    pooled_err = capsys.readouterr().err
    assert "missing.jpg" in serial_err
    assert serial_err.replace(str(tmp_path / "serial"), "OUT") == pooled_err.replace(
        str(tmp_path / "pool"), "OUT"
    )  # the last line names the output folder
    for image in images[:3]:
        name = Path(image).stem + ".json"
        a = json.loads((tmp_path / "serial" / name).read_text())
        b = json.loads((tmp_path / "pool" / name).read_text())
        assert a["windows"] > 0 and _without_timing(a) == _without_timing(b)
