"""Detection commands: ``train-det``, ``eval-det`` and ``detect``.

Examples:
    sppnet train-det --checkpoint runs/cls --out runs/det --proposals edge_boxes
    sppnet eval-det --detector runs/det --data runs/det/data/voc --split test
    sppnet detect photo.jpg --detector runs/det --out detections
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from sppnet.cli._common import print_timing, require_images, torchrun_rank
from sppnet.cli.device import add_device_option, resolve_device
from sppnet.cli.inputs import add_image_inputs
from sppnet.cli.options import (
    add_builtin_sizes,
    add_checkpoint_options,
    add_command,
    add_detection_data,
    add_detector_settings,
    add_no_progress,
    add_proposal_options,
    add_trunk_options,
    add_trust_model,
    check_timm_model,
    model_args_of,
)
from sppnet.errors import UserError

if TYPE_CHECKING:  # the CLI imports torch only in the commands that need it
    from sppnet.engine.distributed import DistInfo

__all__ = ["add_detect_parser", "add_eval_det_parser", "add_train_det_parser"]

# the options of `sppnet train-det` that are DetectorTrainConfig fields of the same name
_TRAIN_DET_FIELDS = (
    "checkpoint", "which", "model", "width", "fc_dim", "spp_levels", "proposals",
    "max_proposals", "finetune_iterations", "finetune_lr", "e2e_iterations", "e2e_lr",
    "svm_c", "max_images", "seed", "proposal_workers", "cache", "images", "feature_index",
    "fix_sizes",
)  # fmt: skip


def _cmd_train_det(args: argparse.Namespace) -> int:
    import contextlib

    from sppnet._run_lock import run_lock

    with (
        run_lock(args.out, "sppnet train-det")
        if torchrun_rank() == 0
        else (contextlib.nullcontext())
    ):
        return _train_det(args)


def _train_det(args: argparse.Namespace) -> int:
    """``sppnet train-det`` once ``--out`` is this run's (see :func:`_cmd_train_det`)."""
    import dataclasses
    from pathlib import Path

    from sppnet.detect.train import DetectorTrainConfig, train_detector

    check_timm_model(args.model)  # before the built-in data are generated
    if args.checkpoint is not None:
        _check_network_options(args)
    data, split = args.data, args.split
    if data is None and args.images is not None:
        raise UserError("--images needs --data: the COCO annotation file of those images")
    if data is None:
        from sppnet.classify.builtin_data import shared_builtin_data

        root = Path(args.out) / "data"
        shared_builtin_data(root, args.builtin_sizes, torchrun_rank(), log=_note)
        data = str(root / "voc")
        split = split or "train"
    overrides: dict[str, Any] = {name: getattr(args, name) for name in _TRAIN_DET_FIELDS}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    overrides["device"] = resolve_device(args.device)
    if args.scales is not None:
        overrides["scales"] = tuple(args.scales)
    if args.no_box_regression:
        overrides["box_regression"] = False
    if args.pretrained:
        overrides["pretrained"] = True
    if args.model_args is not None:
        overrides["model_args"] = model_args_of(args)
    if args.classes is not None:
        from sppnet.detect.data import parse_classes

        overrides["classes"] = tuple(parse_classes(args.classes))
    config = dataclasses.replace(
        DetectorTrainConfig(data=data, out=args.out, split=split or "trainval"), **overrides
    )
    summary = train_detector(
        config,
        progress=not args.no_progress,
        log=print,
        trust_model_code=args.model or False,
        warn=lambda line: print(line, file=sys.stderr),
    )
    if summary["detector"] is None:
        return 0  # a torchrun rank other than 0: its share of the cache is written
    print_timing("time per stage (s, whole training set)", summary["timing"])
    print(f"detector: {summary['detector']}")
    return 0


def _check_network_options(args: argparse.Namespace) -> None:
    """With ``--checkpoint`` the network is the checkpoint's: ``--model``, ``--width``,
    ``--fc-dim`` and ``--spp-levels`` may only repeat its values, and ``--pretrained`` (other
    weights) is refused, rather than silently ignored.

    Raises:
        FileNotFoundError: no checkpoint under ``--checkpoint``.
        UserError: an option that disagrees with the checkpoint's network.
    """
    from sppnet.engine.checkpoint import find_checkpoint
    from sppnet.engine.safe_load import load_json_file

    if args.pretrained:
        raise UserError(
            f"--pretrained with --checkpoint {args.checkpoint}: the network and its weights "
            "are the checkpoint's; drop one of them"
        )
    found = find_checkpoint(args.checkpoint, args.which or "best")
    if found is None:
        raise FileNotFoundError(f"no checkpoint found under {args.checkpoint!r}")
    state = load_json_file(found / "state.json")
    model = dict(state.get("model") or {}) if isinstance(state, dict) else {}
    given = {"--model": (args.model, "name"), "--width": (args.width, "width"),
             "--fc-dim": (args.fc_dim, "fc_dim"),
             "--spp-levels": (args.spp_levels, "spp_levels")}  # fmt: skip
    differ = [
        f"{option} {_shown(value)} (the checkpoint's: {_shown(model[key])})"
        for option, (value, key) in given.items()
        if value is not None and key in model and _shown(value) != _shown(model[key])
    ]
    if differ:
        raise UserError(
            f"{', '.join(differ)} disagree with --checkpoint {found}, whose network is used; "
            "drop these options, or drop --checkpoint to build that network"
        )


def _shown(value: object) -> str:
    """An option value as typed: ``6 3 2 1`` for a list."""
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _note(line: str) -> None:
    """A progress note on stderr (stdout keeps the results)."""
    print(line, file=sys.stderr)


def _detector_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "scales": None if args.scales is None else tuple(args.scales),
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "nms_threshold": args.nms_threshold,
    }


def _load_detector_for(args: argparse.Namespace, device: str) -> Any:
    """The ``--detector`` of ``eval-det`` or ``detect`` on ``device``, with ``--svd-ranks``
    applied."""
    from sppnet.detect.io import load_detector
    from sppnet.models import compress_fc

    detector, _ = load_detector(
        args.detector, map_location=device, trust_model_code=args.model or False,
        **_detector_overrides(args),
    )  # fmt: skip
    if args.svd_ranks is not None:
        detector.model = compress_fc(detector.model, *args.svd_ranks)
    return detector


def _cmd_eval_det(args: argparse.Namespace) -> int:
    from sppnet.engine.distributed import process_group

    device = resolve_device(args.device)
    backend = "cuda" if device.startswith("cuda") else "cpu"  # nccl or gloo under torchrun
    with process_group(backend) as info:  # under torchrun: the images dealt out to the ranks
        detector = _load_detector_for(args, str(info.device) if info.distributed else device)
        return _eval_det(args, detector, info)


def _eval_det(args: argparse.Namespace, detector: Any, info: DistInfo) -> int:
    from pathlib import Path

    from sppnet._atomic import atomic_write_json
    from sppnet.detect.data import open_detection_dataset
    from sppnet.detect.evaluate import evaluate_detector
    from sppnet.detect.proposals import get_proposals

    shown = not args.no_progress and info.is_main
    # the detector's own classes set the labels (it records them); a COCO file's categories
    # are matched to them by name
    dataset = open_detection_dataset(
        args.data,
        args.split,
        images=args.images,
        classes=detector.class_names,
        fix_sizes=args.fix_sizes,
    )
    if args.images is not None and len(dataset) == 0:
        raise UserError(f"--data {args.data} lists no images")
    require_images(dataset, args)
    from sppnet.detection.scales import check_dataset_scales

    check_dataset_scales(dataset, detector.scales, detector.max_long_side, args.max_images)
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
        progress=shown,
        info=info,
        out=out,
        rcnn_images=args.rcnn_images,
        max_images=args.max_images,
    )
    if result is None:
        return 0  # a torchrun rank other than 0: rank 0 scores and reports
    _print_eval_det_result(result)
    summary = {k: v for k, v in result.items() if k != "detections"}
    atomic_write_json(out / "metrics.json", summary)
    print(f"results: {out} (metrics.json, coco_results.json, ap_table.md, pr_curves.png, results/)")
    if args.format is not None:
        files = _write_eval_format(args, dataset, result["detections"], out, name)
        print(f"{args.format}: {len(files)} file(s) in {out / ('detections_' + args.format)}")
    return 0


def _write_eval_format(
    args: argparse.Namespace, dataset: Any, detections: dict, out: Any, split: str
) -> list:
    """``eval-det --format``: the evaluated images' detections in ``out/detections_FMT``."""
    from sppnet.detect.formats import write_dataset_detections

    index = {image_id: i for i, image_id in enumerate(dataset.ids)}
    images = {}
    for image_id in detections:
        i = index[image_id]
        ann = dataset.annotations[i]
        images[image_id] = (dataset.image_path(i), (int(ann["height"]), int(ann["width"])))
    return write_dataset_detections(
        detections, images, out / f"detections_{args.format}", args.format,
        list(dataset.class_names), split,
    )  # fmt: skip


def _print_eval_det_result(result: dict[str, Any]) -> None:
    """AP per class, VOC07 mAP, COCO AP, time per image and the R-CNN comparison."""
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
    print_timing("time per image", result["timing"])
    if "rcnn" in result:
        r = result["rcnn"]
        print(
            f"R-CNN baseline on the first {r['images']} images (same model, windows, SVMs): "
            f"mAP {100 * (r['map'] or 0):.2f} vs SPP-net {100 * (r['spp_map'] or 0):.2f}; "
            f"conv {r['speedup']['conv']:.1f}x, total {r['speedup']['total']:.1f}x faster"
        )
        print_timing("  R-CNN time per image", r["timing"])
        print_timing("  SPP-net time per image", r["spp_timing"])


def _check_detect_outputs(args: argparse.Namespace, images: list) -> None:
    """Outputs never overwrite inputs: no ``OUT/<name>.png|.json`` may be an input image or
    a file of the detector or proposals folder.

    Raises:
        UserError: naming the output and the input it would replace.
    """
    import os
    from pathlib import Path

    from sppnet.detect.images import output_names

    inputs = {os.path.realpath(p): f"the input image {p}" for p in images}
    for option in ("detector", "onnx", "proposals"):
        folder = getattr(args, option, None)
        if folder and os.path.isdir(folder):
            for entry in os.scandir(folder):
                inputs.setdefault(os.path.realpath(entry.path), f"{entry.path} (--{option})")
    for name in output_names(images):
        for target in (Path(args.out) / f"{name}.png", Path(args.out) / f"{name}.json"):
            replaced = inputs.get(os.path.realpath(target))
            if replaced is not None:
                raise UserError(
                    f"--out {args.out}: writing {target} would replace {replaced}; outputs "
                    "never overwrite inputs: choose another --out folder"
                )


def _cmd_detect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sppnet.cli.inputs import expand_images, refuse_overwriting_inputs
    from sppnet.detect.formats import format_files
    from sppnet.detect.images import output_names

    images, lists = expand_images(args.images)
    _check_detect_outputs(args, images)
    detector = _detect_detector(args)
    out, names = Path(args.out), output_names(images)
    planned = format_files(args.format, out, names, detector.class_names, args.voc_split)
    if not args.no_pictures:
        planned += [out / f"{name}.png" for name in names]
    refuse_overwriting_inputs(planned, [*images, *lists])
    return _detect_all(args, detector, images, out)


def _detect_detector(args: argparse.Namespace) -> Any:
    """The PyTorch (``--detector``) or ONNX Runtime (``--onnx``) detector of ``detect``."""
    if args.onnx is None:
        return _load_detector_for(args, resolve_device(args.device))
    from sppnet.export.onnx_detector import load_onnx_detector

    if args.svd_ranks is not None:
        raise UserError(
            "--svd-ranks changes the PyTorch network; export the compressed detector "
            "instead of passing it with --onnx"
        )
    if args.device not in (None, "auto", "cpu"):
        raise UserError(
            f"--device {args.device}: --onnx runs in ONNX Runtime on the CPU; pass the "
            "PyTorch detector (--detector) to use another device"
        )
    return load_onnx_detector(args.onnx, **_detector_overrides(args))


def _detect_all(args: argparse.Namespace, detector: Any, images: list, out: Any) -> int:
    """Detect in every image, write the pictures and the ``--format`` files, report."""
    from tqdm.auto import tqdm

    from sppnet.detect.formats import DetectionsWriter, format_files
    from sppnet.detect.images import ImageFailure, detect_images, save_image_detections

    writer = None if args.format == "json" else DetectionsWriter(
        args.format, out, detector.class_names, args.voc_split
    )  # fmt: skip
    if args.format in ("coco", "voc", "csv"):
        earlier = [p for p in format_files(args.format, out, [], detector.class_names,
                                           args.voc_split) if p.exists()]  # fmt: skip
        if earlier:
            print(f"warning: replacing {', '.join(map(str, earlier))} (an earlier run)",
                  file=sys.stderr)  # fmt: skip
    failed: list[str] = []
    bar = tqdm(total=len(images), unit="img", disable=True if args.no_progress else None)
    for done in detect_images(
        detector, images, proposals=args.proposals, max_proposals=args.max_proposals,
        proposal_workers=args.proposal_workers,
    ):  # fmt: skip
        bar.update(1)
        if isinstance(done, ImageFailure):
            failed.append(f"{done.path}: {done.message}")
            if args.skip_bad or len(images) > 1:  # named now; the count comes last
                print(f"{'skipped' if args.skip_bad else 'failed'}: {failed[-1]}", file=sys.stderr)
            continue
        picture, record, replaced = save_image_detections(
            done, out, detector.class_names, draw_threshold=args.draw_threshold,
            picture=not args.no_pictures, record=writer is None,
        )  # fmt: skip
        written = [str(p) for p in (picture, record) if p is not None]
        if args.format == "yolo":
            text = out / f"{done.name}.txt"
            replaced += [str(text)] if text.exists() else []
        if writer is not None:
            written += [str(p) for p in writer.add(done)]
        if replaced:  # a rerun into the same folder: say so, never silently
            print(f"warning: replacing {', '.join(replaced)} (an earlier run)", file=sys.stderr)
        n = len(done.detections["scores"])
        print(f"{done.path}: {n} detections" + (f" -> {', '.join(written)}" if written else ""))
        print_timing("  time", done.timing)
    bar.close()
    if writer is not None and len(images) > len(failed):
        files = writer.close()
        if args.format != "yolo":
            print(f"{args.format}: {', '.join(str(p) for p in files)}")
    if failed and args.skip_bad and len(failed) < len(images):
        print(f"skipped {len(failed)} of {len(images)} images that could not be read",
              file=sys.stderr)  # fmt: skip
        return 0
    return _detect_exit_code(failed, len(images), str(out))


def _detect_exit_code(failed: list[str], total: int, out: str) -> int:
    """0: every image detected; 1: some failed (the others' files are written); 2: all
    failed. A failure ends with one ``error:`` line: the image's own, or the count."""
    if not failed:
        return 0
    if total == 1:
        print(f"error: {failed[0]}", file=sys.stderr)
    elif len(failed) == total:
        print(f"error: all {total} images failed (each named above)", file=sys.stderr)
    else:
        print(
            f"error: {len(failed)} of {total} images failed (each named above); the "
            f"detections of the other {total - len(failed)} are in {out}",
            file=sys.stderr,
        )
        return 1
    return 2


_TRAIN_DET_TEXT = r"""
train the SPP-net detector: proposals, feature cache, fc, SVMs, box regression

Train an SPP-net detector (Sec. 4.2) on a VOC-layout dataset: proposals per image (cached),
the conv maps of each whole image once and the pyramid of every window (a disk cache, size
printed first), fc6/fc7 + a new (K+1)-way fc8 fine-tuned on it, per-class linear SVMs with
hard-negative mining, per-class box regression. Every stage is resumable: run the same
command again after a crash.

examples:
  # on the built-in data with a pre-trained classifier (sppnet train ... --out runs/cls)
  sppnet train-det --checkpoint runs/cls --out runs/det --proposals edge_boxes \
      --max-proposals 500 --scales 400 --finetune-iterations 1000
  # straight on an ImageNet-pretrained EfficientNet-Lite0 trunk (no classifier run)
  sppnet train-det --model efficientnet_lite0 --pretrained --out runs/det_lite \
      --max-proposals 300 --scales 480 --finetune-iterations 1500
  # Pascal VOC 2007 trainval, selective search, 5 scales
  sppnet train-det --data VOCdevkit/VOC2007 --split trainval --checkpoint runs/zf5 \
      --out runs/voc07 --scales 480 576 688 864 1200
  # your own classes on a VOC-layout root (or write them to ROOT/classes.txt)
  sppnet train-det --data my_voc --split train --classes widget,gadget \
      --checkpoint runs/zf5 --out runs/mine
  # a COCO annotation file and its image folder
  sppnet train-det --data coco/annotations/instances_train.json \
      --images coco/train --checkpoint runs/zf5 --out runs/coco
  # proposals in 4 processes; or 2 processes sharing out the proposals and the cache
  # (rank 0 then trains; the same files and detector as one process). Several
  # machines: torchrun --nnodes M --node_rank I --master_addr HOST ... with --out
  # on a shared file system (docs/distributed.md)
  sppnet train-det --checkpoint runs/cls --out runs/det --proposal-workers 4
  torchrun --nproc_per_node 2 -m sppnet train-det --checkpoint runs/cls --out runs/det
"""


def add_train_det_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet train-det``."""
    train = add_command(sub, "train-det", _cmd_train_det, _TRAIN_DET_TEXT)
    add_detection_data(
        train, required=False,
        help="VOC-layout root, or a COCO annotation file with --images (default: built-in data)",
    )  # fmt: skip
    train.add_argument("--split", help="training split (trainval; train for built-in data)")
    train.add_argument(
        "--classes", metavar="A,B,C|FILE",
        help="class names in label order, or a file of one per line (default: the root's "
        "classes.txt, else the 20 VOC classes; COCO: its categories by id)",
    )  # fmt: skip
    add_builtin_sizes(train, "images per split of the built-in data")
    train.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_checkpoint_options(
        train, help="pre-trained classifier run directory", metavar="RUN",
        which_default=None, which_help="classifier checkpoint (best)",
    )  # fmt: skip
    _add_train_det_net_options(train)
    add_proposal_options(
        train, default=None,
        help="selective_search (default), edge_boxes, or a directory of <id>.npy/.json",
        max_help="windows per image (2000)",
    )  # fmt: skip
    train.add_argument("--scales", type=int, nargs="+", metavar="S", help="image scales (688)")
    train.add_argument(
        "--cache", choices=("maps", "windows"),
        help="training cache: conv maps, windows pooled when needed (default; ~40x less disk) "
        "or every pooled window (faster fc fine-tuning on small data, see docs/detection.md)",
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
    add_device_option(train)
    add_no_progress(train)


def _add_train_det_net_options(train: argparse.ArgumentParser) -> None:
    """The network of ``train-det`` without ``--checkpoint``."""
    train.add_argument(
        "--model",
        help="without --checkpoint: the network (zf5; random unless --pretrained), or an SPP "
        "head on your own trunk: package.module:factory or timm/NAME; with a --checkpoint "
        "whose trunk is package.module:factory, that path again (to allow importing it)",
    )
    add_trunk_options(train, "without --checkpoint: ")
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


_EVAL_DET_TEXT = r"""
VOC07 mAP and COCO AP of a trained detector, per-stage time, R-CNN baseline

Detect on a VOC-layout split or a COCO file and score VOC 2007 mAP (11-point AP, IoU 0.5,
difficult objects ignored) and COCO AP, AP50, AP75 (pycocotools; crowd regions and VOC's
difficult objects ignored). The classes are the detector's own. Writes VOC result files,
coco_results.json, ap_table.md, pr_curves.png and metrics.json. --rcnn-images N also runs
the R-CNN baseline (each window warped and passed through the whole network, Sec. 4.3) on N
images with the same model, windows and SVMs, and prints both times (Tables 9-10).

examples:
  sppnet eval-det --detector runs/det --data runs/det/data/voc --split test \
      --proposals edge_boxes --max-proposals 500 --rcnn-images 5
  sppnet eval-det --detector runs/coco --data coco/annotations/instances_val.json \
      --images coco/val --proposals edge_boxes
  # also the detections in YOLO txt (or json, coco, voc, csv) for another tool
  sppnet eval-det --detector runs/det --data runs/det/data/voc --format yolo
  # on the GPU: conv maps, pooling and fc there; proposals and NMS on the CPU
  sppnet eval-det --detector runs/det --data runs/det/data/voc --split test --device cuda
  # the images shared out to 2 processes (rank 0 scores: the same numbers and files)
  torchrun --nproc_per_node 2 -m sppnet eval-det --detector runs/det \
      --data runs/det/data/voc --split test --proposal-workers 2
"""


def add_eval_det_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet eval-det``."""
    evaluate = add_command(sub, "eval-det", _cmd_eval_det, _EVAL_DET_TEXT)
    evaluate.add_argument("--detector", required=True, metavar="DIR", help="train-det output")
    add_trust_model(evaluate, "detector")
    add_detection_data(
        evaluate, required=True, help="VOC-layout root, or a COCO annotation file with --images"
    )
    evaluate.add_argument("--split", default="test", help="split to evaluate (test)")
    evaluate.add_argument("--out", metavar="DIR", help="results folder (DETECTOR/eval_SPLIT)")
    add_proposal_options(
        evaluate, default="selective_search",
        help="selective_search (default), edge_boxes, or a directory of <id>.npy/.json",
    )  # fmt: skip
    evaluate.add_argument("--proposal-cache", metavar="DIR", help="where computed ones go")
    evaluate.add_argument("--rcnn-images", type=int, default=0, help="R-CNN baseline images")
    evaluate.add_argument("--max-images", type=int, help="evaluate the first N images")
    evaluate.add_argument(
        "--format", choices=("json", "coco", "voc", "yolo", "csv"),
        help="also write the evaluated images' detections as `detect --format` does, into "
        "OUT/detections_FORMAT (boxes in each image's pixels)",
    )  # fmt: skip
    add_detector_settings(evaluate)
    add_device_option(evaluate)
    add_no_progress(evaluate)


_DETECT_TEXT = r"""
detect objects in images: a picture with the boxes and a JSON per image

Run a trained detector on image files, folders (every image below, sorted), quoted globs
or @list.txt files (one entry per line). For each image writes OUT/<name>.png (boxes drawn,
captioned with the fc8 probability) and OUT/<name>.json (boxes in pixels, SVM scores, fc8
probabilities, class names, windows, time per stage), or with --format the detections of
all images as one COCO file, VOC result files, YOLO txt files or one CSV; <name>
is the file's stem, with -2, -3, ... for later images of the same stem (a/x.jpg b/x.jpg ->
x, x-2); files of an earlier run are replaced with a warning. An image whose shorter side
exceeds the detector's largest scale is detected (and drawn) on a copy of that size; the
JSON boxes are in its own pixels. Proposals: EdgeBoxes (default, fast), selective search, or
a directory of <stem>.npy files. An image that fails (unreadable, too large, no proposals
file) is named and the others are still detected; exit code 0: all detected, 1: some
failed, 2: all failed (or a bad option, detector or folder). --skip-bad: exit code 0 when
some were detected, the skipped images counted.

examples:
  sppnet detect runs/det/data/voc/JPEGImages/000601.jpg --detector runs/det \
      --out detections --max-proposals 500
  # the same with the exported graphs in ONNX Runtime (sppnet export --detector ...)
  sppnet detect runs/det/data/voc/JPEGImages/000601.jpg --onnx runs/det_onnx \
      --out detections --max-proposals 500
  # on the GPU: conv maps, pooling and fc there; proposals and NMS on the CPU
  sppnet detect photos/*.jpg --detector runs/det --out detections --device cuda
  # a folder (recursive), a quoted glob, a list file; one COCO file, no pictures,
  # unreadable images skipped and counted
  sppnet detect photos/ "more/**/*.png" @todo.txt --detector runs/det --out dets \
      --format coco --no-pictures --skip-bad
  # VOC devkit result files (comp4_det_test_<class>.txt), YOLO txt per image, one CSV
  sppnet detect photos/ --detector runs/det --out dets --format voc
  # proposals of the next images in 2 processes while the network runs
  sppnet detect photos/ --detector runs/det --out detections --proposal-workers 2
"""


def add_detect_parser(sub: argparse._SubParsersAction) -> None:
    """``sppnet detect``."""
    detect = add_command(sub, "detect", _cmd_detect, _DETECT_TEXT)
    add_image_inputs(detect)
    which = detect.add_mutually_exclusive_group(required=True)
    which.add_argument("--detector", metavar="DIR", help="train-det output (PyTorch)")
    which.add_argument(
        "--onnx", metavar="DIR",
        help="an exported detector (sppnet export --detector): ONNX Runtime runs the network",
    )  # fmt: skip
    detect.add_argument("--out", default="detections", metavar="DIR", help="output folder")
    add_trust_model(detect, "detector")
    add_proposal_options(
        detect, default="edge_boxes",
        help="edge_boxes (default), selective_search, or a directory of <name>.npy",
        workers_help="with several images: processes computing the next images' proposals "
        "while the network runs (the same boxes; default 0: one image after the other)",
    )  # fmt: skip
    detect.add_argument("--draw-threshold", type=float, default=0.0, help="least score drawn (0.0)")
    detect.add_argument(
        "--format", choices=("json", "coco", "voc", "yolo", "csv"), default="json",
        help="detections as: a JSON per image (default), one COCO file, VOC devkit result "
        "files, a YOLO txt per image, one CSV",
    )  # fmt: skip
    detect.add_argument(
        "--voc-split",
        default="test",
        metavar="SPLIT",
        help="<split> of comp4_det_<split>_<class>.txt",
    )
    detect.add_argument("--no-pictures", action="store_true", help="write no PNG pictures")
    detect.add_argument(
        "--skip-bad", action="store_true",
        help="skip images that fail, count them and exit 0 when some were detected (default: "
        "exit code 1 when some failed)",
    )  # fmt: skip
    add_no_progress(detect)
    add_detector_settings(detect)
    add_device_option(detect, "; --onnx runs on the CPU")
