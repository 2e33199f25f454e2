"""from_trunk on a ResNet-18-style trunk vs the same network written by hand as an SPPNet.

Checks that an SPP head put on an arbitrary trunk with :func:`sppnet.models.from_trunk`
(geometry *measured*: map sizes, stride, least input, receptive-field offset) is the network
one would write by hand (geometry *derived* from the layers):

- trunk: ResNet-18's stem and first three stages (stride 16, 256 channels, batch norm,
  random weights): conv 7x7/2 pad 3, max pool 3x3/2 pad 1, then two basic blocks per stage
  (3x3 convs pad 1, the first of stages 2 and 3 with stride 2 and a 1x1/2 shortcut);
- by hand (Appendix A): every conv and pool pads ``k // 2``, so each layer keeps its cell
  centred: offset 0.5; side ``ceil(s / 16)``; least input 1; receptive field
  ``1 + 6 + 2*2 + 4*(2*4) + 2*4 + 3*(2*8) + 2*8 + 3*(2*16) = 211`` (kernel minus one times
  the stride before each conv on the longest path);
- outputs: the hand-written :class:`HandResNetSPP` takes the from_trunk model's weights
  (the same parameter names) and both run in eval mode on inputs of several sizes: conv maps
  and logits must be identical (``torch.equal``), and the map sizes of sizes 1..400 equal.

Run (about 10 s on 2 CPU cores; the measurement itself about 2 s on one)::

    python benchmarks/generic_trunk.py [--threads 2]

Prints the measured and the hand-derived geometry, the seconds the measurement took, the
largest output difference; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict

import torch
from torch import Tensor, nn

from sppnet.models import SPPNet, from_trunk
from sppnet.models.from_trunk import IMAGENET_MEAN, IMAGENET_STD
from sppnet.ops import SpatialPyramidPool

HAND = {"stride": 16, "offset": 0.5, "receptive_field": 211, "min_input_size": 1}


class BasicBlock(nn.Module):
    """ResNet's basic block: 3x3 (stride s) BN ReLU, 3x3 BN, plus the (1x1/s BN) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def resnet18_s16() -> nn.Sequential:
    """ResNet-18 up to its stride-16 stage (layer3): ``Tensor[N, 3, H, W] -> [N, 256, h, w]``."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            bn1=nn.BatchNorm2d(64),
            relu=nn.ReLU(inplace=True),
            maxpool=nn.MaxPool2d(3, 2, 1),
            layer1=nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1)),
            layer2=nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1)),
            layer3=nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1)),
        )
    )


class HandResNetSPP(SPPNet):
    """The same network as an SPPNet subclass, its geometry written out (module docstring)."""

    def __init__(self, num_classes: int, fc_dim: int, spp_levels=(6, 3, 2, 1)) -> None:
        nn.Module.__init__(self)
        self.name, self.num_classes, self.width, self.fc_dim = "hand", num_classes, 1.0, fc_dim
        self.spp_levels, self.spp_mode = tuple(spp_levels), "max"
        self.features = resnet18_s16()
        self.feature_channels = 256
        self.feature_stride = HAND["stride"]
        self.feature_offset = HAND["offset"]
        self.receptive_field = HAND["receptive_field"]
        self.min_input_size = HAND["min_input_size"]
        # in float64, then rounded once to float32 (as from_trunk does)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
        scale, shift = (1 / (255 * std)).float(), ((128 / 255 - mean) / std).float()
        self.register_buffer("_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.pool = SpatialPyramidPool(self.spp_levels, "max")
        self._build_head(self.pool.num_bins, num_classes, fc_dim, 0.5)

    def _map_side(self, size):
        return (size + 15) // 16  # every layer pads k // 2: ceil(s / 2) four times

    def forward_features(self, x: Tensor, extents: Tensor | None = None) -> Tensor:
        self._check_input(x)
        return self.features(x * self._scale + self._shift)  # ((x + 128) / 255 - mean) / std


def build_parser() -> argparse.ArgumentParser:
    """The script's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build both networks, compare geometry and outputs; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    generic = from_trunk(resnet18_s16(), num_classes=10, fc_dim=256).eval()
    seconds = time.perf_counter() - start
    hand = HandResNetSPP(10, 256).eval()
    hand.load_state_dict(generic.state_dict())  # same names: features.*, fc6..fc8
    measured = {k: getattr(generic, "feature_" + k if k in ("stride", "offset") else k)
                for k in HAND}  # fmt: skip
    print(f"{'':16} {'measured':>9} {'by hand':>8}")
    ok = True
    for key, want in HAND.items():
        ok &= measured[key] == want
        print(f"{key:16} {measured[key]!s:>9} {want!s:>8}")
    print(f"measuring took {seconds:.2f} s")
    sizes_ok = all(generic.feature_size(s, s) == hand.feature_size(s, s) for s in range(1, 401))
    print(f"map sizes of inputs 1..400 equal: {sizes_ok}")
    worst = 0.0
    with torch.no_grad():
        for h, w in ((224, 224), (180, 260), (97, 131), (33, 17)):
            x = torch.randn(2, 3, h, w) * 60
            a, b = generic.forward_features(x), hand.forward_features(x)
            la, lb = generic(x), hand(x)
            same = torch.equal(a, b) and torch.equal(la, lb)
            worst = max(worst, float((la - lb).abs().max()))
            ok &= same
            print(f"input {h}x{w}: map {tuple(a.shape[1:])}, outputs identical: {same}")
    print(f"largest logit difference: {worst:g}")
    ok &= sizes_ok
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
