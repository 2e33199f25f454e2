"""Small trunks for the from_trunk tests, importable as ``toy_trunks:NAME`` (this folder is on
the test path): a BN ResNet-style stride-16 net (optionally with squeeze-excitation) and a
stride-8 net with odd paddings, plus trunks sppnet must refuse."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    """ResNet basic block: 3x3 (stride s) + BN + ReLU, 3x3 + BN, 1x1 stride-s shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, se: bool) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.se = nn.Sequential(nn.Linear(cout, 4), nn.ReLU(), nn.Linear(4, cout)) if se else None
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        if self.se is not None:  # squeeze-excitation: a global mean scales the channels
            y = y * torch.sigmoid(self.se(y.mean((2, 3))))[:, :, None, None]
        return torch.relu(y + (x if self.down is None else self.down(x)))


def resnet_s16(width: int = 8, se: bool = False) -> nn.Module:
    """stem 7x7/2 pad 3, max pool 3x3/2 pad 1, blocks at strides 4, 8, 16 (ResNet-18's
    first three stages, one block each)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        _Block(width, width, 1, se), _Block(width, 2 * width, 2, se),
        _Block(2 * width, 4 * width, 2, se),
    )  # fmt: skip


def odd_s8(width: int = 6) -> nn.Module:
    """conv 5x5/2 pad 1, conv 3x3 pad 0, max pool 2x2/2, conv 4x4/2 pad 2: stride 8."""
    return nn.Sequential(
        nn.Conv2d(3, width, 5, 2, 1), nn.ReLU(),
        nn.Conv2d(width, width, 3, 1, 0), nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(width, 2 * width, 4, 2, 2), nn.ReLU(),
    )  # fmt: skip


class DictTrunk(nn.Module):
    """torchvision-feature-extractor-like: ``{"c3": stride-8 map, "c4": stride-16 map}``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = resnet_s16(4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i == 5:
                out["c3"] = x
        out["c4"] = x
        return out


def global_pool() -> nn.Module:
    """A classifier trunk: ends with global average pooling (1x1 at every size)."""
    return nn.Sequential(odd_s8(), nn.AdaptiveAvgPool2d(1))


def flatten() -> nn.Module:
    """A trunk with a flatten: a 2-D output."""
    return nn.Sequential(odd_s8(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


class VaryingStride(nn.Module):
    """Stride 16 below 300 pixels, 8 above: no one stride."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = 16 if x.shape[2] < 300 and x.shape[3] < 300 else 8
        return F.avg_pool2d(self.conv(x), stride, stride)
