"""CI smoke test of the main job: `sppnet demo --quick` end to end (about 2-3 minutes).

This is the pretrained EfficientNet-Lite0 path (the default); test_demo.py runs the
from-scratch ZF-5 path on tiny settings.
"""

from __future__ import annotations

import json
import math

import torch
from demo_helpers import json_numbers

from sppnet.cli import main


def test_demo_quick_writes_the_whole_report(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "report.md" in printed
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in ("Classification", "Transfer", "Detection", "R-CNN"):
        assert heading in report
    assert "ImageNet weights" in report
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    values = list(json_numbers(metrics))
    assert values
    for where, value in values:
        assert math.isfinite(value), where
    for model in metrics["classification"].values():
        for view in model["views"].values():
            if view is None:  # a view the no-SPP network cannot take
                continue
            for key in ("top1_error_pct", "top5_error_pct"):
                if view.get(key) is not None:
                    assert 0.0 <= view[key] <= 100.0
    assert metrics["config"]["model"] == "efficientnet_lite0" and metrics["config"]["pretrained"]
    transfer = metrics["transfer"]["views"]
    assert set(transfer) == {"full", "crop", "warp"}
    for view in transfer.values():
        assert 0.0 <= view["top1_error_pct"] <= 100.0 and view["dim"] == 112 * 50
    det = metrics["detection"]
    assert 0.0 <= det["map"] <= 1.0
    assert 0.0 <= det["rcnn"]["map"] <= 1.0 and det["rcnn"]["speedup"]["conv"] > 1.0
    assert metrics["total_seconds"] > 0
    pictures = sorted(p.name for p in (tmp_path / "pictures").glob("*.png"))
    assert len(pictures) >= 4, pictures
    for name in pictures:
        assert (tmp_path / "pictures" / name).stat().st_size > 1000


def test_demo_from_scratch_flag_is_parsed():
    from sppnet.cli import build_parser

    args = build_parser().parse_args(["demo", "--from-scratch", "--quick"])
    assert args.from_scratch and args.quick
