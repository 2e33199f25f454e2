"""Classification commands: ``models``, ``train``, ``eval``, ``predict``.

Each handler parses nothing itself: it reads the parsed options, calls the engine and
prints. torch and the engine are imported inside the handlers, so ``--help`` stays fast.

Examples:
    sppnet models --input 224 180 137x251
    sppnet train --builtin --out runs/tiny --width 0.125 --epochs 3
    sppnet eval --checkpoint runs/tiny --data runs/tiny/data/classification
    sppnet predict photo.jpg --top 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sppnet.cli._common import parse_size, print_table, require_images, torchrun_rank
from sppnet.cli.device import add_device_option, resolve_device
from sppnet.cli.inputs import add_image_inputs
from sppnet.cli.options import (
    LITE_MODELS,
    add_builtin_sizes,
    add_checkpoint_options,
    add_command,
    add_json,
    add_loader_options,
    add_no_progress,
    add_trunk_options,
    add_trust_model,
    check_timm_model,
    model_args_of,
)
from sppnet.errors import UserError

__all__ = ["add_eval_parser", "add_models_parser", "add_predict_parser", "add_train_parser"]

# the options of `sppnet train` that are ClassifierTrainConfig fields of the same name
_TRAIN_FIELDS = (
    "model", "pretrained", "recipe", "size_mode", "width", "fc_dim", "epochs", "batch_size",
    "lr", "trunk_lr_scale", "crop", "small_crop", "shorter", "max_side", "dropout", "lighting",
    "seed", "workers", "plateau_patience", "cache_views", "feature_index", "spp_mode",
    "fc_layers", "feature_layer", "train_from", "freeze_bn", "optimizer", "lr_schedule",
    "warmup_epochs", "weight_decay",
)  # fmt: skip


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from sppnet.models import create_model, list_models

    sizes = args.input or [(224, 224), (180, 180)]
    head = ["model", "stride", "offset", "channels", "min input", "params (M)"]
    head += [f"conv map @{h}x{w}" for h, w in sizes]
    rows = []
    for name in list_models():
        # the pretrained trunks have fixed widths (their weights): shown at 1.0
        lite = name.startswith("efficientnet_lite")
        # built on the meta device: shapes only, no weights allocated or initialised (~10x
        # faster; the sizes come from the architecture alone)
        with torch.device("meta"):
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
    print_table(head, rows)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from sppnet.classify.evaluate import MULTIVIEW_SCALES, evaluate_classifier
    from sppnet.data.image_folder import ImageFolder
    from sppnet.engine.checkpoint import load_classifier

    model, meta = load_classifier(
        args.checkpoint, args.which, map_location=resolve_device(args.device),
        trust_model_code=args.model or False,
    )  # fmt: skip
    split = None if args.split == "all" else args.split
    # the dataset raises on a bad image; evaluate_classifier leaves it out of every count
    dataset = ImageFolder(args.data, split=split)
    require_images(dataset, args)
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
    print(
        f"{meta.get('model', {}).get('name', '?')} epoch {meta.get('epoch')} on {args.data} "
        f"(split {args.split}, {done['num_images']} images, crop {crop}, shorter side {shorter})"
    )
    _print_eval_results(results, scales, done["skipped_files"], len(dataset))
    if args.json:
        from sppnet._atomic import atomic_write_json

        report = {
            "checkpoint": str(meta.get("path", args.checkpoint)),
            "epoch": meta.get("epoch"),
            "data": str(args.data),
            "split": args.split,
            "num_images": done["num_images"],
            "skipped_files": done["skipped_files"],
            "crop": crop,
            "shorter": shorter,
            "scales": list(scales),
            "results": results,
        }
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _print_eval_results(
    results: dict[str, dict | None], scales: list[int], skipped: list[str], total: int
) -> None:
    """The error table of ``sppnet eval``, its multiview scales, undecodable images."""
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
    print_table(head, rows)
    if "multiview" in results:
        print(f"multiview scales: {', '.join(map(str, scales))} (+ 2 full-image views)")
    if skipped:
        print(
            f"warning: {len(skipped)} undecodable image(s) left out of the {total}: "
            f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}",
            file=sys.stderr,
        )


def _cmd_train(args: argparse.Namespace) -> int:
    import contextlib

    from sppnet._run_lock import run_lock
    from sppnet.engine.checkpoint import find_checkpoint

    rank = torchrun_rank()
    if args.resume and find_checkpoint(args.out) is None:
        raise UserError(_nothing_to_resume(Path(args.out)))
    with run_lock(args.out, "sppnet train") if rank == 0 else contextlib.nullcontext():
        return _train(args, rank)


def _nothing_to_resume(out: Path) -> str:
    """The error of ``train --resume`` where no checkpoint was written: what is there."""
    if not out.is_dir():
        there = "it does not exist"
    else:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
        there = "it holds " + (", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
        there = there if names else "it is empty"
    return (
        f"--resume: --out {out} holds no checkpoint to resume from ({there}); run without "
        "--resume to start a new run there, or name the folder of the run to continue"
    )


def _train(args: argparse.Namespace, rank: int) -> int:
    """``sppnet train`` once ``--out`` is this run's (see :func:`_cmd_train`)."""
    import dataclasses

    from sppnet.classify.builtin_data import shared_builtin_data
    from sppnet.classify.train import (
        train_classifier,
    )
    from sppnet.engine.checkpoint import find_checkpoint

    resuming = args.resume and find_checkpoint(args.out) is not None
    # Validates every flag (e.g. --pretrained with a model without weights) before the
    # built-in data are generated.
    config = train_config_of(args, resuming)
    if args.data is None and not args.builtin and not resuming:
        args.builtin = True  # no data given: the built-in dataset
    if args.builtin:
        root = shared_builtin_data(Path(args.out) / "data", args.builtin_sizes, rank, log=_note)
        config = dataclasses.replace(config, data=str(root / "classification"))
    elif args.data is not None:
        config = dataclasses.replace(config, data=args.data)
    result = train_classifier(
        config,
        resume=args.resume,
        progress=not args.no_progress,
        resume_lr=args.lr if resuming else None,  # --resume --lr X continues at X
        trust_model_code=args.model or False,  # only the path the user typed is imported
    )
    if rank == 0 and result.history:
        last = result.history[-1]
        val = last["val_top1_error"]
        val_text = "n/a" if val is None else f"{100 * val:.2f}%"
        config = config.resolved()
        view = "whole image" if config.size_mode == "variable" else "1 center crop"
        print(
            f"epoch {last['epoch']}/{config.epochs}: train loss {last['train_loss']:.4f}, "
            f"train error {100 * last['train_error']:.2f}%, val top-1 error {val_text} "
            f"({view}), lr {last['lr']:g}"
        )
        print(f"checkpoint: {result.checkpoint}")
        print(f"logs: {Path(args.out) / 'log.csv'}, {Path(args.out) / 'curves.png'}")
    return 0


def train_config_of(args: argparse.Namespace, resuming: bool) -> Any:
    """The :class:`~sppnet.classify.config.ClassifierTrainConfig` that ``sppnet train``'s
    options ask for: the options given, over the resumed run's settings (``resuming``) or
    over the unset defaults that the run's recipe fills in.

    Raises:
        ValueError / TypeError: an invalid option value (the config's own checks).
        UntrustedModelCodeError: resuming an import-path model not named again.
    """
    import dataclasses

    from sppnet.classify.train import ClassifierTrainConfig, load_train_config

    overrides = {name: getattr(args, name) for name in _TRAIN_FIELDS}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    check_timm_model(args.model)
    if args.model_args is not None:
        overrides["model_args"] = model_args_of(args)
    if args.no_spp:
        overrides["spp_levels"] = None
    elif args.spp_levels is not None:
        overrides["spp_levels"] = tuple(args.spp_levels)
    base = ClassifierTrainConfig(out=args.out)
    if resuming:
        base = load_train_config(args.out)  # the run's settings; flags given override
        _check_trusted(base.model, args.model, f"{args.out}'s checkpoint")
    if args.device is not None or not resuming:  # a resumed run keeps its own device
        overrides["device"] = resolve_device(args.device)
    return dataclasses.replace(base, out=args.out, **overrides)


def _check_trusted(recorded: str, given: str | None, where: str) -> None:
    """A recorded import-path model is built only when ``--model`` names it again.

    Raises:
        UntrustedModelCodeError: it is an import path and ``given`` is another.
    """
    from sppnet.models.trunk_source import UntrustedModelCodeError, is_import_path

    if is_import_path(recorded) and given != recorded:
        raise UntrustedModelCodeError(recorded, where)


def _note(line: str) -> None:
    """A progress note on stderr (stdout keeps the results)."""
    print(line, file=sys.stderr)


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm.auto import tqdm

    from sppnet.classify.predictor import load_classifier
    from sppnet.cli.inputs import expand_images

    for option, value in (("--top", args.top), ("--size", args.size)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be >= 1, got {value}")
    images, _ = expand_images(args.images)
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing and not args.skip_bad:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    source = args.checkpoint if args.checkpoint is not None else args.model
    predictor = load_classifier(source, args.which or "latest", resolve_device(args.device))
    if args.size is not None:
        predictor.size = predictor.shorter = args.size
    bad = 0
    for path in tqdm(images, unit="img", disable=True if args.no_progress else None):
        try:
            result = _predict_file(predictor, path, args.view, args.top)
        except (ValueError, OSError) as err:
            if not args.skip_bad:
                raise
            print(f"skipped: {err}", file=sys.stderr)
            bad += 1
            continue
        image = result["image"]
        print(f"{path} ({image.width}x{image.height}):")
        labels, probs = result["labels"].tolist(), result["scores"].tolist()
        ranked = zip(labels, result["names"], probs, strict=True)
        for rank, (index, name, prob) in enumerate(ranked, start=1):
            print(f"  {rank}. {name:<32} {100 * prob:5.1f}%  (class {index})")
    if bad:
        print(f"skipped {bad} of {len(images)} images that could not be read", file=sys.stderr)
    return 1 if bad == len(images) else 0


def _predict_file(predictor: Any, path: Any, view: str | None, top: int) -> dict[str, Any]:
    """One file's prediction, with its PIL image under ``"image"``; errors name the file."""
    from sppnet.data.decode import load_image
    from sppnet.limits import ImageTooLargeError

    image = load_image(path)  # its errors name the file
    try:
        (result,) = predictor.predict(image, view=view, top=top)
    except ValueError as err:
        cause = err.__cause__ if isinstance(err.__cause__, ValueError) else err
        if isinstance(cause, ImageTooLargeError):
            raise cause.at(path) from None
        raise ValueError(f"{path}: {cause}") from None
    return {**result, "image": image}


_MODELS_TEXT = r"""
list the networks (ZF-5, Convnet*-5, Overfeat-5/7) and their geometry

List the registered networks with their conv5 stride, receptive-field offset, channels,
minimum input size and parameter count.

example:
  sppnet models --width 0.25 --input 224 180 137x251
"""


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet models``."""
    models = add_command(sub, "models", _cmd_models, _MODELS_TEXT)
    models.add_argument(
        "--width", type=float, default=1.0, help="channel width multiplier (default 1.0)"
    )
    models.add_argument(
        "--input",
        type=parse_size,
        nargs="+",
        metavar="SIZE",
        help="input sizes to show conv map sizes for: 224 or HEIGHTxWIDTH (default 224 180)",
    )


_EVAL_TEXT = r"""
top-1/top-5 error of a trained classifier with the paper's test views

Evaluate a checkpoint on an image-folder split with the test views of Sec. 3.1.2-3.1.5: 1
center crop, the standard 10 views, the full image (shorter side 256, aspect kept) and
multi-view testing on feature maps (18 windows per scale pooled from the conv maps of the
whole image, plus 2 full-image views).

example:
  sppnet eval --checkpoint runs/zf5 --data data/builtin/cls --split test \
      --views center ten full multiview --json runs/zf5/eval.json
"""


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet eval``."""
    evaluate = add_command(sub, "eval", _cmd_eval, _EVAL_TEXT)
    add_checkpoint_options(evaluate, required=True)
    add_trust_model(evaluate)
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
    add_loader_options(evaluate, 64, "crops per forward pass")
    add_device_option(evaluate)
    evaluate.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave undecodable images out (how many: printed)",
    )
    add_json(evaluate)
    add_no_progress(evaluate, "no progress bar")


_TRAIN_TEXT = r"""
train a classifier: single-, multi-, random- or variable-size (Sec. 2.3, 3.1)

Train an SPP-net classifier on an image-folder dataset (one folder per class, optional
splits/train.txt and splits/val.txt) or on the built-in data. Checkpoints (every epoch,
atomic), log.csv/log.json and curves.png go to --out; --resume continues a killed run with
the same result as an unbroken one. Runs on several processes with torchrun (--batch-size is
then the global batch).

examples:
  # a tiny run on built-in data (generated once into runs/tiny/data), ~30 s on a CPU
  sppnet train --builtin --out runs/tiny --width 0.125 --fc-dim 64 --crop 64 \
      --small-crop 52 --shorter 72 --size-mode multi --epochs 3 --batch-size 32
  # the paper's ZF-5 with multi-size training on your own image folders
  sppnet train --data data/caltech101 --out runs/zf5 --size-mode multi --device cuda
  # continue after a crash, or train longer
  sppnet train --out runs/zf5 --resume --epochs 90
  # the demo's way on shapes: the paper's schedule, fc6-fc8 (fc 1024) on a frozen
  # ImageNet EfficientNet-Lite0 trunk's stage-5 pyramid, then the trunk too at lr / 10
  sppnet train --builtin --out runs/lite0 --model efficientnet_lite0 --pretrained \
      --recipe paper --trunk-lr-scale 0 --cache-views 4 --size-mode multi --epochs 30 \
      --batch-size 32
  sppnet train --out runs/lite0 --resume --trunk-lr-scale 0.1 --cache-views 0 \
      --epochs 36
  # two processes (gloo on CPU, nccl on GPUs)
  torchrun --nproc_per_node=2 -m sppnet train --builtin --out runs/ddp --width 0.125 \
      --fc-dim 64 --crop 64 --small-crop 52 --shorter 72 --epochs 2 --batch-size 32
"""


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet train``."""
    from sppnet.cli.train_options import RECIPE_TEXT

    train = add_command(sub, "train", _cmd_train, _TRAIN_TEXT)
    train.epilog = f"{train.epilog}\n{RECIPE_TEXT}"
    source = train.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="DIR", help="image-folder dataset root")
    source.add_argument(
        "--builtin",
        action="store_true",
        help="generate the built-in dataset into OUT/data (once) and train on it "
        "(the default when --data is not given)",
    )
    add_builtin_sizes(train, "images per split of the built-in data (default 300 100 200)")
    train.add_argument("--out", required=True, metavar="DIR", help="run directory")
    train.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    train.add_argument(
        "--model",
        help="network: zf5, convnet5, overfeat5, overfeat7, efficientnet_lite0/1/2 (zf5), or "
        "an SPP head on your own trunk: package.module:factory (with --model-args; named "
        "again to --resume) or timm/NAME",
    )
    add_trunk_options(train)
    train.add_argument(
        "--pretrained",
        action="store_true",
        default=None,
        help="start from the model's ImageNet weights (efficientnet_lite0/1/2, or timm/NAME "
        "from timm's local cache; the fc layers start random) and train with the fine-tuning "
        "recipe (below)",
    )
    train.add_argument(
        "--cache-views",
        type=int,
        metavar="V",
        help="with --trunk-lr-scale 0: compute the frozen trunk's pooled vectors of V epochs "
        "of crops once, in memory, and replay them (epoch e trains on epoch e mod V's crops): "
        "many head epochs for the trunk time of V (0: off, default)",
    )
    _add_train_net_options(train)
    add_device_option(train, "; with --resume: the run's own")
    add_no_progress(train)


def _add_train_net_options(train: argparse.ArgumentParser) -> None:
    """The network and optimisation options of ``sppnet train``: the recipe's, then the
    fixed ones."""
    from sppnet.cli.train_options import add_recipe_options

    add_recipe_options(train)
    train.add_argument("--width", type=float, help="conv channel multiplier (1.0)")
    train.add_argument(
        "--fc-dim", type=int, help="fc6/fc7 width (the model's: 4096; 1024 for efficientnet_lite)"
    )
    train.add_argument(
        "--plateau-patience", type=int, help="epochs without val improvement before lr/10 (2)"
    )
    train.add_argument(
        "--crop", type=int,
        help="training crop side; the shorter side in the variable mode (224)",
    )  # fmt: skip
    train.add_argument("--small-crop", type=int, help="second size of multi/random modes (180)")
    train.add_argument("--shorter", type=int, help="shorter side before cropping (256)")
    train.add_argument("--max-side", type=int, help="variable mode: longer-side cap (2 x crop)")
    train.add_argument("--seed", type=int, help="random seed (0)")
    train.add_argument("--workers", type=int, help="data-loader worker processes (0)")


_PREDICT_TEXT = r"""
name what is in images: ImageNet classes, or a trained run's classes

Classify whole images (aspect ratio kept, shorter side --size). Without --checkpoint: the
pretrained EfficientNet-Lite ImageNet classifier and the 1,000 ImageNet class names; with
it: a classifier trained by `sppnet train`.

examples:
  sppnet predict photo.jpg other.png --top 5
  sppnet predict photo.jpg --model efficientnet_lite2
  sppnet predict crop.jpg --checkpoint runs/lite0 --which best
  # a folder (recursive) and a list file, the 10-view average, unreadable files skipped
  sppnet predict photos/ @more.txt --view ten --skip-bad
"""


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet predict``."""
    predict = add_command(sub, "predict", _cmd_predict, _PREDICT_TEXT)
    add_image_inputs(predict)
    predict.add_argument("--top", type=int, default=5, help="classes to show (default 5)")
    predict.add_argument(
        "--view", choices=("full", "center", "ten"),
        help="the whole image (default), the center crop, or the 10 crops averaged (a "
        "network without SPP: center by default, no full)",
    )  # fmt: skip
    predict.add_argument(
        "--skip-bad", action="store_true",
        help="skip images that cannot be read and count them (default: stop at the first)",
    )  # fmt: skip
    predict.add_argument(
        "--model",
        choices=LITE_MODELS,
        default="efficientnet_lite0",
        help="ImageNet network without --checkpoint (default efficientnet_lite0)",
    )
    predict.add_argument(
        "--size",
        type=int,
        help="shorter side in pixels (default: the network's ImageNet size, 224 for Lite0; a "
        "checkpoint's --shorter)",
    )
    add_checkpoint_options(
        predict, help="a `sppnet train` run to use", which_help="with --checkpoint"
    )
    add_device_option(predict)
    add_no_progress(predict)
