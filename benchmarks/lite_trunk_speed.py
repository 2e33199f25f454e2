"""EfficientNet-Lite0 trunk speed on CPU: batch norm folded into the convs or run after them.

Run::

    python benchmarks/lite_trunk_speed.py
    python benchmarks/lite_trunk_speed.py --threads 2 --runs 10

The pretrained Lite0 trunk up to the stage-5 map (the SPP head's map) in eval mode, timed
round-robin in one run (``_timing.interleaved_ms``) with batch-norm folding on and off
(:func:`sppnet.models.set_bn_folding`):

* a batch of 32 crops of 224 x 224 (classification, transfer features), no grad;
* one 688 x 917 image (the paper's detection scale), no grad;
* forward + backward of a batch of 16 at 224 with frozen batch-norm statistics (fine-tuning
  the trunk with ``trunk_lr_scale > 0``).

It checks that both give the same maps (to 1e-3) and prints milliseconds per image, the
speedup and a markdown table. Then it times the folded batch of 32 in child processes started
in turn with ``THP_MEM_ALLOC_ENABLE`` 0 and 1 (torch's transparent-huge-page allocation, which
the ``sppnet`` command turns on unless the environment sets it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from _timing import environment_line, interleaved_ms, markdown_table

from sppnet.models import create_model, set_bn_folding


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    """Parse the options, time the cases, print the table."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", pretrained=True, num_classes=8).eval()
    if args.child:  # one timing of the folded batch, for the huge-page comparison
        x = torch.randn(32, 3, 224, 224) * 60
        with torch.inference_mode():
            model.forward_features(x)
            start = time.perf_counter()
            for _ in range(3):
                model.forward_features(x)
        print((time.perf_counter() - start) / 96 * 1e3)
        return

    batch = torch.randn(32, 3, 224, 224) * 60
    image = torch.randn(1, 3, 688, 917) * 60
    train_batch = torch.randn(16, 3, 224, 224) * 60

    def infer(x: torch.Tensor, fold: bool) -> torch.Tensor:
        set_bn_folding(model, fold)
        with torch.inference_mode():
            return model.forward_features(x)

    def train_step(fold: bool) -> None:
        set_bn_folding(model, fold)
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()  # frozen statistics, as train_classifier fine-tunes
        model.zero_grad(set_to_none=True)
        model.forward_features(train_batch).sum().backward()
        model.eval()

    for x in (batch, image):
        if not torch.allclose(infer(x, True), infer(x, False), atol=1e-3, rtol=1e-4):
            raise SystemExit("folded and unfolded maps differ")

    cases = {
        ("batch 32 x 224", "unfolded"): (lambda: infer(batch, False), 32),
        ("batch 32 x 224", "folded"): (lambda: infer(batch, True), 32),
        ("1 x 688 x 917", "unfolded"): (lambda: infer(image, False), 1),
        ("1 x 688 x 917", "folded"): (lambda: infer(image, True), 1),
        ("fwd+bwd 16 x 224", "unfolded"): (lambda: train_step(False), 16),
        ("fwd+bwd 16 x 224", "folded"): (lambda: train_step(True), 16),
    }
    times = interleaved_ms({k: fn for k, (fn, _) in cases.items()}, repeats=args.runs)
    print(environment_line())
    rows = []
    for case in dict.fromkeys(k[0] for k in cases):
        per = {how: times[(case, how)][0] / cases[(case, how)][1] for how in ("unfolded", "folded")}
        rows.append(
            [
                case,
                f"{per['unfolded']:.1f}",
                f"{per['folded']:.1f}",
                f"{per['unfolded'] / per['folded']:.2f}x",
            ]
        )
    print(markdown_table(["Lite0 to stage 5", "unfolded ms/img", "folded ms/img", "speedup"], rows))
    print()
    print(_huge_pages(args.threads, repeats=3))


def _huge_pages(threads: int, repeats: int) -> str:
    """The folded batch of 32 timed in child processes without and with huge pages."""
    times: dict[str, list[float]] = {"0": [], "1": []}
    command = [sys.executable, __file__, "--child", "--threads", str(threads)]
    for _ in range(repeats):
        for thp in times:
            env = {**os.environ, "THP_MEM_ALLOC_ENABLE": thp}
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            times[thp].append(float(out.stdout.split()[-1]))
    off, on = statistics.median(times["0"]), statistics.median(times["1"])
    return markdown_table(
        ["batch 32 x 224, folded", "THP off ms/img", "THP on ms/img", "speedup"],
        [["median of child processes", f"{off:.1f}", f"{on:.1f}", f"{off / on:.2f}x"]],
    )


if __name__ == "__main__":
    main()
