"""Replaying a frozen trunk's pooled vectors (cache_views) and the frozen trunk's val cache.

References are plain loops: the crops of an epoch rebuilt sample by sample from their
seeds, pushed through the trunk one batch at a time.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
from train_helpers import TINY, make_colour_folder

from sppnet.classify.train import ClassifierTrainConfig, train_classifier
from sppnet.cli import main
from sppnet.data import ImageFolder
from sppnet.data.batching import (
    SAMPLE_STREAM,
    SeededTransformDataset,
    derive_seed,
    seeded_generator,
)
from sppnet.data.transforms import EvalCropTransform, TrainTransform, resize_tensor
from sppnet.engine.distributed import DistInfo

pytestmark = pytest.mark.usefixtures("one_thread")

tc = importlib.import_module("sppnet.classify.train")
epochs = importlib.import_module("sppnet.classify.epochs")  # where the memory check runs


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    return make_colour_folder(tmp_path_factory.mktemp("colour"), n_train=12, n_val=6)


def _config(root, out, **overrides):
    values = {**TINY, "trunk_lr_scale": 0.0, "size_mode": "multi", "epochs": 4}
    values.update(overrides)
    return ClassifierTrainConfig(data=str(root), out=str(out), **values)


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _reference_vectors(model, root, config, epoch):
    """The pooled vectors of epoch ``epoch``'s crops, by a plain loop over the samples."""
    from torch.utils.data import DistributedSampler

    data = ImageFolder(root, split="train")
    transform = TrainTransform(
        crop=config.crop, shorter=config.shorter, flip=config.flip, lighting=config.lighting
    )
    sampler = DistributedSampler(
        range(len(data)),
        num_replicas=1,
        rank=0,
        shuffle=True,
        seed=derive_seed(config.seed, tc._TAG_SHUFFLE) % 2**31,
    )
    sampler.set_epoch(epoch)
    size = tc._input_size(config, epoch)
    rows, labels = [], []
    model.eval()
    for index in sampler:
        img, label = data[index]
        crop = transform(img, generator=seeded_generator(config.seed, SAMPLE_STREAM, epoch, index))
        x = crop[None]
        if size != config.crop:
            x = resize_tensor(x, size)
        with torch.no_grad():
            rows.append(model.forward_pool(model.forward_features(x))[0])
        labels.append(label)
    return torch.stack(rows), torch.tensor(labels)


def test_recorded_vectors_are_the_trunks_vectors_of_that_epochs_crops(colour_root, tmp_path):
    config = _config(colour_root, tmp_path, cache_views=2).resolved()
    model, _ = tc._build_model(config, 3)
    trainee = tc._TrainingModel(model, freeze_bn=False, freeze_trunk=True)
    from torch.utils.data import DataLoader, DistributedSampler

    data = SeededTransformDataset(
        ImageFolder(colour_root, split="train"),
        TrainTransform(crop=config.crop, shorter=config.shorter, lighting=config.lighting),
        config.seed,
    )
    sampler = DistributedSampler(
        data, num_replicas=1, rank=0, seed=derive_seed(config.seed, tc._TAG_SHUFFLE) % 2**31
    )
    loader = DataLoader(data, batch_size=5, sampler=sampler)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    for epoch in (0, 1):  # 64 px crops, then 52 (multi-size)
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        size = tc._input_size(config, epoch)
        got, labels = tc._record_epoch(loader, trainee, size, info, progress=False, desc="")
        want, want_labels = _reference_vectors(model, colour_root, config, epoch)
        assert torch.equal(labels, want_labels)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)  # batched vs alone


def test_replay_runs_the_trunk_for_v_epochs_only_and_trains_the_head(
    colour_root, tmp_path, monkeypatch
):
    calls = []
    real = tc._record_epoch

    def counting(loader, trainee, size, *args, **kwargs):
        calls.append(size)
        return real(loader, trainee, size, *args, **kwargs)

    monkeypatch.setattr(tc, "_record_epoch", counting)
    config = _config(colour_root, tmp_path / "replay", cache_views=2, epochs=5, lr=0.01)
    result = train_classifier(config, progress=False)
    assert calls == [64, 52]  # epochs 1 and 2 recorded; 3-5 replay them
    sizes = [row["input_size"] for row in result.history]
    assert sizes == ["64x64", "52x52", "64x64", "52x52", "64x64"]
    assert [row["images"] for row in result.history] == [12] * 5
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    # the trunk is untouched; the head moved
    fresh, _ = tc._build_model(config, 3)
    trained = result.model.state_dict()
    for name, value in fresh.state_dict().items():
        if name.startswith("features."):
            assert torch.equal(trained[name], value), name
    assert not torch.equal(trained["fc8.weight"], fresh.state_dict()["fc8.weight"])


def test_a_resumed_replay_run_equals_the_unbroken_one(colour_root, tmp_path):
    config = _config(colour_root, tmp_path / "unbroken", cache_views=2, epochs=4)
    unbroken = train_classifier(config, progress=False)
    part = dataclasses.replace(config, out=str(tmp_path / "parts"), epochs=3)
    train_classifier(part, progress=False)
    # the cache is gone with the process: epoch 4 replays epoch 2's crops, recomputed
    resumed = train_classifier(dataclasses.replace(part, epochs=4), resume=True, progress=False)
    assert _same_state(resumed.model.state_dict(), unbroken.model.state_dict())


def test_with_v_at_least_the_epochs_replay_sees_every_fresh_crop(colour_root, tmp_path):
    # cache_views >= epochs: the same crops as training without replay, only the batch
    # order differs; on a frozen trunk with lr 0 the head stays put and the errors agree
    kwargs = {"epochs": 2, "lr": 1e-12, "dropout": 0.0}
    plain = train_classifier(_config(colour_root, tmp_path / "a", **kwargs), progress=False)
    replay = train_classifier(
        _config(colour_root, tmp_path / "b", cache_views=2, **kwargs), progress=False
    )
    for a, b in zip(plain.history, replay.history, strict=True):
        assert a["train_error"] == pytest.approx(b["train_error"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_top1_error"] == b["val_top1_error"]


def test_frozen_trunk_val_cache_gives_the_full_forward_errors(colour_root):
    config = _config(colour_root, "unused")
    model, _ = tc._build_model(config, 3)
    from torch.utils.data import DataLoader

    val = SeededTransformDataset(
        ImageFolder(colour_root, split="val"), EvalCropTransform(64, 72, 128.0), 0
    )
    loader = DataLoader(val, batch_size=4)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    with torch.no_grad():  # a head that ranks the classes differently per image
        model.fc8.weight.normal_(0, 1.0)
    plain = tc._validate(loader, model, info)
    cache: list = []
    first = tc._validate(loader, model, info, cache)
    assert len(cache) == 2 and cache[0][0].shape[1] == model.fc6.in_features
    again = tc._validate(loader, model, info, cache)  # from the cache alone
    assert plain == first == again


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"cache_views": 2, "trunk_lr_scale": 0.1}, "needs trunk_lr_scale=0"),
        ({"cache_views": 2, "size_mode": "variable"}, "fixed-size crops"),
        ({"cache_views": -1}, "cache_views must be an int >= 0"),
    ],
)
def test_cache_views_validation(overrides, match):
    values = {"trunk_lr_scale": 0.0, **overrides}
    with pytest.raises(ValueError, match=match):
        ClassifierTrainConfig(**values)


def test_replay_that_would_not_fit_in_memory_is_refused_before_training(
    colour_root, tmp_path, monkeypatch
):
    real = epochs.os.sysconf
    monkeypatch.setattr(
        epochs.os, "sysconf", lambda name: 16 if name == "SC_PHYS_PAGES" else real(name)
    )
    config = _config(colour_root, tmp_path, cache_views=3)
    with pytest.raises(ValueError, match=r"cache_views=3 keeps 3 x 12 pooled vectors"):
        train_classifier(config, progress=False)
    assert not (tmp_path / "log.csv").exists()


def test_cli_replay_and_its_error(colour_root, tmp_path, capsys):
    flags = ["--width", "0.125", "--fc-dim", "32", "--crop", "64", "--small-crop", "52"]
    flags += ["--shorter", "72", "--batch-size", "8", "--no-progress", "--data", str(colour_root)]
    out = tmp_path / "run"
    replay = ["--trunk-lr-scale", "0", "--cache-views", "1"]
    code = main(["train", "--out", str(out), "--epochs", "3", *replay, *flags])
    assert code == 0
    assert "epoch 3/3" in capsys.readouterr().out
    code = main(["train", "--out", str(tmp_path / "bad"), "--cache-views", "2", *flags])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "trunk_lr_scale=0" in err[0]
    code = main(["train", "--out", str(tmp_path / "neg"), *replay[:2], "--cache-views", "-1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--cache-views" in err[0]
