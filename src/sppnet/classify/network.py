"""The network of a classifier run: built from the settings with a seeded initialisation,
wrapped as the training loop runs it (a frozen trunk or frozen batch norms), and its
optimizer's parameter groups (trunk, head)."""

from __future__ import annotations

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

    trunk: dict[str, Any] = {}
    if is_trunk_source(config.model):
        trunk = {"trunk_args": config.model_args, "feature_index": config.feature_index}
        trunk["trust_model_code"] = trust
    elif config.model_args is not None or config.feature_index is not None:
        raise ValueError("model_args and feature_index go with a trunk source as model")
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
