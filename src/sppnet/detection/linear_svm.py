"""Per-class linear SVMs on window features (Sec. 4.2, R-CNN's recipe).

One binary SVM per class scores each window; positives are the class's ground-truth boxes
and negatives windows that barely overlap them (:mod:`sppnet.detection.targets`). The
reference settings are R-CNN's: hinge loss (L1-loss dual in liblinear), ``C = 1e-3``,
positives weighted 2, a bias feature of value 10, and features rescaled so that their
mean L2 norm is 20. The rescaling makes one ``C`` fit every layer and network width.

Shape shorthand:
    N  training windows
    D  feature dimension (fc7: 4096 in the paper)
    K  object classes
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from sppnet.detection._checks import check_feature_rows, check_positive_finite

__all__ = ["TARGET_FEATURE_NORM", "feature_norm_scale", "fit_linear_svm"]

# R-CNN's feat_norm_mean: features are scaled to this mean L2 norm before the SVMs.
TARGET_FEATURE_NORM = 20.0


def feature_norm_scale(features: Tensor, target: float = TARGET_FEATURE_NORM) -> float:
    """The factor that gives ``features`` a mean L2 norm of ``target`` (R-CNN).

    Args:
        features: ``Tensor[N, D]`` sample features (e.g. a random subset of windows).
        target: the wanted mean norm, ``> 0``.

    Returns:
        ``target / mean(||f||)``; ``1.0`` when every feature is zero.

    Raises:
        ValueError: ``features`` not ``[N, D]`` with ``N >= 1``, not finite, or a bad target.
    """
    check_feature_rows("features", features)
    check_positive_finite("target", target)
    norms = torch.linalg.vector_norm(features.detach().double(), dim=1)
    if not bool(torch.isfinite(norms).all()):
        raise ValueError("features hold NaN or inf values")
    mean = float(norms.mean())
    return 1.0 if mean == 0.0 else target / mean


def fit_linear_svm(
    positives: Tensor,
    negatives: Tensor,
    c: float = 1e-3,
    positive_weight: float = 2.0,
    bias_feature: float = 10.0,
    max_iter: int = 10_000,
) -> tuple[Tensor, float]:
    """Train one binary linear SVM (hinge loss, L2 regularisation; liblinear's dual solver).

    Minimises ``0.5 ||w||^2 + C * sum_i c_i * max(0, 1 - y_i (w.x_i + b))`` with
    ``c_i = positive_weight`` for positives and 1 for negatives; the bias is learnt as the
    weight of a constant feature ``bias_feature`` (so it is regularised lightly, as in
    liblinear and R-CNN).

    Args:
        positives: ``Tensor[P, D]`` features of the positive windows, ``P >= 1``.
        negatives: ``Tensor[Q, D]`` features of the negative windows, ``Q >= 1``.
        c: the SVM's ``C``, ``> 0``.
        positive_weight: loss weight of positives relative to negatives, ``> 0``.
        bias_feature: value of the constant feature that carries the bias, ``> 0``.
        max_iter: liblinear's iteration cap.

    Returns:
        ``(w, b)``: ``Tensor[D]`` (float32, device of ``positives``) and the bias; the score
        of a feature ``x`` is ``x @ w + b``.

    Raises:
        ValueError: empty sides, different widths, non-finite features or bad settings.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    check_feature_rows("positives", positives)
    check_feature_rows("negatives", negatives)
    if positives.shape[1] != negatives.shape[1]:
        raise ValueError(
            f"positives and negatives must have the same width, got {positives.shape[1]} "
            f"and {negatives.shape[1]}"
        )
    for name, v in (("c", c), ("positive_weight", positive_weight), ("bias_feature", bias_feature)):
        check_positive_finite(name, v)
    x = torch.cat([positives.detach(), negatives.detach()]).float().cpu().numpy()
    if not np.isfinite(x).all():
        raise ValueError("SVM features hold NaN or inf values")
    y = np.concatenate([np.ones(positives.shape[0]), -np.ones(negatives.shape[0])])
    svm = LinearSVC(
        C=c,
        loss="hinge",
        dual=True,
        class_weight={1: positive_weight, -1: 1.0},
        intercept_scaling=bias_feature,
        max_iter=max_iter,
        # liblinear's dual solver visits samples in a random order; a fixed seed makes the
        # SVMs (and hard negatives mined with them) the same on every run, not numpy's
        # global state of the moment
        random_state=0,
    )
    with warnings.catch_warnings():
        # liblinear's iteration cap is a speed knob here, as in R-CNN; its warning is noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x, y)
    w = torch.from_numpy(svm.coef_[0].astype(np.float32)).to(positives.device)
    return w, float(svm.intercept_[0])
