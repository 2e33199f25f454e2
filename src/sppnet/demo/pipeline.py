"""The demo's main entry: :func:`run_demo` runs the stages in order and writes the report.

Each stage is one call of the shared :class:`~sppnet.engine.stages.StageRunner`: its result
is recorded in ``DIR/stages/<stage>.json`` (with its time), and a rerun reuses it.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sppnet._atomic import atomic_write_text
from sppnet.demo._common import JSON_OPTIONS, Log, _usable_cpus, cpu_name
from sppnet.demo.classification import (
    _classifier_config,
    _data_stage,
    _eval_stage,
    _train_stage,
    _transfer_stage,
)
from sppnet.demo.config import _FORMAT, DEMO_STAGES, DemoConfig, demo_config
from sppnet.demo.detection import (
    _detector_config,
    _detector_stage,
    _eval_detection_stage,
    _proposals_stage,
)
from sppnet.demo.pictures import _pictures_stage
from sppnet.demo.report import _report
from sppnet.engine.json_io import read_json, write_json
from sppnet.engine.stages import StageRunner

__all__ = ["run_demo"]


def _seed_everything(seed: int, stage: int) -> None:
    """Seed torch, numpy's global generator (liblinear's SVM shuffling) and ``random``."""
    derived = int(np.random.SeedSequence([seed, stage]).generate_state(1)[0])
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)


@contextlib.contextmanager
def _isolated_globals(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op threads; restore the caller's threads and RNG states."""
    before = torch.get_num_threads()
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


class _Stages:
    """The demo's stages on a :class:`~sppnet.engine.stages.StageRunner`.

    Each stage's record is ``DIR/stages/<stage>.json`` (its result and time, stamped with
    the stage files' format), its log lines are numbered ``[demo i/n]``, and it runs
    with torch, numpy and ``random`` seeded from ``(seed, stage)``.
    """

    def __init__(self, root: Path, seed: int, log: Log) -> None:
        self.dir = root / "stages"
        self.seed = seed
        self.log = log
        self.runner = StageRunner(log, **JSON_OPTIONS)

    @property
    def seconds(self) -> dict[str, float]:
        return self.runner.seconds

    @property
    def reused(self) -> list[str]:
        return self.runner.reused

    def run(self, name: str, title: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        index = DEMO_STAGES.index(name)

        def seeded() -> dict[str, Any]:
            _seed_everything(self.seed, index)
            return work()

        return self.runner.run(
            name,
            seeded,
            record=self.dir / f"{name}.json",
            stamp={"format": _FORMAT},
            title=f"[demo {index + 1}/{len(DEMO_STAGES)}] {title}",
        )


def run_demo(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    quick: bool = False,
    from_scratch: bool = False,
    progress: bool = True,
    log: Log | None = print,
    config: DemoConfig | None = None,
) -> dict[str, Any]:
    """Run the whole demo into ``out`` (module docstring); resumable stage by stage.

    Args:
        out: the output folder ``DIR``.
        seed: seed of the data generator, the training runs and every other random draw.
        quick: the quick settings (:func:`demo_config`).
        from_scratch: the paper's ZF-5 from random weights instead of the pretrained trunk.
        progress: tqdm bars inside the stages.
        log: called with one line per stage start and end (timings) and the report's
            path; ``None`` is quiet.
        config: explicit settings instead of :func:`demo_config` (tests use tiny ones).

    Returns:
        The metrics written to ``DIR/metrics.json``: ``"classification"`` (per model, per
        view top-1 / top-5 error in percent), ``"detection"`` (mAP and per-class AP as
        fractions, time per image, the R-CNN comparison), ``"stage_seconds"`` and more.

    Raises:
        ValueError: ``out`` holds a demo run with other settings or another seed.
        TypeError: ``config`` is not a :class:`DemoConfig`.
    """
    config, label = _resolve_config(seed, quick, from_scratch, config)
    say: Log = log if log is not None else (lambda _line: None)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    _check_settings(
        root, {"format": _FORMAT, "seed": seed, "quick": quick, "config": config.to_dict()}
    )

    threads = _usable_cpus()
    stages = _Stages(root, seed, say)
    with _isolated_globals(threads):
        say(f"[demo] {label} run into {root} (seed {seed}, {threads} threads)")
        metrics = _run_stages(root, config, seed, progress, stages)
    metrics.update(
        {
            "seed": seed,
            "quick": quick,
            "settings": label,
            "threads": threads,
            "cpu": cpu_name(),
            "config": config.to_dict(),
            "stage_seconds": dict(stages.seconds),
            "reused_stages": list(stages.reused),
            "total_seconds": float(sum(stages.seconds.values())),
            "units": {
                "classification": "top-1 / top-5 error in percent",
                "detection": "AP and mAP as fractions in [0, 1] (None: no ground truth)",
                "timing": "seconds per image (detection) or per stage",
            },
        }
    )
    write_json(root / "metrics.json", metrics)
    atomic_write_text(root / "report.md", _report(metrics))
    say(
        f"[demo] done: {metrics['total_seconds']:.0f} s of stage time; report: {root / 'report.md'}"
    )
    return metrics


def _resolve_config(
    seed: int, quick: bool, from_scratch: bool, config: DemoConfig | None
) -> tuple[DemoConfig, str]:
    """The run's settings and their label (``"quick"``, ``"full from-scratch"``, ``"custom"``).

    Raises:
        ValueError: a bad ``seed``.
        TypeError: ``config`` is not a :class:`DemoConfig`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    label = ("quick" if quick else "full") + (" from-scratch" if from_scratch else "")
    if config is None:
        config = demo_config(quick, from_scratch)
    elif not isinstance(config, DemoConfig):
        raise TypeError(f"config must be a DemoConfig, got {type(config).__name__}")
    elif config != demo_config(quick, from_scratch):
        label = "custom"
    return config, label


def _check_settings(root: Path, settings: Mapping[str, Any]) -> None:
    """Record ``settings`` in ``root/demo_config.json``, or check a rerun's against them.

    Raises:
        ValueError: ``root`` holds a demo run with other settings (the differing ones named).
    """
    settings_file = root / "demo_config.json"
    if not settings_file.is_file():
        write_json(settings_file, settings)
        return
    stored = read_json(settings_file)
    if stored == settings:
        return
    changed = sorted(
        k
        for k in set(stored.get("config", {})) | set(settings["config"])
        if stored.get("config", {}).get(k) != settings["config"].get(k)
    )
    if stored.get("seed") != settings["seed"]:
        changed.insert(0, "seed")
    raise ValueError(
        f"{root} holds a demo run with other settings (differing: "
        f"{', '.join(changed) or 'format'}); rerun with the same --seed / --quick "
        "or choose another --out"
    )


def _run_stages(
    root: Path, config: DemoConfig, seed: int, progress: bool, stages: _Stages
) -> dict[str, Any]:
    """The stages of :func:`run_demo`; returns the metrics (without run-level facts)."""
    data = stages.run("data", "built-in data", lambda: _data_stage(root, config, seed, progress))
    classification = _classification_stages(root, config, seed, progress, stages)
    spp, no_spp = classification["SPP"], classification["no SPP"]
    transfer = stages.run(
        "transfer",
        f"transfer: {config.model} SPP features of the full image / crop / warp + linear SVMs",
        lambda: _transfer_stage(root, _view(root), config, root / spp["run"], progress),
    )
    detector, detection = _detection_stages(root, config, seed, progress, stages, spp["run"])
    train_runs = {"SPP": spp, "no SPP": no_spp}
    pictures = stages.run(
        "pictures",
        "pictures",
        lambda: _pictures_stage(root, _voc(root), _view(root), config, train_runs, detection),
    )
    return {
        "data": data,
        "classification": {
            "SPP": _model_summary(
                f"SPP, multi-size ({config.crop} / {config.small_crop})",
                spp,
                classification["eval_spp"],
            ),
            "no SPP": _model_summary(
                f"no SPP, single-size ({config.crop})", no_spp, classification["eval_no_spp"]
            ),
        },
        "transfer": transfer,
        "detection": {
            **{k: v for k, v in detection.items() if k not in ("detections_file", "pr_curves")},
            "train_images": detector["images"],
            "train": detector,
        },
        "pictures": pictures,
    }


def _view(root: Path) -> str:
    """The classification view of the built-in data."""
    return str(root / "data" / "classification")


def _voc(root: Path) -> str:
    """The VOC-layout built-in data."""
    return str(root / "data" / "voc")


def _classification_stages(
    root: Path, config: DemoConfig, seed: int, progress: bool, stages: _Stages
) -> dict[str, dict[str, Any]]:
    """Train and test the SPP-net and its no-SPP twin: ``"SPP"``, ``"no SPP"`` (training
    runs) and ``"eval_spp"``, ``"eval_no_spp"`` (their test errors)."""
    view, runs_dir = _view(root), root / "classifier"
    spp_cfg = _classifier_config(config, view, runs_dir / "spp", spp=True, seed=seed)
    no_spp_cfg = _classifier_config(config, view, runs_dir / "no_spp", spp=False, seed=seed)
    frozen = config.pretrained and config.trunk_lr_scale == 0
    spp = stages.run(
        "classifier_spp",
        f"training the {config.model} SPP-net"
        f"{' (frozen ImageNet trunk)' if frozen else ''}"
        f", multi-size {config.crop}/{config.small_crop}, {config.epochs} epochs",
        lambda: _train_stage(spp_cfg, root, progress),
    )
    no_spp = stages.run(
        "classifier_no_spp",
        f"training the no-SPP twin, single-size {config.crop}, {config.epochs} epochs",
        lambda: _train_stage(no_spp_cfg, root, progress),
    )
    eval_spp = stages.run(
        "eval_spp",
        "testing the SPP-net: 1 crop, 10 views, full image, multi-view",
        lambda: _eval_stage(str(root / spp["run"]), view, config, progress),
    )
    eval_no_spp = stages.run(
        "eval_no_spp",
        "testing the no-SPP twin: 1 crop, 10 views",
        lambda: _eval_stage(str(root / no_spp["run"]), view, config, progress),
    )
    return {"SPP": spp, "no SPP": no_spp, "eval_spp": eval_spp, "eval_no_spp": eval_no_spp}


def _detection_stages(
    root: Path, config: DemoConfig, seed: int, progress: bool, stages: _Stages, spp_run: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Proposals, the detector and its test; returns ``(detector, detection)`` results."""
    voc = _voc(root)
    det_cfg = _detector_config(config, root, voc, str(root / spp_run), seed)
    stages.run(
        "proposals",
        f"{config.proposals.replace('_', ' ')} proposals (up to {config.max_proposals} per image)",
        lambda: _proposals_stage(root, voc, config, progress),
    )
    detector = stages.run(
        "detector",
        f"training the detector ({config.finetune_iterations} fine-tuning iterations, SVMs, "
        "box regression)",
        lambda: _detector_stage(det_cfg, progress, stages.log),
    )
    detection = stages.run(
        "eval_detection",
        f"testing the detector on {config.detection_test_images} images, R-CNN on "
        f"{config.rcnn_images}",
        lambda: _eval_detection_stage(root, voc, config, progress),
    )
    return detector, detection


def _model_summary(title: str, run: Mapping[str, Any], ev: Mapping[str, Any]) -> dict[str, Any]:
    """One classifier's line of the metrics: its training run and its test errors."""
    return {
        "title": title,
        "epochs": run["epochs"],
        "train_seconds": run["train_seconds"],
        "best_val_top1_error_pct": run["best_val_top1_error_pct"],
        "epoch": ev["epoch"],
        "test_images": ev["test_images"],
        "views": ev["views"],
        "history": run["history"],
    }
