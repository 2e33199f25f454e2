"""Distributed training: 2 CPU processes under torchrun (gloo) match one process, and helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from train_helpers import TINY, make_colour_folder

from sppnet.classify.train import ClassifierTrainConfig, train_classifier
from sppnet.engine.checkpoint import load_checkpoint
from sppnet.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    init_distributed,
    shard_indices,
)

_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_flags(data, out) -> list[str]:
    # dropout 0: the only randomness that differs between ranks (each seeds its own);
    # everything else derives from (seed, epoch, sample index), as in one process.
    return [
        "--data", str(data), "--out", str(out), "--width", str(TINY["width"]),
        "--fc-dim", str(TINY["fc_dim"]), "--crop", str(TINY["crop"]),
        "--small-crop", str(TINY["small_crop"]), "--shorter", str(TINY["shorter"]),
        "--batch-size", "6", "--epochs", "2", "--lr", "0.01", "--dropout", "0",
        "--plateau-patience", "10", "--no-progress",
    ]  # fmt: skip


def test_two_process_torchrun_matches_one_process(tmp_path, monkeypatch):
    data = make_colour_folder(tmp_path / "data", n_train=30, n_val=7)
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "sppnet", "train", *_train_flags(data, tmp_path / "ddp"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.count("checkpoint:") == 1  # only rank 0 reports (and writes)

    ddp_model, _, ddp_state = load_checkpoint(tmp_path / "ddp")
    assert ddp_state["world_size"] == 2 and ddp_state["epoch"] == 2
    # Both ranks' shares add up to the whole train and val sets, once each.
    assert [row["images"] for row in ddp_state["history"]] == [30, 30]

    # The same global batch in one process gives the same weights (up to float sums).
    for key in _DIST_ENV:
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        values = {**TINY, "batch_size": 6, "epochs": 2, "lr": 0.01, "dropout": 0.0}
        config = ClassifierTrainConfig(
            data=str(data), out=str(tmp_path / "one"), plateau_patience=10, **values
        )
        single = train_classifier(config, progress=False)
    finally:
        torch.set_num_threads(threads)
    reference = single.model.state_dict()
    for name, tensor in reference.items():
        torch.testing.assert_close(ddp_model[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    for a, b in zip(ddp_state["history"], single.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_top1_error"] == pytest.approx(b["val_top1_error"])


def test_two_process_torchrun_variable_size_batches(tmp_path):
    # Padded batches of whole images, size-grouped and dealt out to the ranks; DDP passes
    # the extents through to the model.
    data = make_colour_folder(tmp_path / "data", n_train=16, n_val=4)
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    flags = _train_flags(data, tmp_path / "ddp")
    flags[flags.index("--epochs") + 1] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "sppnet", "train", *flags, "--size-mode", "variable", "--max-side", "90",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    _, _, state = load_checkpoint(tmp_path / "ddp")
    assert state["world_size"] == 2
    assert state["history"][0]["input_size"] == "variable"
    assert state["history"][0]["images"] == 16


def test_alone_without_torchrun_environment(monkeypatch):
    for key in _DIST_ENV:
        monkeypatch.delenv(key, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert info.is_main and not info.distributed
    values = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(values, info) is values and values.tolist() == [1.0, 2.0]


def test_init_distributed_errors(monkeypatch):
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        init_distributed("tpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match=r"RANK must be in \[0, 2\)"):
        init_distributed("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            init_distributed("cuda")


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 2), (7, 3), (2, 4)])
def test_shard_indices_are_disjoint_and_cover_everything(n, world):
    shards = [shard_indices(n, rank, world) for rank in range(world)]
    flat = sorted(i for shard in shards for i in shard)
    assert flat == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_indices_validation():
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_indices(5, 2, 2)
