"""Fine-tuning an ImageNet EfficientNet-Lite0 trunk: frozen batch norms, the frozen trunk
(trunk_lr_scale 0), scaled trunk learning rate, model-dependent defaults, resume, test views
and the CLI's errors."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
from train_helpers import make_colour_folder

from sppnet.classify.evaluate import evaluate_classifier
from sppnet.classify.network import _param_groups
from sppnet.classify.train import (
    MODEL_DEFAULT,
    ClassifierTrainConfig,
    _load_optimizer_state,
    load_train_config,
    train_classifier,
)
from sppnet.engine.checkpoint import load_checkpoint, load_classifier
from sppnet.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

# the module (sppnet.engine re-exports a function of the same name)
tc = importlib.import_module("sppnet.classify.train")

LITE = "efficientnet_lite0"
# Small crops: the trunk takes any size (64 px -> a 2 x 2 head map); fc 32 keeps steps cheap.
SMALL = {"crop": 64, "small_crop": 52, "shorter": 72, "fc_dim": 32, "plot": False}


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    return make_colour_folder(tmp_path_factory.mktemp("colour"), n_train=12, n_val=3)


@pytest.fixture(scope="module")
def imagenet_trunk():
    """The pretrained trunk's state (weights and batch-norm statistics) before any training."""
    trunk = create_model(LITE, pretrained=True).features.state_dict()
    return {k: v.clone() for k, v in trunk.items()}


def _config(root, out, **overrides):
    # the paper's schedule on the pretrained trunk: these tests check its mechanics
    values = {**SMALL, "model": LITE, "pretrained": True, "recipe": "paper", "batch_size": 6}
    values["epochs"] = 1
    values.update(overrides)
    return ClassifierTrainConfig(data=str(root), out=str(out), **values)


def _trunk_state(model):
    return {k: v.detach().clone() for k, v in model.features.state_dict().items()}


def _bn_buffers(state):
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_head_only_fine_tuning_leaves_the_trunk_bit_identical(
    colour_root, tmp_path, imagenet_trunk, monkeypatch
):
    config = _config(colour_root, tmp_path, trunk_lr_scale=0.0)
    trunk_outputs_need_grad = []
    real_build = tc._build_model

    def build(*args, **kwargs):
        model, model_kwargs = real_build(*args, **kwargs)
        model.features.register_forward_hook(
            lambda module, args, out: trunk_outputs_need_grad.append(out.requires_grad)
        )
        return model, model_kwargs

    monkeypatch.setattr(tc, "_build_model", build)
    result = train_classifier(config, progress=False)
    model = result.model
    trunk = _trunk_state(model)
    assert trunk.keys() == imagenet_trunk.keys()
    assert all(torch.equal(trunk[k], imagenet_trunk[k]) for k in trunk)  # incl. BN statistics
    # no autograd graph through the trunk, so no backward pass through it
    assert trunk_outputs_need_grad and not any(trunk_outputs_need_grad)
    assert all(p.requires_grad for p in model.parameters())  # handed back as a plain model
    _, optimizer_state, _ = load_checkpoint(tmp_path)
    assert [g["lr"] for g in optimizer_state["param_groups"]] == [0.0, 0.01]
    # the fc layers did learn: they differ from the run's seeded initialisation
    fresh, _ = real_build(config, 3)
    for name in ("fc6", "fc7", "fc8"):
        assert not torch.equal(getattr(fresh, name).weight, getattr(model, name).weight), name


@pytest.mark.parametrize(("model", "fc_dim"), [(LITE, 1024), ("zf5", 4096)])
def test_spp_levels_and_fc_dim_default_to_the_models_own(model, fc_dim):
    width = 1.0 if model == LITE else 0.125
    config = ClassifierTrainConfig(model=model, width=width)
    assert config.spp_levels == MODEL_DEFAULT and config.fc_dim is None
    built, kwargs = tc._build_model(config, 3)
    levels = create_model(model, width=width).spp_levels  # the registry's default pyramid
    assert built.spp_levels == levels and built.fc_dim == fc_dim
    # checkpoints store the resolved values: load_classifier needs no model defaults
    assert kwargs["spp_levels"] == list(levels) and kwargs["fc_dim"] == fc_dim
    no_spp, kwargs = tc._build_model(dataclasses.replace(config, spp_levels=None), 3)
    assert no_spp.spp_levels is None and kwargs["spp_levels"] is None


def test_scaled_trunk_lr_trains_the_trunk_but_keeps_batch_norm_statistics(
    colour_root, tmp_path, imagenet_trunk
):
    result = train_classifier(_config(colour_root, tmp_path, trunk_lr_scale=0.1), progress=False)
    trunk = _trunk_state(result.model)
    conv = "stem.conv.weight"
    assert not torch.equal(trunk[conv], imagenet_trunk[conv])
    stats = _bn_buffers(imagenet_trunk)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in result.model.features.modules())
    assert n_bn > 10 and len(stats) == 2 * n_bn
    assert all(torch.equal(trunk[k], v) for k, v in stats.items())
    _, optimizer_state, _ = load_checkpoint(tmp_path)
    lrs = [g["lr"] for g in optimizer_state["param_groups"]]
    assert lrs == pytest.approx([0.001, 0.01])


def test_from_scratch_lite_updates_its_batch_norm_statistics(colour_root, tmp_path):
    result = train_classifier(_config(colour_root, tmp_path, pretrained=False), progress=False)
    mean = result.model.features.state_dict()["stem.bn.running_mean"]
    assert not torch.equal(mean, torch.zeros_like(mean))


def test_lr_drops_scale_both_groups(colour_root, tmp_path):
    # lr 1e-9: the val error cannot improve, so the plateau rule drops the lr after epoch 2
    config = _config(colour_root, tmp_path, epochs=2, trunk_lr_scale=0.5, lr=1e-9)
    config = dataclasses.replace(config, plateau_patience=1, lr_drops=1)
    result = train_classifier(config, progress=False)
    assert result.history[1]["val_top1_error"] == result.history[0]["val_top1_error"]
    _, optimizer_state, _ = load_checkpoint(tmp_path)
    lrs = [g["lr"] for g in optimizer_state["param_groups"]]
    assert lrs == pytest.approx([0.5e-10, 1e-10])


def test_resume_restores_pretrained_and_may_unfreeze_the_trunk(colour_root, tmp_path):
    config = _config(colour_root, tmp_path / "run", trunk_lr_scale=0.0)
    train_classifier(config, progress=False)
    assert load_train_config(tmp_path / "run") == config.resolved()
    with pytest.raises(ValueError, match=r"pretrained=True.*pretrained=False"):
        train_classifier(dataclasses.replace(config, pretrained=False), resume=True, progress=False)
    with pytest.raises(ValueError, match=r"fc_dim=32.*fc_dim=64"):
        train_classifier(dataclasses.replace(config, fc_dim=64), resume=True, progress=False)
    # a head-only stage, then fine-tuning of the whole network
    frozen = load_classifier(tmp_path / "run")[0].features.state_dict()
    stage2 = dataclasses.replace(config, epochs=2, trunk_lr_scale=0.1)
    result = train_classifier(stage2, resume=True, progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert not torch.equal(
        result.model.features.state_dict()["stem.conv.weight"], frozen["stem.conv.weight"]
    )


def test_resume_equals_the_unbroken_run(colour_root, tmp_path):
    config = _config(colour_root, tmp_path / "unbroken", epochs=2, trunk_lr_scale=0.1)
    unbroken = train_classifier(config, progress=False)
    split = dataclasses.replace(config, out=str(tmp_path / "split"), epochs=1)
    train_classifier(split, progress=False)
    resumed = train_classifier(dataclasses.replace(split, epochs=2), resume=True, progress=False)
    a, b = unbroken.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_group_optimizer_state_of_older_checkpoints_loads():
    model = create_model("zf5", width=0.125, fc_dim=8, num_classes=2)
    old = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    old.step()
    new = torch.optim.SGD(_param_groups(model), lr=0.01, momentum=0.9)
    _load_optimizer_state(new, old.state_dict())
    assert [len(g["params"]) for g in new.param_groups] == [10, 6]
    for p in model.parameters():
        assert torch.equal(new.state[p]["momentum_buffer"], old.state[p]["momentum_buffer"])


@pytest.mark.parametrize("mode", ["random", "variable"])
def test_size_modes_with_a_frozen_trunk(colour_root, tmp_path, mode):
    config = _config(colour_root, tmp_path, size_mode=mode, epochs=2, trunk_lr_scale=0.0)
    result = train_classifier(config, progress=False)
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)


def test_test_views_of_a_fine_tuned_lite(colour_root, tmp_path):
    from sppnet.data.image_folder import ImageFolder

    train_classifier(_config(colour_root, tmp_path, trunk_lr_scale=0.0), progress=False)
    model, _ = load_classifier(tmp_path)  # rebuilt without the pretrained weights
    assert model.spp_levels == create_model(LITE).spp_levels
    data = ImageFolder(colour_root, split="val")
    results = evaluate_classifier(model, data, scales=(64, 80), crop=64, shorter=72, progress=False)
    assert all(results[v] is not None for v in ("center", "ten", "full", "multiview"))
    assert results["multiview"]["views_per_image"] > 2


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"model": "zf5", "pretrained": True}, ValueError, "pretrained_models"),
        ({"trunk_lr_scale": -0.1}, ValueError, "trunk_lr_scale must be a finite number >= 0"),
        ({"trunk_lr_scale": float("nan")}, ValueError, "trunk_lr_scale must be a finite"),
        ({"pretrained": 1}, TypeError, "pretrained must be a bool"),
        ({"spp_levels": "auto"}, ValueError, "spp_levels must be a tuple"),
        ({"fc_dim": 0}, ValueError, "fc_dim must be an int >= 1"),
    ],
)
def test_config_validation(overrides, error, match):
    with pytest.raises(error, match=match):
        ClassifierTrainConfig(**overrides)


# ---------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--model", "zf5", "--pretrained"], "efficientnet_lite0"),
        (["--model", LITE, "--pretrained", "--trunk-lr-scale", "-1"], "--trunk-lr-scale must be"),
    ],
)
def test_cli_train_errors_are_one_line_before_any_work(tmp_path, capsys, flags, match):
    from sppnet.cli import main

    out = tmp_path / "run"
    assert main(["train", "--builtin", "--out", str(out), *flags, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err
    assert not out.exists()  # no built-in data generated first


def test_cli_trains_a_pretrained_lite_and_evaluates_it(colour_root, tmp_path, capsys):
    from sppnet.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", str(colour_root), "--out", str(out), "--model", LITE]
    argv += ["--pretrained", "--trunk-lr-scale", "0", "--fc-dim", "32", "--crop", "64"]
    argv += ["--small-crop", "52", "--shorter", "72", "--batch-size", "6", "--epochs", "1"]
    assert main([*argv, "--no-progress"]) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    config = load_train_config(out)
    assert config.pretrained and config.trunk_lr_scale == 0.0 and config.model == LITE
    argv = ["eval", "--checkpoint", str(out), "--data", str(colour_root), "--split", "val"]
    argv += ["--views", "center", "full", "--no-progress"]
    assert main(argv) == 0
    assert "full" in capsys.readouterr().out
