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

from sppnet.engine.checkpoint import find_checkpoint
from sppnet.engine.safe_load import load_json_file

SIZE_MODES = ("single", "multi", "random", "variable")


#: ``ClassifierTrainConfig.spp_levels`` meaning "the model's own pyramid" (None is no SPP).
MODEL_DEFAULT = "default"


_TAG_INIT, _TAG_SHUFFLE, _TAG_DROPOUT, _TAG_SIZE, _TAG_REPLAY = 0, 1, 3, 4, 5


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Settings of a classification run; defaults follow the paper (Sec. 2.3, 3.1).

    Sizes (``crop``, ``small_crop``, ``shorter``) may be scaled down together for small data
    or tests (e.g. 64 / 52 / 72); the network accepts any input of at least its
    ``min_input_size`` (29 px for ZF-5), except the no-SPP baseline, which needs 224.

    ``spp_levels`` and ``fc_dim`` default to the model's own: ``(6, 3, 2, 1)`` and 4096 for
    the paper's networks (Sec. 3.1.1-3.1.2), fc 1024 for EfficientNet-Lite
    (:func:`sppnet.models.create_model`); checkpoints store the resolved values.

    Fine-tuning an ImageNet trunk (``pretrained``, beyond the paper, which trains its
    classifiers from scratch): the trunk's batch norms keep their ImageNet statistics (eval
    mode in training, as detection codebases do: batches here are small), and the trunk
    learns at ``lr * trunk_lr_scale``; 0 freezes it (no gradient, no backward pass through
    it: only fc6-fc8 train, like the paper's detection fine-tuning, Sec. 4.2).

    Replaying a frozen trunk's features (``cache_views``, beyond the paper): with the trunk
    frozen, the trunk's pooled vector of a crop never changes, and the trunk is nearly all
    of an epoch's cost. With ``cache_views = V > 0``, epoch ``e`` trains fc6-fc8 on the
    pooled vectors of the crops of epoch ``e mod V`` (same augmentation draws, same input
    size), each computed once and kept in memory, in a fresh order per epoch. So the first
    V epochs see exactly the crops an unbroken run sees, and later ones repeat them: many
    head epochs for the trunk cost of V. The validation crops' vectors are computed once
    whenever the trunk is frozen (exact: they are the same every epoch).
    """

    data: str | None = None  # image-folder root (one sub-folder per class, splits/*.txt)
    out: str = "runs/classifier"  # run directory: checkpoints, logs, curves
    model: str = "zf5"  # ZF-5 is the paper's main network (Sec. 3.1.1, Table 1)
    pretrained: bool = False  # start from ImageNet weights (sppnet.models.pretrained_models())
    # a trunk source as model ("package.module:factory", "timm/NAME"): its JSON kwargs and,
    # for timm, the features_only stage (None: stride 16); see sppnet.models.from_trunk
    model_args: dict[str, Any] | None = None
    feature_index: int | None = None
    width: float = 1.0  # conv channel multiplier; 1.0 is the paper's network
    fc_dim: int | None = None  # fc6/fc7 width; None: the model's (4096, Sec. 3.1.1)
    # pyramid levels; "default": the model's ((6, 3, 2, 1), Sec. 3.1.2); None: no SPP
    spp_levels: tuple[int, ...] | str | None = MODEL_DEFAULT
    spp_mode: str = "max"  # max pooling in every bin (Sec. 2.2)
    size_mode: str = "single"  # single / multi / random (Sec. 2.3) / variable (beyond)
    crop: int = 224  # training crop (Sec. 3.1); the shorter side in "variable" mode
    small_crop: int = 180  # the second size of multi-size training (Sec. 2.3)
    shorter: int = 256  # images resized so the shorter side is 256 (Sec. 3.1)
    max_side: int | None = None  # "variable": cap on the longer side; None = 2 * crop
    epochs: int = 70  # 70 epochs for ZF-5 on ImageNet (Sec. 3.1.1); far fewer for small data
    batch_size: int = 128  # global batch (all processes), cuda-convnet's 128 [3]
    lr: float = 0.01  # starts at 0.01 (Sec. 3.1)
    trunk_lr_scale: float = 1.0  # the trunk learns at lr * this; 0 freezes it (beyond the paper)
    cache_views: int = 0  # frozen trunk: epochs of crops whose pooled vectors are replayed
    momentum: float = 0.9  # [3]
    weight_decay: float = 5e-4  # [3]
    lr_drops: int = 2  # "divided by 10 (twice) when the error plateaus" (Sec. 3.1)
    plateau_patience: int = 2  # epochs without val improvement before /10 (small-data default)
    min_lr: float = 0.0  # floor for the learning rate
    dropout: float = 0.5  # on fc6 and fc7 (Sec. 3.1)
    flip: bool = True  # horizontal flipping (Sec. 3.1)
    lighting: float = 0.1  # AlexNet's PCA colour altering, alphastd 0.1 [3] (Sec. 3.1)
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
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")

        for name in ("crop", "small_crop", "shorter", "epochs", "batch_size"):
            positive_int(name)
        for name in ("checkpoint_every", "keep_checkpoints"):
            positive_int(name)
        if self.fc_dim is not None:
            positive_int("fc_dim")
        if not isinstance(self.pretrained, bool):
            raise TypeError(f"pretrained must be a bool, got {self.pretrained!r}")
        if self.pretrained:
            from sppnet.models import pretrained_models

            if self.model not in pretrained_models() and not self.model.startswith("timm/"):
                raise ValueError(
                    f"pretrained=True needs a model with ImageNet weights, one of "
                    f"pretrained_models(): {', '.join(pretrained_models())}; got {self.model!r} "
                    "(the paper's networks train from scratch)"
                )
        if self.size_mode not in SIZE_MODES:
            raise ValueError(f"size_mode must be one of {SIZE_MODES}, got {self.size_mode!r}")
        if isinstance(self.spp_levels, (str, bytes)):
            if self.spp_levels != MODEL_DEFAULT:
                raise ValueError(
                    f"spp_levels must be a tuple of ints, None (no SPP) or {MODEL_DEFAULT!r}, "
                    f"got {self.spp_levels!r}"
                )
        elif self.spp_levels is not None:
            if not isinstance(self.spp_levels, Sequence):
                raise TypeError(
                    f"spp_levels must be a tuple of ints, None or {MODEL_DEFAULT!r}, got "
                    f"{self.spp_levels!r}"
                )
            object.__setattr__(self, "spp_levels", tuple(self.spp_levels))
        elif self.size_mode != "single":
            raise ValueError(
                f"size_mode {self.size_mode!r} needs SPP: the no-SPP baseline (spp_levels=None) "
                "only takes one fixed input size, so use size_mode='single'"
            )
        if self.small_crop > self.crop:
            raise ValueError(f"small_crop must be <= crop ({self.crop}), got {self.small_crop}")
        if self.shorter < self.crop:
            raise ValueError(f"shorter must be >= crop ({self.crop}), got {self.shorter}")
        if self.max_side is not None and self.max_side < self.crop:
            raise ValueError(f"max_side must be >= crop ({self.crop}) or None, got {self.max_side}")
        numbers = ("lr", "trunk_lr_scale", "momentum", "weight_decay", "min_lr", "lighting")
        for name in (*numbers, "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr <= 0 or self.width <= 0:
            raise ValueError(f"lr and width must be > 0, got lr={self.lr}, width={self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("lr_drops", "plateau_patience", "workers", "seed", "cache_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.cache_views and self.trunk_lr_scale != 0:
            raise ValueError(
                f"cache_views={self.cache_views} replays a frozen trunk's features: it needs "
                f"trunk_lr_scale=0 (got {self.trunk_lr_scale}); use cache_views=0 to train "
                "the trunk"
            )
        if self.cache_views and self.size_mode == "variable":
            raise ValueError(
                "cache_views needs fixed-size crops (size_mode single, multi or random), not "
                "the variable mode"
            )
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the settings (tuples become lists)."""
        out = dataclasses.asdict(self)
        if isinstance(out["spp_levels"], tuple):
            out["spp_levels"] = list(out["spp_levels"])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClassifierTrainConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys, or invalid values (see the class).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ClassifierTrainConfig fields {unknown}")
        values = dict(values)
        if isinstance(values.get("spp_levels"), list):
            values["spp_levels"] = tuple(values["spp_levels"])
        return cls(**values)


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
    saved_config = state.get("config", {})
    fields = {f.name: f.default for f in dataclasses.fields(ClassifierTrainConfig)}
    checks = [("model", saved_model.get("name"), kwargs["name"])]
    checks += [
        (key, saved_model.get(key), kwargs[key])
        for key in ("width", "fc_dim", "spp_levels", "spp_mode")
    ]
    mine = config.to_dict()
    checks += [
        (key, saved_config.get(key, fields[key]), mine[key])
        for key in ("pretrained", "size_mode", "seed")
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
