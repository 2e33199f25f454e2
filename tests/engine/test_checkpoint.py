"""Checkpoints: round trip, atomic writes (no partial checkpoint visible), pruning, loading."""

from __future__ import annotations

import json

import pytest
import torch

from sppnet.engine import checkpoint as ckpt
from sppnet.engine.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    load_classifier,
    save_checkpoint,
)
from sppnet.models import create_model

MODEL = {
    "name": "zf5",
    "num_classes": 3,
    "spp_levels": [3, 1],
    "width": 0.125,
    "fc_dim": 16,
    "spp_mode": "max",
    "dropout": 0.5,
}


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in MODEL.items() if k != "name"}
    model = create_model("zf5", **{**kwargs, "spp_levels": tuple(kwargs["spp_levels"])})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss = model(torch.randn(2, 3, 40, 48)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()  # fills the momentum buffers
    return model, optimizer


def _state(epoch: int) -> dict:
    return {
        "config": {"mean": 128.0, "crop": 64, "shorter": 72},
        "model": MODEL,
        "classes": ["a", "b", "c"],
        "epoch": epoch,
        "history": [{"epoch": e} for e in range(1, epoch + 1)],
    }


def test_round_trip(tmp_path):
    model, optimizer = _model_and_optimizer()
    path = save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(1))
    assert path == tmp_path / "checkpoints" / "epoch_0001"
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "optimizer.pt",
        "state.json",
    ]
    model_state, optimizer_state, state = load_checkpoint(tmp_path)
    expected = model.state_dict()
    assert model_state.keys() == expected.keys()
    assert all(torch.equal(model_state[k], expected[k]) for k in expected)
    # optimizer.pt holds only tensors and plain values: loadable with weights_only=True.
    again = torch.load(path / "optimizer.pt", weights_only=True)
    assert again["param_groups"][0]["lr"] == 0.01
    fresh = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    fresh.load_state_dict(optimizer_state)
    for group in (fresh.state_dict(), optimizer.state_dict()):
        assert group["param_groups"][0]["weight_decay"] == 5e-4
    buffers = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    loaded = [s["momentum_buffer"] for s in optimizer_state["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, loaded, strict=True))
    assert state["epoch"] == 1 and state["path"] == str(path)


def test_load_classifier_gives_the_same_outputs_in_eval_mode(tmp_path):
    model, optimizer = _model_and_optimizer()
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(1))
    loaded, meta = load_classifier(tmp_path)
    assert not loaded.training
    x = torch.randn(2, 3, 45, 37)
    assert torch.equal(loaded(x), model.eval()(x))
    assert meta["classes"] == ["a", "b", "c"]
    assert (meta["mean"], meta["crop"], meta["shorter"], meta["epoch"]) == (128.0, 64, 72, 1)
    # MODEL predates fc_layers: such a description loads with fc6 and fc7, as it was built
    assert meta["model"] == {**MODEL, "spp_levels": (3, 1), "fc_layers": 2}
    # also from the checkpoints/ folder or the epoch folder itself
    for path in (tmp_path / "checkpoints", tmp_path / "checkpoints" / "epoch_0001"):
        assert torch.equal(load_classifier(path)[0](x), loaded(x))


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = _model_and_optimizer()
    first = save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(1))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)  # dies after model.safetensors is written
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(2))
    monkeypatch.undo()
    # The half-written epoch was only a hidden temporary folder, removed on the error (a
    # killed process leaves it: the next save removes those, below).
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "epoch_0002" not in names
    assert not any(n.startswith(".tmp-epoch_0002") for n in names)
    assert find_checkpoint(tmp_path) == first
    assert load_checkpoint(tmp_path)[2]["epoch"] == 1
    # the next successful save cleans up leftovers, also those of other (killed) processes
    (tmp_path / "checkpoints" / ".tmp-epoch_0009-99999999").mkdir()
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(2))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch_0001", "epoch_0002", "latest"]


def test_pruning_keeps_the_latest_and_the_best(tmp_path):
    model, optimizer = _model_and_optimizer()
    for epoch in range(1, 6):
        save_checkpoint(
            tmp_path,
            model=model,
            optimizer=optimizer,
            state=_state(epoch),
            is_best=epoch == 2,
            keep=2,
        )
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "epoch_0002",
        "epoch_0004",
        "epoch_0005",
    ]
    assert find_checkpoint(tmp_path) == folder / "epoch_0005"
    assert find_checkpoint(tmp_path, "best") == folder / "epoch_0002"
    assert load_classifier(tmp_path, "best")[1]["epoch"] == 2


def test_rewriting_an_epoch_replaces_it(tmp_path):
    model, optimizer = _model_and_optimizer()
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(1))
    other, other_opt = _model_and_optimizer(seed=1)
    save_checkpoint(tmp_path, model=other, optimizer=other_opt, state=_state(1))
    model_state = load_checkpoint(tmp_path)[0]
    assert torch.equal(model_state["fc8.weight"], other.state_dict()["fc8.weight"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_0001",
        "latest",
    ]


def test_without_a_pointer_the_highest_complete_epoch_is_found(tmp_path):
    model, _ = _model_and_optimizer()
    for epoch in (1, 2):
        save_checkpoint(tmp_path, model=model, optimizer=None, state=_state(epoch), keep=5)
    (tmp_path / "checkpoints" / "latest").unlink()
    (tmp_path / "checkpoints" / "epoch_0007").mkdir()  # incomplete: no state.json
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoints" / "epoch_0002"
    assert find_checkpoint(tmp_path, "best") == tmp_path / "checkpoints" / "epoch_0002"
    assert load_checkpoint(tmp_path)[1] is None  # saved without an optimizer


def test_errors(tmp_path):
    assert find_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        load_classifier(tmp_path)
    with pytest.raises(ValueError, match="which must be 'latest' or 'best'"):
        find_checkpoint(tmp_path, "oldest")
    model, optimizer = _model_and_optimizer()
    with pytest.raises(ValueError, match="must hold 'epoch' and 'model'"):
        save_checkpoint(tmp_path, model=model, optimizer=optimizer, state={"epoch": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        save_checkpoint(
            tmp_path, model=model, optimizer=optimizer, state={**_state(1), "x": object()}
        )
    assert not (tmp_path / "checkpoints").exists()  # nothing written by failed calls
    path = save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=_state(1))
    state = json.loads((path / "state.json").read_text())
    del state["model"]["fc_dim"]
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="lacks \\['fc_dim'\\]"):
        load_classifier(tmp_path)
