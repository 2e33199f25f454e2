"""The settings of a classifier run (:class:`ClassifierTrainConfig`), what it returns, and
the checks that a checkpoint continues the same run.

The seeds of a run's random streams derive from ``(seed, tag, ...)``; the tags below keep
the streams apart (2, each sample's augmentation, is
:data:`sppnet.data.batching.SAMPLE_STREAM`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from sppnet.classify.recipes import RECIPE_FIELDS, RECIPES, recipe_for
from sppnet.engine.checkpoint import find_checkpoint
from sppnet.engine.safe_load import load_json_file

SIZE_MODES = ("single", "multi", "random", "variable")


#: ``ClassifierTrainConfig.spp_levels`` meaning "the model's own pyramid" (None is no SPP).
MODEL_DEFAULT = "default"


_TAG_INIT, _TAG_SHUFFLE, _TAG_DROPOUT, _TAG_SIZE, _TAG_REPLAY = 0, 1, 3, 4, 5


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Settings of a classification run.

    Fields left at None (and ``spp_levels`` at ``"default"``) take the values of the run's
    recipe (:mod:`sppnet.classify.recipes`; :meth:`resolved` fills them in, and checkpoints
    store the filled-in config): ``recipe="paper"`` follows the paper's from-scratch
    ImageNet schedule (Sec. 2.3, 3.1); ``recipe="finetune"`` is the fine-tuning recipe of an
    ImageNet trunk chosen on real photographs (beyond the paper). None picks ``"finetune"``
    when ``pretrained`` and ``"paper"`` otherwise, so a pretrained trunk never trains with
    the from-scratch schedule unless the config says ``recipe="paper"``.

    Sizes (``crop``, ``small_crop``, ``shorter``) may be scaled down together for small data
    or tests (e.g. 64 / 52 / 72); the network accepts any input of at least its
    ``min_input_size`` (29 px for ZF-5), except the no-SPP baseline, which needs 224.

    ``fc_dim`` defaults to the model's own: 4096 for the paper's networks (Sec. 3.1.1), 1024
    for EfficientNet-Lite (:func:`sppnet.models.create_model`); checkpoints store it.

    Fine-tuning an ImageNet trunk (``pretrained``): with ``freeze_bn`` the trunk's batch norms
    keep their ImageNet statistics (eval mode in training, as detection codebases do: batches
    here are small); the trunk learns at ``lr * trunk_lr_scale``, from the layer
    ``train_from`` on (the layers before it are frozen: no gradient, eval mode); a
    ``trunk_lr_scale`` of 0 freezes it all (no backward pass through it: only the fc layers
    train, like the paper's detection fine-tuning, Sec. 4.2).

    Replaying a frozen trunk's features (``cache_views``, beyond the paper): with the trunk
    frozen, the trunk's pooled vector of a crop never changes, and the trunk is nearly all
    of an epoch's cost. With ``cache_views = V > 0``, epoch ``e`` trains fc6-fc8 on the
    pooled vectors of the crops of epoch ``e mod V`` (same augmentation draws, same input
    size), each computed once and kept in memory, in a fresh order per epoch. So the first
    V epochs see exactly the crops an unbroken run sees, and later ones repeat them: many
    head epochs for the trunk cost of V. The validation crops' vectors are computed once
    whenever the trunk is frozen (exact: they are the same every epoch).

    Validation: one center crop (``crop`` of shorter side ``shorter``) per image, or in the
    ``variable`` size mode the whole image as it trains (shorter side ``crop``).
    """

    data: str | None = None  # image-folder root (one sub-folder per class, splits/*.txt)
    out: str = "runs/classifier"  # run directory: checkpoints, logs, curves
    model: str = "zf5"  # ZF-5 is the paper's main network (Sec. 3.1.1, Table 1)
    pretrained: bool = False  # start from ImageNet weights (sppnet.models.pretrained_models())
    recipe: str | None = None  # "paper" / "finetune"; None: finetune if pretrained
    # a trunk source as model ("package.module:factory", "timm/NAME"): its JSON kwargs and,
    # for timm, the features_only stage (None: stride 16); see sppnet.models.from_trunk
    model_args: dict[str, Any] | None = None
    feature_index: int | None = None
    width: float = 1.0  # conv channel multiplier; 1.0 is the paper's network
    fc_dim: int | None = None  # fc6/fc7 width; None: the model's (4096, Sec. 3.1.1)
    # --- None (spp_levels "default"): the recipe's value (sppnet.classify.recipes)
    # pyramid levels; "default": the recipe's (paper: the model's, (6, 3, 2, 1)); None: no SPP
    spp_levels: tuple[int, ...] | str | None = MODEL_DEFAULT
    spp_mode: str | None = None  # "max" pooling in every bin (Sec. 2.2) or "avg"
    fc_layers: int | None = None  # 2: fc6, fc7 then fc8 (Sec. 3.1); 0: a linear classifier
    feature_layer: str | None = None  # EfficientNet-Lite: the map pooled (stage5/stage7/head)
    size_mode: str | None = None  # single / multi / random (Sec. 2.3) / variable (beyond)
    epochs: int | None = None  # 70 for ZF-5 on ImageNet (Sec. 3.1.1)
    batch_size: int | None = None  # global batch (all processes), cuda-convnet's 128 [3]
    optimizer: str | None = None  # "sgd" (momentum, the paper) or "adamw"
    lr: float | None = None  # the head's rate; the paper starts at 0.01 (Sec. 3.1)
    lr_schedule: str | None = None  # "plateau" (/10 when val stalls, Sec. 3.1) or "cosine"
    warmup_epochs: int | None = None  # linear warm-up epochs before the cosine decay
    trunk_lr_scale: float | None = None  # the trunk learns at lr * this; 0 freezes it
    train_from: str | None = None  # first trunk layer that learns; "all": every layer
    freeze_bn: bool | None = None  # the trunk's batch norms keep their ImageNet statistics
    weight_decay: float | None = None  # 5e-4 [3]
    dropout: float | None = None  # before fc8, and on fc6 and fc7 (0.5, Sec. 3.1)
    lighting: float | None = None  # AlexNet's PCA colour altering, alphastd 0.1 [3]
    # --- the rest: fixed defaults
    crop: int = 224  # training crop (Sec. 3.1); the shorter side in "variable" mode
    small_crop: int = 180  # the second size of multi-size training (Sec. 2.3)
    shorter: int = 256  # images resized so the shorter side is 256 (Sec. 3.1)
    max_side: int | None = None  # "variable": cap on the longer side; None = 2 * crop
    cache_views: int = 0  # frozen trunk: epochs of crops whose pooled vectors are replayed
    momentum: float = 0.9  # SGD [3]
    lr_drops: int = 2  # "divided by 10 (twice) when the error plateaus" (Sec. 3.1)
    plateau_patience: int = 2  # epochs without val improvement before /10 (small-data default)
    min_lr: float = 0.0  # floor for the learning rate
    flip: bool = True  # horizontal flipping (Sec. 3.1)
    mean: float = 128.0  # constant mean for VOC / Caltech101 (Appendix A)
    seed: int = 0  # every random draw derives from (seed, epoch, ...)
    workers: int = 0  # data-loader worker processes
    train_split: str | None = "train"  # splits/train.txt; None: every image (if no splits/)
    val_split: str | None = "val"  # splits/val.txt; None or missing: no validation
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch always writes)
    keep_checkpoints: int = 2  # most recent epoch checkpoints kept (plus the best)
    plot: bool = True  # write curves.png (at the end, and after epochs longer than 30 s)
    device: str = "cpu"  # "cpu" or "cuda"

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_combination(self, self._values())

    def recipe_name(self) -> str:
        """The recipe the unset fields follow: ``recipe``, else by ``pretrained``."""
        if self.recipe is not None:
            return self.recipe
        return "finetune" if self.pretrained else "paper"

    def _values(self) -> dict[str, Any]:
        """Every recipe field's value: the config's where set, else the recipe's."""
        recipe = recipe_for(self.model, self.recipe_name())
        out = {}
        for name in RECIPE_FIELDS:
            value = getattr(self, name)
            unset = value == MODEL_DEFAULT if name == "spp_levels" else value is None
            out[name] = getattr(recipe, name) if unset else value
        if self.freeze_bn is None:  # a recipe's frozen batch norms are ImageNet's statistics
            out["freeze_bn"] = recipe.freeze_bn and self.pretrained
        return out

    def resolved(self) -> ClassifierTrainConfig:
        """This config with every recipe field filled in (and ``recipe`` named).

        ``resolved().resolved() == resolved()``. A training run resolves its config first;
        checkpoints and ``log.json`` store the resolved one.
        """
        return dataclasses.replace(self, recipe=self.recipe_name(), **self._values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the settings (tuples become lists)."""
        out = dataclasses.asdict(self)
        if isinstance(out["spp_levels"], tuple):
            out["spp_levels"] = list(out["spp_levels"])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClassifierTrainConfig:
        """Inverse of :meth:`to_dict`.

        A config saved before recipes existed (no ``"recipe"`` key) is read as it ran: the
        paper's recipe, with batch norms frozen where it was pretrained.

        Raises:
            ValueError: unknown keys, or invalid values (see the class).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ClassifierTrainConfig fields {unknown}")
        values = dict(values)
        if "recipe" not in values:
            values["recipe"] = "paper"
            values.setdefault("freeze_bn", bool(values.get("pretrained", False)))
        if isinstance(values.get("spp_levels"), list):
            values["spp_levels"] = tuple(values["spp_levels"])
        return cls(**values)


def _is_int(value: Any, least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= least


def _check_fields(config: ClassifierTrainConfig) -> None:
    """Types and ranges of each field that is set (unset ones come from a recipe)."""
    for name, least in (("crop", 1), ("small_crop", 1), ("shorter", 1), ("epochs", 1),
                        ("batch_size", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1),
                        ("fc_dim", 1), ("warmup_epochs", 0), ("lr_drops", 0),
                        ("plateau_patience", 0), ("workers", 0), ("seed", 0),
                        ("cache_views", 0)):  # fmt: skip
        value = getattr(config, name)
        if value is not None and not _is_int(value, least):
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    for name in ("pretrained", "freeze_bn", "flip"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}")
    numbers = ("lr", "trunk_lr_scale", "momentum", "weight_decay", "min_lr", "lighting", "width")
    for name in numbers:
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    for name, allowed in _CHOICES.items():
        value = getattr(config, name)
        if value is not None and value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if config.recipe is not None and config.recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES} or None, got {config.recipe!r}")
    if config.train_from is not None and (not isinstance(config.train_from, str)
                                          or not config.train_from):  # fmt: skip
        raise ValueError(f"train_from must be a layer name or 'all', got {config.train_from!r}")
    if config.pretrained:
        from sppnet.models import pretrained_models

        if config.model not in pretrained_models() and not config.model.startswith("timm/"):
            raise ValueError(
                f"pretrained=True needs a model with ImageNet weights, one of "
                f"pretrained_models(): {', '.join(pretrained_models())}; got {config.model!r} "
                "(the paper's networks train from scratch)"
            )
    _check_spp_levels(config)
    if config.device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {config.device!r}")


_CHOICES: dict[str, tuple[Any, ...]] = {
    "size_mode": SIZE_MODES,
    "optimizer": ("sgd", "adamw"),
    "lr_schedule": ("plateau", "cosine"),
    "spp_mode": ("max", "avg"),
    "fc_layers": (0, 2),
}


def _check_spp_levels(config: ClassifierTrainConfig) -> None:
    if isinstance(config.spp_levels, (str, bytes)):
        if config.spp_levels != MODEL_DEFAULT:
            raise ValueError(
                f"spp_levels must be a tuple of ints, None (no SPP) or {MODEL_DEFAULT!r}, "
                f"got {config.spp_levels!r}"
            )
    elif config.spp_levels is not None:
        if not isinstance(config.spp_levels, Sequence):
            raise TypeError(
                f"spp_levels must be a tuple of ints, None or {MODEL_DEFAULT!r}, got "
                f"{config.spp_levels!r}"
            )
        object.__setattr__(config, "spp_levels", tuple(config.spp_levels))


def _check_combination(config: ClassifierTrainConfig, values: dict[str, Any]) -> None:
    """Checks across fields, on the values the run will use (recipe values filled in)."""
    size_mode, lr = values["size_mode"], values["lr"]
    if values["spp_levels"] is None and size_mode != "single":
        raise ValueError(
            f"size_mode {size_mode!r} needs SPP: the no-SPP baseline (spp_levels=None) "
            "only takes one fixed input size, so use size_mode='single'"
        )
    if config.small_crop > config.crop:
        raise ValueError(f"small_crop must be <= crop ({config.crop}), got {config.small_crop}")
    if config.shorter < config.crop:
        raise ValueError(f"shorter must be >= crop ({config.crop}), got {config.shorter}")
    if config.max_side is not None and config.max_side < config.crop:
        raise ValueError(f"max_side must be >= crop ({config.crop}) or None, got {config.max_side}")
    if lr <= 0 or config.width <= 0:
        raise ValueError(f"lr and width must be > 0, got lr={lr}, width={config.width}")
    if not 0.0 <= values["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {values['dropout']}")
    if config.cache_views and values["trunk_lr_scale"] != 0:
        raise ValueError(
            f"cache_views={config.cache_views} replays a frozen trunk's features: it needs "
            f"trunk_lr_scale=0 (got {values['trunk_lr_scale']}); use cache_views=0 to train "
            "the trunk"
        )
    if config.cache_views and size_mode == "variable":
        raise ValueError(
            "cache_views needs fixed-size crops (size_mode single, multi or random), not "
            "the variable mode"
        )


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns.

    Attributes:
        model: the trained model (eval mode, unwrapped from DDP).
        classes: class names, index = label.
        history: one dict per epoch (the fields of ``log.csv``).
        checkpoint: the last checkpoint directory written (None on ranks other than 0).
        best_val_error: lowest val top-1 error seen (train error without a val split).
    """

    model: nn.Module
    classes: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    best_val_error: float | None = None


def _check_resumable(
    config: ClassifierTrainConfig,
    kwargs: dict[str, Any],
    state: dict[str, Any],
    classes: list[str],
) -> None:
    """Raise unless the checkpoint ``state`` continues this run.

    The model is compared by its resolved kwargs (a default ``fc_dim`` equals the 4096 an
    older checkpoint spelled out); ``trunk_lr_scale`` may change (e.g. a head-only stage,
    then fine-tuning the trunk), like ``epochs``.
    """
    saved_model = state.get("model", {})
    saved = ClassifierTrainConfig.from_dict(state.get("config", {})).resolved().to_dict()
    checks = [("model", saved_model.get("name"), kwargs["name"])]
    # fc_layers: older checkpoints (without it) have fc6 and fc7
    legacy = {"fc_layers": 2}
    checks += [
        (key, saved_model.get(key, legacy.get(key)), kwargs[key])
        for key in ("width", "fc_dim", "spp_levels", "spp_mode", "fc_layers", "feature_layer")
        if key in kwargs
    ]
    mine = config.resolved().to_dict()
    checks += [
        (key, saved[key], mine[key]) for key in ("pretrained", "size_mode", "seed", "optimizer")
    ]
    for key, theirs, ours in checks:
        if theirs != ours:
            raise ValueError(
                f"cannot resume {state['path']}: it was trained with {key}={theirs!r}, "
                f"the config asks for {key}={ours!r}"
            )
    if list(state.get("classes", [])) != list(classes):
        raise ValueError(
            f"cannot resume {state['path']}: its classes {state.get('classes')} differ from "
            f"the data's {classes}"
        )


def load_train_config(run_dir: str | os.PathLike[str]) -> ClassifierTrainConfig:
    """The configuration stored in a run's latest checkpoint (for ``--resume``).

    Args:
        run_dir: the run directory (``config.out`` of the run).

    Returns:
        The :class:`ClassifierTrainConfig` the run was started with.

    Raises:
        FileNotFoundError: the run has no checkpoint.
    """
    found = find_checkpoint(run_dir)
    if found is None:
        raise FileNotFoundError(f"no checkpoint found under {os.fspath(run_dir)!r}")
    state = load_json_file(found / "state.json", fix="the checkpoint is damaged: delete it")
    return ClassifierTrainConfig.from_dict(state["config"])
