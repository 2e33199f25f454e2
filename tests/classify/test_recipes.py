"""The two training recipes: which one a config gets, their wiring into ``sppnet train``
(no option: the recipe's value; each option: its own), ``--help``, and what the fine-tuning
recipe's mechanics do (frozen first layers, the warm-up + cosine schedule, the linear head,
whole-image validation)."""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest
import torch
from train_helpers import make_colour_folder

from sppnet.classify.config import ClassifierTrainConfig
from sppnet.classify.network import frozen_layers, lr_factor
from sppnet.classify.recipes import (
    PAPER_RECIPE,
    PRETRAINED_RECIPE,
    PRETRAINED_TRUNK_RECIPE,
    RECIPE_FIELDS,
    recipe_for,
)
from sppnet.classify.train import load_train_config, train_classifier
from sppnet.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

LITE = "efficientnet_lite0"
# small inputs for the runs below (the recipes' other values are kept)
SMALL = {"crop": 64, "small_crop": 52, "shorter": 72, "plot": False}


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    return make_colour_folder(tmp_path_factory.mktemp("colour"), n_train=8, n_val=4)


def _recipe_values(config: ClassifierTrainConfig) -> dict:
    resolved = config.resolved()
    return {name: getattr(resolved, name) for name in RECIPE_FIELDS}


# ------------------------------------------------------------------ which recipe
def test_pretrained_lite_gets_the_fine_tuning_recipe_and_scratch_the_papers():
    tuned = ClassifierTrainConfig(model=LITE, pretrained=True)
    assert tuned.recipe_name() == "finetune"
    assert _recipe_values(tuned) == dataclasses.asdict(PRETRAINED_RECIPE)
    scratch = ClassifierTrainConfig(model="zf5")
    expected = {**dataclasses.asdict(PAPER_RECIPE), "freeze_bn": False}  # nothing pretrained
    assert _recipe_values(scratch) == expected
    # the paper's schedule, literally: SGD 0.01, /10 on plateaus, batch 128, 70 epochs
    resolved = scratch.resolved()
    assert (resolved.optimizer, resolved.lr, resolved.lr_schedule) == ("sgd", 0.01, "plateau")
    assert (resolved.batch_size, resolved.epochs, resolved.dropout) == (128, 70, 0.5)


def test_another_pretrained_trunk_learns_whole_with_its_own_pyramid():
    assert recipe_for("timm/resnet18", "finetune") == PRETRAINED_TRUNK_RECIPE
    assert PRETRAINED_TRUNK_RECIPE.train_from == "all"
    assert PRETRAINED_TRUNK_RECIPE.spp_levels == "default"
    assert PRETRAINED_TRUNK_RECIPE.optimizer == PRETRAINED_RECIPE.optimizer


def test_recipe_paper_gives_a_pretrained_trunk_the_from_scratch_schedule():
    config = ClassifierTrainConfig(model=LITE, pretrained=True, recipe="paper").resolved()
    assert (config.optimizer, config.lr, config.epochs) == ("sgd", 0.01, 70)
    assert config.freeze_bn is True  # ImageNet statistics stay: the trunk is pretrained


def test_every_set_field_wins_over_the_recipe():
    chosen = {
        "optimizer": "sgd", "lr": 0.02, "lr_schedule": "plateau", "warmup_epochs": 1,
        "weight_decay": 1e-4, "epochs": 3, "batch_size": 5, "dropout": 0.3, "lighting": 0.05,
        "size_mode": "multi", "trunk_lr_scale": 0.5, "train_from": "stage4", "freeze_bn": False,
        "feature_layer": "stage7", "spp_levels": (2, 1), "spp_mode": "max", "fc_layers": 2,
    }  # fmt: skip
    assert set(chosen) == set(RECIPE_FIELDS)
    for name, value in chosen.items():
        assert value != getattr(PRETRAINED_RECIPE, name)
        config = ClassifierTrainConfig(model=LITE, pretrained=True, **{name: value}).resolved()
        assert getattr(config, name) == value, name
        others = {n: getattr(config, n) for n in RECIPE_FIELDS if n != name}
        assert others == {n: getattr(PRETRAINED_RECIPE, n) for n in others}


def test_resolved_is_idempotent_and_round_trips_through_a_dict():
    for config in (
        ClassifierTrainConfig(model=LITE, pretrained=True, lr=0.005),
        ClassifierTrainConfig(model="zf5", spp_levels=None),
    ):
        resolved = config.resolved()
        assert resolved.resolved() == resolved
        assert ClassifierTrainConfig.from_dict(resolved.to_dict()) == resolved


def test_a_config_saved_before_recipes_reads_as_it_ran():
    old = ClassifierTrainConfig(model=LITE, pretrained=True, recipe="paper").to_dict()
    for key in ("recipe", "optimizer", "lr_schedule", "warmup_epochs", "train_from",
                "freeze_bn", "feature_layer", "fc_layers", "spp_mode"):  # fmt: skip
        old.pop(key)
    old.update(lr=0.01, epochs=70, size_mode="single", dropout=0.5, spp_mode="max")
    config = ClassifierTrainConfig.from_dict(old).resolved()
    assert (config.recipe, config.optimizer, config.train_from) == ("paper", "sgd", "all")
    assert config.freeze_bn is True and config.fc_layers == 2 and config.feature_layer is None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"recipe": "fast"}, "recipe must be one of"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"fc_layers": 1}, "fc_layers must be one of"),
        ({"warmup_epochs": -1}, "warmup_epochs must be an int >= 0"),
        ({"freeze_bn": "yes"}, "freeze_bn must be a bool"),
    ],
)
def test_bad_recipe_values_are_refused(overrides, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ClassifierTrainConfig(model=LITE, pretrained=True, **overrides)


# ------------------------------------------------------------------ the CLI's wiring
def _parse(argv):
    from sppnet.cli.app import build_parser

    return build_parser().parse_args(["train", "--out", "unused", *argv])


def test_cli_without_options_leaves_every_recipe_field_to_the_recipe():
    from sppnet.cli.classify import train_config_of

    args = _parse(["--model", LITE, "--pretrained", "--device", "cpu"])
    config = train_config_of(args, resuming=False)
    assert _recipe_values(config) == dataclasses.asdict(PRETRAINED_RECIPE)
    args = _parse(["--device", "cpu"])
    assert train_config_of(args, resuming=False).resolved().lr == PAPER_RECIPE.lr


_CLI_VALUES = [
    ("--optimizer", "sgd", "optimizer", "sgd"),
    ("--lr", "0.02", "lr", 0.02),
    ("--lr-schedule", "plateau", "lr_schedule", "plateau"),
    ("--warmup-epochs", "1", "warmup_epochs", 1),
    ("--weight-decay", "0.001", "weight_decay", 0.001),
    ("--epochs", "3", "epochs", 3),
    ("--batch-size", "5", "batch_size", 5),
    ("--dropout", "0.3", "dropout", 0.3),
    ("--lighting", "0.05", "lighting", 0.05),
    ("--size-mode", "multi", "size_mode", "multi"),
    ("--trunk-lr-scale", "0.5", "trunk_lr_scale", 0.5),
    ("--train-from", "stage4", "train_from", "stage4"),
    ("--no-freeze-bn", None, "freeze_bn", False),
    ("--feature-layer", "stage7", "feature_layer", "stage7"),
    ("--spp-levels", "2 1", "spp_levels", (2, 1)),
    ("--spp-mode", "max", "spp_mode", "max"),
    ("--fc-layers", "2", "fc_layers", 2),
]


def test_the_cli_table_covers_every_recipe_field():
    assert {row[2] for row in _CLI_VALUES} == set(RECIPE_FIELDS)


@pytest.mark.parametrize(("flag", "text", "field", "value"), _CLI_VALUES)
def test_each_cli_option_overrides_its_recipe_value_only(flag, text, field, value):
    from sppnet.cli.classify import train_config_of

    argv = ["--model", LITE, "--pretrained", "--device", "cpu", flag]
    argv += [] if text is None else text.split()
    config = train_config_of(_parse(argv), resuming=False).resolved()
    assert getattr(config, field) == value
    others = {n: getattr(config, n) for n in RECIPE_FIELDS if n != field}
    assert others == {n: getattr(PRETRAINED_RECIPE, n) for n in others}


def test_help_shows_both_recipes_values(capsys):
    from sppnet.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(paper: 0.01; --pretrained: 0.001)" in text  # --lr
    assert "(paper: sgd; --pretrained: adamw)" in text
    assert "(paper: plateau; --pretrained: cosine)" in text
    assert "(paper: 70; --pretrained: 8)" in text
    assert "(paper: all; --pretrained: stage6)" in text
    assert "(paper: the model's; --pretrained: 1)" in text  # --spp-levels
    assert "--recipe paper" in text


def test_a_pretrained_cli_run_saves_the_recipe_with_its_overrides(colour_root, tmp_path):
    from sppnet.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", str(colour_root), "--out", str(out), "--model", LITE]
    argv += ["--pretrained", "--crop", "64", "--shorter", "72", "--small-crop", "52"]
    argv += ["--epochs", "1", "--batch-size", "4", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    saved = load_train_config(out)
    expected = {**dataclasses.asdict(PRETRAINED_RECIPE), "epochs": 1, "batch_size": 4}
    assert {name: getattr(saved, name) for name in RECIPE_FIELDS} == expected
    assert saved.recipe == "finetune"


# ------------------------------------------------------------------ the mechanics
def test_frozen_layers_are_those_before_train_from():
    model = create_model(LITE, num_classes=3, feature_layer="head")
    names = [n for n, _ in model.features.named_children()]
    assert frozen_layers(model, "stage6") == names[: names.index("stage6")]
    assert frozen_layers(model, "all") == []
    with pytest.raises(ValueError, match=r"train_from='stage9'.*stem, stage1"):
        frozen_layers(model, "stage9")


def test_the_fine_tuning_run_changes_only_the_layers_from_train_from(colour_root, tmp_path):
    before = create_model(LITE, pretrained=True, feature_layer="head").features.state_dict()
    config = ClassifierTrainConfig(
        data=str(colour_root), out=str(tmp_path), model=LITE, pretrained=True, epochs=1,
        batch_size=4, warmup_epochs=0, **SMALL,
    )  # fmt: skip
    model = train_classifier(config, progress=False).model
    after = model.features.state_dict()
    frozen = frozen_layers(model, "stage6")
    for key, value in before.items():
        layer = key.split(".")[0]
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(after[key], value), key  # ImageNet statistics kept
        elif layer in frozen:
            assert torch.equal(after[key], value), key
    learned = [k for k in before if k.split(".")[0] == "stage6" and k.endswith("weight")]
    assert any(not torch.equal(after[k], before[k]) for k in learned)
    assert all(p.requires_grad for p in model.parameters())  # given back after training


def _reference_lr(step: int, steps: int, epochs: int, warmup: int, peak: float) -> float:
    """Warm-up then cosine, from the definition: a plain formula per step."""
    if step < warmup * steps:
        return peak * (step + 1) / (warmup * steps)
    t = (step - warmup * steps) / (epochs * steps - warmup * steps)
    return peak * (1 + math.cos(math.pi * t)) / 2


def test_lr_factor_matches_the_warm_up_and_cosine_formula():
    config = ClassifierTrainConfig(model=LITE, pretrained=True, epochs=5, warmup_epochs=2)
    config = config.resolved()
    for step in range(5 * 7):
        expected = _reference_lr(step, 7, 5, 2, 1.0)
        assert lr_factor(step, 7, config) == pytest.approx(expected, abs=1e-12)


def test_the_run_steps_the_learning_rate_of_both_groups_per_batch(
    colour_root, tmp_path, monkeypatch
):
    epochs_module = importlib.import_module("sppnet.classify.epochs")
    seen = []
    real = epochs_module.sgd_step

    def record(loss, optimizer, **kwargs):
        seen.append([group["lr"] for group in optimizer.param_groups])
        return real(loss, optimizer, **kwargs)

    monkeypatch.setattr(epochs_module, "sgd_step", record)
    config = ClassifierTrainConfig(
        data=str(colour_root), out=str(tmp_path), model=LITE, pretrained=True, epochs=3,
        batch_size=4, warmup_epochs=1, lr=0.002, trunk_lr_scale=0.5, **SMALL,
    )  # fmt: skip
    train_classifier(config, progress=False)
    steps = 2  # 8 images, batches of 4
    assert len(seen) == 3 * steps
    for step, (trunk, head) in enumerate(seen):
        assert head == pytest.approx(_reference_lr(step, steps, 3, 1, 0.002), abs=1e-12)
        assert trunk == pytest.approx(0.5 * head, abs=1e-12)


def test_the_linear_head_is_one_layer_on_the_averaged_map():
    torch.manual_seed(0)
    model = create_model(
        LITE, num_classes=4, feature_layer="head", spp_levels=(1,), spp_mode="avg",
        fc_layers=0, dropout=0.2,
    ).eval()  # fmt: skip
    assert [name for name, _ in model.named_children() if name.startswith("fc")] == [
        "fc6", "fc7", "fc8",
    ]  # fmt: skip
    assert model.fc_modules() == (model.fc8,) and model.pooled_dim == 1280
    x = torch.randn(2, 3, 70, 90) * 60
    with torch.no_grad():
        fmap = model.forward_features(x)  # [2, 1280, h, w]
        expected = []
        for i in range(2):  # a plain loop: mean of every cell, then W v + b
            v = torch.zeros(1280)
            for r in range(fmap.shape[2]):
                for c in range(fmap.shape[3]):
                    v += fmap[i, :, r, c]
            v /= fmap.shape[2] * fmap.shape[3]
            expected.append(model.fc8.weight @ v + model.fc8.bias)
        assert torch.allclose(model(x), torch.stack(expected), atol=1e-4)
    rebuilt = create_model(**model.config())
    assert rebuilt.config() == model.config() and rebuilt.config()["fc_layers"] == 0


def test_whole_image_validation_equals_each_image_alone(colour_root):
    from sppnet.classify.epochs import _on_device, _pooled, _validate
    from sppnet.classify.train import _val_loader
    from sppnet.data import ImageFolder
    from sppnet.data.transforms import FullImageTransform
    from sppnet.engine.distributed import DistInfo

    config = ClassifierTrainConfig(model=LITE, pretrained=True, **SMALL).resolved()
    torch.manual_seed(0)
    model = create_model(
        LITE, num_classes=3, feature_layer="head", spp_levels=(2, 1), fc_layers=0
    ).eval()  # fmt: skip
    val = ImageFolder(colour_root, split="val")
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    loader = _val_loader(config, val, info, local_batch=3)
    full = FullImageTransform(64, 128.0, max_long_side=128)  # shorter side crop, 2 x crop cap
    wrong, seen = 0, 0
    with torch.no_grad():
        for indices, batch in zip(loader.batch_sampler, loader, strict=True):
            images, extents, labels = _on_device(batch, info)
            assert images.shape[0] > 1 or len(indices) == 1
            logits = model.forward_pooled(_pooled(model, images, extents))  # padded batch
            for row, index in enumerate(indices):
                img, label = val[index]
                alone = model(full(img)[None])  # the image at its own size, alone
                assert torch.allclose(logits[row], alone[0], atol=1e-4)
                assert int(labels[row]) == label
                wrong += int(alone.argmax(1).item() != label)
                seen += 1
    assert seen == len(val)
    top1, _ = _validate(loader, model, info)
    assert top1 == pytest.approx(wrong / len(val))
