"""Metrics of the transfer protocols (Sec. 3.2-3.3): VOC 2007 classification AP and the
Caltech101 mean per-class accuracy. Arrays in, numbers out.

Pascal VOC classification (Sec. 3.2, Table 6), by the devkit's rules (``VOCevalcls.m``):

- ground truth per image and class (:func:`voc_image_labels`): ``1`` if the image holds a
  non-difficult object of the class, ``0`` ("ignored") if it holds only difficult ones, ``-1``
  otherwise;
- per class, the images are ranked by decreasing score; ignored images take no part (neither
  true nor false positives); precision/recall over the ranking give the AP by
  :func:`~sppnet.evaluation.voc_ap.voc_ap` (11-point for VOC 2007);
- ties: images with equal scores keep their input order (a stable sort, as the devkit's
  MATLAB ``sort``), so the result is deterministic and equals the official code's;
- a class with no positive image has no AP: it is reported as NaN and left out of the mean.

Caltech101 (Sec. 3.3, Table 7): :func:`mean_class_accuracy`, the accuracy of each class
averaged over the classes, so large classes do not dominate.

Shape shorthand: N images, K classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from sppnet.evaluation._arrays import ArrayLike, as_array
from sppnet.evaluation.voc_ap import voc_ap

__all__ = ["mean_class_accuracy", "voc_classification_ap", "voc_image_labels"]


def _to_numpy(x: object, name: str, shape_hint: str) -> np.ndarray:
    arr = as_array(x, name, shape_hint)
    return arr.astype(np.int64) if arr.size == 0 and arr.dtype.kind == "f" else arr


def _check_integers(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def voc_classification_ap(
    scores: ArrayLike,
    truth: ArrayLike,
    use_07_metric: bool = True,
    class_names: Sequence[str] | None = None,
) -> dict[str, object]:
    """Per-class AP and mean AP of image classification scores, by the VOC devkit's rules.

    Args:
        scores: ``Tensor[N, K]``, ndarray or nested list of per-class scores (e.g. SVM
            decision values; any monotone score works). ``+-inf`` is allowed, NaN is not.
        truth: ``Tensor[N, K]``, integer ndarray or nested list in ``{1, 0, -1}``: positive,
            ignored (only difficult objects of the class), negative; see :func:`voc_image_labels`.
        use_07_metric: ``True`` for the VOC 2007 11-point AP (the paper's metric), ``False``
            for the VOC 2010+ area under the precision envelope.
        class_names: optional ``K`` names used as the keys of ``"ap"``; class indices
            ``0..K-1`` otherwise.

    Returns:
        ``{"ap": {name_or_index: float}, "map": float}``: the AP of each class (NaN for a
        class without positives) in class order, and the mean over the classes with an AP
        (NaN if none has one). Ties are broken by input order (module docstring).

    Raises:
        TypeError: non-array inputs, non-real scores, non-integer truth, non-string names.
        ValueError: wrong or different shapes, no images or classes, NaN scores, truth
            values outside ``{1, 0, -1}``, ``class_names`` of the wrong length or repeated.
    """
    s, g = _check_scores_and_truth(scores, truth)
    keys = _class_keys(class_names, s.shape[1])
    aps: dict[object, float] = {}
    for c, key in enumerate(keys):
        aps[key] = _class_ap(s[:, c], g[:, c], use_07_metric)
    valid = [v for v in aps.values() if not math.isnan(v)]
    mean = float(sum(valid) / len(valid)) if valid else math.nan
    return {"ap": aps, "map": mean}


def _check_scores_and_truth(scores: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(scores float64 [N, K], truth int64 [N, K])`` after the checks of
    :func:`voc_classification_ap`."""
    s = _to_numpy(scores, "scores", "[N, K]")
    g = _to_numpy(truth, "truth", "[N, K]")
    if s.dtype == bool or s.dtype.kind not in "iuf":
        raise TypeError(f"scores must hold real numbers, got dtype {s.dtype}")
    g = _check_integers(g, "truth")
    if s.ndim != 2:
        raise ValueError(f"scores must be [N, K] (2 dims), got shape {s.shape}")
    if g.shape != s.shape:
        raise ValueError(f"truth must have the shape of scores {s.shape}, got {g.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"scores must have at least one image and class, got {s.shape}")
    s = s.astype(np.float64)
    if np.isnan(s).any():
        i, j = np.argwhere(np.isnan(s))[0]
        raise ValueError(f"scores contain NaN (first at image {i}, class {j}); cannot rank")
    bad = ~np.isin(g, (-1, 0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"truth must be in {{1, 0, -1}} (positive, ignored, negative), "
            f"got {g[i, j]} at image {i}, class {j}"
        )
    return s, g


def _class_keys(class_names: Sequence[str] | None, k: int) -> list[object]:
    """The keys of ``"ap"``: the ``K`` checked names, or the indices ``0..K-1``."""
    if class_names is None:
        return list(range(k))
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"class_names must be a sequence of K={k} strings, got {type(class_names).__name__}"
        )
    if len(class_names) != k:
        raise ValueError(f"class_names must have K={k} names, got {len(class_names)}")
    if not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must all be strings")
    if len(set(class_names)) != k:
        raise ValueError(f"class_names must be distinct, got {list(class_names)}")
    return list(class_names)


def _class_ap(scores: np.ndarray, truth: np.ndarray, use_07_metric: bool) -> float:
    """The AP of one class from its ``scores [N]`` and ``truth [N]`` in ``{1, 0, -1}``."""
    keep = truth != 0  # ignored images are neither true nor false positives
    gc = truth[keep]  # [N_c]
    n_pos = int((gc > 0).sum())
    if n_pos == 0:
        return math.nan
    # Stable sort of the negated scores: decreasing score, ties in input order (devkit).
    order = np.argsort(-scores[keep], kind="stable")
    tp = np.cumsum(gc[order] > 0)  # [N_c]
    fp = np.cumsum(gc[order] < 0)  # [N_c]
    recall = tp / n_pos
    precision = tp / (tp + fp)  # every kept image is a tp or an fp: no 0/0
    return voc_ap(recall, precision, use_07_metric=use_07_metric)


def voc_image_labels(annotations: Sequence[Mapping[str, object]], num_classes: int) -> Tensor:
    """Image-level classification truth from object annotations, by the VOC devkit's rule.

    Args:
        annotations: one target dict per image, as :class:`~sppnet.data.VOCDetection` gives,
            with ``labels`` (``LongTensor[K_i]``, class indices ``0..num_classes-1``) and
            ``difficult`` (``BoolTensor[K_i]``) for the ``K_i`` objects of the image.
        num_classes: ``K``, the number of classes.

    Returns:
        ``LongTensor[N, K]``: ``1`` where the image holds a non-difficult object of the class,
        ``0`` (ignored) where it holds only difficult objects of it, ``-1`` otherwise.

    Raises:
        TypeError: ``annotations`` not a sequence of dicts, ``num_classes`` not an int,
            non-integer labels.
        ValueError: ``num_classes < 1``, missing keys, ``labels`` and ``difficult`` of
            different lengths, labels outside ``0..num_classes-1``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if isinstance(annotations, (str, bytes, Mapping)) or not isinstance(annotations, Sequence):
        raise TypeError(
            f"annotations must be a sequence of target dicts, got {type(annotations).__name__}"
        )
    out = torch.full((len(annotations), int(num_classes)), -1, dtype=torch.int64)
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, Mapping):
            raise TypeError(f"{where} must be a target dict, got {type(ann).__name__}")
        if "image_id" in ann:
            where += f" (image {ann['image_id']})"
        missing = [key for key in ("labels", "difficult") if key not in ann]
        if missing:
            raise ValueError(f"{where} lacks {missing}; needs 'labels' and 'difficult'")
        labels = torch.as_tensor(ann["labels"]).reshape(-1)
        difficult = torch.as_tensor(ann["difficult"]).reshape(-1)
        if labels.numel() and (
            labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool
        ):
            raise TypeError(f"{where}: labels must be integers, got dtype {labels.dtype}")
        if labels.numel() != difficult.numel():
            raise ValueError(
                f"{where}: labels and difficult must have one entry per object, "
                f"got {labels.numel()} and {difficult.numel()}"
            )
        outside = (labels < 0) | (labels >= num_classes)
        if bool(outside.any()):
            bad = int(labels[outside][0])
            raise ValueError(f"{where}: label {bad} is outside 0..{num_classes - 1}")
        difficult = difficult.bool()
        labels = labels.long()
        # Devkit rule: difficult objects alone make the image "ignored" (0) for their class;
        # any non-difficult object makes it positive (1), whatever else is there.
        out[i, labels[difficult]] = 0
        out[i, labels[~difficult]] = 1
    return out


def mean_class_accuracy(
    pred: ArrayLike, labels: ArrayLike, num_classes: int | None = None
) -> float:
    """Mean over classes of the per-class accuracy (the Caltech101 protocol, Sec. 3.3).

    Args:
        pred: ``LongTensor[N]``, integer ndarray or list of predicted classes.
        labels: ``LongTensor[N]``, integer ndarray or list of true classes.
        num_classes: optional ``K``; when given, ``pred`` and ``labels`` must lie in
            ``0..K-1``.

    Returns:
        ``mean_c (#{i : labels_i = c, pred_i = c} / #{i : labels_i = c})`` over the classes
        ``c`` that occur in ``labels`` (a class without test samples has no accuracy and is
        left out), in ``[0, 1]``.

    Raises:
        TypeError: non-array inputs, non-integer values, ``num_classes`` not an int.
        ValueError: not 1-D, different lengths, no samples, values outside ``0..K-1``.
    """
    p = _check_integers(_to_numpy(pred, "pred", "[N]"), "pred")
    y = _check_integers(_to_numpy(labels, "labels", "[N]"), "labels")
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(f"pred and labels must be 1-D [N], got shapes {p.shape} and {y.shape}")
    if p.shape != y.shape:
        raise ValueError(f"pred and labels must have the same length, got {p.size} and {y.size}")
    if y.size == 0:
        raise ValueError("mean_class_accuracy needs at least one sample, got 0")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise TypeError(f"num_classes must be an int >= 1 or None, got {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, arr in (("pred", p), ("labels", y)):
            outside = (arr < 0) | (arr >= num_classes)
            if outside.any():
                i = int(outside.argmax())
                raise ValueError(
                    f"{name}[{i}] = {arr[i]} is outside 0..{num_classes - 1} (num_classes)"
                )
    classes, inverse = np.unique(y, return_inverse=True)
    correct = np.bincount(inverse, weights=(p == y).astype(np.float64), minlength=classes.size)
    counts = np.bincount(inverse, minlength=classes.size)
    return float(np.mean(correct / counts))
