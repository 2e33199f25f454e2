"""The demo's recorded reference: what is compared, what is ignored, and the CLI's checks.

The comparison itself (the quick demo against docs/reference/demo_quick.json) runs in
test_demo_cli.py, on the quick run it makes anyway.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sppnet.cli import main
from sppnet.demo.reference import (
    check_conditions,
    compare_results,
    demo_conditions,
    read_reference,
    reproducible_results,
)
from sppnet.errors import DamagedFileError, UserError

QUICK = Path(__file__).resolve().parents[2] / "docs" / "reference" / "demo_quick.json"

METRICS = {
    "seed": 0,
    "settings": "quick",
    "threads": 2,
    "config": {"epochs": 8, "lr": 0.001},
    "classification": {
        "SPP": {"views": {"center": {"top1_error_pct": 35.1}}, "train_seconds": 6.1}
    },
    "detection": {
        "map": 0.31,
        "ap": {"circle": 0.63, "ring": 0.48},
        "timing": {"conv": 1.69},
        "rcnn": {"map": 0.37, "speedup": {"conv": 7.5}, "spp_timing": {"fc": 0.11}},
        "train": {"detector": "/tmp/somewhere", "finetune_loss": {"last": 0.52}},
    },
    "stage_seconds": {"data": 3.8},
    "total_seconds": 1559.0,
    "pictures": {"detections": ["a.png"]},
    "history": [{"epoch": 1, "train_loss": 2.13, "images_per_s": 73.5}],
}


def test_reproducible_results_drop_timings_paths_and_pictures_only():
    kept = reproducible_results(METRICS)
    assert kept["detection"]["ap"] == METRICS["detection"]["ap"]
    assert kept["detection"]["train"] == {"finetune_loss": {"last": 0.52}}
    assert kept["history"] == [{"epoch": 1, "train_loss": 2.13}]
    for dropped in ("stage_seconds", "total_seconds", "pictures"):
        assert dropped not in kept
    assert "timing" not in kept["detection"] and "speedup" not in kept["detection"]["rcnn"]
    assert METRICS["detection"]["timing"] == {"conv": 1.69}  # the input is not changed


def test_same_results_other_timings_compare_equal():
    other = copy.deepcopy(METRICS)
    other["detection"]["timing"]["conv"] = 9.0
    other["total_seconds"] = 1.0
    other["history"][0]["images_per_s"] = 1.0
    other["detection"]["train"]["detector"] = "/elsewhere"
    assert compare_results(other, METRICS) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda m: m["detection"]["ap"].__setitem__("ring", 0.4800001), "/detection/ap/ring"),
        (lambda m: m["detection"].__setitem__("map", 0.3), "/detection/map"),
        (lambda m: m["history"][0].__setitem__("train_loss", 2.2), "/history[0]/train_loss"),
        (lambda m: m["detection"]["ap"].pop("circle"), "/detection/ap/circle"),
        (lambda m: m["detection"]["ap"].__setitem__("star", 0.1), "/detection/ap/star"),
    ],
)
def test_each_changed_missing_or_extra_result_is_one_line(change, path):
    other = copy.deepcopy(METRICS)
    change(other)
    lines = compare_results(other, METRICS)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: "), lines


def test_results_under_other_conditions_are_not_compared():
    other = copy.deepcopy(METRICS)
    other["threads"] = 4
    other["detection"]["map"] = 0.0
    (line,) = compare_results(other, METRICS)
    assert line.startswith("threads:")
    with pytest.raises(UserError, match="recorded with threads 2, this run has 4"):
        check_conditions(METRICS, other, "ref.json")
    other = copy.deepcopy(METRICS)
    other["config"]["lr"] = 0.01
    with pytest.raises(UserError, match=r"config \{'lr': 0.001\}, this run has \{'lr': 0.01\}"):
        check_conditions(METRICS, other, "ref.json")
    check_conditions(METRICS, copy.deepcopy(METRICS), "ref.json")  # same: no error


@pytest.mark.parametrize(
    ("path", "quick"), [(QUICK, True), (QUICK.with_name("demo_full.json"), False)]
)
def test_recorded_references_match_the_demo_settings(path, quick):
    reference = read_reference(path)
    conditions = demo_conditions(0, quick, False)
    assert reference["config"] == conditions["config"]  # the settings have not moved since
    assert reference["seed"] == 0 and reference["settings"] == ("quick" if quick else "full")
    assert 0.0 <= reference["detection"]["map"] <= 1.0
    assert compare_results(reference, reference) == []


def test_read_reference_names_a_missing_or_damaged_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        read_reference(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DamagedFileError, match=r"bad\.json"):
        read_reference(bad)
    bad.write_text(json.dumps({"seed": 0}))
    with pytest.raises(DamagedFileError, match="no settings, threads, config"):
        read_reference(bad)


# ------------------------------------------------------------------ through the CLI


def _one_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_cli_refuses_a_missing_reference_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["demo", "--quick", "--out", str(out), "--reference", str(tmp_path / "r.json")])
    assert code == 2
    _one_error(capsys, "r.json", "does not exist")
    assert not out.exists()


def test_cli_refuses_a_reference_of_other_settings_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["demo", "--out", str(out), "--seed", "3", "--reference", str(QUICK)])
    assert code == 2
    _one_error(capsys, "demo_quick.json", "not comparable")
    assert not out.exists()


def test_cli_refuses_to_record_over_an_existing_file(tmp_path, capsys):
    out, record = tmp_path / "run", tmp_path / "ref.json"
    record.write_text("{}")
    code = main(["demo", "--quick", "--out", str(out), "--record-reference", str(record)])
    assert code == 2
    _one_error(capsys, "ref.json", "delete it first")
    assert record.read_text() == "{}" and not out.exists()


def test_cli_refuses_an_unwritable_record_before_any_work(tmp_path, capsys):
    out, blocker = tmp_path / "run", tmp_path / "file"
    blocker.write_text("")
    record = blocker / "ref.json"  # its folder would be a file
    code = main(["demo", "--quick", "--out", str(out), "--record-reference", str(record)])
    assert code == 2
    _one_error(capsys, "--record-reference", "cannot create its folder")
    assert not out.exists()
