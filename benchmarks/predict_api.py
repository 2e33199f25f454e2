"""The Python predictor against the command's engine, and `sppnet detect` over a folder.

Builds an SPP-net detector on ZF-5 (random weights: speed does not depend on them; 20 classes
with random SVMs and box regression, as a VOC detector has), saves it as `sppnet train-det`
does, renders ``--images`` built-in scenes (500 x 375 JPEGs) into a folder, then measures:

1. ``sppnet.load_detector(dir).predict(paths)`` against ``detect_images`` (the engine behind
   `sppnet detect`, without writing files) on the same images and settings: seconds per
   image of each, their ratio (the project's target: the API adds at most 5%), and whether
   every image's boxes, scores and labels are identical. Image by image, the two
   alternating (their order swapped every round), ``--repeats`` rounds.
2. `sppnet detect FOLDER --no-pictures` (in this process: the command's own code, JSON
   records written) with ``--proposal-workers 0`` (each image's proposals, then its network)
   and with 1 and 2 worker processes computing the next images' proposals while the network
   runs: seconds per image, loading the detector included; median of ``--repeats``
   round-robin rounds.

Run (small: the CPU is shared):
    nice -n 10 python benchmarks/predict_api.py --images 4 --repeats 2 --width 0.5 \
        --fc-dim 1024
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _timing import environment_line, markdown_table

import sppnet
from sppnet.cli.app import main as sppnet_main
from sppnet.data.synthetic import render_synthetic_image
from sppnet.detect.images import ImageFailure, detect_images
from sppnet.detect.io import load_detector, save_detector
from sppnet.detection import Detector
from sppnet.models import create_model

API_TARGET = 1.05  # the predictor may take at most 5% longer than the engine


def _save_detector(args: argparse.Namespace, folder: Path) -> Path:
    torch.manual_seed(args.seed)
    k = 20
    kwargs = {"num_classes": k + 1, "width": args.width, "fc_dim": args.fc_dim}
    model = create_model("zf5", **kwargs).eval()
    p = model.fc6.in_features
    detector = Detector(
        model=model, class_names=[f"class{i}" for i in range(k)], scales=(args.scale,),
        svm_weight=torch.randn(k, args.fc_dim) * 0.01, svm_bias=torch.zeros(k),
        box_weight=torch.randn(k, p, 4) * 1e-4, box_bias=torch.zeros(k, 4),
    )  # fmt: skip
    return save_detector(folder / "det", detector, {"name": "zf5", **kwargs})


def _images(args: argparse.Namespace, folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(args.images):
        pil, _ = render_synthetic_image(args.seed + i, min_side=375, max_side=500)
        paths.append(folder / f"scene{i:03d}.jpg")
        pil.resize((500, 375)).save(paths[-1], quality=90)
    return paths


def _engine(detector: Detector, paths: list[Path], windows: int) -> list[dict]:
    out = []
    for done in detect_images(detector, paths, max_proposals=windows):
        if isinstance(done, ImageFailure):
            raise SystemExit(f"error: {done.message}")
        dets = done.detections
        out.append({**dets, "boxes": dets["boxes"] / done.factor})
    return out


def _same(api: list[dict], engine: list[dict]) -> bool:
    return all(
        torch.equal(a[k], e[k]) for a, e in zip(api, engine, strict=True)
        for k in ("boxes", "scores", "labels")
    )  # fmt: skip


def _api_vs_engine(args: argparse.Namespace, det_dir: Path, paths: list[Path]) -> None:
    predictor = sppnet.load_detector(det_dir, device="cpu")
    engine, _ = load_detector(det_dir)
    api = predictor.predict(paths, max_proposals=args.windows)
    same = _same(api, _engine(engine, paths, args.windows))
    runs = {
        "API": lambda path: predictor.predict(path, max_proposals=args.windows),
        "engine": lambda path: _engine(engine, [path], args.windows),
    }
    times: dict[str, list[float]] = {"API": [], "engine": []}
    for r in range(args.repeats):  # image by image, alternating: the shared CPU's speed drifts
        for path in paths:
            for name in sorted(runs, reverse=r % 2 == 1):
                t0 = time.perf_counter()
                runs[name](path)
                times[name].append(time.perf_counter() - t0)
    api_s, eng_s = (statistics.mean(times[k]) for k in ("API", "engine"))
    ratio = sum(times["API"]) / sum(times["engine"])
    print(markdown_table(
        ["seconds per image (mean)", "predict() (API)", "detect_images (engine)", "API / engine"],
        [[f"{len(times['API'])} runs each", f"{api_s:.3f}", f"{eng_s:.3f}", f"{ratio:.3f}"]],
    ))  # fmt: skip
    print(f"{'MET    ' if ratio <= API_TARGET else 'NOT met'}  API / engine {ratio:.3f} "
          f"<= {API_TARGET}; identical boxes, scores, labels: {same}")  # fmt: skip


def _folder_throughput(args: argparse.Namespace, det_dir: Path, folder: Path, tmp: Path) -> None:
    times: dict[int, list[float]] = {w: [] for w in args.workers}
    for r in range(args.repeats):
        for w in args.workers:
            out = tmp / f"out_{w}_{r}"
            argv = ["detect", str(folder), "--detector", str(det_dir), "--out", str(out),
                    "--no-pictures", "--no-progress", "--max-proposals", str(args.windows),
                    "--proposal-workers", str(w)]  # fmt: skip
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the command's per-image lines
                code = sppnet_main(argv)
            times[w].append((time.perf_counter() - t0) / args.images)
            if code != 0:
                raise SystemExit(f"error: sppnet detect exited {code}")
    rows = [[f"--proposal-workers {w}", f"{statistics.median(times[w]):.3f}"] for w in args.workers]
    print(
        markdown_table([f"sppnet detect FOLDER ({args.images} images)", "seconds per image"], rows)
    )


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--images", type=int, default=4, help="built-in scenes")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--width", type=float, default=1.0, help="ZF-5 channel multiplier")
    parser.add_argument("--fc-dim", type=int, default=4096, help="fc6/fc7 width")
    parser.add_argument("--scale", type=int, default=688, help="detection scale")
    parser.add_argument("--windows", type=int, default=2000, help="EdgeBoxes proposals per image")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=(0, 1, 2), help="proposal workers"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--detector", metavar="DIR",
        help="a trained detector (a train-det output, e.g. the demo's RUN/detection/train/"
        "detector) instead of the random-weight ZF-5 one; its scales are used",
    )  # fmt: skip
    return parser


def main() -> None:
    """Build the detector and images, run both measurements, print the tables."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.detector is None:
            det_dir = _save_detector(args, Path(tmp))
            what = f"ZF-5 (width {args.width}, fc {args.fc_dim}), 20 classes, scale {args.scale}"
        else:
            det_dir = Path(args.detector)
            what = f"the trained detector {det_dir}"
        folder = Path(tmp) / "images"
        paths = _images(args, folder)
        print(f"{what}, EdgeBoxes up to {args.windows} windows, {args.images} images "
              f"500 x 375, {args.repeats} rounds")  # fmt: skip
        print(environment_line())
        _api_vs_engine(args, det_dir, paths)
        _folder_throughput(args, det_dir, folder, Path(tmp))


if __name__ == "__main__":
    main()
