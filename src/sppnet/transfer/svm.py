"""Linear SVMs on cached image representations: the transfer protocols of Sec. 3.2-3.3.

The paper re-trains SVM classifiers on l2-normalised features of a network trained
elsewhere, with no data augmentation (Sec. 3.2). Here: scikit-learn's ``LinearSVC``
(liblinear, L2-regularised squared hinge loss), one-vs-rest.

- Multi-class labels ``[N]`` (Caltech101, image folders): one ``LinearSVC`` in
  one-vs-rest mode; prediction is the class of the highest score.
- Multi-label truth ``[N, K]`` in ``{1, 0, -1}`` (Pascal VOC classification): one binary
  SVM per class, trained on the images whose truth for that class is not 0 (images that
  hold only difficult objects of the class are ignored, as the devkit ignores them at test).

``C`` is given, or chosen from a grid on a held-out validation part of the training images
(deterministic from ``seed``); the SVMs are then refit on all training images.

Shape shorthand:
    N   images
    D   feature dimension
    K   classes
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sppnet.data.splits import class_balanced_splits
from sppnet.evaluation.voc_classification import mean_class_accuracy, voc_classification_ap
from sppnet.transfer.store import load_feature_dir  # re-exported: its former home

__all__ = [
    "C_GRID",
    "LinearSVMs",
    "caltech_protocol",
    "load_feature_dir",
    "train_linear_svms",
    "voc_classification_protocol",
]

# The grid C is chosen from when not given. Ascending: ties go to the smallest C, the
# strongest regularisation.
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


@dataclass
class LinearSVMs:
    """Fitted one-vs-rest linear SVMs.

    Attributes:
        kind: ``"multiclass"`` (labels ``[N]``) or ``"multilabel"`` (truth ``[N, K]``).
        C: the regularisation constant used for the final fit.
        num_classes: K.
        weight: ``ndarray[K, D]`` float64, the hyperplanes.
        bias: ``ndarray[K]`` float64.
        val_scores: ``{C: validation score}`` when C was chosen on a validation split
            (mean per-class accuracy, or mAP), else empty.
    """

    kind: str
    C: float
    num_classes: int
    weight: np.ndarray
    bias: np.ndarray
    val_scores: dict[float, float] = field(default_factory=dict)

    def decision_function(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """SVM scores of ``features`` (``[N, D]``) -> ``ndarray[N, K]`` float64."""
        x = _as_features(features, "features")
        if x.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"features have dimension {x.shape[1]}, the SVMs were trained on "
                f"{self.weight.shape[1]}"
            )
        return _scores(x, self.weight, self.bias)

    def predict(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """The class of the highest score, ``ndarray[N]`` int64."""
        return self.decision_function(features).argmax(axis=1).astype(np.int64)


# --------------------------------------------------------------------------- validation
def _as_features(features: Any, name: str) -> np.ndarray:
    """``[N, D]`` float array (a memmap stays a memmap until it is indexed)."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    if not isinstance(features, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or tensor, got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {tuple(features.shape)}")
    if not np.issubdtype(features.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got {features.dtype}")
    return features


def _as_labels(labels: Any, n: int, name: str) -> np.ndarray:
    """Labels ``[N]`` (int >= 0) or truth ``[N, K]`` (in {1, 0, -1}) as int64."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2):
        raise ValueError(f"{name} must be [N] or [N, K], got shape {tuple(labels.shape)}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} rows, the features {n}")
    if (
        labels.size
        and not np.issubdtype(labels.dtype, np.integer)
        and not np.all(np.equal(np.mod(labels, 1), 0))
    ):
        raise TypeError(f"{name} must hold integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.ndim == 1 and labels.size and labels.min() < 0:
        raise ValueError(f"{name} [N] must hold class indices >= 0, got {labels.min()}")
    if labels.ndim == 2 and not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError(f"{name} [N, K] must hold 1, 0 or -1, got {np.unique(labels)}")
    return labels


def _check_grid(c: float | None, c_grid: Sequence[float]) -> tuple[float, ...]:
    """The Cs to try: ``(c,)`` when given, else the sorted grid."""
    values = (c,) if c is not None else tuple(c_grid)
    if not values:
        raise ValueError("c_grid is empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"C must be a number > 0, got {v!r}")
    return tuple(sorted(float(v) for v in values))


# --------------------------------------------------------------------------- fitting
def _scores(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ weight.T + bias`` in float64, ``[N, K]``; in blocks so a memmap is not copied."""
    out = np.empty((x.shape[0], weight.shape[0]), dtype=np.float64)
    step = 4096
    for start in range(0, x.shape[0], step):
        out[start : start + step] = np.asarray(x[start : start + step], np.float64) @ weight.T
    return out + bias


def _fit_multiclass(
    x: np.ndarray, y: np.ndarray, num_classes: int, c: float, seed: int, class_weight: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest LinearSVC on labels ``[N]`` -> (weight ``[K, D]``, bias ``[K]``).

    Classes absent from ``y`` get a zero hyperplane and bias -inf (never predicted).
    """
    from sklearn.svm import LinearSVC

    present = np.unique(y)
    weight = np.zeros((num_classes, x.shape[1]), dtype=np.float64)
    bias = np.full(num_classes, -np.inf)
    if present.size == 1:  # a single class: it is always predicted
        bias[present[0]] = 0.0
        return weight, bias
    svm = _linear_svc(LinearSVC, c, seed, class_weight)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*converge.*")
        svm.fit(np.asarray(x, dtype=np.float64), y)
    coef, intercept = svm.coef_, svm.intercept_
    if present.size == 2:  # sklearn keeps one hyperplane for two classes: positive = 2nd
        coef = np.concatenate([-coef, coef])
        intercept = np.concatenate([-intercept, intercept])
    weight[present] = coef
    bias[present] = intercept
    return weight, bias


def _fit_multilabel(
    x: np.ndarray, truth: np.ndarray, c: float, seed: int, class_weight: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One binary LinearSVC per class on rows with truth != 0 (Sec. 3.2; VOC devkit rule).

    A class whose kept rows are all of one sign gets a constant score (+1 or -1).
    """
    from sklearn.svm import LinearSVC

    x64 = np.asarray(x, dtype=np.float64)
    k = truth.shape[1]
    weight = np.zeros((k, x.shape[1]), dtype=np.float64)
    bias = np.zeros(k, dtype=np.float64)
    for j in range(k):
        keep = truth[:, j] != 0  # 0: only difficult objects of class j -> ignored
        y = truth[keep, j]
        if y.size == 0 or np.all(y == y[0]):
            bias[j] = float(y[0]) if y.size else -1.0
            continue
        svm = _linear_svc(LinearSVC, c, seed, class_weight)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*converge.*")
            svm.fit(x64[keep], y)
        # classes_ is [-1, 1]: coef_ scores the positive class
        weight[j] = svm.coef_[0]
        bias[j] = svm.intercept_[0]
    return weight, bias


def _linear_svc(cls: Any, c: float, seed: int, class_weight: Any) -> Any:
    """liblinear's L2-regularised squared-hinge SVM (its default), seeded."""
    return cls(C=c, class_weight=class_weight, random_state=seed, max_iter=10000, dual="auto")


def _validation_split(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean ``[N]`` mask of the validation images, deterministic from ``seed``.

    Multi-class: per class, ``round(val_fraction * n_c)`` images, at most ``n_c - 1`` (every
    class keeps a training image). Multi-label: ``round(val_fraction * N)`` random images.
    """
    rng = np.random.default_rng([seed, 0x5F3])
    n = labels.shape[0]
    val = np.zeros(n, dtype=bool)
    if labels.ndim == 2:
        n_val = min(n - 1, round(val_fraction * n))
        val[rng.permutation(n)[:n_val]] = True
        return val
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = min(idx.size - 1, round(val_fraction * idx.size))
        val[rng.permutation(idx)[:n_val]] = True
    return val


def _fit(
    x: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    c: float,
    seed: int,
    class_weight: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``[K, D]`` and biases ``[K]`` for either kind of labels."""
    if labels.ndim == 2:
        return _fit_multilabel(x, labels, c, seed, class_weight)
    return _fit_multiclass(x, labels, num_classes, c, seed, class_weight)


def _val_score(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean per-class accuracy (multi-class) or mAP (multi-label) of validation scores."""
    if labels.ndim == 2:
        return float(voc_classification_ap(scores, labels)["map"])
    pred = torch.from_numpy(scores.argmax(axis=1))
    return float(mean_class_accuracy(pred, torch.from_numpy(labels), num_classes))


def train_linear_svms(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    C: float | None = None,  # noqa: N803 (the SVM literature's and sklearn's name)
    c_grid: Sequence[float] = C_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    class_weight: Mapping[int, float] | str | None = None,
    num_classes: int | None = None,
) -> LinearSVMs:
    """Fit one-vs-rest linear SVMs, choosing C on a validation split unless it is given.

    With ``C=None`` each value of ``c_grid`` is trained on the images outside a held-out
    ``val_fraction`` (stratified by class for ``[N]`` labels) and scored on it (mean
    per-class accuracy, or VOC mAP for ``[N, K]`` truth); the best C wins, ties going to
    the smallest. The returned SVMs are refit on all images with that C.

    Args:
        features: ``[N, D]`` float (l2-normalised, Sec. 3.2); a memmap is fine.
        labels: ``[N]`` class indices in ``0..K-1``, or ``[N, K]`` truth in ``{1, 0, -1}``
            (1 positive, 0 ignored for that class, -1 negative).
        C: the SVM's C; None chooses it from ``c_grid``.
        c_grid: the values tried when ``C`` is None.
        val_fraction: fraction of the images held out to choose C, in (0, 1).
        seed: seeds the validation split and liblinear.
        class_weight: passed to ``LinearSVC`` (e.g. ``"balanced"``).
        num_classes: K for ``[N]`` labels (default ``labels.max() + 1``).

    Returns:
        The fitted :class:`LinearSVMs`.

    Raises:
        ValueError: bad shapes or values, ``val_fraction`` outside (0, 1), a C <= 0, or no
            usable validation images (too few images per class) when choosing C.
        TypeError: features not floating point, labels not integer.
    """
    x = _as_features(features, "features")
    y = _as_labels(labels, x.shape[0], "labels")
    if x.shape[0] == 0:
        raise ValueError("no training images (features is [0, D])")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    grid = _check_grid(C, c_grid)
    if y.ndim == 2:
        k = y.shape[1]
    else:
        k = int(y.max()) + 1 if num_classes is None else int(num_classes)
        if k <= int(y.max()):
            raise ValueError(f"num_classes={k} but labels go up to {int(y.max())}")
    val_scores: dict[float, float] = {}
    if len(grid) > 1:
        val = _validation_split(y, val_fraction, seed)
        if not val.any():
            raise ValueError(
                f"choosing C needs validation images, but {x.shape[0]} training images "
                "leave none to hold out (a class needs 2 or more); pass C"
            )
        for c in grid:
            w, b = _fit(x[~val], y[~val], k, c, seed, class_weight)
            val_scores[c] = _val_score(_scores(x[val], w, b), y[val], k)
        usable = {c: s for c, s in val_scores.items() if not math.isnan(s)}
        if not usable:
            raise ValueError(
                "choosing C: the validation images hold no positive of any class; pass C "
                "or use more images"
            )
        best = max(usable.values())
        chosen = min(c for c, s in usable.items() if s == best)  # ties: the smallest C
    else:
        chosen = grid[0]
    weight, bias = _fit(x, y, k, chosen, seed, class_weight)
    kind = "multilabel" if y.ndim == 2 else "multiclass"
    return LinearSVMs(kind, chosen, k, weight, bias, val_scores)


# --------------------------------------------------------------------------- protocols
def voc_classification_protocol(
    train_features: np.ndarray | torch.Tensor,
    train_truth: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    test_truth: np.ndarray | torch.Tensor,
    *,
    class_names: Sequence[str] | None = None,
    use_07_metric: bool = True,
    C: float | None = None,  # noqa: N803 (the SVM literature's and sklearn's name)
    c_grid: Sequence[float] = C_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Pascal VOC classification (Sec. 3.2): one SVM per class, per-class AP and mAP.

    Training ignores, per class, the images whose truth is 0 (only difficult objects of
    that class); the test AP follows the devkit (11-point for VOC 2007, ``use_07_metric``).

    Args:
        train_features, test_features: ``[N, D]`` and ``[M, D]`` float.
        train_truth, test_truth: ``[N, K]`` and ``[M, K]`` in ``{1, 0, -1}``.
        class_names: K names keying ``"ap"`` (default the class indices).
        use_07_metric: 11-point interpolated AP (VOC 2007) or the area under the curve.
        C, c_grid, val_fraction, seed: see :func:`train_linear_svms` (C chosen by mAP on a
            held-out part of the training images).

    Returns:
        ``{"ap": {name: AP}, "map": mAP, "C": C used, "val_scores": {C: val mAP}}``; a
        class with no test positive has AP NaN and is left out of the mean.

    Raises:
        ValueError: truth not ``[N, K]``, K or D differing between train and test, or a
            ``class_names`` of the wrong length; see also :func:`train_linear_svms`.
    """
    xtr = _as_features(train_features, "train_features")
    xte = _as_features(test_features, "test_features")
    ytr = _as_labels(train_truth, xtr.shape[0], "train_truth")
    yte = _as_labels(test_truth, xte.shape[0], "test_truth")
    if ytr.ndim != 2 or yte.ndim != 2:
        raise ValueError(
            f"the VOC protocol needs [N, K] truth in {{1, 0, -1}}, got shapes "
            f"{tuple(ytr.shape)} and {tuple(yte.shape)}"
        )
    if ytr.shape[1] != yte.shape[1]:
        raise ValueError(f"train truth has {ytr.shape[1]} classes, test truth {yte.shape[1]}")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train features have D={xtr.shape[1]}, test features D={xte.shape[1]}")
    if class_names is not None and len(class_names) != ytr.shape[1]:
        raise ValueError(f"expected {ytr.shape[1]} class names, got {len(class_names)}")
    svms = train_linear_svms(xtr, ytr, C=C, c_grid=c_grid, val_fraction=val_fraction, seed=seed)
    result = voc_classification_ap(
        svms.decision_function(xte),
        yte,
        use_07_metric=use_07_metric,
        class_names=None if class_names is None else list(class_names),
    )
    return {
        "ap": dict(result["ap"]),
        "map": float(result["map"]),
        "C": svms.C,
        "val_scores": svms.val_scores,
    }


def caltech_protocol(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    n_train: int = 30,
    n_test: int = 50,
    n_splits: int = 10,
    seed: int = 0,
    C: float | None = None,  # noqa: N803 (the SVM literature's and sklearn's name)
    c_grid: Sequence[float] = C_GRID,
    val_fraction: float = 0.2,
) -> dict[str, Any]:
    """The Caltech101 protocol (Sec. 3.3): random class-balanced splits, mean class accuracy.

    For each of ``n_splits`` splits (:func:`sppnet.data.splits.class_balanced_splits`):
    ``n_train`` training images per class and up to ``n_test`` of the rest for testing; SVMs
    are trained on the training images (C chosen on a held-out part of them unless given)
    and the mean per-class accuracy is measured on the test images.

    Args:
        features: ``[N, D]`` float.
        labels: ``[N]`` class indices in ``0..K-1``.
        n_train, n_test, n_splits, seed: the splits (30, 50, 10 in the paper).
        C, c_grid, val_fraction: see :func:`train_linear_svms`.

    Returns:
        ``{"mean", "std"`` (population std over splits), ``"accuracies"`` (per split),
        ``"seeds"`` (per split), ``"C"`` (per split), ``"n_train_images"``,
        ``"n_test_images"`` (per split), ``"num_classes"``, ``"n_train"``, ``"n_test"``,
        ``"n_splits"}``.

    Raises:
        ValueError: labels not ``[N]``, or classes with fewer than ``n_train + 1`` images
            (named by the split function).
    """
    x = _as_features(features, "features")
    y = _as_labels(labels, x.shape[0], "labels")
    if y.ndim != 1:
        raise ValueError(f"the Caltech101 protocol needs labels [N], got {tuple(y.shape)}")
    splits = class_balanced_splits(
        torch.from_numpy(y), n_train=n_train, n_test=n_test, n_splits=n_splits, seed=seed
    )
    k = int(y.max()) + 1
    accuracies, seeds, chosen, n_tr, n_te = [], [], [], [], []
    for split in splits:
        train = np.asarray(split["train"], dtype=np.int64)
        test = np.asarray(split["test"], dtype=np.int64)
        svms = train_linear_svms(
            x[np.sort(train)],
            y[np.sort(train)],
            C=C,
            c_grid=c_grid,
            val_fraction=val_fraction,
            seed=int(split["seed"]),
            num_classes=k,
        )
        pred = svms.predict(x[test])
        accuracies.append(
            float(mean_class_accuracy(torch.from_numpy(pred), torch.from_numpy(y[test]), k))
        )
        seeds.append(int(split["seed"]))
        chosen.append(svms.C)
        n_tr.append(int(train.size))
        n_te.append(int(test.size))
    acc = np.asarray(accuracies, dtype=np.float64)
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "accuracies": accuracies,
        "seeds": seeds,
        "C": chosen,
        "n_train_images": n_tr,
        "n_test_images": n_te,
        "num_classes": k,
        "n_train": n_train,
        "n_test": n_test,
        "n_splits": n_splits,
    }
