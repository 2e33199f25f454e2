"""Tables 6-7 in spirit on the built-in data: image representations + linear SVMs (Sec. 3.2-3.3).

Rows: the no-SPP baseline on the center crop, and SPP-net on the center crop, the warped
image and the full image (shorter side 224, aspect kept); columns: the layers conv4, conv5,
pool5 (the 6x6 level), the whole SPP vector, fc6 and fc7. Two tables:

- VOC-style classification mAP (11-point AP, the devkit's rule: images holding only
  difficult objects of a class are ignored for it): SVMs trained on the built-in VOC
  layout's ``train`` split, tested on its ``test`` split (8 shape classes for VOC's 20).
- Caltech101-style accuracy on the classification view of the same images (each image
  labelled by its largest object): ``--n-train`` images per class to train, up to
  ``--n-test`` of the rest to test, ``--splits`` random splits, mean +- std of the mean
  per-class accuracy.

The networks are narrow ZF-5s with random weights (the same seed for both), unless trained
ones are named with ``--checkpoint`` (``sppnet train`` run directories: a no-SPP run for the
no-SPP row, an SPP run for the others; a network not given stays random). Random features
only show that the protocol runs (accuracies near chance); a checkpoint trained on other
data is the paper's setting. Features are cached under ``--out`` (``sppnet features``
folders): a rerun reuses them.

Run (about 2-3 minutes on 2 CPU cores with the defaults):
    python benchmarks/transfer_table.py --out runs/transfer
    python benchmarks/transfer_table.py --out runs/transfer_trained \\
        --checkpoint runs/zf5_nospp runs/zf5_spp --images 300 300
    python benchmarks/transfer_table.py --out runs/transfer_voc --voc data/VOC2007 \\
        --train-split trainval --test-split test --checkpoint runs/zf5_spp

Prints two markdown tables and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from sppnet.data import ImageFolder, VOCDetection, generate_voc_dataset, make_classification_view
from sppnet.engine import load_classifier
from sppnet.models import create_model
from sppnet.transfer.features import FEATURE_LAYERS, extract_features
from sppnet.transfer.svm import caltech_protocol, load_feature_dir, voc_classification_protocol

# (network, view) rows as in Tables 6 (a)-(c) and 7 (a)-(c), plus the warped image (Sec. 3.3)
ROWS: tuple[tuple[str, str], ...] = (
    ("no SPP", "crop"),
    ("SPP", "crop"),
    ("SPP", "warp"),
    ("SPP", "full"),
)


def _applicable(spp: bool, view: str, layer: str) -> bool:
    """conv4/conv5 need a fixed-size view; the no-SPP net has no SPP vector and no full view."""
    if layer in ("conv4", "conv5") and view == "full":
        return False
    return spp or layer != "spp"


def _models(args: argparse.Namespace) -> dict[str, tuple[torch.nn.Module, float]]:
    """``{"no SPP": (model, mean), "SPP": (model, mean)}`` from checkpoints or random init."""
    models: dict[str, tuple[torch.nn.Module, float]] = {}
    for path in args.checkpoint or []:
        model, meta = load_classifier(path)
        mean = meta.get("mean", 128.0)
        if isinstance(mean, list):
            raise SystemExit(f"{path}: a mean image is not supported here, only a constant")
        models["SPP" if model.spp_levels is not None else "no SPP"] = (model, float(mean))
    for name, levels in (("no SPP", None), ("SPP", (6, 3, 2, 1))):
        if name not in models:
            torch.manual_seed(args.seed)  # the same conv weights for both networks
            model = create_model("zf5", width=args.width, fc_dim=args.fc_dim, spp_levels=levels)
            models[name] = (model.eval(), 128.0)
    return models


def _features(
    model: torch.nn.Module,
    dataset: VOCDetection,
    out: Path,
    *,
    layer: str,
    view: str,
    size: int,
    crop: int,
    mean: float,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Extract (or reuse) one feature folder; returns features, labels and image ids."""
    extract_features(
        model, dataset, out, layer=layer, view=view, size=size, crop=crop, mean=mean,
        batch_size=32, progress=False,
    )  # fmt: skip
    feats, labels, _ = load_feature_dir(out)
    ids = json.loads((out / "ids.json").read_text(encoding="utf-8"))
    return np.asarray(feats), labels, [str(i) for i in ids]


def _plain(value: object) -> object:
    """JSON-ready: NaN -> null, dict keys -> strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example:\n  python benchmarks/transfer_table.py --out runs/transfer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/transfer_table", help="data, features, results")
    parser.add_argument(
        "--checkpoint", nargs="+", metavar="DIR", help="trained runs (no-SPP and/or SPP)"
    )
    parser.add_argument("--voc", metavar="DIR", help="a VOC-layout dataset (default: built-in)")
    parser.add_argument("--train-split", default="train", help="VOC split for the SVMs (train)")
    parser.add_argument("--test-split", default="test", help="VOC split for the AP (test)")
    parser.add_argument(
        "--images", type=int, nargs=2, default=(100, 100), metavar=("TRAIN", "TEST"),
        help="built-in images per split (default 100 100)",
    )  # fmt: skip
    parser.add_argument("--min-side", type=int, default=120, help="built-in image sides (px)")
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--size", type=int, default=224, help="shorter side, full/crop (224)")
    parser.add_argument("--crop", type=int, default=224, help="crop/warp side (224)")
    parser.add_argument("--width", type=float, default=0.125, help="random ZF-5 width")
    parser.add_argument("--fc-dim", type=int, default=256, help="random ZF-5 fc6/fc7 width")
    parser.add_argument("--layers", nargs="+", choices=FEATURE_LAYERS, default=FEATURE_LAYERS)
    parser.add_argument("--C", type=float, help="SVM C (default: chosen on a validation split)")
    parser.add_argument("--n-train", type=int, default=10, help="Caltech-style: train/class")
    parser.add_argument("--n-test", type=int, default=10, help="Caltech-style: test/class")
    parser.add_argument("--splits", type=int, default=5, help="Caltech-style: random splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser


def load_data(
    args: argparse.Namespace, out: Path
) -> tuple[Path, VOCDetection, VOCDetection, ImageFolder, dict[str, int]]:
    """The VOC-layout root and its train and test splits (generated when no ``--voc``), the
    classification view of the same images and each image's Caltech-style label."""
    if args.voc:
        voc = Path(args.voc)
    else:
        train_n, test_n = args.images
        voc = generate_voc_dataset(
            out / "data" / "voc",
            sizes={args.train_split: train_n, args.test_split: test_n},
            seed=args.seed,
            min_side=args.min_side,
            max_side=args.max_side,
        )
    train_set = VOCDetection(voc, args.train_split)
    test_set = VOCDetection(voc, args.test_split)
    # Caltech-style labels: the classification view of the same images (largest object)
    view_root = make_classification_view(
        voc, out / "data" / "classification", splits=(args.train_split, args.test_split)
    )
    view = ImageFolder(view_root)
    label_of = {Path(path).stem: int(label) for path, label in view.samples}
    return voc, train_set, test_set, view, label_of


def score_cell(
    args: argparse.Namespace,
    model: torch.nn.Module,
    mean: float,
    sets: tuple[VOCDetection, VOCDetection],
    label_of: dict[str, int],
    tag: str,
    img_view: str,
    layer: str,
) -> dict[str, object]:
    """One (network, view, layer) cell: features of both splits, then the VOC-style and the
    Caltech-style protocols."""
    train_set, test_set = sets
    out = Path(args.out)
    common = dict(layer=layer, view=img_view, size=args.size, crop=args.crop, mean=mean)
    xtr, ytr, ids_tr = _features(model, train_set, out / "features" / f"{tag}_tr", **common)
    xte, yte, ids_te = _features(model, test_set, out / "features" / f"{tag}_te", **common)
    voc_res = voc_classification_protocol(
        xtr, ytr, xte, yte, C=args.C, seed=args.seed, class_names=list(train_set.class_names)
    )
    ids = ids_tr + ids_te
    rows = [i for i, image_id in enumerate(ids) if image_id in label_of]
    x_all = np.concatenate([xtr, xte])[rows]
    y_all = np.array([label_of[ids[i]] for i in rows], dtype=np.int64)
    cal_res = caltech_protocol(
        x_all, y_all, n_train=args.n_train, n_test=args.n_test,
        n_splits=args.splits, seed=args.seed, C=args.C,
    )  # fmt: skip
    return {"voc": voc_res, "caltech": cal_res, "dim": int(xtr.shape[1])}


def print_table(title: str, layers: list[str], results: dict[str, dict], cell) -> None:
    """One markdown table: a row per (network, view), a column per layer."""
    print(f"\n{title}\n")
    print("| | " + " | ".join(layers) + " |\n|---|" + "---|" * len(layers))
    for row, by_layer in results.items():
        cells = [cell(by_layer[layer]) if layer in by_layer else "-" for layer in layers]
        print(f"| {row} | " + " | ".join(cells) + " |")


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.out)
    voc, train_set, test_set, view, label_of = load_data(args, out)
    class_names = list(train_set.class_names)
    models = _models(args)
    print(
        f"data: {voc} ({len(train_set)} train / {len(test_set)} test images, "
        f"{len(class_names)} classes); classification view: {len(view)} images "
        f"({time.perf_counter() - start:.0f} s)"
    )

    results: dict[str, dict[str, dict]] = {}
    for net, img_view in ROWS:
        model, mean = models[net]
        row = f"{net}, {img_view} {args.crop}x{args.crop}"
        if img_view == "full":
            row = f"{net}, full {args.size}x-"
        results[row] = {}
        for layer in args.layers:
            if not _applicable(net == "SPP", img_view, layer):
                continue
            tag = f"{net.replace(' ', '')}_{img_view}_{layer}"
            res = score_cell(
                args, model, mean, (train_set, test_set), label_of, tag, img_view, layer
            )
            results[row][layer] = res
            print(
                f"  {row:<24} {layer:<6} D={res['dim']:<6} mAP {100 * res['voc']['map']:5.1f}  "
                f"accuracy {100 * res['caltech']['mean']:5.1f} +- "
                f"{100 * res['caltech']['std']:.1f}  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )

    print_table(
        f"VOC-style classification mAP (%), {len(class_names)} classes, "
        f"{len(train_set)} train / {len(test_set)} test images",
        args.layers,
        results,
        lambda r: "n/a" if math.isnan(r["voc"]["map"]) else f"{100 * r['voc']['map']:.1f}",
    )
    print_table(
        f"Caltech-style accuracy (%), {args.n_train} train / up to {args.n_test} test images "
        f"per class, {args.splits} splits (mean +- std)",
        args.layers,
        results,
        lambda r: f"{100 * r['caltech']['mean']:.1f} +- {100 * r['caltech']['std']:.1f}",
    )
    source = "checkpoints " + " ".join(args.checkpoint) if args.checkpoint else "random weights"
    print(
        f"\nZF-5 width {args.width}, fc {args.fc_dim} ({source}); SVM C "
        f"{args.C if args.C else 'chosen on a validation split'}; "
        f"{time.perf_counter() - start:.0f} s; results: {out / 'results.json'}"
    )
    report = {"args": vars(args), "classes": class_names, "results": results}
    (out / "results.json").write_text(json.dumps(_plain(report), indent=2) + "\n")


if __name__ == "__main__":
    main()
