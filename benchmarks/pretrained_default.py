"""Does the default ``sppnet train --pretrained`` run beat the best linear probe?

For each image-folder set given (``sppnet make-data photos --kind classify-a|classify-b``,
any ``--sizes``), with the ImageNet EfficientNet-Lite0 trunk:

- the linear probe: the head map (1,280 channels) averaged over the whole image (shorter
  side 224), l2-normalised, ``LinearSVC`` with C in {0.1, 1, 10} chosen on val; the best
  probe of ``benchmarks/recipe_study.py`` on every set it measured;
- the default run: ``train_classifier`` with ``model="efficientnet_lite0",
  pretrained=True`` and nothing else set (what ``sppnet train --pretrained`` does), timed
  from start to the last checkpoint, then its last model tested on the whole image (as
  ``sppnet eval --views full``).

Both report the top-1 test error with its binomial standard error ``sqrt(p (1 - p) / n)``;
the difference's standard error is the two combined (independent errors assumed, an upper
bound for paired ones). The targets: the run beats the probe by >= 5 points and takes
<= 15 minutes on a 3,000-image set on 2 CPU cores.

Run::

    sppnet make-data photos --kind classify-b --out photos_b
    python benchmarks/pretrained_default.py --data photos_b --out runs/default_b \
        --json default_b.json

A finished run in ``--out`` is reused (its recorded time is reported).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

C_VALUES = (0.1, 1.0, 10.0)


def stderr(p: float, n: int) -> float:
    """Binomial standard error of an error rate ``p`` measured on ``n`` images."""
    return math.sqrt(p * (1 - p) / n)


def probe(data: Path, cache: Path, progress: bool) -> dict[str, float]:
    """The head-map linear probe: test error (C chosen on val) and its cost."""
    from sklearn.svm import LinearSVC

    from sppnet.data import ImageFolder
    from sppnet.models.efficientnet_lite import EfficientNetLite
    from sppnet.transfer.features import extract_features

    model = EfficientNetLite(pretrained=True, feature_layer="head")
    start = time.perf_counter()
    arrays = {}
    for split in ("train", "val", "test"):
        folder = extract_features(
            model, ImageFolder(data, split=split), cache / split, layer="head", view="full",
            size=224, progress=progress,
        )  # fmt: skip
        arrays[split] = (np.load(folder / "features.npy"), np.load(folder / "labels.npy"))
    extract_s = time.perf_counter() - start
    (xtr, ytr), (xva, yva), (xte, yte) = arrays["train"], arrays["val"], arrays["test"]
    best = None
    for c in C_VALUES:
        svm = LinearSVC(C=c, max_iter=20000).fit(xtr, ytr)
        val_error = float((svm.predict(xva) != yva).mean())
        if best is None or val_error < best[0]:
            best = (val_error, c, svm)
    val_error, c, svm = best
    test_error = float((svm.predict(xte) != yte).mean())
    return {
        "C": c,
        "val_error": val_error,
        "test_error": test_error,
        "test_se": stderr(test_error, len(yte)),
        "extract_s": extract_s,
    }


def default_run(data: Path, out: Path, progress: bool) -> dict[str, float]:
    """Train with the --pretrained defaults (or reuse the finished run) and test it."""
    from sppnet.classify import evaluate_classifier
    from sppnet.classify.train import ClassifierTrainConfig, train_classifier
    from sppnet.data import ImageFolder
    from sppnet.engine.checkpoint import find_checkpoint, load_classifier

    config = ClassifierTrainConfig(
        data=str(data), out=str(out), model="efficientnet_lite0", pretrained=True
    )
    timing = out / "wall_seconds.json"
    if not timing.is_file():
        if find_checkpoint(out) is not None:
            sys.exit(f"error: {out} holds a run this script did not time; choose another --out")
        start = time.perf_counter()
        train_classifier(config, progress=progress)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - start}))
    seconds = json.loads(timing.read_text())["seconds"]
    model, meta = load_classifier(out, "latest")  # the run's last model, as `sppnet eval`
    test = ImageFolder(data, split="test")
    result = evaluate_classifier(
        model, test, views=("full",), crop=meta["crop"], shorter=meta["shorter"],
        progress=progress,
    )["full"]  # fmt: skip
    error = float(result["top1_error"])
    history = meta["history"]
    return {
        "test_error": error,
        "test_se": stderr(error, len(test)),
        "val_error": float(history[-1]["val_top1_error"]),
        "train_images": len(ImageFolder(data, split="train")),
        "epochs": len(history),
        "minutes": seconds / 60,
        "seconds_per_epoch": float(np.mean([row["seconds"] for row in history])),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="image-folder sets")
    parser.add_argument("--out", required=True, help="folder for runs and feature caches")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison on each set; print a table and write the JSON."""
    args = build_parser().parse_args(argv)
    results = {}
    for data in map(Path, args.data):
        where = Path(args.out) / data.name
        row = {
            "probe": probe(data, where / "probe_features", not args.no_progress),
            "default": default_run(data, where / "run", not args.no_progress),
        }
        row["gain"] = row["probe"]["test_error"] - row["default"]["test_error"]
        row["gain_se"] = math.hypot(row["probe"]["test_se"], row["default"]["test_se"])
        results[data.name] = row
        p, d = row["probe"], row["default"]
        print(
            f"{data.name}: probe {100 * p['test_error']:.1f} +- {100 * p['test_se']:.1f}% "
            f"(C {p['C']:g}); default run {100 * d['test_error']:.1f} +- "
            f"{100 * d['test_se']:.1f}% ({d['train_images']} train images, {d['epochs']} "
            f"epochs, {d['minutes']:.1f} min); gain {100 * row['gain']:.1f} +- "
            f"{100 * row['gain_se']:.1f} points"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
