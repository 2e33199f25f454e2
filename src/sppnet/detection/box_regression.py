"""Class-specific bounding-box regression (Sec. 4.2, as in R-CNN's appendix C).

For each class a ridge regression maps a window's pooled conv5 features to the R-CNN
deltas ``(dx, dy, dw, dh)`` that move it onto its ground truth; it is trained on windows
whose IoU with a ground truth of the class is at least 0.5 (Sec. 4.2) and applied to
every scored window at test time. As in R-CNN, features are rescaled to a mean norm of 20
and the regularisation is ``lambda = 1000``; the intercept is not regularised.

Shape shorthand:
    N  training windows of one class
    D  feature dimension (C * L pooled conv5)
    R  windows at test time
    K  object classes
"""

from __future__ import annotations

import torch
from torch import Tensor

from sppnet.detection._checks import check_feature_rows, check_positive_finite
from sppnet.ops.boxes import decode_boxes

__all__ = ["apply_box_regression", "fit_ridge"]


def fit_ridge(features: Tensor, targets: Tensor, lam: float = 1000.0) -> tuple[Tensor, Tensor]:
    """Ridge regression with an unregularised intercept, solved in closed form (float64).

    Minimises ``||X W + 1 b - Y||^2 + lam ||W||^2``. With ``N < D`` the dual form
    ``W = Xc^T (Xc Xc^T + lam I)^-1 Yc`` is used (same solution, smaller system).

    Args:
        features: ``Tensor[N, D]``, ``N >= 1``, finite.
        targets: ``Tensor[N, T]`` (``T = 4`` for box deltas), finite.
        lam: ``lambda > 0``.

    Returns:
        ``(W, b)``: ``Tensor[D, T]`` and ``Tensor[T]`` (float32, device of ``features``).

    Raises:
        ValueError: bad shapes, non-finite values or ``lam``.
    """
    check_feature_rows("features", features)
    if not isinstance(targets, Tensor) or targets.dim() != 2:
        got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must be Tensor[N, T], got {got}")
    if targets.shape[0] != features.shape[0]:
        raise ValueError(
            f"features and targets must have the same rows, got {features.shape[0]} and "
            f"{targets.shape[0]}"
        )
    check_positive_finite("lam", lam)
    x = features.detach().double()
    y = targets.detach().double().to(x.device)
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("ridge features or targets hold NaN or inf values")
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    n, d = x.shape
    if n < d:
        gram = xc @ xc.T + lam * torch.eye(n, dtype=x.dtype, device=x.device)  # [N, N]
        w = xc.T @ torch.linalg.solve(gram, yc)  # [D, T]
    else:
        gram = xc.T @ xc + lam * torch.eye(d, dtype=x.dtype, device=x.device)  # [D, D]
        w = torch.linalg.solve(gram, xc.T @ yc)  # [D, T]
    b = y_mean - x_mean @ w
    return w.float(), b.float()


def apply_box_regression(
    boxes: Tensor, features: Tensor, weight: Tensor, bias: Tensor, labels: Tensor | None = None
) -> Tensor:
    """Refined boxes of every class (or of the given class per window).

    Args:
        boxes: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)``.
        features: ``Tensor[R, D]`` their (already rescaled) pooled features.
        weight: ``Tensor[K, D, 4]`` per-class ridge weights.
        bias: ``Tensor[K, 4]`` per-class intercepts.
        labels: optional ``LongTensor[R]`` class index ``0..K-1`` per window; with it, one
            box per window.

    Returns:
        ``Tensor[R, K, 4]`` (or ``Tensor[R, 4]`` with ``labels``).

    Raises:
        ValueError: inconsistent shapes.
    """
    if weight.dim() != 3 or weight.shape[2] != 4 or bias.shape != (weight.shape[0], 4):
        raise ValueError(
            f"weight must be Tensor[K, D, 4] and bias Tensor[K, 4], got "
            f"{tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    if features.dim() != 2 or features.shape[1] != weight.shape[1]:
        raise ValueError(
            f"features must be Tensor[R, {weight.shape[1]}], got {tuple(features.shape)}"
        )
    if boxes.shape != (features.shape[0], 4):
        raise ValueError(f"boxes must be Tensor[{features.shape[0]}, 4], got {tuple(boxes.shape)}")
    k = weight.shape[0]
    if labels is not None:
        deltas = torch.einsum("rd,rdt->rt", features, weight[labels]) + bias[labels]  # [R, 4]
        return decode_boxes(boxes, deltas)
    deltas = torch.einsum("rd,kdt->rkt", features, weight) + bias  # [R, K, 4]
    return decode_boxes(boxes, deltas.reshape(-1, 4 * k)).reshape(-1, k, 4)
