"""Linear SVMs and the transfer protocols (Sec. 3.2-3.3) on small toy features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from sppnet.cli import main
from sppnet.data.splits import class_balanced_splits
from sppnet.transfer.svm import (
    C_GRID,
    LinearSVMs,
    caltech_protocol,
    load_feature_dir,
    train_linear_svms,
    voc_classification_protocol,
)


def _clusters(
    n_per_class: list[int], dim: int = 12, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Separable multi-class data: class c sits near the unit vector e_c (l2-normalised)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, n in enumerate(n_per_class):
        center = np.zeros(dim, dtype=np.float32)
        center[c] = 1.0
        xs.append(center + spread * rng.standard_normal((n, dim)).astype(np.float32))
        ys.append(np.full(n, c, dtype=np.int64))
    x = np.concatenate(xs)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(x.shape[0])
    return x[order], np.concatenate(ys)[order]


def _multilabel(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable multi-label data: feature c is ~1 when class c is present, ~0 otherwise."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, k)) < 0.4
    present[np.arange(n), rng.integers(0, k, n)] = True  # every image holds something
    x = present.astype(np.float32) + 0.05 * rng.standard_normal((n, k)).astype(np.float32)
    x = np.concatenate([x, 0.05 * rng.standard_normal((n, 4)).astype(np.float32)], axis=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.where(present, 1, -1).astype(np.int64)


# --------------------------------------------------------------------------- training
def test_multiclass_matches_sklearn_one_vs_rest():
    x, y = _clusters([15, 12, 18])
    svms = train_linear_svms(x, y, C=1.0)
    ref = LinearSVC(C=1.0, random_state=0, max_iter=10000).fit(x.astype(np.float64), y)
    assert isinstance(svms, LinearSVMs) and svms.kind == "multiclass" and svms.C == 1.0
    np.testing.assert_allclose(svms.decision_function(x), ref.decision_function(x), atol=1e-8)
    assert (svms.predict(x) == y).all()
    assert svms.val_scores == {}  # C given: no validation split


def test_two_classes_score_both_sides():
    x, y = _clusters([10, 14], dim=5)
    svms = train_linear_svms(x, y, C=1.0)
    scores = svms.decision_function(torch.from_numpy(x))  # tensors are accepted too
    assert scores.shape == (24, 2)
    np.testing.assert_allclose(scores[:, 0], -scores[:, 1])
    assert (svms.predict(x) == y).all()


def test_class_missing_from_training_is_never_predicted():
    x, y = _clusters([8, 9, 7])
    svms = train_linear_svms(x, y, C=1.0, num_classes=4)
    assert svms.decision_function(x).shape == (24, 4)
    assert (svms.predict(x) != 3).all()


def test_c_selection_is_deterministic_and_from_the_grid():
    x, y = _clusters([20, 20, 20], spread=0.4, seed=3)
    a = train_linear_svms(x, y, seed=1)
    b = train_linear_svms(x, y, seed=1)
    assert a.C in C_GRID and sorted(a.val_scores) == sorted(C_GRID)
    assert a.C == b.C and a.val_scores == b.val_scores
    np.testing.assert_array_equal(a.weight, b.weight)
    best = max(a.val_scores.values())
    assert min(c for c, s in a.val_scores.items() if s == best) == a.C
    # the final SVMs are refit on all images with the chosen C
    np.testing.assert_allclose(a.weight, train_linear_svms(x, y, C=a.C, seed=1).weight)


def test_c_selection_ties_go_to_the_smallest_c():
    x, y = _clusters([10, 10], spread=0.01)
    x = x * 100.0  # far apart: every C separates the validation images
    svms = train_linear_svms(x, y, c_grid=(10.0, 0.1, 1.0))
    assert svms.val_scores == {0.1: 1.0, 1.0: 1.0, 10.0: 1.0}
    assert svms.C == 0.1


def test_voc_training_ignores_truth_zero_rows():
    x, truth = _multilabel(40, 3, seed=1)
    truth[::5, 1] = 0  # images holding only difficult objects of class 1
    svms = train_linear_svms(x, truth, C=1.0)
    keep = truth[:, 1] != 0
    ref = LinearSVC(C=1.0, random_state=0, max_iter=10000).fit(
        x[keep].astype(np.float64), truth[keep, 1]
    )
    np.testing.assert_allclose(svms.weight[1], ref.coef_[0], atol=1e-10)
    np.testing.assert_allclose(svms.bias[1], ref.intercept_[0], atol=1e-10)
    # whatever the ignored images look like, class 1's SVM does not change
    x2 = x.copy()
    x2[~keep] = np.random.default_rng(0).standard_normal(x2[~keep].shape)
    other = train_linear_svms(x2, truth, C=1.0)
    np.testing.assert_allclose(other.weight[1], svms.weight[1], atol=1e-10)


def test_voc_protocol_separable_gives_ap_one():
    x, truth = _multilabel(60, 4, seed=2)
    truth[3, 2] = 0
    out = voc_classification_protocol(
        x[:40], truth[:40], x[40:], truth[40:], class_names=["a", "b", "c", "d"]
    )
    assert list(out["ap"]) == ["a", "b", "c", "d"]
    assert all(ap == pytest.approx(1.0) for ap in out["ap"].values())
    assert out["map"] == pytest.approx(1.0)
    assert out["C"] in C_GRID and sorted(out["val_scores"]) == sorted(C_GRID)


def test_voc_protocol_class_without_test_positives_is_nan():
    x, truth = _multilabel(50, 3, seed=4)
    test_truth = truth[30:].copy()
    test_truth[:, 2] = -1
    out = voc_classification_protocol(x[:30], truth[:30], x[30:], test_truth, C=1.0)
    assert np.isnan(out["ap"][2]) and out["C"] == 1.0
    assert out["map"] == pytest.approx((out["ap"][0] + out["ap"][1]) / 2)


def test_voc_protocol_class_with_one_training_sign_gets_a_constant_score():
    x, truth = _multilabel(30, 3, seed=5)
    truth[:, 0] = -1  # no positive of class 0 in training
    svms = train_linear_svms(x, truth, C=1.0)
    assert (svms.weight[0] == 0).all() and svms.bias[0] == -1.0


# --------------------------------------------------------------------------- Caltech101
def test_caltech_protocol_separable_counts_and_seeds():
    x, y = _clusters([12, 9, 15], seed=6)
    out = caltech_protocol(x, y, n_train=5, n_test=6, n_splits=3, seed=7, C=1.0)
    assert out["accuracies"] == [1.0, 1.0, 1.0]
    assert out["mean"] == 1.0 and out["std"] == 0.0
    assert out["n_train_images"] == [15, 15, 15]
    assert out["n_test_images"] == [6 + 4 + 6] * 3  # class 1 has only 9 - 5 left
    splits = class_balanced_splits(torch.from_numpy(y), n_train=5, n_test=6, n_splits=3, seed=7)
    assert out["seeds"] == [int(s["seed"]) for s in splits]
    assert len(set(out["seeds"])) == 3 and out["C"] == [1.0, 1.0, 1.0]
    assert out["num_classes"] == 3 and out["n_splits"] == 3


def test_caltech_protocol_mean_and_std_of_the_splits():
    x, y = _clusters([14, 14, 14, 14], spread=0.8, seed=8)
    out = caltech_protocol(x, y, n_train=6, n_test=8, n_splits=4, seed=0)
    acc = np.array(out["accuracies"])
    assert out["mean"] == pytest.approx(acc.mean()) and out["std"] == pytest.approx(acc.std())
    assert all(c in C_GRID for c in out["C"])
    again = caltech_protocol(x, y, n_train=6, n_test=8, n_splits=4, seed=0)
    assert again == out


def test_caltech_protocol_too_few_images_names_the_class():
    x, y = _clusters([12, 5, 12])
    with pytest.raises(ValueError, match=r"fewer: 1 \(5 images\)"):
        caltech_protocol(x, y, n_train=5, n_test=5, n_splits=2)


# --------------------------------------------------------------------------- validation
def test_bad_inputs_raise():
    x, y = _clusters([6, 6])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        train_linear_svms(x[0], y)
    with pytest.raises(ValueError, match="rows"):
        train_linear_svms(x, y[:-1])
    with pytest.raises(TypeError, match="floating"):
        train_linear_svms(x.astype(np.int64), y)
    with pytest.raises(ValueError, match="C must be"):
        train_linear_svms(x, y, C=0.0)
    with pytest.raises(ValueError, match="val_fraction"):
        train_linear_svms(x, y, val_fraction=1.0)
    with pytest.raises(ValueError, match="1, 0 or -1"):
        train_linear_svms(x, np.full((12, 2), 2))
    with pytest.raises(ValueError, match="hold out"):
        train_linear_svms(x[:2], np.array([0, 1]))  # nothing left to choose C on
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        voc_classification_protocol(x, y, x, y)
    with pytest.raises(ValueError, match="dimension"):
        train_linear_svms(x, y, C=1.0).decision_function(x[:, :3])


# --------------------------------------------------------------------------- files and CLI
def _write_dir(path, features, labels, **meta):
    path.mkdir(parents=True)
    np.save(path / "features.npy", features.astype(np.float32))
    np.save(path / "labels.npy", labels.astype(np.int64))
    n = len(features)
    meta = {
        "layer": "spp",
        "view": "full",
        "num_images": n,
        "rows_done": n,
        "complete": True,
        **meta,
    }
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_load_feature_dir(tmp_path):
    x, y = _clusters([4, 4])
    feats, labels, meta = load_feature_dir(_write_dir(tmp_path / "a", x, y))
    assert isinstance(feats, np.memmap) and feats.shape == (8, 12) and meta["layer"] == "spp"
    np.testing.assert_array_equal(labels, y)
    _write_dir(tmp_path / "b", x, y, rows_done=5, complete=False)
    with pytest.raises(ValueError, match="unfinished"):
        load_feature_dir(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"features\.npy"):
        load_feature_dir(tmp_path / "missing")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["svm", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "sppnet svm --features" in text and "--protocol" in text


def test_cli_caltech_and_voc(tmp_path, capsys):
    x, y = _clusters([8, 8, 8])
    caltech = _write_dir(tmp_path / "cal", x, y)
    out_json = tmp_path / "cal.json"
    argv = ["svm", "--features", str(caltech), "--protocol", "caltech", "--n-train", "4"]
    argv += ["--n-test", "3", "--splits", "2", "--C", "1", "--json", str(out_json)]
    assert main(argv) == 0
    assert "mean accuracy: 100.00 +- 0.00%" in capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["result"]["accuracies"] == [1.0, 1.0] and len(report["result"]["seeds"]) == 2

    xm, truth = _multilabel(50, 3, seed=9)
    truth[40:, 2] = -1  # class 2 has no test positive: n/a, null in JSON
    train = _write_dir(tmp_path / "tr", xm[:40], truth[:40], classes=["p", "q", "r"])
    test = _write_dir(tmp_path / "te", xm[40:], truth[40:], classes=["p", "q", "r"])
    voc_json = tmp_path / "voc.json"
    argv = ["svm", "--features", str(train), "--test-features", str(test), "--protocol", "voc"]
    assert main([*argv, "--json", str(voc_json)]) == 0
    text = capsys.readouterr().out
    assert "mAP: 100.00" in text and "n/a" in text
    assert json.loads(voc_json.read_text())["result"]["ap"] == {"p": 1.0, "q": 1.0, "r": None}

    assert main(["svm", "--features", str(train), "--protocol", "voc"]) == 2
    assert "--test-features" in capsys.readouterr().err
