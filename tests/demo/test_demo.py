"""Tests for sppnet.demo: a tiny end-to-end run, its report, resuming, settings.

One tiny demo (a few dozen scenes, a very narrow network, one epoch) runs once per module
(about a minute on 2 cores): first interrupted in the detector's evaluation, then resumed.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from demo_helpers import json_numbers
from PIL import Image

from sppnet.demo import DEMO_STAGES, DemoConfig, demo_config, run_demo
from sppnet.demo import pipeline as demo_pipeline

# The from-scratch ZF-5 path (the pretrained trunk's is the CLI smoke test, test_demo_cli.py)
TINY = DemoConfig(
    model="zf5",
    pretrained=False,
    spp_levels=(6, 3, 2, 1),
    trunk_lr_scale=1.0,
    cache_views=0,
    train_scenes=24,
    val_scenes=8,
    test_scenes=12,
    width=0.0625,
    fc_dim=32,
    epochs=2,
    multiview_scales=(224,),
    max_proposals=40,
    detection_train_images=12,
    detection_test_images=6,
    finetune_iterations=20,
    rcnn_images=2,
    detection_pictures=2,
)


class _Interrupt(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny demo: interrupted once (Ctrl-C in eval_detection), then run to the end."""
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []

    def interrupted(*args, **kwargs):
        raise _Interrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo_pipeline, "_eval_detection_stage", interrupted)
        with pytest.raises(_Interrupt):
            run_demo(out, config=TINY, progress=False, log=lines.append)
    first = list(lines)
    lines.clear()
    metrics = run_demo(out, config=TINY, progress=False, log=lines.append)
    return {"out": out, "metrics": metrics, "interrupted_log": first, "log": list(lines)}


# --------------------------------------------------------------------------- the run
def test_every_report_file_is_written(tiny):
    out = tiny["out"]
    assert (out / "report.md").is_file()
    assert (out / "metrics.json").is_file()
    pictures = out / "pictures"
    names = {p.name for p in pictures.glob("*.png")}
    for name in ("training_curves.png", "precision_recall.png", "pyramid_bins.png"):
        assert name in names
    drawn = [n for n in names if n.startswith("detections_")]
    assert len(drawn) == TINY.detection_pictures
    for name in names:
        with Image.open(pictures / name) as im:
            assert im.format == "PNG"
            assert im.width > 50 and im.height > 50


def test_metrics_json_holds_finite_numbers_in_range(tiny):
    metrics = json.loads((tiny["out"] / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == json.loads(json.dumps(tiny["metrics"]))  # what run_demo returned
    values = list(json_numbers(metrics))
    assert values
    for where, value in values:
        assert math.isfinite(value), where

    classification = metrics["classification"]
    assert set(classification) == {"SPP", "no SPP"}
    for name, model in classification.items():
        for view, e in model["views"].items():
            if name == "no SPP" and view in ("full", "multiview"):
                assert e is None  # a fixed-size network has no full-image or pyramid views
                continue
            assert 0.0 <= e["top1_error_pct"] <= 100.0
            assert 0.0 <= e["top5_error_pct"] <= e["top1_error_pct"]
            assert e["images"] == metrics["data"]["crops"]["test"]
        assert len(model["history"]) == TINY.epochs

    det = metrics["detection"]
    assert det["map"] is None or 0.0 <= det["map"] <= 1.0
    assert set(det["ap"]) == set(metrics["data"]["classes"])
    for ap in det["ap"].values():
        assert ap is None or 0.0 <= ap <= 1.0
    assert det["images"] == TINY.detection_test_images
    assert all(t > 0 for t in det["timing"].values())
    rcnn = det["rcnn"]
    assert rcnn["images"] == TINY.rcnn_images
    for key in ("map", "spp_map"):
        assert rcnn[key] is None or 0.0 <= rcnn[key] <= 1.0
    assert all(t > 0 for t in rcnn["timing"].values())
    assert all(t > 0 for t in rcnn["spp_timing"].values())
    # R-CNN runs the convolutions once per window, SPP-net once per image.
    assert rcnn["speedup"]["conv"] > 1.0

    assert list(metrics["stage_seconds"]) == list(DEMO_STAGES)
    assert all(s > 0 for s in metrics["stage_seconds"].values())
    assert metrics["total_seconds"] == pytest.approx(sum(metrics["stage_seconds"].values()))


def test_report_shows_the_measuredjson_numbers(tiny):
    report = (tiny["out"] / "report.md").read_text(encoding="utf-8")
    metrics = tiny["metrics"]
    for heading in ("## Classification", "## Detection", "R-CNN", "## Time per stage"):
        assert heading in report
    spp = metrics["classification"]["SPP"]["views"]
    for view in ("center", "ten", "full", "multiview"):
        e = spp[view]
        assert f"{e['top1_error_pct']:.1f} ({e['top5_error_pct']:.1f})" in report
    for name, ap in metrics["detection"]["ap"].items():
        assert f"| {name} | {'n/a' if ap is None else f'{100 * ap:.1f}'} |" in report
    speedup = metrics["detection"]["rcnn"]["speedup"]
    assert f"**{speedup['conv']:.0f}x**" in report
    for picture in ("training_curves.png", "precision_recall.png", "pyramid_bins.png"):
        assert f"(pictures/{picture})" in report


def test_log_has_a_timing_line_per_stage_and_the_report_path(tiny):
    log = tiny["log"]
    for i, stage in enumerate(DEMO_STAGES):
        tag = f"[demo {i + 1}/{len(DEMO_STAGES)}]"
        assert any(line.startswith(tag) and line.rstrip().endswith(" s") for line in log) or any(
            line.startswith(tag) and "reused" in line for line in log
        ), stage
    assert "report.md" in log[-1]


def test_interrupted_run_resumes_from_the_stage_it_stopped_in(tiny):
    first, second = tiny["interrupted_log"], tiny["log"]
    # The interrupted run finished the stages before eval_detection and none after.
    # (stage lines only: the detector's own progress lines end in seconds too)
    done = [line for line in first if line.startswith("[demo ") and line.rstrip().endswith(" s")]
    assert len(done) == DEMO_STAGES.index("eval_detection")
    # The rerun reused them and computed only the rest.
    reused = [line for line in second if line.startswith("[demo ") and "reused" in line]
    assert len(reused) == DEMO_STAGES.index("eval_detection")
    stop = DEMO_STAGES.index("eval_detection")
    assert tiny["metrics"]["reused_stages"] == list(DEMO_STAGES[:stop])


def test_second_call_reuses_every_stage_and_gives_the_samejson_numbers(tiny):
    start = time.perf_counter()
    again = run_demo(tiny["out"], config=TINY, progress=False, log=None)
    assert time.perf_counter() - start < 15.0
    assert again["reused_stages"] == list(DEMO_STAGES)
    first = tiny["metrics"]
    assert again["classification"] == first["classification"]
    assert again["detection"] == first["detection"]
    assert again["stage_seconds"] == first["stage_seconds"]


def _without_times(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


def test_a_fresh_run_with_the_same_seed_gives_the_samejson_numbers(tiny, tmp_path):
    again = run_demo(tmp_path / "again", config=TINY, progress=False, log=None)
    first = tiny["metrics"]
    assert again["data"] == first["data"]
    for name, model in first["classification"].items():
        other = again["classification"][name]
        assert other["views"] == model["views"]
        assert _without_times(other["history"]) == _without_times(model["history"])
    det, det_again = first["detection"], again["detection"]
    assert det_again["map"] == det["map"]
    assert det_again["ap"] == det["ap"]
    assert det_again["rcnn"]["map"] == det["rcnn"]["map"]
    assert det_again["rcnn"]["spp_map"] == det["rcnn"]["spp_map"]


def test_other_settings_in_the_same_folder_are_refused(tiny):
    with pytest.raises(ValueError, match="seed"):
        run_demo(tiny["out"], seed=1, config=TINY, progress=False, log=None)
    with pytest.raises(ValueError, match="epochs"):
        run_demo(
            tiny["out"],
            config=DemoConfig(**{**TINY.to_dict(), "epochs": 3}),
            progress=False,
            log=None,
        )


# ------------------------------------------------------------------------- settings
@pytest.mark.parametrize("from_scratch", [False, True])
def test_quick_settings_are_smaller_than_full(from_scratch):
    full, quick = demo_config(False, from_scratch), demo_config(True, from_scratch)
    assert (full == DemoConfig()) is not from_scratch
    assert quick.model == full.model == ("zf5" if from_scratch else "efficientnet_lite0")
    assert quick.pretrained is full.pretrained is not from_scratch
    for name in (
        "train_scenes",
        "test_scenes",
        "epochs",
        "max_proposals",
        "detection_train_images",
        "detection_test_images",
        "finetune_iterations",
        "rcnn_images",
        "cache_views",
    ):
        assert getattr(quick, name) <= getattr(full, name), name
    # Same stages and recipe in both: the paper's sizes (shorter side 224 on the tight
    # object crops for the pretrained trunk, see DemoConfig.shorter)
    sizes = (quick.crop, quick.small_crop, quick.shorter)
    assert sizes == (full.crop, full.small_crop, full.shorter)
    assert full.shorter == (256 if from_scratch else 224)
    # a frozen trunk replays its cached vectors; a trunk that learns cannot
    assert (full.cache_views > 0) is not from_scratch
    assert (full.trunk_lr_scale == 0) is not from_scratch


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"epochs": 0}, ValueError),
        ({"train_scenes": 2.5}, ValueError),
        ({"rcnn_images": -1}, ValueError),
        ({"width": 0.0}, ValueError),
        ({"lr": "fast"}, TypeError),
        ({"multiview_scales": ()}, ValueError),
        ({"multiview_scales": (180, 224)}, ValueError),  # a scale below the crop
        ({"small_crop": 256}, ValueError),  # above the crop
        ({"proposals": "sliding"}, ValueError),
        ({"trunk_lr_scale": 0.1}, ValueError),  # cache_views 4 needs a frozen trunk
        ({"model": "zf5"}, ValueError),  # pretrained=True: ZF-5 has no ImageNet weights
        ({"model": "resnet50", "pretrained": False}, ValueError),
        ({"width": 0.5}, ValueError),  # Lite's widths are fixed by its weights
        ({"trunk_lr_scale": -0.1}, ValueError),
        ({"spp_levels": ()}, ValueError),
    ],
)
def test_config_validation(change, error):
    with pytest.raises(error):
        DemoConfig(**change)


def test_run_demo_validates_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        run_demo(tmp_path, seed=-1, log=None)
    with pytest.raises(TypeError, match="DemoConfig"):
        run_demo(tmp_path, config={"epochs": 1}, log=None)
