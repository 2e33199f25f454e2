"""Fine-tuning of a detector run (stages 3 and 4): fc6-fc8 on cached pooled windows
(Sec. 4.2), and optionally every layer through the window pyramid (beyond the paper)."""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from sppnet.data.transforms import to_tensor
from sppnet.data.voc import VOCDetection
from sppnet.detect.config import DetectorTrainConfig
from sppnet.detect.windows import _WindowTable
from sppnet.detection.targets import label_windows, sample_finetune_batch
from sppnet.detection.window_features import compute_conv_maps, pool_windows
from sppnet.engine.sgd_step import sgd_step

# what a diverged fine-tuning tells the user: the options train-det has
_NAN_FC = (
    "fc fine-tuning diverged: run the same command again with a lower --finetune-lr (the "
    "proposals and the feature cache are reused)"
)
_NAN_E2E = (
    "end-to-end fine-tuning diverged: run the same command again with a lower --e2e-lr, "
    "or --e2e-iterations 0 (the finished stages are reused)"
)


def finetune_fc(
    model: nn.Module,
    table: _WindowTable,
    num_classes: int,
    config: DetectorTrainConfig,
    progress: bool = False,
) -> list[float]:
    """Fine-tune fc6, fc7 and a new ``(K+1)``-way fc8 on cached pooled features (Sec. 4.2).

    Args:
        model: the network; its fc8 is replaced.
        table: the cached windows.
        num_classes: K.
        config: iterations, learning rate and schedule, batch size, positive fraction.
        progress: tqdm bar.

    Returns:
        The loss of every iteration.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (weights left at the last good step).
        ValueError: no positive window in the cache.
    """
    gen = torch.Generator().manual_seed(config.seed)
    model.reset_classifier(num_classes + 1, generator=gen)
    if not bool((table.max_iou >= 0.5).any()):
        raise ValueError("no window overlaps a ground truth by IoU >= 0.5: nothing to fine-tune on")
    device = next(model.parameters()).device
    params = [p for n, p in model.named_parameters() if n.split(".")[0] in ("fc6", "fc7", "fc8")]
    opt = torch.optim.SGD(
        params, lr=config.finetune_lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    step_at = round(config.finetune_iterations * config.finetune_step)
    losses: list[float] = []
    model.train()
    for it in tqdm(
        range(config.finetune_iterations), disable=not progress, desc="fine-tune fc", unit="it"
    ):
        if it == step_at:
            for group in opt.param_groups:
                group["lr"] = config.finetune_lr / 10
        idx = sample_finetune_batch(
            table.max_iou,
            table.labels,
            config.finetune_batch,
            config.positive_fraction,
            generator=gen,
        )
        x = table.gather(idx).to(device)  # [B, P]
        y = table.labels[idx].to(device)  # [B] in 0..K
        loss = F.cross_entropy(model.forward_pooled(x), y)
        sgd_step(loss, opt, epoch=1, step=it, lr=opt.param_groups[0]["lr"], advice=_NAN_FC)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _train_with_frozen_batch_norm(model: nn.Module) -> None:
    """Training mode, but every batch-norm layer keeps its (pre-trained) statistics.

    A detection mini-batch is the windows of one image: batch statistics of one image
    would replace the ImageNet ones the trunk (EfficientNet-Lite) was trained with, as
    detectors on batch-norm trunks avoid by freezing them. Trunks without batch norm
    (ZF-5) are simply put in training mode.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune_end_to_end(
    model: nn.Module,
    dataset: VOCDetection,
    proposals: dict[str, Tensor],
    config: DetectorTrainConfig,
    mean: Any,
    progress: bool = False,
) -> list[float]:
    """Fine-tune every layer through the window pyramid (beyond the paper).

    Each iteration takes one image at one of the scales (random), computes its conv maps
    with gradients, samples a mini-batch of windows as in :func:`finetune_fc` and
    back-propagates the loss through :func:`~sppnet.ops.window_pyramid_pool` into the conv
    layers (the paper fine-tunes the fc layers only, Sec. 4.2; later detectors made the
    whole network trainable this way). Batch-norm layers keep their statistics
    (:func:`_train_with_frozen_batch_norm`); their scale and shift still learn.

    Returns:
        The loss of every iteration.

    Raises:
        NonFiniteLossError: the loss became NaN/inf.
    """
    gen = torch.Generator().manual_seed(config.seed + 1)
    rng = random.Random(config.seed + 1)
    device = next(model.parameters()).device
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config.e2e_lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    losses: list[float] = []
    _train_with_frozen_batch_norm(model)
    for it in tqdm(
        range(config.e2e_iterations), disable=not progress, desc="end-to-end", unit="it"
    ):
        i = rng.randrange(len(dataset))
        image, target = dataset[i]
        gt = target["boxes"]
        windows = torch.cat([proposals[dataset.ids[i]].float(), gt[~target["difficult"]]])
        max_iou, _, labels = label_windows(windows, gt, target["labels"] + 1, target["difficult"])
        idx = sample_finetune_batch(
            max_iou, labels, config.finetune_batch, config.positive_fraction, generator=gen
        )
        if idx.numel() == 0:
            continue
        scale = config.scales[rng.randrange(len(config.scales))]
        maps = compute_conv_maps(
            model, to_tensor(image).to(device), (scale,), mean, config.max_long_side
        )
        pooled = pool_windows(model, maps, windows[idx].to(device))  # [B, P], differentiable
        loss = F.cross_entropy(model.forward_pooled(pooled), labels[idx].to(device))
        sgd_step(loss, opt, epoch=1, step=it, lr=config.e2e_lr, advice=_NAN_E2E)
        losses.append(float(loss.detach()))
    model.eval()
    return losses
