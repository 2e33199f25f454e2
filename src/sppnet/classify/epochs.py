"""One pass of a classifier run over its data: a training epoch, a recorded or replayed
epoch of a frozen trunk's pooled vectors, validation, and the plateau schedule.

Shape shorthand: N images per batch, K classes, C * L the pooled vector's length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sppnet.classify.config import ClassifierTrainConfig
from sppnet.classify.network import _TrainingModel
from sppnet.data.batching import seeded_generator
from sppnet.engine.distributed import DistInfo, all_reduce_sum
from sppnet.engine.sgd_step import sgd_step


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
    step_lr: Callable[[int], None] | None = None,
) -> tuple[float, float, int, float]:
    """One pass over the data; returns (loss, top-1 error, images, seconds), all processes.

    ``step_lr(step)``, if given, sets the learning rate before each step (a per-step
    schedule).
    """
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
        if step_lr is not None:
            step_lr(step)
            lr = optimizer.param_groups[-1]["lr"]
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
    step_lr: Callable[[int], None] | None = None,
) -> tuple[float, float, int]:
    """One pass of fc6-fc8 over cached pooled vectors in a seeded order; (loss, error, n).

    ``step_lr(step)``, if given, sets the learning rate before each step.
    """
    vectors, labels = cached
    net.train()
    totals = torch.zeros(3, dtype=torch.float64, device=info.device)
    lr = optimizer.param_groups[-1]["lr"]
    order = torch.randperm(len(labels), generator=seeded_generator(order_seed)).to(vectors.device)
    for step, start in enumerate(range(0, len(order), batch_size)):
        index = order[start : start + batch_size]
        if step_lr is not None:
            step_lr(step)
            lr = optimizer.param_groups[-1]["lr"]
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
    """Top-1 and top-5 error of one view per image (a center crop, or a padded batch of
    whole images with their extents), over all processes.

    ``cache`` (a frozen trunk): an empty list is filled with the batches' pooled vectors
    and labels; a filled one is used instead of the loader (the same vectors).
    """
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=info.device)  # top1 wrong, top5, n
    batches = (_on_device(batch, info) for batch in loader)
    if cache is not None and not cache:  # [N, C * L] pooled vectors, computed once
        cache.extend((_pooled(model, x, ext), y) for x, ext, y in batches)
    for pooled, labels in cache if cache is not None else _pooled_batches(model, batches):
        logits = model.forward_pooled(pooled)  # [N, K]
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


def _pooled_batches(model: nn.Module, batches: Any) -> Iterator[tuple[Tensor, Tensor]]:
    """``(pooled [N, C * L], labels [N])`` of ``(images, extents, labels)`` batches."""
    for x, extents, labels in batches:
        yield _pooled(model, x, extents), labels


def _on_device(batch: Any, info: DistInfo) -> tuple[Tensor, Tensor | None, Tensor]:
    """``(images, extents or None, labels)`` of a loader batch, on the run's device."""
    if len(batch) == 3:  # a padded batch: images, extents, labels
        images, extents, labels = batch
        return images.to(info.device), extents.to(info.device), labels.to(info.device)
    images, labels = batch
    return images.to(info.device), None, labels.to(info.device)


def _pooled(model: nn.Module, x: Tensor, extents: Tensor | None) -> Tensor:
    """The pooled vectors ``[N, C * L]`` of a batch (each image on its valid region)."""
    if extents is None:
        return model.forward_pool(model.forward_features(x))
    features = model.forward_features(x, extents)
    return model.forward_pool(features, model.feature_extents(extents))


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
    """Update the plateau schedule after an epoch; returns (new schedule, improved).

    With the cosine schedule only the best error is tracked (the rate follows the steps).
    """
    schedule = dict(schedule)
    best = schedule["best"]
    improved = best is None or metric < best
    if improved:
        schedule["best"], schedule["bad_epochs"] = metric, 0
        return schedule, True
    schedule["bad_epochs"] += 1
    # "divided by 10 (twice) when the error plateaus" (Sec. 3.1).
    if (
        config.lr_schedule == "plateau"
        and schedule["bad_epochs"] >= max(config.plateau_patience, 1)
        and schedule["drops"] < config.lr_drops
        and schedule["lr"] > config.min_lr
    ):
        schedule["lr"] = max(schedule["lr"] / 10.0, config.min_lr)
        schedule["drops"] += 1
        schedule["bad_epochs"] = 0
    return schedule, False
