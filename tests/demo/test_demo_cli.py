"""CI smoke test of the main job: `sppnet demo --quick` end to end (about 2-3 minutes).

This is the pretrained EfficientNet-Lite0 path (the default); test_demo.py runs the
from-scratch ZF-5 path on tiny settings. The quick run is compared with its recorded
reference (docs/reference/demo_quick.json): a fresh clone on this machine class, with the
versions of constraints.txt, must give every result to the last digit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from demo_helpers import json_numbers

from sppnet.cli import main
from sppnet.demo._common import _usable_cpus, cpu_name
from sppnet.demo.reference import compare_results, read_reference, reproducible_results

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "demo_quick.json"


def _demo(args: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return main(["demo", "--quick", "--no-progress", *args])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick demo (about 2-3 minutes), shared by the tests below."""
    out = tmp_path_factory.mktemp("quick")
    return {"out": out, "code": _demo(["--out", str(out)])}


def test_demo_quick_gives_the_recorded_reference_numbers(quick_run, capsys):
    reference = read_reference(REFERENCE)
    if reference["threads"] != _usable_cpus():
        pytest.skip(f"the reference was recorded on {reference['threads']} CPUs")
    if reference.get("cpu") != cpu_name():
        # other vector instructions add in another order: the last digits differ
        pytest.skip(f"the reference was recorded on a {reference.get('cpu')}, not {cpu_name()}")
    metrics = json.loads((quick_run["out"] / "metrics.json").read_text(encoding="utf-8"))
    differences = compare_results(metrics, reference)
    assert differences == [], "\n".join(differences)
    # the same check through the CLI (every stage is reused: seconds)
    assert _demo(["--out", str(quick_run["out"]), "--reference", str(REFERENCE)]) == 0
    assert "every result equals the reference" in capsys.readouterr().out


def test_demo_quick_reference_mismatch_is_one_error_line(quick_run, tmp_path, capsys):
    # this machine's own results, two of them changed (the file's are another CPU's)
    metrics = json.loads((quick_run["out"] / "metrics.json").read_text(encoding="utf-8"))
    reference = reproducible_results(metrics)
    reference["detection"]["map"] += 0.01
    reference["detection"]["ap"]["ring"] = None
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(reference), encoding="utf-8")
    capsys.readouterr()
    assert _demo(["--out", str(quick_run["out"]), "--reference", str(changed)]) == 2  # reused
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 result(s) differ" in errors[0], captured.err
    assert "/detection/map: measured" in captured.out
    assert "/detection/ap/ring: measured" in captured.out


def test_demo_quick_writes_the_whole_report(quick_run):
    tmp_path = quick_run["out"]
    assert quick_run["code"] == 0
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
