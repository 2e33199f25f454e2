"""The benchmarks' detection timing (benchmarks/_timing.py): result keys, analytic conv
work, table, validation (tiny model)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sppnet.models import ConvSpec, LrnSpec, PoolSpec, SPPNet, create_model

# benchmarks/ is a folder of scripts, not a package: they import their helpers as the
# script's own folder puts them on the path, and so does this test
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import _timing
from _timing import conv_multiply_adds, detection_table, time_detection


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("zf5", num_classes=5, width=0.125, fc_dim=64)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 60, 80, generator=gen) * 255
    boxes = torch.tensor([[0.0, 0.0, 80.0, 60.0], [5.0, 7.5, 40.0, 30.0], [20.0, 20.0, 20.0, 20.0]])
    return image, boxes


def test_result_keys_finite_and_positive(model):
    image, boxes = _inputs()
    assert model.training
    result = time_detection(
        model,
        image,
        boxes,
        scales_list=((100,), (90, 110)),
        rcnn_size=40,
        svd_ranks=(16, 8),
        repeats=2,
        rcnn_repeats=2,
        rcnn_batch_size=2,
        threads=1,
    )
    assert model.training  # mode restored
    expected = {"windows", "threads", "fc_s", "svd_rank6", "svd_rank7", "svd_fc_s"}
    expected |= {"rcnn_conv_s", "rcnn_fc_s", "rcnn_total_s", "rcnn_conv_macs"}
    for n in (1, 2):
        expected |= {
            f"spp{n}_{k}"
            for k in (
                "conv_s",
                "pool_s",
                "fc_s",
                "total_s",
                "conv_macs",
                "speedup",
                "conv_speedup",
                "mac_ratio",
                "svd_total_s",
                "svd_speedup",
            )
        }
    assert set(result) == expected
    for key, value in result.items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, key
    assert result["windows"] == 3
    assert result["rcnn_conv_macs"] == 3 * conv_multiply_adds(model, 40, 40)
    # 60x80 at shorter side 100 -> 100x133
    assert result["spp1_conv_macs"] == conv_multiply_adds(model, 100, 133)
    assert result["spp1_total_s"] == pytest.approx(
        result["spp1_conv_s"] + result["spp1_pool_s"] + result["fc_s"]
    )
    assert result["spp2_speedup"] == pytest.approx(result["rcnn_total_s"] / result["spp2_total_s"])
    table = detection_table(result)
    assert "R-CNN" in table and "SPP (2-scale) + SVD fc (16/8)" in table
    assert len(table.splitlines()) == 10


def test_without_rcnn_or_svd(model):
    image, boxes = _inputs()
    result = time_detection(model, image, boxes, scales_list=((100,),), rcnn=False, repeats=1)
    assert not any(k.startswith("rcnn") or "svd" in k or "speedup" in k for k in result)
    table = detection_table(result)
    assert "R-CNN" not in table and "SVD" not in table
    assert len(table.splitlines()) == 7


def test_extra_cases_timed_in_the_same_rounds(model):
    image, boxes = _inputs()
    calls = []
    result = time_detection(
        model,
        image,
        boxes,
        scales_list=((100,),),
        rcnn=False,
        repeats=2,
        extra_cases={"ceiling": lambda: calls.append(1)},
    )
    assert len(calls) == 3  # one untimed, then one per round
    assert result["ceiling_s"] >= 0
    with pytest.raises(ValueError, match="clashes"):
        time_detection(
            model, image, boxes, scales_list=((100,),), rcnn=False, extra_cases={"fc": list}
        )


def test_rounds_wait_for_the_images_device(model, monkeypatch):
    # on CUDA each timing must wait for the queued work: the clock is read through
    # device_clock with the image's device, at both ends of every case

    devices = []

    def clock(device):
        devices.append(device)
        return float(len(devices))  # every timing lasts one "second"

    monkeypatch.setattr(_timing, "device_clock", clock)
    image, boxes = _inputs()
    time_detection(model, image, boxes, scales_list=((100,),), rcnn=True, repeats=2)
    # 2 rounds x (conv, pool, fc) cases + R-CNN's one batch, two readings each
    assert devices == [torch.device("cpu")] * (2 * 3 * 2 + 2)


def test_conv_multiply_adds_toy_model():
    toy = SPPNet(
        name="toy",
        layers=(
            ConvSpec(4, 3, stride=1, padding=1),
            LrnSpec(),
            PoolSpec(2, 2),
            ConvSpec(6, 3, stride=2, padding=0),
        ),
        pool5=PoolSpec(1, 1),
        num_classes=2,
        spp_levels=(1,),
        fc_dim=4,
    )
    # conv1: 16x20 out, 4 maps, 3 inputs x 3x3 -> 16*20*4*27; pool -> 8x10;
    # conv2: (8-3)//2+1 = 3 by (10-3)//2+1 = 4, 6 maps, 4 inputs x 3x3 -> 3*4*6*36
    assert conv_multiply_adds(toy, 16, 20) == 16 * 20 * 4 * 27 + 3 * 4 * 6 * 36
    with torch.no_grad():
        assert toy.forward_features(torch.zeros(1, 3, 16, 20)).shape[-2:] == (3, 4)


def test_conv_multiply_adds_matches_hooks(model):
    counted = []

    def hook(module, inputs, output):
        kh, kw = module.kernel_size
        counted.append(output[0].numel() * module.in_channels // module.groups * kh * kw)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.forward_features(torch.zeros(1, 3, 71, 93))
    finally:
        for h in handles:
            h.remove()
    assert conv_multiply_adds(model, 71, 93) == sum(counted)


def test_validation(model):
    image, boxes = _inputs()
    with pytest.raises(ValueError, match="at least one window"):
        time_detection(model, image, torch.zeros(0, 4), scales_list=((100,),))
    with pytest.raises(ValueError, match="scale sets"):
        time_detection(model, image, boxes, scales_list=((100,), (120,)))
    with pytest.raises(ValueError, match="rcnn_size"):
        time_detection(model, image, boxes, scales_list=((100,),), rcnn_size=8)
    with pytest.raises(ValueError, match="repeats"):
        time_detection(model, image, boxes, scales_list=((100,),), repeats=0)
    with pytest.raises(TypeError):
        time_detection(model, image.long(), boxes, scales_list=((100,),))
    with pytest.raises(ValueError, match="svd_ranks"):
        time_detection(model, image, boxes, scales_list=((100,),), svd_ranks=(4,))
    with pytest.raises(ValueError, match="image is on meta but the model on cpu"):
        time_detection(model, image.to("meta"), boxes, scales_list=((100,),))
    with pytest.raises(TypeError, match="features"):
        conv_multiply_adds(nn.Linear(2, 2), 10, 10)
    with pytest.raises(ValueError, match="vanishes"):
        conv_multiply_adds(model, 5, 5)
    with pytest.raises(ValueError, match="no spp"):
        detection_table({"fc_s": 1.0})
