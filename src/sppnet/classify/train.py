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
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from sppnet._atomic import atomic_write_json, atomic_write_text
from sppnet.classify.config import (
    _TAG_DROPOUT,
    _TAG_REPLAY,
    _TAG_SHUFFLE,
    _TAG_SIZE,
    MODEL_DEFAULT,
    SIZE_MODES,
    ClassifierTrainConfig,
    TrainResult,
    _check_resumable,
    load_train_config,
)
from sppnet.classify.epochs import (
    _check_replay_memory,
    _plateau_step,
    _record_epoch,
    _replay_epoch,
    _train_epoch,
    _validate,
)
from sppnet.classify.network import (
    _build_model,
    _load_optimizer_state,
    _make_optimizer,
    _set_lr,
    _TrainingModel,
    frozen_layers,
    lr_factor,
)
from sppnet.data.batching import (
    SeededTransformDataset,
    SizeGroupedBatchSampler,
    derive_seed,
    pad_collate,
    seeded_generator,
)
from sppnet.data.transforms import (
    EvalCropTransform,
    FullImageTransform,
    TrainTransform,
    VariableTrainTransform,
)
from sppnet.engine.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from sppnet.engine.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    init_distributed,
    shard_indices,
)
from sppnet.engine.sgd_step import NonFiniteLossError
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


# ------------------------------------------------------------------------------ main entry
def train_classifier(
    config: ClassifierTrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    train_set: Any | None = None,
    val_set: Any | None = None,
    resume_lr: float | None = None,
    trust_model_code: bool | str = False,
) -> TrainResult:
    """Train an SPP-net classifier, writing checkpoints and logs to ``config.out``.

    Runs alone or under ``torchrun`` (one process per device; ``config.batch_size`` is the
    global batch, split evenly; only rank 0 writes files; metrics summed over processes).

    Args:
        config: the run's settings; fields it leaves unset take its recipe's values.
        resume: continue from the latest checkpoint in ``config.out`` (starts fresh when
            there is none). Model-defining settings, ``pretrained``, size mode, seed and
            classes must match the checkpoint; ``epochs`` may be raised to train longer and
            ``trunk_lr_scale`` changed (e.g. unfreeze the trunk after a head-only stage).
        progress: show tqdm bars (rank 0 only).
        train_set: optional dataset of ``(PIL image, int label)`` with a ``classes`` list,
            used instead of ``config.data``'s train split.
        val_set: optional dataset like ``train_set`` for validation (one view each).
        resume_lr: with ``resume``, continue at this learning rate (the cosine peak)
            instead of the checkpoint's (``--resume --lr X``, e.g. after a NaN loss); the
            schedule goes on from it. Ignored without a checkpoint (``config.lr`` starts).
        trust_model_code: a ``config.model`` that is an import path
            (``package.module:factory``) is imported only when this is True or that same
            path (a config read back from a run must not import code by itself).

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
    config = config.resolved()
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
                trust=trust_model_code,
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
    trust: bool | str = False,
) -> TrainResult:
    """The training loop behind :func:`train_classifier` (process group already set up)."""
    model, kwargs = _checked_model(config, len(classes), info, trust)
    frozen = frozen_layers(model, config.train_from)  # checked before any data is read
    optimizer = _make_optimizer(model, config)
    schedule: dict[str, Any] = {"lr": config.lr, "best": None, "bad_epochs": 0, "drops": 0}
    loop = _Loop(config, info, out, model, kwargs, classes, optimizer, progress, schedule)
    start_epoch = 0 if resume_from is None else _resume(loop, resume_from, resume_lr)
    _set_lr(optimizer, loop.schedule["lr"], config)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    trainee = _TrainingModel(
        model,
        freeze_bn=config.freeze_bn,
        freeze_trunk=config.trunk_lr_scale == 0,
        frozen=frozen,
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
    config: ClassifierTrainConfig, num_classes: int, info: DistInfo, trust: bool | str
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`_build_model` on the process's device, after checking its least input size."""
    model, kwargs = _build_model(config, num_classes, trust)
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
        val_loader = _val_loader(config, val_set, info, local_batch)
    return _Data(train_data, sampler, train_loader, val_loader, local_batch)


def _val_loader(
    config: ClassifierTrainConfig, val_set: Any, info: DistInfo, local_batch: int
) -> DataLoader:
    """This process's share of the val images: one center crop each, or in the variable
    mode the whole image as training sees it (padded batches of similar sizes)."""
    pin = info.device.type == "cuda"
    shard = shard_indices(len(val_set), info.rank, info.world_size)
    if config.size_mode != "variable":
        val_data = SeededTransformDataset(
            val_set, EvalCropTransform(config.crop, config.shorter, config.mean), config.seed
        )
        return DataLoader(
            Subset(val_data, shard), batch_size=max(local_batch, 1), shuffle=False,
            num_workers=config.workers, pin_memory=pin,
        )  # fmt: skip
    full = FullImageTransform(config.crop, config.mean, config.max_side or 2 * config.crop)
    val_data = Subset(SeededTransformDataset(val_set, full, config.seed), shard)
    all_sizes = _image_sizes(val_set)
    sizes = [full.output_size(*all_sizes[i]) for i in shard]
    batches = SizeGroupedBatchSampler(sizes, max(local_batch, 1), shuffle=False, seed=0)
    return DataLoader(
        val_data, batch_sampler=batches, collate_fn=pad_collate,
        num_workers=config.workers, pin_memory=pin,
    )  # fmt: skip


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
    step_lr = _cosine_steps(loop, epoch, len(data.train_loader))
    size_text = "variable" if size is None else f"{size}x{size}"
    desc = f"epoch {epoch + 1}/{config.epochs} @{size_text}"
    if config.cache_views:
        loss, train_error, count, seconds = _replayed_epoch(
            loop, data, trainee, net, epoch, source, size, desc, replay, step_lr
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
            step_lr=step_lr,
        )
    lr = loop.optimizer.param_groups[-1]["lr"]  # the head's at the epoch's last step
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
    step_lr: Callable[[int], None] | None = None,
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
        step_lr=step_lr,
    )
    return loss, train_error, count, time.perf_counter() - start


def _cosine_steps(loop: _Loop, epoch: int, steps: int) -> Callable[[int], None] | None:
    """With the cosine schedule: a callback setting the learning rate before each step
    (``step`` counted within the epoch); None with the plateau schedule (one rate an
    epoch). The peak is ``schedule["lr"]`` (``--resume --lr X`` changes it)."""
    config = loop.config
    if config.lr_schedule != "cosine":
        return None
    base = loop.schedule["lr"]

    def apply(step: int) -> None:
        _set_lr(loop.optimizer, base * lr_factor(epoch * steps + step, steps, config), config)

    return apply


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
