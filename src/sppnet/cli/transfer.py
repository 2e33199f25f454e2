"""Transfer commands: ``features`` (image representations) and ``svm`` (linear SVMs on them).

Examples:
    sppnet features --checkpoint runs/zf5 --data data/caltech101 --split all \\
        --layer spp --view full --out feats/caltech101
    sppnet svm --features feats/caltech101 --protocol caltech
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from sppnet.cli._common import require_images
from sppnet.cli.device import add_device_option, resolve_device
from sppnet.cli.options import (
    add_checkpoint_options,
    add_command,
    add_json,
    add_loader_options,
    add_no_progress,
)

if TYPE_CHECKING:  # the CLI imports torch only in the commands that need it
    from sppnet.engine.distributed import DistInfo

__all__ = ["add_features_parser", "add_svm_parser"]


def _cmd_svm(args: argparse.Namespace) -> int:
    from sppnet.transfer.svm import caltech_protocol, load_feature_dir, voc_classification_protocol

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
    _print_svm_result(args, meta, result)
    if args.json:
        from sppnet._atomic import atomic_write_json

        report = {
            "protocol": args.protocol,
            "features": str(args.features),
            "test_features": None if args.test_features is None else str(args.test_features),
            "meta": meta,
            "result": result,
        }
        atomic_write_json(args.json, _plain(report))
        print(f"wrote {args.json}")
    return 0


def _print_svm_result(args: argparse.Namespace, meta: dict, result: dict) -> None:
    """Per-class AP and mAP (voc), or per-split accuracies and their mean (caltech)."""
    desc = f"{meta.get('layer', '?')} features, view {meta.get('view', '?')}"
    if args.protocol == "voc":
        metric = "11-point AP" if not args.auc else "AP (area under the curve)"
        print(f"VOC classification, {desc}, C={result['C']:g}: {metric} per class")
        width = max(len(str(name)) for name in result["ap"])
        for name, ap in result["ap"].items():
            text = "n/a (no positives)" if math.isnan(ap) else f"{100 * ap:.2f}"
            print(f"  {str(name).ljust(width)}  {text}")
        print(f"mAP: {100 * result['map']:.2f}")
        return
    print(
        f"Caltech101 protocol, {desc}: {result['n_train']} train / up to "
        f"{result['n_test']} test images per class, {result['num_classes']} classes"
    )
    for i, (acc, seed, c) in enumerate(
        zip(result["accuracies"], result["seeds"], result["C"], strict=True)
    ):
        print(f"  split {i}: accuracy {100 * acc:.2f}% (seed {seed}, C={c:g})")
    print(f"mean accuracy: {100 * result['mean']:.2f} +- {100 * result['std']:.2f}%")


def _plain(value: object) -> object:
    """``value`` as JSON can hold it: NaN -> None, every key a string."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _features_model(args: argparse.Namespace, device: str) -> tuple[object, object]:
    """The network of ``sppnet features`` and its mean: a trained run, or a pretrained trunk.

    Returns:
        ``(model, mean)``: the SPPNet on ``device`` and the mean subtracted from 0..255
        pixels (a number, or a mean image as nested lists).

    Raises:
        ValueError: neither or both of --checkpoint and --pretrained, --model without
            --pretrained or naming a model without weights, fc6/fc7 of an untrained head.
    """
    from sppnet.models import EfficientNetLite, create_model, pretrained_models
    from sppnet.transfer.features import MAP_LAYERS

    sources = "--checkpoint DIR (a trained run) or --pretrained --model NAME (an ImageNet trunk)"
    if args.checkpoint is not None and args.pretrained:
        raise ValueError(f"give either {sources}, not both")
    if args.checkpoint is None and not args.pretrained:
        raise ValueError(f"give {sources}")
    if not args.pretrained:
        from sppnet.models.trunk_source import is_import_path

        if args.model is not None and not is_import_path(args.model):
            raise ValueError(
                "--model goes with --pretrained; a --checkpoint names its own model (--model "
                "with a checkpoint only names its trunk's import path again, to trust it)"
            )
        from sppnet.engine.checkpoint import load_classifier

        model, meta = load_classifier(
            args.checkpoint, args.which, map_location=device, trust_model_code=args.model or False
        )
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
    from sppnet.engine.distributed import process_group

    device = resolve_device(args.device)
    backend = "cuda" if device.startswith("cuda") else "cpu"  # nccl or gloo under torchrun
    with process_group(backend) as info:  # under torchrun: the batches dealt out to the ranks
        return _features(args, str(info.device) if info.distributed else device, info)


def _features(args: argparse.Namespace, device: str, info: DistInfo) -> int:
    import torch

    from sppnet.transfer.features import estimate_feature_bytes, extract_features

    model, mean = _features_model(args, device)
    if args.format == "voc":
        from sppnet.data.voc import VOCDetection

        dataset = VOCDetection(args.data, args.split)
    else:
        from sppnet.data.image_folder import ImageFolder

        dataset = ImageFolder(args.data, split=None if args.split == "all" else args.split)
    require_images(dataset, args)
    mean = torch.tensor(mean, dtype=torch.float32) if isinstance(mean, list) else float(mean)
    sizes = {"size": args.size, "crop": args.crop}
    n_bytes = estimate_feature_bytes(model, args.layer, args.view, len(dataset), **sizes)
    dim = n_bytes // (4 * len(dataset)) if len(dataset) else 0
    if info.is_main:
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
        progress=not args.no_progress and info.is_main,
        skip_bad=args.skip_bad,
        num_workers=args.workers,
        info=info,
        **sizes,
    )
    if not info.is_main:
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


_SVM_TEXT = r"""
linear SVMs on cached features: VOC 2007 mAP or the Caltech101 protocol

Train one-vs-rest linear SVMs (liblinear) on features written by `sppnet features` (Sec.
3.2-3.3; no augmentation, C chosen on a held-out 20% of the training images unless --C is
given). voc: one SVM per class on --features (images holding only difficult objects of a
class are ignored for it), per-class AP and mAP on --test-features (11-point, VOC 2007).
caltech: --n-train images per class for training and up to --n-test of the rest for testing,
--splits random splits, mean and std of the mean per-class accuracy (split seeds printed).

examples:
  sppnet svm --features feats/voc_trainval --test-features feats/voc_test \
      --protocol voc --json voc_svm.json
  sppnet svm --features feats/caltech101 --protocol caltech --n-train 30 \
      --n-test 50 --splits 10 --C 1.0
"""


def add_svm_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet svm``."""
    svm = add_command(sub, "svm", _cmd_svm, _SVM_TEXT)
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
    add_json(svm)


_FEATURES_TEXT = r"""
image representations (conv4 .. fc7) of a dataset for linear SVMs (Sec. 3.2)

Write the representation of every image of an image-folder or VOC-layout dataset, taken from
one layer of a trained network (conv4, conv5, pool5 = the 6x6 pyramid level, the whole SPP
vector, fc6, fc7), of the full image (shorter side --size, aspect kept), its center --crop,
or the image warped to --crop x --crop; l2-normalised. With --pretrained --model
efficientnet_lite0 (no checkpoint), an ImageNet trunk as it is: stage5, stage7 or head (the
map averaged: 112, 320, 1280 values) or spp (the model's SPP vector). Output:
OUT/features.npy (float32 [N, D], open with np.load(mmap_mode='r')), labels.npy, ids.json,
meta.json. Prints the size first; re-running the same command continues an interrupted
extraction.

examples:
  sppnet features --checkpoint runs/zf5 --data data/voc2007 --format voc \
      --split trainval --layer fc7 --view full --size 392 --out feats/voc_trainval
  sppnet features --checkpoint runs/zf5 --data data/caltech101 --split all \
      --layer spp --view full --out feats/caltech101
  # an ImageNet EfficientNet-Lite0 trunk, no training, then the Caltech101 protocol
  sppnet features --pretrained --model efficientnet_lite0 --data data/caltech101 \
      --split all --layer spp --view full --out feats/caltech101_lite0
  sppnet svm --features feats/caltech101_lite0 --protocol caltech
  # the batches shared out to 2 processes (--nnodes for several machines, --out on
  # a shared file system); rank 0 assembles the same features.npy as one process
  torchrun --nproc_per_node 2 -m sppnet features --checkpoint runs/zf5 \
      --data data/caltech101 --split all --layer spp --view full --out feats/c101
"""


def add_features_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet features``."""
    features = add_command(sub, "features", _cmd_features, _FEATURES_TEXT)
    add_checkpoint_options(features, help="a trained run or checkpoint directory")
    features.add_argument(
        "--pretrained",
        action="store_true",
        help="instead of --checkpoint: --model's ImageNet trunk, untrained fc layers (so no "
        "fc6/fc7)",
    )
    features.add_argument(
        "--model",
        help="with --pretrained: efficientnet_lite0, efficientnet_lite1 or _lite2; with a "
        "--checkpoint whose trunk is package.module:factory: that path again, to trust it",
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
    add_loader_options(features, 32, "images per batch")
    add_device_option(features)
    features.add_argument(
        "--skip-bad", action="store_true", help="leave out undecodable images (listed in meta)"
    )
    features.add_argument(
        "--no-normalize", action="store_true", help="keep the raw values (no l2 normalisation)"
    )
    add_no_progress(features, "no progress bar")
