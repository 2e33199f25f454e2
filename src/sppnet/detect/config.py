"""The settings of a detector run (:class:`DetectorTrainConfig`) and what each stage's
result depends on (the stamp recorded in ``DIR/<stage>/settings.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

# Detection cache layouts (engine/detection_cache.py) and the directory of each under DIR.
_CACHE_LAYOUTS = ("maps", "windows")


_CACHE_DIRS = {"maps": "cache_maps", "windows": "cache"}


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Settings of :func:`train_detector`; defaults follow the paper where it has one."""

    data: str  # VOC-layout root (JPEGImages, Annotations, ImageSets/Main) or COCO .json
    out: str  # output directory (every stage's files, the detector)
    split: str = "trainval"  # training split (VOC 2007 trainval, Sec. 4.2)
    checkpoint: str | None = None  # pre-trained classifier run (sppnet train); None: see model
    which: str = "best"  # which classifier checkpoint: "best" or "latest"
    model: str = "zf5"  # only without a checkpoint: architecture ...
    pretrained: bool = False  # ... with its ImageNet trunk (efficientnet_lite*); else random ...
    width: float = 1.0  # ... channel multiplier ...
    fc_dim: int | None = None  # ... fc width (None: the model's own, 4096 or Lite's 1024) ...
    spp_levels: tuple[int, ...] | None = None  # ... pyramid (None: (6,3,2,1) or Lite's (3,2,1))
    model_args: dict[str, Any] | None = None  # ... a trunk source's JSON kwargs (from_trunk) ...
    feature_index: int | None = None  # ... a timm trunk's stage (None: stride 16)
    proposals: str = "selective_search"  # "selective_search", "edge_boxes" or a directory
    max_proposals: int = 2000  # ~2,000 windows per image (Sec. 4.1)
    scales: tuple[int, ...] = (688,)  # 1 scale, or (480, 576, 688, 864, 1200) (Sec. 4.1)
    max_long_side: float | None = None  # memory cap on resized images; the paper has none
    cache_dtype: str = "float16"  # cache precision (maps or pooled features)
    cache: str = "maps"  # "maps": conv maps, ~40x less disk; "windows": pooled features
    finetune_iterations: int = 2000  # paper: 250k + 50k at batch 128 on VOC; scaled down
    finetune_lr: float = 1e-3  # paper 1e-4 for pre-trained fc on VOC; small data moves more
    finetune_step: float = 0.833  # lr / 10 after this fraction (250k of 300k, Sec. 4.2)
    finetune_batch: int = 128  # windows per mini-batch (Sec. 4.2)
    positive_fraction: float = 0.25  # 25% positives per mini-batch (Sec. 4.2)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    e2e_iterations: int = 0  # end-to-end fine-tuning through the pyramid (beyond the paper)
    e2e_lr: float = 1e-4  # its learning rate (all layers)
    svm_c: float = 1e-3  # R-CNN's SVM C
    svm_positive_weight: float = 2.0  # R-CNN's positive loss weight
    svm_initial_negatives: int = 40  # negatives per image and class before mining
    hard_negative_rounds: int = 1  # the paper iterates mining once (Sec. 4.2)
    box_regression: bool = True  # class-specific ridge on pooled conv5 (Sec. 4.2)
    box_lambda: float = 1000.0  # R-CNN's ridge lambda
    max_images: int | None = None  # use only the first N training images (quick runs)
    seed: int = 0
    device: str = "cpu"
    proposal_workers: int = 0  # processes computing proposals (0: this one); same boxes
    images: str | None = None  # COCO: the image folder (data is then the annotation file)
    classes: tuple[str, ...] | None = None  # label order; None: classes.txt / VOC / COCO's
    fix_sizes: bool = False  # rescale boxes of images whose recorded size is not the file's

    def __post_init__(self) -> None:
        """Check the starting network's settings before any stage writes a file.

        Raises:
            ValueError: bad ``spp_levels``, ``pretrained`` with ``checkpoint``, an unknown
                ``model``, or ``pretrained`` for a model without ImageNet weights.
        """
        from sppnet.models import list_models, pretrained_models
        from sppnet.models.trunk_source import is_trunk_source

        if self.cache not in _CACHE_LAYOUTS:
            raise ValueError(f"cache must be one of {_CACHE_LAYOUTS}, got {self.cache!r}")
        if self.spp_levels is not None:
            if isinstance(self.spp_levels, (str, bytes)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.spp_levels
            ):
                raise ValueError(
                    f"spp_levels must be positive ints (e.g. 6 3 2 1), got {self.spp_levels!r}"
                )
            object.__setattr__(self, "spp_levels", tuple(self.spp_levels))
        if self.checkpoint is not None:
            if self.pretrained:
                raise ValueError(
                    "pretrained and checkpoint exclude each other: the checkpoint already "
                    "holds the trunk's weights"
                )
            return
        if is_trunk_source(self.model):
            return
        if self.model_args is not None or self.feature_index is not None:
            raise ValueError("model_args and feature_index go with a trunk source as model")
        if self.model not in list_models():
            raise ValueError(
                f"unknown model {self.model!r}; known models: {', '.join(list_models())}"
            )
        if self.pretrained and self.model not in pretrained_models():
            raise ValueError(
                f"no pretrained weights for {self.model!r}; pretrained models: "
                f"{', '.join(pretrained_models())} (or start from a classifier run with "
                "checkpoint)"
            )


# Settings each stage's result depends on, beyond those of the stages before it.
_STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "finetune": (
        "proposals", "max_proposals", "scales", "max_long_side", "cache_dtype",
        "finetune_iterations", "finetune_lr", "finetune_step", "finetune_batch",
        "positive_fraction", "momentum", "weight_decay", "seed",
    ),
    "end_to_end": ("e2e_iterations", "e2e_lr"),
    "svm": ("svm_c", "svm_positive_weight", "svm_initial_negatives", "hard_negative_rounds"),
}  # fmt: skip


class _StageStamps:
    """What each stage's result depends on: ``base`` and the settings of it and every
    stage before it (:data:`_STAGE_SETTINGS`), the stamp of its ``settings.json`` record.

    Args:
        config: the run's settings.
        base: what every stage depends on beyond ``config`` (starting weights, images).
    """

    def __init__(self, config: DetectorTrainConfig, base: dict[str, Any]) -> None:
        self.settings = dict(base)
        self.config = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists

    def of(self, stage: str) -> dict[str, Any]:
        """The stamp of ``stage``; call once per stage, in the order of the stages."""
        self.settings.update({k: self.config[k] for k in _STAGE_SETTINGS[stage]})
        return dict(self.settings)
