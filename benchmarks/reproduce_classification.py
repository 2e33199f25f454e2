"""Reproduce Tables 2-3 in spirit on the built-in data: no SPP vs SPP, single vs multi-size
training, and the test views (1 crop, 10 views, full image, multi-view on feature maps).

Trains narrow ZF-5 networks from scratch on the built-in data's object-crop classification
view (8 shape classes, objects of every aspect ratio on cluttered backgrounds), then
evaluates each with every test view. Not a test: it takes minutes. Resumable: a finished
training run is reused (its checkpoint is loaded), an interrupted one resumes.

Run:
    python benchmarks/reproduce_classification.py --out runs/repro [--epochs 20] [--width 0.125]

Prints a markdown table (top-1 error %, top-5 in parentheses) and writes results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from sppnet.classify import ClassifierTrainConfig, evaluate_classifier, train_classifier
from sppnet.data import ImageFolder, generate_voc_dataset, make_classification_view
from sppnet.engine import find_checkpoint, load_classifier

RUNS = {
    # name: (spp_levels, size_mode)
    "no SPP, single-size": (None, "single"),
    "SPP, single-size": ((6, 3, 2, 1), "single"),
    "SPP, multi-size": ((6, 3, 2, 1), "multi"),
}
VIEWS = ("center", "ten", "full", "multiview")


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/repro_classification")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--fc-dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument(
        "--images",
        type=int,
        nargs=3,
        default=(600, 150, 200),
        metavar="N",
        help="train/val/test scenes to generate (each holds 1-4 objects)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser


def make_data(args: argparse.Namespace, out: Path) -> tuple[Path, ImageFolder]:
    """The built-in scenes and their object-crop view (generated once), and its test split."""
    train_n, val_n, test_n = args.images
    voc = generate_voc_dataset(
        out / "data" / "voc",
        sizes={"train": train_n, "val": val_n, "test": test_n},
        seed=args.seed,
        progress=True,
    )
    data = make_classification_view(voc, out / "data" / "crops", crop_objects=True)
    test_set = ImageFolder(data, split="test")
    print(
        f"data: {data} ({len(ImageFolder(data, split='train'))} train / {len(test_set)} test crops)"
    )
    return data, test_set


def train_and_evaluate(
    args: argparse.Namespace,
    name: str,
    data: Path,
    test_set: ImageFolder,
) -> dict[str, object]:
    """Train one of :data:`RUNS` (or reuse / resume its run) and test it with every view."""
    levels, size_mode = RUNS[name]
    run_dir = Path(args.out) / name.replace(", ", "_").replace(" ", "-").replace("/", "")
    config = ClassifierTrainConfig(
        data=str(data),
        out=str(run_dir),
        width=args.width,
        fc_dim=args.fc_dim,
        spp_levels=levels,
        size_mode=size_mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        plateau_patience=4,
        seed=args.seed,
    )
    start = time.perf_counter()
    done = find_checkpoint(run_dir) if (run_dir / "checkpoints").exists() else None
    state = json.loads((done / "state.json").read_text()) if done else {}
    if state.get("epoch", 0) < args.epochs:
        train_classifier(config, resume=done is not None)
    model, meta = load_classifier(run_dir)
    train_s = time.perf_counter() - start
    views = VIEWS if levels is not None else ("center", "ten")
    start = time.perf_counter()
    errors = evaluate_classifier(model, test_set, views=views, mean=meta["mean"])
    return {
        "config": dataclasses.asdict(config),
        "errors": errors,
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
    }


def print_table(results: dict[str, dict]) -> None:
    """The markdown table: top-1 error % (top-5) per model and test view."""
    header = ["model", "1 crop", "10 views", "full image", "multi-view (98 views)"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, r in results.items():
        cells = []
        for view in VIEWS:
            e = r["errors"].get(view)
            cells.append(
                "n/a" if not e else f"{100 * e['top1_error']:.1f} ({100 * e['top5_error']:.1f})"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data, test_set = make_data(args, out)
    results: dict[str, dict] = {}
    for name in RUNS:
        results[name] = train_and_evaluate(args, name, data, test_set)
        errors = results[name]["errors"]
        print(name, {v: e and round(100 * e["top1_error"], 1) for v, e in errors.items()})
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(
        f"\ntop-1 error % (top-5 in parentheses) on {len(test_set)} test crops; "
        f"ZF-5 width {args.width}, fc {args.fc_dim}, {args.epochs} epochs; "
        f"results: {out / 'results.json'}"
    )


if __name__ == "__main__":
    main()
