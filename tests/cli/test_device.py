"""The one --device policy: auto is cuda where available, else cpu; names checked first."""

from __future__ import annotations

import json

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
        ["eval-det", "--detector", "d", "--data", "v"],
        ["detect", "x.jpg", "--detector", "d"],
        ["detect", "x.jpg", "--onnx", "d"],
    ],
)
def test_every_network_command_takes_device_auto(argv):
    args = build_parser().parse_args([*argv, "--device", "auto"])
    assert args.device == "auto"
    assert build_parser().parse_args(argv).device is None  # not given: auto


def _without_timing(path):
    """A metrics.json or detection record, less what the clock measured."""
    record = json.loads(path.read_text(encoding="utf-8"))
    record.pop("timing")
    if "rcnn" in record:
        record["rcnn"] = {k: record["rcnn"][k] for k in ("images", "map", "spp_map")}
    return record


@pytest.mark.usefixtures("one_thread")
def test_eval_det_and_detect_with_device_cpu_equal_the_default(
    tiny_voc, tiny_zf5, tmp_path, capsys, monkeypatch
):
    from sppnet.cli import main
    from sppnet.data.voc import VOCDetection
    from sppnet.detect.io import save_detector
    from sppnet.detection.detector import Detector

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the default is the CPU
    voc = tiny_voc(train=1, test=2, max_side=120)
    classes = VOCDetection(voc, "test").class_names
    model = tiny_zf5(len(classes) + 1, spp_levels=(2, 1))
    detector = Detector(model=model, class_names=classes, scales=(96,))
    save_detector(tmp_path / "det", detector, model.config())
    image = next((voc / "JPEGImages").glob("*.jpg"))
    for name, device in (("default", []), ("cpu", ["--device", "cpu"])):
        eval_det = ["eval-det", "--detector", str(tmp_path / "det"), "--data", str(voc),
                    "--split", "test", "--proposals", "edge_boxes", "--max-proposals", "30",
                    "--rcnn-images", "1", "--out", str(tmp_path / f"eval_{name}"),
                    "--no-progress", *device]  # fmt: skip
        assert main(eval_det) == 0
        detect = ["detect", str(image), "--detector", str(tmp_path / "det"), "--out",
                  str(tmp_path / f"detect_{name}"), "--max-proposals", "30", *device]  # fmt: skip
        assert main(detect) == 0
    assert "R-CNN baseline" in capsys.readouterr().out
    default, cpu = tmp_path / "eval_default", tmp_path / "eval_cpu"
    assert _without_timing(cpu / "metrics.json") == _without_timing(default / "metrics.json")
    assert _without_timing(default / "metrics.json")["rcnn"]["images"] == 1
    results = sorted((default / "results").iterdir())
    assert sum(len(path.read_bytes()) for path in results) > 0  # some detections to compare
    for path in results:
        assert (cpu / "results" / path.name).read_bytes() == path.read_bytes()
    json_name = f"{image.stem}.json"
    assert _without_timing(tmp_path / "detect_cpu" / json_name) == _without_timing(
        tmp_path / "detect_default" / json_name
    )
