"""The two training recipes of a classifier run, in one place: the paper's from-scratch
schedule and the fine-tuning recipe of an ImageNet-pretrained trunk.

A :class:`~sppnet.classify.config.ClassifierTrainConfig` field left at None takes its value
from :func:`recipe_for` (``config.resolved()`` fills them). The recipe is ``"finetune"``
for a pretrained model and ``"paper"`` otherwise, unless the config names one, so a
from-scratch schedule is never applied to pretrained weights by accident; every value can
still be set one by one (``sppnet train --lr ...``; ``sppnet train --help`` prints both).

- :data:`PAPER_RECIPE` (``pretrained=False``): the paper's ImageNet schedule (Sec. 3.1): SGD
  with momentum at 0.01, divided by 10 twice when the validation error plateaus, batch 128,
  70 epochs, dropout 0.5 on fc6 and fc7, 224 crops, the whole network learning.
- :data:`PRETRAINED_RECIPE` (``pretrained=True``, EfficientNet-Lite): chosen by
  ``benchmarks/recipe_study.py`` on sets of real photographs (``docs/recipes.md``): the
  last stages (6, 7 and the head conv) fine-tune at the head's rate with the rest of the
  trunk frozen and batch norms at their ImageNet statistics; the 1,280-channel head map is
  pooled by a one-level (1 x 1) average pyramid into a linear classifier (dropout 0.2);
  AdamW at 0.001 with weight decay 0.05, 2 epochs of linear warm-up and cosine decay, batch
  32, 8 epochs; each image whole at its own size and aspect (``variable`` mode: shorter side
  224, padded batches) and flipped half the time, no colour noise. On the study's hardest set
  it gave 16.2% test error against 41.8% for the best linear probe on the same trunk; the
  paper's schedule and the frozen-trunk heads on the stage-5 pyramid stayed at or above the
  probe there.
- :data:`PRETRAINED_TRUNK_RECIPE` (``pretrained=True`` on another trunk, e.g. ``timm/NAME``):
  the same optimiser, schedule, head and views, with the whole trunk learning (where its
  stages are is not known) and the model's own pyramid; not measured here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PAPER_RECIPE",
    "PRETRAINED_RECIPE",
    "PRETRAINED_TRUNK_RECIPE",
    "RECIPES",
    "RECIPE_FIELDS",
    "TrainRecipe",
    "recipe_for",
]


@dataclass(frozen=True)
class TrainRecipe:
    """The settings a recipe chooses (each a :class:`ClassifierTrainConfig` field).

    Attributes:
        optimizer: ``"sgd"`` (momentum, the paper) or ``"adamw"``.
        lr: the head's learning rate (the peak, after warm-up, with ``"cosine"``).
        lr_schedule: ``"plateau"`` (divide by 10 when the val error stalls, Sec. 3.1) or
            ``"cosine"`` (per-step cosine decay to 0 after the warm-up).
        warmup_epochs: epochs of linear warm-up from 0 (``"cosine"`` only).
        weight_decay: L2 (SGD) or decoupled (AdamW) weight decay.
        epochs, batch_size: epochs in total; the global batch.
        dropout: before fc8 (and after fc6 / fc7 where they exist).
        lighting: PCA colour noise std (0: none).
        size_mode: ``single`` / ``multi`` / ``random`` crops, or ``variable`` (whole images).
        trunk_lr_scale: the trunk learns at ``lr * trunk_lr_scale``; 0 freezes it.
        train_from: the first trunk layer that learns (``"all"``: every layer); the layers
            before it are frozen (no gradient, batch norms in eval mode).
        freeze_bn: a pretrained trunk's batch norms keep their ImageNet statistics (a
            trunk trained from scratch never freezes them unless the config says so).
        feature_layer: the map the head pools (EfficientNet-Lite; None: the model's own).
        spp_levels: pyramid levels; ``"default"``: the model's own (``(6, 3, 2, 1)``).
        spp_mode: ``"max"`` (the paper) or ``"avg"`` pooling in every bin.
        fc_layers: 2 (fc6, fc7 then fc8, the paper) or 0 (a linear classifier).
    """

    optimizer: str
    lr: float
    lr_schedule: str
    warmup_epochs: int
    weight_decay: float
    epochs: int
    batch_size: int
    dropout: float
    lighting: float
    size_mode: str
    trunk_lr_scale: float
    train_from: str
    freeze_bn: bool
    feature_layer: str | None
    spp_levels: tuple[int, ...] | str
    spp_mode: str
    fc_layers: int

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a JSON-ready dict."""
        out = dataclasses.asdict(self)
        if isinstance(out["spp_levels"], tuple):
            out["spp_levels"] = list(out["spp_levels"])
        return out


#: The fields a recipe sets, in the order ``--help`` lists them.
RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainRecipe))

PAPER_RECIPE = TrainRecipe(
    optimizer="sgd",
    lr=0.01,  # "starts at 0.01" (Sec. 3.1)
    lr_schedule="plateau",  # "divided by 10 (twice) when the error plateaus"
    warmup_epochs=0,
    weight_decay=5e-4,
    epochs=70,  # ZF-5 on ImageNet (Sec. 3.1.1)
    batch_size=128,
    dropout=0.5,
    lighting=0.1,  # AlexNet's PCA colour altering
    size_mode="single",
    trunk_lr_scale=1.0,
    train_from="all",
    freeze_bn=True,  # a pretrained trunk's (the paper's networks have no batch norm)
    feature_layer=None,
    spp_levels="default",
    spp_mode="max",
    fc_layers=2,
)

PRETRAINED_RECIPE = TrainRecipe(
    optimizer="adamw",
    lr=1e-3,
    lr_schedule="cosine",
    warmup_epochs=2,
    weight_decay=0.05,
    epochs=8,
    batch_size=32,
    dropout=0.2,
    lighting=0.0,
    size_mode="variable",
    trunk_lr_scale=1.0,
    train_from="stage6",
    freeze_bn=True,
    feature_layer="head",
    spp_levels=(1,),
    spp_mode="avg",
    fc_layers=0,
)

PRETRAINED_TRUNK_RECIPE = dataclasses.replace(
    PRETRAINED_RECIPE, train_from="all", feature_layer=None, spp_levels="default"
)


#: Recipe names (``ClassifierTrainConfig.recipe``, ``sppnet train --recipe``).
RECIPES = ("paper", "finetune")


def recipe_for(model: str, recipe: str) -> TrainRecipe:
    """The values a config's unset (None) fields take.

    Args:
        model: the config's model name (``efficientnet_lite0``, ``zf5``, ``timm/NAME``, ...).
        recipe: ``"paper"`` or ``"finetune"`` (:data:`RECIPES`).

    Returns:
        :data:`PAPER_RECIPE`; for ``"finetune"``, :data:`PRETRAINED_RECIPE` on an
        EfficientNet-Lite and :data:`PRETRAINED_TRUNK_RECIPE` on any other trunk.

    Raises:
        ValueError: an unknown recipe name.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if recipe == "paper":
        return PAPER_RECIPE
    if model.startswith("efficientnet_lite"):
        return PRETRAINED_RECIPE
    return PRETRAINED_TRUNK_RECIPE
