"""Training an SPP-net classifier on an image folder: the four size modes of Sec. 2.3 / 3.1.

Shape shorthand: N images per batch (per process), 3 x s x s crops (or 3 x H x W padded
images in the variable mode), K classes.

Size modes:

- ``"single"``: 224x224 crops (Sec. 3.1, "single-size training").
- ``"multi"``: the same 224 crop, and on alternate epochs that crop RESIZED to 180 (same
  content, lower resolution); one full epoch at 224, the next at 180, weights shared
  (Sec. 2.3, "multi-size training").
- ``"random"``: ``s`` drawn uniformly from [180, 224] once per epoch, the crop resized to
  ``s x s`` (Sec. 2.3, the variant reported in Sec. 3.1.2).
- ``"variable"`` (beyond the paper): each image at its own size and aspect (shorter side
  ``crop``, longer side capped by ``max_side``), padded into a batch; the model pools each
  image on its own valid region (``model(x, extents=...)``), and a size-grouped sampler
  keeps images of similar shape together to limit padding.

Determinism: every random draw comes from a seed derived from ``(seed, epoch, ...)``: the
shuffling, each sample's augmentation (from ``(seed, epoch, sample index)``, so it does not
depend on the number of data-loader workers or processes), the epoch's input size, and
dropout (torch's generator re-seeded at each epoch start from ``(seed, epoch, rank)``). A
run resumed from the checkpoint of epoch ``e`` therefore replays epochs ``e+1, ...``
exactly as an unbroken run does. The caller's global RNG state is restored afterwards.

Usage::

    from sppnet.classify.train import ClassifierTrainConfig, train_classifier
    cfg = ClassifierTrainConfig(data="data/caltech", out="runs/zf5", size_mode="multi")
    result = train_classifier(cfg)           # or train_classifier(cfg, resume=True)
    # fc6-fc8 on a frozen ImageNet trunk (beyond the paper); the model's own SPP and fc 1024
    cfg = ClassifierTrainConfig(data="data/caltech", out="runs/lite0", size_mode="multi",
                                model="efficientnet_lite0", pretrained=True, trunk_lr_scale=0.0)
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm.auto import tqdm

from sppnet._atomic import atomic_write_json, atomic_write_text
from sppnet.data.batching import (
    SeededTransformDataset,
    SizeGroupedBatchSampler,
    derive_seed,
    pad_collate,
    seeded_generator,
)
from sppnet.data.transforms import EvalCropTransform, TrainTransform, VariableTrainTransform
from sppnet.engine.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from sppnet.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    init_distributed,
    shard_indices,
)
from sppnet.engine.safe_load import load_json_file
from sppnet.engine.sgd_step import NonFiniteLossError, sgd_step
from sppnet.visualize import plot_training_curves

__all__ = [
    "MODEL_DEFAULT",
    "SIZE_MODES",
    "ClassifierTrainConfig",
    "NonFiniteLossError",
    "TrainResult",
    "load_train_config",
    "train_classifier",
]

SIZE_MODES = ("single", "multi", "random", "variable")

#: ``ClassifierTrainConfig.spp_levels`` meaning "the model's own pyramid" (None is no SPP).
MODEL_DEFAULT = "default"

# Tags that keep the derived random streams apart (2, each sample's augmentation, is
# sppnet.data.batching.SAMPLE_STREAM).
_TAG_INIT, _TAG_SHUFFLE, _TAG_DROPOUT, _TAG_SIZE, _TAG_REPLAY = 0, 1, 3, 4, 5

_PLOT_EVERY_EPOCH_S = 30.0

_LOG_FIELDS = (
    "epoch",
    "input_size",
    "train_loss",
    "train_error",
    "val_top1_error",
    "val_top5_error",
    "lr",
    "images",
    "images_per_s",
    "seconds",
)


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

            if self.model not in pretrained_models():
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


# ------------------------------------------------------------------------------ helpers
def _input_size(config: ClassifierTrainConfig, epoch: int) -> int | None:
    """The crop side for 0-based ``epoch`` (None in the variable mode)."""
    if config.size_mode == "single":
        return config.crop
    if config.size_mode == "multi":
        # One full epoch at 224, the next at 180, and so on (Sec. 2.3).
        return config.crop if epoch % 2 == 0 else config.small_crop
    if config.size_mode == "random":
        # s uniform in [180, 224], drawn once per epoch (Sec. 2.3).
        gen = seeded_generator(config.seed, _TAG_SIZE, epoch)
        return int(torch.randint(config.small_crop, config.crop + 1, (1,), generator=gen))
    return None


def _image_sizes(dataset: Any) -> list[tuple[int, int]]:
    """Original ``(height, width)`` of every sample, from file headers when possible."""
    if callable(getattr(dataset, "image_sizes", None)):
        return [tuple(size) for size in dataset.image_sizes()]
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        from sppnet.data.image_folder import read_image_size

        return [read_image_size(path) for path, _ in samples]
    sizes = []
    for i in range(len(dataset)):
        img, _ = dataset[i]
        sizes.append((img.height, img.width))
    return sizes


def _open_datasets(config: ClassifierTrainConfig) -> tuple[Any, Any | None]:
    """The ImageFolder train and val sets of ``config.data``."""
    from sppnet.data.image_folder import ImageFolder

    if config.data is None:
        raise ValueError("config.data is None: give an image-folder root (or train_set=...)")
    root = Path(config.data)
    splits = root / "splits"
    has = lambda name: name is not None and (splits / f"{name}.txt").is_file()  # noqa: E731
    if config.train_split is not None and not has(config.train_split) and splits.is_dir():
        raise ValueError(f"{splits / (config.train_split + '.txt')} not found")
    train = ImageFolder(root, split=config.train_split if has(config.train_split) else None)
    val = ImageFolder(root, split=config.val_split) if has(config.val_split) else None
    return train, val


def _build_model(
    config: ClassifierTrainConfig, num_classes: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The run's model (seeded init, ImageNet trunk if ``pretrained``) and its kwargs.

    Returns:
        ``(model, kwargs)``: ``kwargs`` are the :func:`~sppnet.models.create_model` keyword
        arguments plus ``"name"``, with the model's defaults resolved (``spp_levels``,
        ``fc_dim``), so a checkpoint rebuilds the model without knowing those defaults and
        without the pretrained weights (its state dict holds them).
    """
    from sppnet.models import create_model
    from sppnet.models.registry import DEFAULT

    torch.manual_seed(derive_seed(config.seed, _TAG_INIT))
    model = create_model(
        config.model,
        num_classes=num_classes,
        spp_levels=DEFAULT if config.spp_levels == MODEL_DEFAULT else config.spp_levels,
        width=config.width,
        fc_dim=DEFAULT if config.fc_dim is None else config.fc_dim,
        spp_mode=config.spp_mode,
        dropout=config.dropout,
        pretrained=config.pretrained,
    )
    return model, model.config()


class _TrainingModel(nn.Module):
    """The model as the training loop runs it: what of its trunk stays fixed, in one place.

    - ``freeze_bn`` (a pretrained trunk): the trunk's batch norms stay in eval mode, so they
      keep normalising with their ImageNet statistics instead of those of our small
      batches (``norm_eval`` of mmdetection, detectron2's frozen BN); their scale and shift
      still train with the trunk.
    - ``freeze_trunk`` (``trunk_lr_scale == 0``): the whole trunk is a fixed feature
      extractor: eval mode (ImageNet statistics, no stochastic depth), parameters with
      ``requires_grad=False``, run under ``torch.no_grad()`` so no backward pass goes
      through it (about 5x cheaper a step); only fc6-fc8 learn.

    ``train()`` re-applies the policy each time the loop switches to training, and DDP
    wraps this module, so its gradient hooks see exactly the parameters that learn.
    :meth:`release` gives the trunk its ``requires_grad`` back after training.
    """

    def __init__(self, model: nn.Module, *, freeze_bn: bool, freeze_trunk: bool) -> None:
        super().__init__()
        self.model = model
        self.freeze_bn = freeze_bn
        self.freeze_trunk = freeze_trunk
        if freeze_trunk:
            model.features.requires_grad_(False)

    def train(self, mode: bool = True) -> _TrainingModel:
        super().train(mode)
        if mode and self.freeze_trunk:
            self.model.features.eval()
        elif mode and self.freeze_bn:
            for module in self.model.features.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(
        self, x: Tensor | None, extents: Tensor | None = None, pooled: Tensor | None = None
    ) -> Tensor:
        """``Tensor[N, 3, H, W]`` (and optional ``LongTensor[N, 2]`` extents) -> ``[N, K]``.

        With ``pooled`` (``Tensor[N, C * L]`` from :meth:`pool`, ``x`` None): fc6-fc8 only.
        """
        if pooled is not None:
            return self.model.forward_pooled(pooled)
        if not self.freeze_trunk:
            return self.model(x) if extents is None else self.model(x, extents=extents)
        with torch.no_grad():
            features = self.model.forward_features(x, extents)  # [N, C, h, w]
        feature_extents = None if extents is None else self.model.feature_extents(extents)
        return self.model.forward_head(features, extents=feature_extents)

    @torch.no_grad()
    def pool(self, x: Tensor) -> Tensor:
        """The frozen trunk's pooled vectors of ``Tensor[N, 3, s, s]``: ``[N, C * L]``."""
        return self.model.forward_pool(self.model.forward_features(x))

    def release(self) -> None:
        """Undo ``requires_grad=False`` on a frozen trunk (the returned model is plain)."""
        if self.freeze_trunk:
            self.model.features.requires_grad_(True)


def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """SGD groups ``[trunk, head]``: the trunk (``model.features``), then fc6-fc8.

    Together they hold ``model.parameters()`` in its own order (the trunk is registered
    first), so a one-group optimizer state of older checkpoints maps onto them
    (:func:`_load_optimizer_state`).
    """
    trunk = list(model.features.parameters())
    in_trunk = {id(p) for p in trunk}
    head = [p for p in model.parameters() if id(p) not in in_trunk]
    return [{"params": trunk}, {"params": head}]


def _set_lr(optimizer: torch.optim.Optimizer, lr: float, config: ClassifierTrainConfig) -> None:
    """The head learns at ``lr``, the trunk at ``lr * trunk_lr_scale`` (both drop together)."""
    trunk, head = optimizer.param_groups
    trunk["lr"] = lr * config.trunk_lr_scale
    head["lr"] = lr


def _load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load an optimizer state; a one-group state (older checkpoints) is split [trunk, head]."""
    groups = saved["param_groups"]
    if len(groups) == 1 and len(optimizer.param_groups) == 2:
        ids = groups[0]["params"]
        n_trunk = len(optimizer.param_groups[0]["params"])
        saved = {
            **saved,
            "param_groups": [
                {**groups[0], "params": ids[:n_trunk]},
                {**groups[0], "params": ids[n_trunk:]},
            ],
        }
    optimizer.load_state_dict(saved)


def _write_logs(
    out: Path, config: ClassifierTrainConfig, history: list[dict[str, Any]], plot: bool
) -> None:
    """``log.csv``, ``log.json`` and (if ``plot``) ``curves.png`` in the run directory."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "log.csv", buffer.getvalue())
    atomic_write_json(out / "log.json", {"config": config.to_dict(), "history": history})
    if plot and config.plot:
        plot_training_curves(out / "curves.png", {"": history}, dpi=80)


@contextlib.contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    """Restore the caller's global torch RNG state afterwards (we re-seed it per epoch)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


# ------------------------------------------------------------------------------ loops
def _train_epoch(
    *,
    loader: DataLoader,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    input_size: int | None,
    info: DistInfo,
    epoch: int,
    last_checkpoint: Path | None,
    progress: bool,
    desc: str,
) -> tuple[float, float, int, float]:
    """One pass over the data; returns (loss, top-1 error, images, seconds), all processes."""
    from sppnet.data.transforms import resize_tensor

    net.train()
    totals = torch.zeros(3, dtype=torch.float64, device=info.device)  # loss*n, wrong, n
    lr = optimizer.param_groups[-1]["lr"]  # the head's: the run's lr (the trunk's is scaled)
    start = time.perf_counter()
    bar = tqdm(loader, disable=not progress, desc=desc, leave=False, unit="batch")
    for step, batch in enumerate(bar):
        if input_size is None:  # variable mode: padded images + their extents
            images, extents, labels = batch
            extents = extents.to(info.device)
        else:
            images, labels = batch
            extents = None
        images = images.to(info.device, non_blocking=True)
        labels = labels.to(info.device, non_blocking=True)
        if input_size is not None and images.shape[-1] != input_size:
            # Multi-size: the same crop at a lower resolution (Sec. 2.3).
            images = resize_tensor(images, input_size)
        logits = net(images) if extents is None else net(images, extents=extents)  # [N, K]
        loss = _sgd_step(
            logits, labels, optimizer, totals, info, (epoch, step, lr, last_checkpoint)
        )
        bar.set_postfix(loss=f"{loss:.3f}")
    all_reduce_sum(totals, info)
    seconds = time.perf_counter() - start
    loss_sum, wrong_sum, count = totals.tolist()
    return loss_sum / max(count, 1), wrong_sum / max(count, 1), int(count), seconds


def _sgd_step(
    logits: Tensor,
    labels: Tensor,
    optimizer: torch.optim.Optimizer,
    totals: Tensor,
    info: DistInfo,
    where: tuple[int, int, float, Path | None],
) -> float:
    """Cross-entropy, the NaN check (all processes stop together), one SGD step.

    Adds ``[loss * n, wrong, n]`` to ``totals``; ``where`` is ``(epoch, step, lr, last
    checkpoint)`` for the error message. Returns the batch loss.
    """
    loss = F.cross_entropy(logits, labels)
    epoch, step, lr, last_checkpoint = where
    sgd_step(
        loss, optimizer, epoch=epoch + 1, step=step, lr=lr, checkpoint=last_checkpoint, info=info
    )
    n = labels.shape[0]
    wrong = (logits.detach().argmax(1) != labels).sum()
    totals += torch.stack([loss.detach().double() * n, wrong.double(), totals.new_tensor(n)])
    return float(loss.detach())


@torch.no_grad()
def _record_epoch(
    loader: DataLoader,
    trainee: _TrainingModel,
    input_size: int,
    info: DistInfo,
    progress: bool,
    desc: str,
) -> tuple[Tensor, Tensor]:
    """The frozen trunk's pooled vectors ``[n, C * L]`` and labels ``[n]`` of one epoch's crops.

    ``loader`` is set to the epoch whose crops to record; ``n`` is this process's share.
    """
    from sppnet.data.transforms import resize_tensor

    trainee.train()  # the frozen trunk stays in eval mode
    vectors, labels = [], []
    for images, batch_labels in tqdm(
        loader, disable=not progress, desc=desc, leave=False, unit="batch"
    ):
        images = images.to(info.device, non_blocking=True)
        if images.shape[-1] != input_size:
            images = resize_tensor(images, input_size)  # multi-size, as _train_epoch does
        vectors.append(trainee.pool(images))
        labels.append(batch_labels.to(info.device))
    return torch.cat(vectors), torch.cat(labels)


def _replay_epoch(
    *,
    cached: tuple[Tensor, Tensor],
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    order_seed: int,
    info: DistInfo,
    epoch: int,
    last_checkpoint: Path | None,
) -> tuple[float, float, int]:
    """One pass of fc6-fc8 over cached pooled vectors in a seeded order; (loss, error, n)."""
    vectors, labels = cached
    net.train()
    totals = torch.zeros(3, dtype=torch.float64, device=info.device)
    lr = optimizer.param_groups[-1]["lr"]
    order = torch.randperm(len(labels), generator=seeded_generator(order_seed)).to(vectors.device)
    for step, start in enumerate(range(0, len(order), batch_size)):
        index = order[start : start + batch_size]
        logits = net(None, pooled=vectors[index])  # [n, K]
        _sgd_step(
            logits, labels[index], optimizer, totals, info, (epoch, step, lr, last_checkpoint)
        )
    all_reduce_sum(totals, info)
    loss_sum, wrong_sum, count = totals.tolist()
    return loss_sum / max(count, 1), wrong_sum / max(count, 1), int(count)


@torch.no_grad()
def _validate(
    loader: DataLoader,
    model: nn.Module,
    info: DistInfo,
    cache: list[tuple[Tensor, Tensor]] | None = None,
) -> tuple[float, float]:
    """Top-1 and top-5 error of one center crop per image, over all processes.

    ``cache`` (a frozen trunk): an empty list is filled with the batches' pooled vectors
    and labels; a filled one is used instead of the loader (the same vectors).
    """
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=info.device)  # top1 wrong, top5, n
    batches = ((x.to(info.device), y.to(info.device)) for x, y in loader)
    if cache is not None:
        if not cache:  # [N, C * L] pooled vectors, computed once
            cache.extend((model.forward_pool(model.forward_features(x)), y) for x, y in batches)
        batches = iter(cache)
    for inputs, labels in batches:
        logits = model(inputs) if cache is None else model.forward_pooled(inputs)  # [N, K]
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices  # [N, k]
        hit5 = (top == labels[:, None]).any(1)
        totals += torch.stack(
            [
                (top[:, 0] != labels).sum().double(),
                (~hit5).sum().double(),
                totals.new_tensor(labels.shape[0]),
            ]
        )
    all_reduce_sum(totals, info)
    wrong1, wrong5, count = totals.tolist()
    return wrong1 / max(count, 1), wrong5 / max(count, 1)


def _check_replay_memory(model: nn.Module, config: ClassifierTrainConfig, samples: int) -> None:
    """Refuse a ``cache_views`` whose vectors would not fit in half the machine's memory."""
    dim = model.pooled_dim  # the pooled vector's length, C * L
    need = config.cache_views * samples * dim * 4  # float32
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf: do not guess
        return
    if need > have // 2:
        raise ValueError(
            f"cache_views={config.cache_views} keeps {config.cache_views} x {samples} pooled "
            f"vectors of {dim} floats: {need / 2**30:.1f} GiB, more than half of this machine's "
            f"{have / 2**30:.1f} GiB; lower cache_views (or 0: no replay)"
        )


def _plateau_step(
    schedule: dict[str, Any], metric: float, config: ClassifierTrainConfig
) -> tuple[dict[str, Any], bool]:
    """Update the plateau schedule after an epoch; returns (new schedule, improved)."""
    schedule = dict(schedule)
    best = schedule["best"]
    improved = best is None or metric < best
    if improved:
        schedule["best"], schedule["bad_epochs"] = metric, 0
        return schedule, True
    schedule["bad_epochs"] += 1
    # "divided by 10 (twice) when the error plateaus" (Sec. 3.1).
    if (
        schedule["bad_epochs"] >= max(config.plateau_patience, 1)
        and schedule["drops"] < config.lr_drops
        and schedule["lr"] > config.min_lr
    ):
        schedule["lr"] = max(schedule["lr"] / 10.0, config.min_lr)
        schedule["drops"] += 1
        schedule["bad_epochs"] = 0
    return schedule, False


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


# ------------------------------------------------------------------------------ main entry
def train_classifier(
    config: ClassifierTrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    train_set: Any | None = None,
    val_set: Any | None = None,
    resume_lr: float | None = None,
) -> TrainResult:
    """Train an SPP-net classifier, writing checkpoints and logs to ``config.out``.

    Runs alone or under ``torchrun`` (one process per device; ``config.batch_size`` is the
    global batch, split evenly; only rank 0 writes files; metrics are summed over
    processes).

    Args:
        config: the run's settings.
        resume: continue from the latest checkpoint in ``config.out`` (starts fresh when
            there is none). Model-defining settings, ``pretrained``, size mode, seed and
            classes must match the checkpoint; ``epochs`` may be raised to train longer and
            ``trunk_lr_scale`` changed (e.g. unfreeze the trunk after a head-only stage).
        progress: show tqdm bars (rank 0 only).
        train_set: optional dataset of ``(PIL image, int label)`` with a ``classes`` list,
            used instead of ``config.data``'s train split.
        val_set: optional dataset like ``train_set`` for validation (one center crop).
        resume_lr: with ``resume``, continue at this learning rate instead of the
            checkpoint's (``--resume --lr X``, e.g. after a NaN loss); the plateau schedule
            goes on from it. Ignored when there is no checkpoint (``config.lr`` starts).

    Returns:
        A :class:`TrainResult` with the trained model (eval mode) and the per-epoch history.

    Raises:
        FileExistsError: ``config.out`` already holds checkpoints and ``resume`` is False.
        ValueError: bad data (no classes, sizes the model cannot take) or a checkpoint that
            does not match ``config``.
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    if not isinstance(config, ClassifierTrainConfig):
        raise TypeError(f"config must be a ClassifierTrainConfig, got {type(config).__name__}")
    out = Path(config.out)
    info = init_distributed(config.device)
    try:
        if info.world_size > 1 and config.batch_size % info.world_size:
            raise ValueError(
                f"batch_size ({config.batch_size}) is the global batch and must be divisible "
                f"by the number of processes ({info.world_size})"
            )
        existing = find_checkpoint(out)
        if existing is not None and not resume:
            raise FileExistsError(
                f"{out} already holds checkpoints ({existing}); pass resume=True (--resume) "
                "to continue that run, or choose another output directory"
            )
        if train_set is None:
            train_set, opened_val = _open_datasets(config)
            val_set = opened_val if val_set is None else val_set
        classes = list(getattr(train_set, "classes", []) or [])
        if len(classes) < 2:
            raise ValueError(f"need a dataset with >= 2 classes, got classes={classes}")

        with _preserved_rng(info.device):
            return _run(
                config=config,
                info=info,
                out=out,
                train_set=train_set,
                val_set=val_set,
                classes=classes,
                resume_from=existing if resume else None,
                progress=progress and info.is_main,
                resume_lr=resume_lr,
            )
    finally:
        cleanup_distributed(info)


@dataclass
class _Loop:
    """What the epochs of one :func:`_run` share, and the state they carry forward."""

    config: ClassifierTrainConfig
    info: DistInfo
    out: Path
    model: nn.Module
    kwargs: dict[str, Any]  # the model's create_model arguments, saved in checkpoints
    classes: list[str]
    optimizer: torch.optim.Optimizer
    progress: bool
    schedule: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: Path | None = None


@dataclass
class _Data:
    """One process's loaders: its share of the global batch, and of the val images."""

    train_data: SeededTransformDataset
    sampler: Any  # set_epoch(epoch); len() is this process's samples (or batches)
    train_loader: DataLoader
    val_loader: DataLoader | None
    local_batch: int


def _run(
    *,
    config: ClassifierTrainConfig,
    info: DistInfo,
    out: Path,
    train_set: Any,
    val_set: Any | None,
    classes: list[str],
    resume_from: Path | None,
    progress: bool,
    resume_lr: float | None = None,
) -> TrainResult:
    """The training loop behind :func:`train_classifier` (process group already set up)."""
    model, kwargs = _checked_model(config, len(classes), info)
    optimizer = torch.optim.SGD(
        _param_groups(model),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    schedule: dict[str, Any] = {"lr": config.lr, "best": None, "bad_epochs": 0, "drops": 0}
    loop = _Loop(config, info, out, model, kwargs, classes, optimizer, progress, schedule)
    start_epoch = 0 if resume_from is None else _resume(loop, resume_from, resume_lr)
    _set_lr(optimizer, loop.schedule["lr"], config)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    trainee = _TrainingModel(
        model, freeze_bn=config.pretrained, freeze_trunk=config.trunk_lr_scale == 0
    )
    net: nn.Module = trainee
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [info.device.index] if info.device.type == "cuda" else None
        net = DistributedDataParallel(trainee, device_ids=device_ids)
    data = _loaders(config, train_set, val_set, info)

    # A frozen trunk's pooled vectors: of the val crops, and of replayed epochs' crops.
    val_cache: list[tuple[Tensor, Tensor]] | None = [] if trainee.freeze_trunk else None
    replay: dict[int, tuple[Tensor, Tensor]] = {}
    if config.cache_views:
        _check_replay_memory(model, config, len(data.sampler))
    for epoch in range(start_epoch, config.epochs):
        _epoch(loop, data, trainee, net, epoch, replay, val_cache)

    trainee.release()
    model.eval()
    return TrainResult(
        model=model,
        classes=classes,
        history=loop.history,
        checkpoint=loop.last_checkpoint if info.is_main else None,
        best_val_error=loop.schedule["best"],
    )


def _checked_model(
    config: ClassifierTrainConfig, num_classes: int, info: DistInfo
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`_build_model` on the process's device, after checking its least input size."""
    model, kwargs = _build_model(config, num_classes)
    model = model.to(info.device)
    smallest = config.crop if config.size_mode == "single" else config.small_crop
    if smallest < model.min_input_size:
        raise ValueError(
            f"{config.model} needs inputs of at least {model.min_input_size} px, got "
            f"{config.size_mode} inputs down to {smallest} px"
        )
    return model, kwargs


def _resume(loop: _Loop, resume_from: Path, resume_lr: float | None) -> int:
    """Load a checkpoint into the loop's model, optimizer and state; return its epoch."""
    model_state, optimizer_state, state = load_checkpoint(
        resume_from, map_location=str(loop.info.device)
    )
    _check_resumable(loop.config, loop.kwargs, state, loop.classes)
    loop.model.load_state_dict(model_state)
    if optimizer_state is not None:
        _load_optimizer_state(loop.optimizer, optimizer_state)
    loop.schedule = dict(state["schedule"])
    if resume_lr is not None:  # an explicit --lr on --resume wins over the schedule's
        loop.schedule.update(lr=float(resume_lr), bad_epochs=0)
    loop.history = list(state.get("history", []))
    loop.last_checkpoint = Path(state["path"])
    return int(state["epoch"])


def _loaders(
    config: ClassifierTrainConfig, train_set: Any, val_set: Any | None, info: DistInfo
) -> _Data:
    """The training loader (batches grouped by size in the variable mode) and the val one."""

    local_batch = config.batch_size // info.world_size
    pin = info.device.type == "cuda"
    shuffle_seed = derive_seed(config.seed, _TAG_SHUFFLE) % 2**31
    if config.size_mode == "variable":
        transform: Callable[..., Tensor] = VariableTrainTransform(
            config.crop, config.mean, config.max_side, flip=config.flip, lighting=config.lighting
        )
        train_data = SeededTransformDataset(train_set, transform, config.seed)
        sizes = [transform.output_size(h, w) for h, w in _image_sizes(train_set)]
        sampler: Any = SizeGroupedBatchSampler(
            sizes, local_batch, shuffle=True, seed=shuffle_seed, drop_last=False,
            num_replicas=info.world_size, rank=info.rank,
        )  # fmt: skip
        train_loader = DataLoader(
            train_data, batch_sampler=sampler, collate_fn=pad_collate,
            num_workers=config.workers, pin_memory=pin,
        )  # fmt: skip
    else:
        transform = TrainTransform(
            crop=config.crop, shorter=config.shorter, flip=config.flip,
            lighting=config.lighting, mean=config.mean,
        )  # fmt: skip
        train_data = SeededTransformDataset(train_set, transform, config.seed)
        # A DistributedSampler also for one process: its permutation depends only on
        # (seed, epoch), and the union of the processes' batches at step t is the
        # one-process batch t (the indices are dealt round-robin).
        sampler = DistributedSampler(
            train_data, num_replicas=info.world_size, rank=info.rank, shuffle=True,
            seed=shuffle_seed, drop_last=False,
        )  # fmt: skip
        train_loader = DataLoader(
            train_data, batch_size=local_batch, sampler=sampler, num_workers=config.workers,
            pin_memory=pin,
        )  # fmt: skip
    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_data = SeededTransformDataset(
            val_set, EvalCropTransform(config.crop, config.shorter, config.mean), config.seed
        )
        val_loader = DataLoader(
            Subset(val_data, shard_indices(len(val_data), info.rank, info.world_size)),
            batch_size=max(local_batch, 1), shuffle=False, num_workers=config.workers,
            pin_memory=pin,
        )  # fmt: skip
    return _Data(train_data, sampler, train_loader, val_loader, local_batch)


def _epoch(
    loop: _Loop,
    data: _Data,
    trainee: _TrainingModel,
    net: nn.Module,
    epoch: int,
    replay: dict[int, tuple[Tensor, Tensor]],
    val_cache: list[tuple[Tensor, Tensor]] | None,
) -> None:
    """One epoch: train (or replay cached vectors), validate, step the schedule, log, save."""
    config, info = loop.config, loop.info
    # Dropout's randomness: torch's default generator, re-seeded per (epoch, rank).
    torch.manual_seed(derive_seed(config.seed, _TAG_DROPOUT, epoch, info.rank))
    # The epoch whose crops this one sees (itself unless replaying cached vectors).
    source = epoch % config.cache_views if config.cache_views else epoch
    data.sampler.set_epoch(source)
    data.train_data.set_epoch(source)
    size = _input_size(config, source)
    lr = loop.schedule["lr"]
    size_text = "variable" if size is None else f"{size}x{size}"
    desc = f"epoch {epoch + 1}/{config.epochs} @{size_text}"
    if config.cache_views:
        loss, train_error, count, seconds = _replayed_epoch(
            loop, data, trainee, net, epoch, source, size, desc, replay
        )
    else:
        loss, train_error, count, seconds = _train_epoch(
            loader=data.train_loader,
            net=net,
            optimizer=loop.optimizer,
            input_size=size,
            info=info,
            epoch=epoch,
            last_checkpoint=loop.last_checkpoint,
            progress=loop.progress,
            desc=desc,
        )
    val1 = val5 = None
    if data.val_loader is not None:
        val1, val5 = _validate(data.val_loader, loop.model, info, val_cache)
    # The paper watches the validation error; without a val split, the train error.
    metric = val1 if val1 is not None else train_error
    loop.schedule, improved = _plateau_step(loop.schedule, metric, config)
    _set_lr(loop.optimizer, loop.schedule["lr"], config)
    loop.history.append(
        {
            "epoch": epoch + 1,
            "input_size": size_text,
            "train_loss": loss,
            "train_error": train_error,
            "val_top1_error": val1,
            "val_top5_error": val5,
            "lr": lr,
            "images": count,
            "images_per_s": count / max(seconds, 1e-9),
            "seconds": seconds,
        }
    )
    _end_epoch(loop, epoch, improved, seconds)


def _replayed_epoch(
    loop: _Loop,
    data: _Data,
    trainee: _TrainingModel,
    net: nn.Module,
    epoch: int,
    source: int,
    size: int | None,
    desc: str,
    replay: dict[int, tuple[Tensor, Tensor]],
) -> tuple[float, float, int, float]:
    """An epoch on the cached pooled vectors of epoch ``source`` (recorded on first use):
    ``(loss, train error, images, seconds)``."""
    config, info = loop.config, loop.info
    start = time.perf_counter()
    if source not in replay:
        assert size is not None  # cache_views excludes the variable mode
        replay[source] = _record_epoch(data.train_loader, trainee, size, info, loop.progress, desc)
        # The loader drew from torch's generator: re-seed, so dropout does not
        # depend on whether this process recorded (a resumed run did, an unbroken
        # one had the vectors already).
        torch.manual_seed(derive_seed(config.seed, _TAG_DROPOUT, epoch, info.rank))
    loss, train_error, count = _replay_epoch(
        cached=replay[source],
        net=net,
        optimizer=loop.optimizer,
        batch_size=data.local_batch,
        order_seed=derive_seed(config.seed, _TAG_REPLAY, epoch, info.rank),
        info=info,
        epoch=epoch,
        last_checkpoint=loop.last_checkpoint,
    )
    return loss, train_error, count, time.perf_counter() - start


def _end_epoch(loop: _Loop, epoch: int, improved: bool, seconds: float) -> None:
    """Rank 0 saves a checkpoint (every ``checkpoint_every`` epochs and the last) and the
    logs; then every process waits for it."""
    config, info = loop.config, loop.info
    last_epoch = epoch + 1 == config.epochs
    if info.is_main and ((epoch + 1) % config.checkpoint_every == 0 or last_epoch):
        state = {
            "config": config.to_dict(),
            "model": loop.kwargs,
            "classes": loop.classes,
            "epoch": epoch + 1,
            "lr": loop.schedule["lr"],
            "best_val_error": loop.schedule["best"],
            "schedule": loop.schedule,
            "history": loop.history,
            "rng": {
                "scheme": "every draw derives from (seed, epoch, ...); nothing to restore",
                "seed": config.seed,
            },
            "world_size": info.world_size,
        }
        loop.last_checkpoint = save_checkpoint(
            loop.out,
            model=loop.model,
            optimizer=loop.optimizer,
            state=state,
            is_best=improved,
            keep=config.keep_checkpoints,
        )
    if info.is_main:
        # Plotting costs about a second: after every epoch only when epochs are long.
        plot = last_epoch or seconds > _PLOT_EVERY_EPOCH_S
        _write_logs(loop.out, config, loop.history, plot=plot)
    barrier(info)
