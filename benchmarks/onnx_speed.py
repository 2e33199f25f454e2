"""ONNX Runtime against PyTorch on CPU: a classifier at 224 and 688, the window graph at 2,000.

Exports once (``export_classifier`` / ``export_detector`` into a temporary folder), checks
that both give the same numbers, then times them side by side in one run (round-robin, see
``_timing.interleaved_ms``; median and best of ``--repeats``):
  * classifier: one image through the whole network (trunk, pyramid, fc6-fc8), PyTorch
    ``model(x)`` against the exported graph;
  * window graph: 2,000 windows on one conv5 map of an s=688 image (pyramid of each window,
    fc6, fc7, 20 SVMs, box regression), PyTorch ``window_pyramid_pool`` +
    ``Detector.score_pooled`` against ``windows.onnx``;
  * the window pyramids alone (no fc layers): ``window_pyramid_pool`` against a graph of
    ``traceable_window_pyramid_pool`` with the detector's table levels.
Both use the same number of threads (``--threads``).

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/onnx_speed.py [--model zf5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
from _timing import environment_line, interleaved_ms, markdown_table, random_boxes

from sppnet.detection.detector import Detector
from sppnet.export.onnx import DEFAULT_OPSET, _export, export_classifier, export_detector
from sppnet.models import create_model
from sppnet.ops import (
    map_windows_to_features,
    traceable_window_pyramid_pool,
    window_pyramid_pool,
)

Dim = torch.export.Dim
Cases = dict[str, Callable[[], object]]


class _WindowPool(torch.nn.Module):
    def __init__(self, levels: tuple[int, ...], table_levels: int) -> None:
        super().__init__()
        self.levels, self.table_levels = levels, table_levels

    def forward(self, conv_map: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        return traceable_window_pyramid_pool(conv_map, windows, self.levels, self.table_levels)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="zf5", help="zf5 (default) or efficientnet_lite0")
    parser.add_argument("--width", type=float, default=1.0, help="ZF-5 channel multiplier")
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=20, help="SVMs (VOC: 20)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def make_models(args: argparse.Namespace, gen: torch.Generator) -> tuple[torch.nn.Module, Detector]:
    """The 1000-way classifier and a detector on a (K+1)-way twin, with random SVMs and box
    regressors drawn from ``gen``."""
    kwargs = {"width": args.width} if args.model != "efficientnet_lite0" else {}
    model = create_model(args.model, num_classes=1000, **kwargs).eval()
    k = args.classes
    det_model = create_model(args.model, num_classes=k + 1, **kwargs).eval()
    fc_dim, p = det_model.fc_dim, det_model.pooled_dim
    detector = Detector(
        model=det_model,
        class_names=[f"c{i}" for i in range(k)],
        scales=(688,),
        svm_weight=torch.randn(k, fc_dim, generator=gen) * 0.01,
        svm_bias=torch.zeros(k),
        box_weight=torch.randn(k, p, 4, generator=gen) * 1e-4,
        box_bias=torch.zeros(k, 4),
    ).eval()
    return model, detector


def classifier_cases(
    model: torch.nn.Module, tmp: Path, threads: int, gen: torch.Generator, checks: list[str]
) -> Cases:
    """The classifier at 224 and 688 through PyTorch and its exported graph (compared)."""
    cases: Cases = {}
    cls_sess = _session(export_classifier(model, tmp / "cls.onnx"), threads)
    for side in (224, 688):
        x = torch.rand(1, 3, side, side, generator=gen) * 255 - 128
        xn = x.numpy()
        diff = (torch.from_numpy(cls_sess.run(None, {"image": xn})[0]) - model(x)).abs().max()
        checks.append(f"classifier {side}: max |ONNX - PyTorch| = {float(diff):.1e}")
        cases[f"classifier {side}x{side} | PyTorch"] = lambda x=x: model(x)
        cases[f"classifier {side}x{side} | ONNX Runtime"] = lambda xn=xn: cls_sess.run(
            None, {"image": xn}
        )
    return cases


def window_cases(
    detector: Detector, tmp: Path, args: argparse.Namespace, gen: torch.Generator, checks: list[str]
) -> Cases:
    """The window graph (pyramid, fc6, fc7, SVMs, regression) and the pyramid alone on one
    s=688 image's conv map, PyTorch against ONNX Runtime (compared)."""
    det_model = detector.model
    export_detector(detector, tmp / "det")
    win_sess = _session(tmp / "det" / "windows.onnx", args.threads)
    height, width = 688, 917
    fmap = det_model.forward_features(torch.rand(1, 3, height, width, generator=gen) * 255 - 128)
    boxes = random_boxes(args.windows, height, width, gen)
    h, w = fmap.shape[-2:]
    cells = map_windows_to_features(
        boxes, det_model.feature_stride, (h, w), det_model.feature_offset
    )
    levels = det_model.spp_levels

    def torch_windows():
        pooled = window_pyramid_pool(fmap, cells, None, levels)
        return detector.score_pooled(pooled, boxes)

    feeds = {"conv_map": fmap.contiguous().numpy(), "windows": cells.numpy()}
    got = torch.from_numpy(win_sess.run(None, feeds)[0])
    diff = (got - torch_windows()["scores"]).abs().max()
    checks.append(f"windows: max |ONNX - PyTorch| score = {float(diff):.1e}")
    cases: Cases = {
        f"{args.windows} windows on a {h}x{w} map | PyTorch": torch_windows,
        f"{args.windows} windows on a {h}x{w} map | ONNX Runtime": lambda: win_sess.run(
            None, feeds
        ),
    }
    # the pyramid alone (no fc layers): the sparse-table graph against the eager op
    table_levels = json.loads((tmp / "det" / "onnx_detector.json").read_text())["table_levels"]
    pool_path = tmp / "pool.onnx"
    _export(
        _WindowPool(levels, table_levels),
        (fmap, cells),
        pool_path,
        ["conv_map", "windows"],
        ["pooled"],
        {"conv_map": {2: Dim.DYNAMIC, 3: Dim.DYNAMIC}, "windows": {0: Dim.DYNAMIC}},
        DEFAULT_OPSET,
        {},
    )
    pool_sess = _session(pool_path, args.threads)
    pooled = torch.from_numpy(pool_sess.run(None, feeds)[0])
    assert torch.equal(pooled, window_pyramid_pool(fmap, cells, None, levels))
    checks.append("window pyramid alone: ONNX == PyTorch exactly")
    cases[f"{args.windows} window pyramids only | PyTorch"] = lambda: window_pyramid_pool(
        fmap, cells, None, levels
    )
    cases[f"{args.windows} window pyramids only | ONNX Runtime"] = lambda: pool_sess.run(
        None, feeds
    )
    return cases


def table_rows(cases: Cases, times: dict[str, tuple[float, float]]) -> list[list[str]]:
    """``[case, PyTorch ms, ONNX Runtime ms, ratio]`` per case, in the cases' order."""
    rows = []
    names = list(dict.fromkeys(name.split(" | ")[0] for name in cases))
    for name in names:
        pt, ox = times[f"{name} | PyTorch"], times[f"{name} | ONNX Runtime"]
        rows.append(
            [
                name,
                f"{pt[0]:.1f} ({pt[1]:.1f})",
                f"{ox[0]:.1f} ({ox[1]:.1f})",
                f"{pt[0] / ox[0]:.2f}x",
            ]
        )
    return rows


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model, detector = make_models(args, gen)
    checks: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        cases = classifier_cases(model, Path(tmp), args.threads, gen, checks)
        cases |= window_cases(detector, Path(tmp), args, gen, checks)
        times = interleaved_ms(cases, repeats=args.repeats)
    label = args.model if args.model != "zf5" else f"zf5 (width {args.width})"
    print(f"{label}, {args.threads} threads; {environment_line()}; onnxruntime {ort.__version__}")
    for line in checks:
        print(line)
    header = [
        "case",
        "PyTorch ms, median (best)",
        "ONNX Runtime ms, median (best)",
        "PyTorch / ORT",
    ]
    print(markdown_table(header, table_rows(cases, times)))


if __name__ == "__main__":
    main()
