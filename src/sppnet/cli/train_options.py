"""The network and optimisation options of ``sppnet train``, with both recipes' values.

Every option here defaults to None (argparse), which leaves the config field unset: the
run's recipe (:mod:`sppnet.classify.recipes`) fills it in. The help of each option prints
what the two recipes use, read from the recipe objects themselves, so ``--help`` cannot
drift from the code.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["RECIPE_TEXT", "add_recipe_options"]

RECIPE_TEXT = r"""
defaults: two recipes (`--recipe`; docs/recipes.md). Without --pretrained, the paper's
from-scratch schedule: SGD + momentum at lr 0.01, /10 on val plateaus, batch 128, 70 epochs,
dropout 0.5, 224 crops, fc6-fc8 on the 6-3-2-1 pyramid. With --pretrained (EfficientNet-
Lite), the fine-tuning recipe chosen on real photographs: stages 6-7 and the head conv
learn (the rest frozen, batch norms at ImageNet statistics), the head map averaged into a
linear classifier (dropout 0.2), AdamW lr 0.001, weight decay 0.05, 2 warm-up epochs then
cosine, batch 32, 8 epochs, whole images at their own size (shorter side 224) and flips;
12.5 minutes for 3,000 photographs on 2 CPU cores. Each option below overrides one
value; `--recipe paper` gives a pretrained trunk the from-scratch schedule. On a GPU,
`--train-from all --epochs 20` fine-tunes the whole trunk (not measured here: no GPU).
"""


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if value is None:
        return "the model's"
    if value == "default" or value is True or value is False:
        return {"default": "the model's", True: "on", False: "off"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _defaults(name: str) -> str:
    """`` (paper: X; --pretrained: Y)`` for a recipe field."""
    from sppnet.classify.recipes import PAPER_RECIPE, PRETRAINED_RECIPE

    paper, tuned = getattr(PAPER_RECIPE, name), getattr(PRETRAINED_RECIPE, name)
    if name == "freeze_bn":
        paper = False  # from scratch: no ImageNet statistics to keep
    return f" (paper: {_shown(paper)}; --pretrained: {_shown(tuned)})"


def add_recipe_options(train: argparse.ArgumentParser) -> None:
    """The recipe's options: each None unless given (the recipe's value then)."""
    add = train.add_argument
    add("--recipe", choices=("paper", "finetune"),
        help="the defaults of every option below (paper without --pretrained, finetune "
        "with it)")  # fmt: skip
    spp = train.add_mutually_exclusive_group()
    spp.add_argument(
        "--no-spp",
        action="store_true",
        help="the no-SPP baseline (a fixed pool5 to 6x6; 224x224 inputs only)",
    )
    spp.add_argument("--spp-levels", type=int, nargs="+", metavar="N",
                     help="pyramid levels" + _defaults("spp_levels"))  # fmt: skip
    add("--spp-mode", choices=("max", "avg"), help="pooling in every bin" + _defaults("spp_mode"))
    add("--fc-layers", type=int, metavar="{0,2}",
        help="2: fc6, fc7 then fc8; 0: a linear classifier on the pooled vector"
        + _defaults("fc_layers"))  # fmt: skip
    add("--feature-layer", choices=("stage5", "stage7", "head"),
        help="EfficientNet-Lite: the map the head pools" + _defaults("feature_layer"))  # fmt: skip
    add("--size-mode", choices=("single", "multi", "random", "variable"),
        help="single 224 crops; multi 224/180 by epoch; random s in [180, 224] per epoch; "
        "variable: whole images at their own size, padded batches"
        + _defaults("size_mode"))  # fmt: skip
    add("--trunk-lr-scale", type=float, metavar="S",
        help="the trunk learns at lr x S; 0 freezes it (head only, about 5x faster a step)"
        + _defaults("trunk_lr_scale"))  # fmt: skip
    add("--train-from", metavar="LAYER",
        help="the first trunk layer that learns, earlier ones frozen; 'all': every layer"
        + _defaults("train_from"))  # fmt: skip
    add("--freeze-bn", action=argparse.BooleanOptionalAction,
        help="a pretrained trunk's batch norms keep their ImageNet statistics"
        + _defaults("freeze_bn"))  # fmt: skip
    add("--optimizer", choices=("sgd", "adamw"),
        help="SGD with momentum 0.9 or AdamW" + _defaults("optimizer"))  # fmt: skip
    add("--lr", type=float,
        help="the head's learning rate (the peak with cosine); with --resume, training "
        "continues at this rate" + _defaults("lr"))  # fmt: skip
    add("--lr-schedule", choices=("plateau", "cosine"),
        help="plateau: /10 when val stalls (--plateau-patience); cosine: per-step decay "
        "to 0 after the warm-up" + _defaults("lr_schedule"))  # fmt: skip
    add("--warmup-epochs", type=int, help="linear warm-up epochs" + _defaults("warmup_epochs"))
    add("--weight-decay", type=float, help="weight decay" + _defaults("weight_decay"))
    add("--epochs", type=int, help="epochs in total" + _defaults("epochs"))
    add("--batch-size", type=int, help="global batch size" + _defaults("batch_size"))
    add("--dropout", type=float, help="dropout before fc8 (and on fc6, fc7)" + _defaults("dropout"))
    add("--lighting", type=float, help="PCA colour altering std" + _defaults("lighting"))
