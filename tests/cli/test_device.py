"""The one --device policy: auto is cuda where available, else cpu; names checked first."""

from __future__ import annotations

import pytest
import torch

from sppnet.cli import build_parser
from sppnet.cli.device import check_device, resolve_device
from sppnet.errors import UserError


def test_auto_and_none_follow_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_check_device():
    check_device("auto")
    check_device("cpu")
    with pytest.raises(UserError, match="not a device"):
        check_device("gpu0")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "o"],
        ["eval", "--checkpoint", "r", "--data", "d"],
        ["features", "--data", "d", "--layer", "spp", "--view", "full", "--out", "o"],
        ["predict", "x.jpg"],
        ["train-det", "--out", "o"],
    ],
)
def test_every_network_command_takes_device_auto(argv):
    args = build_parser().parse_args([*argv, "--device", "auto"])
    assert args.device == "auto"
    assert build_parser().parse_args(argv).device is None  # not given: auto
