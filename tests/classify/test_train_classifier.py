"""Classifier training: the four size modes, resume == unbroken run, NaN stop, logs, config."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from train_helpers import CLASSES, TINY, make_colour_folder

from sppnet.classify.train import (
    ClassifierTrainConfig,
    NonFiniteLossError,
    _plateau_step,
    load_train_config,
    train_classifier,
)
from sppnet.engine.checkpoint import find_checkpoint, load_checkpoint, load_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    return make_colour_folder(tmp_path_factory.mktemp("colour"), n_train=30, n_val=6)


def _config(root, out, **overrides):
    values = {**TINY, "batch_size": 6, "epochs": 2, "lr": 0.01, "plateau_patience": 10}
    values.update(overrides)
    return ClassifierTrainConfig(data=str(root), out=str(out), **values)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["single", "multi", "random", "variable"])
def test_each_size_mode_lowers_the_training_loss(colour_root, tmp_path, mode):
    config = _config(colour_root, tmp_path / mode, size_mode=mode, epochs=5)
    result = train_classifier(config, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 5
    assert min(losses[-2:]) < losses[0] - 0.1, losses
    sizes = [row["input_size"] for row in result.history]
    if mode == "single":
        assert sizes == ["64x64"] * 5
    elif mode == "multi":  # one full epoch at each size in turn (Sec. 2.3)
        assert sizes == ["64x64", "52x52", "64x64", "52x52", "64x64"]
    elif mode == "random":  # s uniform in [small_crop, crop] per epoch
        sides = [int(s.split("x")[0]) for s in sizes]
        assert all(52 <= s <= 64 for s in sides) and len(set(sides)) > 1
    else:
        assert sizes == ["variable"] * 5
    assert result.classes == list(CLASSES)
    assert not result.model.training
    assert result.checkpoint == find_checkpoint(tmp_path / mode)


def test_resume_after_a_killed_epoch_equals_the_unbroken_run(colour_root, tmp_path, monkeypatch):
    config = _config(colour_root, tmp_path / "unbroken", epochs=3, plateau_patience=1)
    unbroken = train_classifier(config, progress=False)

    class KilledError(Exception):
        pass

    real_loss, calls = F.cross_entropy, {"n": 0}

    def dies_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * 5 + 2:  # 5 steps per epoch: step 1 of epoch 3
            raise KilledError
        return real_loss(*args, **kwargs)

    killed_config = dataclasses.replace(config, out=str(tmp_path / "killed"))
    monkeypatch.setattr(F, "cross_entropy", dies_in_epoch_three)
    with pytest.raises(KilledError):
        train_classifier(killed_config, progress=False)
    monkeypatch.setattr(F, "cross_entropy", real_loss)
    assert load_checkpoint(tmp_path / "killed")[2]["epoch"] == 2

    resumed = train_classifier(killed_config, resume=True, progress=False)
    assert _same_state(resumed.model.state_dict(), unbroken.model.state_dict())
    a_model, a_opt, a_state = load_checkpoint(tmp_path / "unbroken")
    b_model, b_opt, b_state = load_checkpoint(tmp_path / "killed")
    assert _same_state(a_model, b_model)
    a_buf = [s["momentum_buffer"] for s in a_opt["state"].values()]
    b_buf = [s["momentum_buffer"] for s in b_opt["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(a_buf, b_buf, strict=True))
    timing = ("images_per_s", "seconds")
    strip = [{k: v for k, v in row.items() if k not in timing} for row in a_state["history"]]
    assert strip == [
        {k: v for k, v in row.items() if k not in timing} for row in b_state["history"]
    ]
    assert a_state["schedule"] == b_state["schedule"]


@pytest.mark.parametrize("mode", ["single", "variable"])
def test_loader_workers_do_not_change_the_result(colour_root, tmp_path, mode):
    # Each sample's augmentation derives from (seed, epoch, index), not a worker's RNG.
    results = [
        train_classifier(
            _config(
                colour_root, tmp_path / f"w{workers}", epochs=1, size_mode=mode, workers=workers
            ),
            progress=False,
        ).model.state_dict()
        for workers in (0, 2)
    ]
    assert _same_state(*results)


def test_resume_can_extend_a_finished_run(colour_root, tmp_path):
    config = _config(colour_root, tmp_path, epochs=1)
    train_classifier(config, progress=False)
    assert load_train_config(tmp_path) == config.resolved()
    longer = train_classifier(dataclasses.replace(config, epochs=2), resume=True, progress=False)
    assert [row["epoch"] for row in longer.history] == [1, 2]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    colour_root, tmp_path, monkeypatch
):
    config = _config(colour_root, tmp_path, epochs=3)
    real_loss, calls = F.cross_entropy, {"n": 0}

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 + 3 else loss

    monkeypatch.setattr(F, "cross_entropy", nan_in_epoch_two)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2 \(lr 0.01\)") as info:
        train_classifier(config, progress=False)
    err = info.value
    assert (err.epoch, err.step, err.lr) == (2, 2, 0.01)
    assert err.checkpoint == find_checkpoint(tmp_path)
    assert err.checkpoint.name == "epoch_0001" and str(err.checkpoint) in str(err)
    model, meta = load_classifier(tmp_path)
    assert meta["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_huge_learning_rate_gives_a_clear_error(colour_root, tmp_path):
    config = _config(colour_root, tmp_path, epochs=3, lr=1e12, weight_decay=0.0)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss at epoch"):
        train_classifier(config, progress=False)


def test_logs_and_curves(colour_root, tmp_path):
    config = _config(colour_root, tmp_path, epochs=2, plot=True)
    result = train_classifier(config, progress=True)
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) >= {"train_loss", "train_error", "val_top1_error", "val_top5_error"}
    assert set(rows[0]) >= {"lr", "images_per_s"}
    assert float(rows[1]["train_loss"]) == pytest.approx(result.history[1]["train_loss"])
    assert float(rows[0]["val_top5_error"]) == 0.0  # 3 classes: the true one is in the top 5
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["config"]["size_mode"] == "single" and len(log["history"]) == 2
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refuses_to_overwrite_and_checks_resume_compatibility(colour_root, tmp_path):
    config = _config(colour_root, tmp_path, epochs=1)
    train_classifier(config, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train_classifier(config, progress=False)
    with pytest.raises(ValueError, match=r"width=0\.125.*width=0\.25"):
        train_classifier(dataclasses.replace(config, width=0.25), resume=True, progress=False)


def test_global_rng_state_is_left_alone(colour_root, tmp_path):
    before = torch.get_rng_state()
    train_classifier(_config(colour_root, tmp_path, epochs=1), progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_no_spp_baseline_trains_on_224_crops(tmp_path):
    root = make_colour_folder(tmp_path / "data", n_train=3, n_val=0)
    (root / "splits" / "val.txt").unlink()
    values = {**TINY, "crop": 224, "shorter": 230, "small_crop": 180, "epochs": 1}
    config = ClassifierTrainConfig(
        data=str(root), out=str(tmp_path / "run"), spp_levels=None, **values
    )
    result = train_classifier(config, progress=False)
    assert result.model.spp_levels is None
    assert result.history[0]["val_top1_error"] is None  # no val split: none measured


def test_plateau_schedule_divides_by_ten_at_most_lr_drops_times():
    config = ClassifierTrainConfig(lr=0.01, lr_drops=2, plateau_patience=2)
    schedule = {"lr": 0.01, "best": None, "bad_epochs": 0, "drops": 0}
    lrs = []
    for error in [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3]:
        schedule, _ = _plateau_step(schedule, error, config.resolved())
        lrs.append(schedule["lr"])
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4])
    assert schedule["drops"] == 2


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"size_mode": "huge"}, "size_mode must be one of"),
        ({"spp_levels": None, "size_mode": "multi"}, "needs SPP"),
        ({"small_crop": 300}, "small_crop must be <= crop"),
        ({"shorter": 100}, "shorter must be >= crop"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"lr": -1.0}, "lr must be a finite number >= 0"),
        ({"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
        ({"max_side": 100}, "max_side must be >= crop"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        ClassifierTrainConfig(**overrides)


def test_config_dict_round_trip():
    config = ClassifierTrainConfig(spp_levels=[4, 2, 1], size_mode="random")
    assert config.spp_levels == (4, 2, 1)
    assert ClassifierTrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown ClassifierTrainConfig fields"):
        ClassifierTrainConfig.from_dict({"bogus": 1})


def test_crop_below_the_network_minimum_is_rejected(colour_root, tmp_path):
    config = _config(colour_root, tmp_path, crop=28, small_crop=28, shorter=72)
    with pytest.raises(ValueError, match="at least 29 px"):
        train_classifier(config, progress=False)


# ---------------------------------------------------------------------------------- CLI
def test_cli_train_help_shows_a_copy_pasteable_example(capsys):
    from sppnet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "sppnet train --builtin --out runs/tiny" in out
    assert "torchrun --nproc_per_node=2 -m sppnet train" in out


def test_cli_trains_on_builtin_data_and_resumes(tmp_path, capsys):
    from sppnet.cli import main

    out = tmp_path / "run"
    flags = ["--width", "0.125", "--fc-dim", "32", "--crop", "64", "--small-crop", "52"]
    flags += ["--shorter", "72", "--batch-size", "8", "--size-mode", "multi", "--no-progress"]
    builtin = ["--builtin", "--builtin-sizes", "12", "6", "6"]
    assert main(["train", *builtin, "--out", str(out), "--epochs", "1", *flags]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "checkpoint:" in printed
    assert (out / "data" / "classification" / "splits" / "train.txt").is_file()
    _, meta = load_classifier(out)
    assert meta["epoch"] == 1 and meta["config"]["size_mode"] == "multi"
    assert len(meta["classes"]) >= 2

    # Without --resume an existing run is not overwritten.
    assert main(["train", *builtin, "--out", str(out), "--epochs", "2", *flags]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    # --resume needs only --out: the run's own settings come from its checkpoint.
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "epoch 2/2" in capsys.readouterr().out
    _, meta = load_classifier(out)
    assert meta["epoch"] == 2 and meta["config"]["width"] == 0.125
