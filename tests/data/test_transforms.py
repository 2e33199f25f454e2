import math

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.data.transforms import (
    PCA_EIGENVALUES,
    PCA_EIGENVECTORS,
    EvalCropTransform,
    FullImageTransform,
    TrainTransform,
    five_crop_boxes,
    hflip,
    pca_lighting,
    resize_shorter,
    resize_tensor,
    subtract_mean,
    to_tensor,
)


def _noise(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- geometry ---------------------------------------------------------------------------


def test_five_crop_boxes_by_hand():
    # 256 x 341 (h x w) image, 224 crop: margins 117 (x) and 32 (y); the center box starts at
    # floor(117 / 2) = 58, floor(32 / 2) = 16 (the odd pixel goes to the right margin).
    boxes = five_crop_boxes(341, 256, 224)
    expected = [
        [58, 16, 282, 240],  # center
        [0, 0, 224, 224],  # top-left
        [117, 0, 341, 224],  # top-right
        [0, 32, 224, 256],  # bottom-left
        [117, 32, 341, 256],  # bottom-right
    ]
    assert boxes.dtype == torch.float32 and boxes.shape == (5, 4)
    assert boxes.tolist() == expected


def test_five_crop_boxes_square_image_are_all_the_same():
    assert five_crop_boxes(224, 224, 224).tolist() == [[0, 0, 224, 224]] * 5


@pytest.mark.parametrize("width,height", [(223, 300), (300, 10)])
def test_five_crop_boxes_rejects_a_crop_that_does_not_fit(width, height):
    with pytest.raises(ValueError, match="does not fit"):
        five_crop_boxes(width, height, 224)


def test_five_crop_boxes_validates_types():
    with pytest.raises(TypeError):
        five_crop_boxes(300.0, 300)
    with pytest.raises(ValueError):
        five_crop_boxes(300, 300, 0)


@pytest.mark.parametrize(
    "size,expected", [((400, 300), (341, 256)), ((300, 400), (256, 341)), ((256, 999), (256, 999))]
)
def test_resize_shorter(size, expected):
    out = resize_shorter(Image.new("RGB", size), 256)
    assert out.size == expected


def test_to_tensor_values_and_layout():
    img = _noise(5, 3)
    t = to_tensor(img)
    arr = np.asarray(img)
    assert t.dtype == torch.float32 and t.shape == (3, 3, 5)
    for c in range(3):
        for y in range(3):
            for x in range(5):
                assert t[c, y, x].item() == arr[y, x, c]
    assert to_tensor(img.convert("L")).shape == (3, 3, 5)
    with pytest.raises(TypeError):
        to_tensor(arr)


# ---- crops, flips ------------------------------------------------------------------------


def test_train_crop_is_the_slice_of_the_resized_image():
    img = _noise(50, 37)
    tf = TrainTransform(crop=24, shorter=32, flip=False, lighting=0.0, mean=0.0)
    resized = to_tensor(resize_shorter(img, 32))  # [3, 32, 43]
    assert resized.shape == (3, 32, 43)
    boxes = five_crop_boxes(43, 32, 24)
    seen = set()
    for seed in range(30):
        index = int(torch.randint(5, (1,), generator=_gen(seed)))  # the transform's first draw
        x1, y1, x2, y2 = (int(v) for v in boxes[index])
        out = tf(img, _gen(seed))
        assert out.shape == (3, 24, 24)
        assert torch.equal(out, resized[:, y1:y2, x1:x2])
        seen.add(index)
    assert seen == {0, 1, 2, 3, 4}


def test_hflip_reverses_columns():
    t = torch.randn(3, 4, 7)
    out = hflip(t)
    for x in range(7):
        assert torch.equal(out[:, :, x], t[:, :, 6 - x])
    assert torch.equal(hflip(t.unsqueeze(0))[0], out)


def test_train_flip_happens_about_half_the_time_and_is_the_mirror():
    img = _noise(40, 30, seed=3)
    plain = TrainTransform(crop=24, shorter=30, flip=False, lighting=0.0, mean=0.0)
    flipping = TrainTransform(crop=24, shorter=30, flip=True, lighting=0.0, mean=0.0)
    flips = 0
    for seed in range(40):
        g = _gen(seed)
        torch.randint(5, (1,), generator=g)
        expect_flip = float(torch.rand(1, generator=g)) < 0.5
        unflipped = plain(img, _gen(seed))  # same crop: the crop index is drawn first
        out = flipping(img, _gen(seed))
        assert torch.equal(out, unflipped.flip(-1) if expect_flip else unflipped)
        flips += expect_flip
    assert 10 <= flips <= 30


# ---- colour altering, mean ---------------------------------------------------------------


def test_pca_lighting_adds_the_per_channel_offset():
    t = to_tensor(_noise(9, 6))
    out = pca_lighting(t, 0.1, _gen(5))
    alpha = (torch.randn(3, generator=_gen(5), dtype=torch.float64) * 0.1).tolist()
    for c in range(3):
        expected = 0.0
        for k in range(3):
            expected += PCA_EIGENVECTORS[c][k] * alpha[k] * PCA_EIGENVALUES[k]
        diff = out[c] - t[c]
        assert torch.allclose(diff, torch.full_like(diff, expected), atol=1e-4)
    assert not torch.equal(out, t)
    assert torch.equal(pca_lighting(t, 0.0), t)
    with pytest.raises(ValueError):
        pca_lighting(t, -0.1)


def test_train_transform_applies_lighting_after_the_crop_and_flip():
    img = _noise(40, 30, seed=4)
    no_light = TrainTransform(crop=24, shorter=30, lighting=0.0, mean=10.0)
    light = TrainTransform(crop=24, shorter=30, lighting=0.1, mean=10.0)
    g = _gen(11)
    torch.randint(5, (1,), generator=g)
    torch.rand(1, generator=g)
    offset = torch.tensor(PCA_EIGENVECTORS, dtype=torch.float64) @ (
        torch.randn(3, generator=g, dtype=torch.float64) * 0.1 * torch.tensor(PCA_EIGENVALUES)
    )
    expected = no_light(img, _gen(11)) + offset.float().view(3, 1, 1)
    assert torch.allclose(light(img, _gen(11)), expected, atol=1e-4)


def _bilinear_reference(img, out_h, out_w):
    """Slow bilinear upsampling, half-pixel centres (align_corners=False), edges clamped."""
    c, in_h, in_w = img.shape
    out = torch.zeros(c, out_h, out_w, dtype=torch.float64)
    for y in range(out_h):
        sy = min(max((y + 0.5) * in_h / out_h - 0.5, 0.0), in_h - 1)
        y0 = math.floor(sy)
        y1, fy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = min(max((x + 0.5) * in_w / out_w - 0.5, 0.0), in_w - 1)
            x0 = math.floor(sx)
            x1, fx = min(x0 + 1, in_w - 1), sx - x0
            top = img[:, y0, x0] * (1 - fx) + img[:, y0, x1] * fx
            bottom = img[:, y1, x0] * (1 - fx) + img[:, y1, x1] * fx
            out[:, y, x] = top * (1 - fy) + bottom * fy
    return out


def test_subtract_mean_constant_and_same_size_image():
    t = to_tensor(_noise(7, 5))
    assert torch.equal(subtract_mean(t, 128.0), t - 128)
    mean = torch.rand(3, 5, 7) * 255
    assert torch.equal(subtract_mean(t, mean), t - mean)


def test_subtract_mean_warps_the_mean_image_bilinearly():
    t = torch.full((3, 10, 14), 100.0, dtype=torch.float64)
    mean = torch.rand(3, 5, 7, dtype=torch.float64) * 255  # upsampled x2 to t's size
    out = subtract_mean(t, mean)
    assert torch.allclose(out, t - _bilinear_reference(mean, 10, 14), atol=1e-9)


def test_subtract_mean_constant_channel_image_warps_to_the_constants():
    mean = torch.tensor([120.0, 110.0, 100.0]).view(3, 1, 1).expand(3, 224, 224).contiguous()
    t = torch.zeros(3, 13, 31)
    out = subtract_mean(t, mean)  # shrunk from 224x224, with antialiasing
    assert torch.allclose(out, -mean[:, :13, :31], atol=1e-4)


def test_subtract_mean_validates():
    t = torch.zeros(3, 4, 4)
    with pytest.raises(ValueError):
        subtract_mean(t, torch.zeros(1, 4, 4))
    with pytest.raises(TypeError):
        subtract_mean(t, "128")
    with pytest.raises(ValueError):
        subtract_mean(torch.zeros(4, 4), 1.0)


# ---- resizing tensors (multi-size training) ----------------------------------------------


def test_resize_tensor_shapes_and_constant_mean_commutes():
    t = torch.rand(3, 224, 224) * 255
    small = resize_tensor(t, 180)
    assert small.shape == (3, 180, 180)
    assert torch.allclose(resize_tensor(t - 128, 180), small - 128, atol=1e-3)
    batch = torch.stack([t, t.flip(-1)])
    out = resize_tensor(batch, (90, 120))
    assert out.shape == (2, 3, 90, 120)
    assert torch.allclose(out[0], resize_tensor(t, (90, 120)), atol=1e-5)
    const = torch.full((3, 50, 50), 7.0)
    assert torch.allclose(resize_tensor(const, 31), torch.full((3, 31, 31), 7.0))
    with pytest.raises(ValueError):
        resize_tensor(torch.zeros(4, 4), 2)
    with pytest.raises(TypeError):
        resize_tensor(t, 2.5)


# ---- determinism, settings ---------------------------------------------------------------


def test_train_transform_is_deterministic_given_the_generator():
    img = _noise(47, 33, seed=9)
    tf = TrainTransform(crop=24, shorter=30)
    a, b = tf(img, _gen(123)), tf(img, _gen(123))
    assert torch.equal(a, b)
    outs = [tf(img, _gen(s)) for s in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    torch.manual_seed(0)
    c = tf(img)
    torch.manual_seed(0)
    assert torch.equal(c, tf(img))  # the default generator when none is passed


def test_train_transform_with_a_mean_image_and_validation():
    img = _noise(40, 30)
    mean = torch.full((3, 224, 224), 50.0)
    tf = TrainTransform(crop=24, shorter=30, flip=False, lighting=0.0, mean=mean)
    ref = TrainTransform(crop=24, shorter=30, flip=False, lighting=0.0, mean=50.0)
    assert torch.allclose(tf(img, _gen(1)), ref(img, _gen(1)), atol=1e-4)
    with pytest.raises(ValueError, match="shorter"):
        TrainTransform(crop=224, shorter=200)
    with pytest.raises(ValueError):
        TrainTransform(lighting=-1.0)
    with pytest.raises(TypeError):
        TrainTransform()(torch.zeros(3, 300, 300))
    assert "crop=224" in repr(TrainTransform())


def test_full_image_transform_keeps_aspect():
    img = _noise(60, 40)
    out = FullImageTransform(shorter=32, mean=0.0)(img)
    assert out.shape == (3, 32, 48)
    assert torch.equal(out, to_tensor(resize_shorter(img, 32)))
    kept = FullImageTransform(shorter=None, mean=128.0)(img)
    assert torch.equal(kept, to_tensor(img) - 128)


def test_full_image_transform_caps_the_long_side():
    tf = FullImageTransform(shorter=32, mean=0.0, max_long_side=64)
    assert tf.output_size(40, 200) == (13, 64)  # 32 x 160 -> shrunk by 0.4
    assert tf.output_size(200, 40) == (64, 13)
    assert tf.output_size(40, 60) == (32, 48)  # under the cap: untouched
    out = tf(_noise(200, 40))
    assert out.shape == (3, 13, 64)
    assert FullImageTransform(shorter=None, max_long_side=50).output_size(30, 100) == (15, 50)
    with pytest.raises(ValueError):
        FullImageTransform(max_long_side=0)


def test_eval_crop_is_the_center_slice():
    img = _noise(50, 37)
    out = EvalCropTransform(crop=24, shorter=32, mean=128.0)(img)
    resized = to_tensor(resize_shorter(img, 32))  # [3, 32, 43]: center starts at x=9, y=4
    assert torch.equal(out, resized[:, 4:28, 9:33] - 128)
    with pytest.raises(ValueError):
        EvalCropTransform(crop=30, shorter=20)
