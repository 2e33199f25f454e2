"""The network of a classifier run: built from the settings with a seeded initialisation,
wrapped as the training loop runs it (a frozen trunk or frozen batch norms), and its
optimizer's parameter groups (trunk, head)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from sppnet.classify.config import _TAG_INIT, MODEL_DEFAULT, ClassifierTrainConfig
from sppnet.data.batching import derive_seed


def _build_model(
    config: ClassifierTrainConfig, num_classes: int, trust: bool | str = False
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
    from sppnet.models.trunk_source import is_trunk_source

    config = config.resolved()
    trunk: dict[str, Any] = {}
    if is_trunk_source(config.model):
        trunk = {"trunk_args": config.model_args, "feature_index": config.feature_index}
        trunk["trust_model_code"] = trust
    elif config.model_args is not None or config.feature_index is not None:
        raise ValueError("model_args and feature_index go with a trunk source as model")
    if config.feature_layer is not None:
        if not config.model.startswith("efficientnet_lite"):
            raise ValueError(
                f"feature_layer={config.feature_layer!r} chooses the map of an "
                f"EfficientNet-Lite trunk; {config.model!r} has its own (leave it unset)"
            )
        trunk["feature_layer"] = config.feature_layer
    torch.manual_seed(derive_seed(config.seed, _TAG_INIT))
    model = create_model(
        config.model,
        **trunk,
        num_classes=num_classes,
        spp_levels=DEFAULT if config.spp_levels == MODEL_DEFAULT else config.spp_levels,
        width=config.width,
        fc_dim=DEFAULT if config.fc_dim is None else config.fc_dim,
        spp_mode=config.spp_mode,
        dropout=config.dropout,
        fc_layers=config.fc_layers,
        pretrained=config.pretrained,
    )
    return model, model.config()


def frozen_layers(model: nn.Module, train_from: str) -> list[str]:
    """The trunk layers (children of ``model.features``) before ``train_from``.

    Args:
        model: an SPP-net.
        train_from: the name of the first trunk layer that learns, or ``"all"``.

    Returns:
        Their names, in order (empty for ``"all"``).

    Raises:
        ValueError: ``train_from`` names no layer of the trunk (the message lists them).
    """
    if train_from == "all":
        return []
    names = [name for name, _ in model.features.named_children()]
    if train_from not in names:
        raise ValueError(
            f"train_from={train_from!r} is not a layer of the {getattr(model, 'name', '')} "
            f"trunk; its layers: {', '.join(names)} (or 'all')"
        )
    return names[: names.index(train_from)]


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

    def __init__(
        self,
        model: nn.Module,
        *,
        freeze_bn: bool,
        freeze_trunk: bool,
        frozen: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.freeze_bn = freeze_bn
        self.freeze_trunk = freeze_trunk
        # the trunk's first layers that stay fixed (train_from): no gradient, eval mode;
        # autograd then records nothing through them (their input needs no gradient)
        self.frozen = [] if freeze_trunk else list(frozen or [])
        if freeze_trunk:
            model.features.requires_grad_(False)
        for name in self.frozen:
            getattr(model.features, name).requires_grad_(False)

    def train(self, mode: bool = True) -> _TrainingModel:
        super().train(mode)
        if mode and self.freeze_trunk:
            self.model.features.eval()
            return self
        if mode:
            for name in self.frozen:
                getattr(self.model.features, name).eval()
        if mode and self.freeze_bn:
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
        for name in self.frozen:
            getattr(self.model.features, name).requires_grad_(True)


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


def _make_optimizer(model: nn.Module, config: ClassifierTrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW, on the groups ``[trunk, head]``.

    ``config`` is resolved. Frozen parameters stay in the trunk group (checkpoints keep one
    layout); they never get a gradient, so neither optimizer changes them.
    """
    groups = _param_groups(model)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def lr_factor(step: int, steps_per_epoch: int, config: ClassifierTrainConfig) -> float:
    """The cosine schedule's learning-rate multiplier at 0-based global ``step``.

    Linear warm-up over ``warmup_epochs`` (``(step + 1) / warm_steps``), then
    ``(1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 over the remaining steps
    (timm's fine-tuning schedule, stepped per batch); a warm-up as long as the run never
    reaches the peak. ``config`` is resolved.
    """
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    total = config.epochs * steps_per_epoch
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


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
