"""Training throughput (images/s): SPP vs no SPP, and variable-size batches vs resize-to-224.

One SGD step (forward, loss, backward, update) on random data, cases interleaved
round-robin in one run (median of several steps):

  * no-SPP ZF-5 on 224x224 crops (pool5 3x3/2 -> 6x6, fc6 on 9,216 values);
  * SPP ZF-5 on the same 224x224 crops (pyramid 6,3,2,1 -> fc6 on 12,800 values);
  * SPP ZF-5 on variable-size images (shorter side 224, aspect 3:4 to 4:3, as they come):
    padded into one batch and pooled per image with ``extents`` (beyond the paper);
  * SPP ZF-5 on the same images resized to 224x224 (what a fixed-size network needs).

Target, the project's own: SPP costs <= 5% more per training step than no SPP on the same
trunk (the pyramid should be nearly free beside the convolutions).

Run:
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/train_throughput.py [--width 0.5] [--batch 16]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _timing import environment_line, interleaved_ms, markdown_table

from sppnet.models import create_model


def make_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, extents=None):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = model(images) if extents is None else model(images, extents=extents)
        F.cross_entropy(logits, labels).backward()
        opt.step()

    return step


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="zf5")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--fc-dim", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    kw = {"width": args.width, "fc_dim": args.fc_dim, "num_classes": args.classes}
    spp = create_model(args.model, **kw).train()
    no_spp = create_model(args.model, spp_levels=None, **kw).train()
    no_spp.features.load_state_dict(spp.features.state_dict())  # same trunk weights

    n = args.batch
    crops = torch.randn(n, 3, 224, 224, generator=gen) * 60
    labels = torch.randint(0, args.classes, (n,), generator=gen)
    # variable sizes: shorter side 224, aspect between 3:4 and 4:3
    long_side = torch.randint(224, 299, (n,), generator=gen)
    portrait = torch.rand(n, generator=gen) < 0.5
    sizes = torch.stack(
        [torch.where(portrait, long_side, 224), torch.where(portrait, 224, long_side)], 1
    )
    # group by orientation to limit padding (what SizeGroupedBatchSampler does)
    order = torch.argsort(portrait.long(), stable=True)
    sizes, labels_var = sizes[order], labels[order]
    half = n // 2
    batches = []
    for part in (slice(0, half), slice(half, n)):
        ext = sizes[part]
        h, w = int(ext[:, 0].max()), int(ext[:, 1].max())
        padded = torch.zeros(len(ext), 3, h, w)
        for k, (eh, ew) in enumerate(ext.tolist()):
            padded[k, :, :eh, :ew] = torch.randn(3, eh, ew, generator=gen) * 60
        batches.append((padded, labels_var[part], ext))
    resized = torch.cat([F.interpolate(b[0], size=(224, 224), mode="bilinear") for b in batches])
    pixels_variable = float((sizes[:, 0] * sizes[:, 1]).sum())
    pixels_padded = float(sum(b[0].shape[2] * b[0].shape[3] * len(b[2]) for b in batches))

    var_steps = [make_step(spp, b[0], b[1], b[2]) for b in batches]

    cases = {
        "no SPP, 224x224 crops": make_step(no_spp, crops, labels),
        "SPP, 224x224 crops": make_step(spp, crops, labels),
        "SPP, variable sizes (padded, extents)": lambda: [s() for s in var_steps],
        "SPP, same images resized to 224x224": make_step(spp, resized, labels_var),
    }
    timed = interleaved_ms(cases, args.repeats, warmup=1)
    base = timed["no SPP, 224x224 crops"][0]
    rows = [
        [name, f"{ms:.0f}", f"{n / (ms / 1e3):.1f}", f"{ms / base:.3f}x"]
        for name, (ms, _) in timed.items()
    ]
    print(
        f"One SGD step of {args.model} (width {args.width}, fc {args.fc_dim}, "
        f"{args.classes} classes), batch {n}; variable-size batch in 2 size groups, padding "
        f"{100 * (pixels_padded / pixels_variable - 1):.1f}% extra pixels"
    )
    print(environment_line())
    print(markdown_table(["case", "ms / step", "images / s", "time / no-SPP"], rows))


if __name__ == "__main__":
    main()
