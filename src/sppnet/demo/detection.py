"""The demo's detection stages: proposals, the detector, its test and R-CNN (Sec. 4).

``proposals`` computes selective search (or EdgeBoxes) on the training and test scenes in
parallel processes; ``detector`` runs :func:`~sppnet.detect.train.train_detector`;
``eval_detection`` measures VOC07 mAP on the test scenes and compares with R-CNN on the
first few (Table 10 in spirit).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sppnet.demo._common import Log, _finite_or_none, _settings, _usable_cpus
from sppnet.demo.config import DemoConfig
from sppnet.detect.data import keep_first_images

# Settings the detector run takes from DemoConfig unchanged (the same names).
_DETECTOR_SETTINGS = ("proposals", "max_proposals", "finetune_iterations", "finetune_lr")


def _proposal_method_kwargs(config: DemoConfig) -> dict[str, int]:
    """The :class:`~sppnet.detection.proposals.ProposalCache` settings train_detector uses."""
    key = "max_proposals" if config.proposals == "selective_search" else "max_boxes"
    return {key: config.max_proposals}


def _proposal_work(caches: dict[str, Any], job: tuple[str, str, str]) -> None:
    """Compute and store the proposals of one ``(cache root, image id, image file)`` job."""
    from sppnet.data.decode import load_image

    root, image_id, path = job
    caches[root].get(image_id, lambda: load_image(path))


def _compute_proposals(
    datasets: Sequence[tuple[Any, Path]],
    config: DemoConfig,
    progress: bool,
) -> None:
    """Compute the missing proposals of every ``(dataset, cache root)`` pair in parallel.

    OpenCV's selective search runs on one core; the images go to ``config.workers``
    processes (:func:`~sppnet.detect.proposal_workers.map_in_processes`: not threads, as
    selective search ranks its regions with the process-wide C ``rand()``). Each image's
    boxes depend on that image alone and each file is written atomically, so an
    interrupted stage resumes with the missing ones.
    """
    from sppnet.detect.proposal_workers import map_in_processes
    from sppnet.detection.proposals import ProposalCache

    settings = _proposal_method_kwargs(config)
    caches = {str(root): ProposalCache(root, config.proposals, **settings) for _, root in datasets}
    jobs: list[tuple[str, str, str]] = [  # (cache root, image id, image file)
        (str(root), image_id, str(dataset.image_path(i)))
        for dataset, root in datasets
        for i, image_id in enumerate(dataset.ids)
        if image_id not in caches[str(root)]
    ]
    workers = max(1, min(config.workers, _usable_cpus()))
    map_in_processes(_proposal_work, caches, jobs, workers, progress=progress and bool(jobs))


def _proposals_stage(root: Path, voc: str, config: DemoConfig, progress: bool) -> dict[str, Any]:
    """Proposals of the first training and test scenes, into the detector's caches."""
    from sppnet.data.voc import VOCDetection

    train = keep_first_images(VOCDetection(voc, "trainval"), config.detection_train_images)
    test = keep_first_images(VOCDetection(voc, "test"), config.detection_test_images)
    _compute_proposals(
        [
            (train, root / "detection" / "train" / "proposals"),
            (test, root / "detection" / "test" / "proposals"),
        ],
        config,
        progress,
    )
    return {"method": config.proposals, "train_images": len(train), "test_images": len(test)}


def _detector_config(config: DemoConfig, root: Path, voc: str, spp_run: str, seed: int) -> Any:
    from sppnet.detect.train import DetectorTrainConfig

    # Pretrained: the detector starts from the ImageNet trunk itself, fc6-fc8 new (Sec. 4.2
    # starts from the ImageNet network, not from a classifier of our crops). From scratch:
    # the SPP classifier's trunk and fc layers, the only pre-trained network there is.
    start: dict[str, Any] = (
        {"model": config.model, "pretrained": True, "fc_dim": config.detection_fc_dim}
        if config.pretrained
        else {"checkpoint": spp_run, "which": "best"}
    )
    return DetectorTrainConfig(
        data=voc,
        out=str(root / "detection" / "train"),
        split="trainval",
        **start,
        **_settings(config, _DETECTOR_SETTINGS),
        scales=config.detection_scales,
        max_images=config.detection_train_images,
        seed=seed,
        # A few hundred scenes: their pooled windows fit in memory and fine-tune faster
        # than pooling from conv maps per mini-batch (README, "The training cache").
        cache="windows",
    )


def _detector_stage(det_cfg: Any, progress: bool, log: Log) -> dict[str, Any]:
    """Train the detector (itself resumable stage by stage); the summary the report needs."""
    from sppnet.detect.train import train_detector

    summary = train_detector(det_cfg, progress=progress, log=lambda line: log(f"    {line}"))
    return {
        "images": summary["images"],
        "detector": summary["detector"],
        "timing": summary["timing"],
        "finetune_loss": summary["finetune_loss"],
        "svm": summary["svm"],
        "box_regression_samples": summary.get("box_regression_samples"),
    }


def _eval_detection_stage(
    root: Path, voc: str, config: DemoConfig, progress: bool
) -> dict[str, Any]:
    from sppnet.data.voc import VOCDetection
    from sppnet.detect.evaluate import evaluate_detector
    from sppnet.detect.io import load_detector
    from sppnet.detect.proposals import get_proposals
    from sppnet.visualize import detections_to_json, save_json

    detector, _ = load_detector(root / "detection" / "train" / "detector")
    test = keep_first_images(VOCDetection(voc, "test"), config.detection_test_images)
    test_dir = root / "detection" / "test"
    proposals = get_proposals(test, config.proposals, test_dir / "proposals", config.max_proposals)
    result = evaluate_detector(
        detector,
        test,
        proposals,
        out=test_dir,
        rcnn_images=config.rcnn_images,
        rcnn_size=config.crop,
        progress=progress,
    )
    # Label 0 is the background in the visualisation's convention; the detector's labels
    # are 0..K-1 into the dataset's classes.
    names = ["__background__", *detector.class_names]
    detections = []
    for i, image_id in enumerate(test.ids):
        d = result["detections"][image_id]
        shifted = {"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] + 1}
        detections.append(
            detections_to_json(shifted, names, image=image_id, image_size=test.sizes[i])
        )
    save_json({"class_names": names, "images": detections}, test_dir / "detections.json")
    rcnn = result.get("rcnn")
    return {
        "images": result["images"],
        "classes": detector.class_names,
        "map": _finite_or_none(result["map"]),
        "ap": {k: _finite_or_none(v) for k, v in result["ap"].items()},
        "timing": result["timing"],
        "windows_per_image": float(np.mean([p.shape[0] for p in proposals.values()])),
        "scales": list(detector.scales),
        "rcnn": None
        if rcnn is None
        else {
            "images": rcnn["images"],
            "map": _finite_or_none(rcnn["map"]),
            "spp_map": _finite_or_none(rcnn["spp_map"]),
            "timing": rcnn["timing"],
            "spp_timing": rcnn["spp_timing"],
            "speedup": rcnn["speedup"],
            "windows_per_image": rcnn["windows_per_image"],
            "size": config.crop,
        },
    }
