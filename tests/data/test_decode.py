import io

import numpy as np
import pytest
from PIL import Image

from sppnet.data.decode import ImageDecodeError, load_image


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)  # width and height swapped
    top = np.asarray(out)[:5].reshape(-1, 3).mean(0)
    assert top[2] > 200 and top[0] < 60  # the left strip is now on top


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F"])
def test_every_mode_becomes_8bit_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (12, 17, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((rng.random((12, 17)) * 65535).astype(np.uint16))
    elif mode in ("I", "F"):
        img = base.convert("L").convert(mode)
    else:
        img = base.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    path = _save(img, tmp_path / f"img.{fmt.lower()}", format=fmt)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (17, 12)


def test_sixteen_bit_uses_the_full_range(tmp_path):
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    out = np.asarray(load_image(_save(Image.fromarray(arr), tmp_path / "a.png")))
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 0


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    out = np.asarray(load_image(_save(img, tmp_path / "t.png")))
    assert (out == 255).all()


def test_corrupt_truncated_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "random.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError, match=r"random\.jpg.*not an image"):
        load_image(bad)

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buf, format="JPEG"
    )
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg.*truncated") as info:
        load_image(cut)
    assert info.value.path == cut and isinstance(info.value, ValueError)

    with pytest.raises(ImageDecodeError, match=r"nope\.png.*no such file"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (64, 64)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64*64 > 2 * 100: refused
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(path)
