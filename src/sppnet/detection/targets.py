"""Training targets and sample selection for the SPP-net detector (Sec. 4.1-4.2).

Each stage is a small pure function on index/IoU tensors, following R-CNN as the paper
does (Sec. 4.2):

- :func:`label_windows`: best-IoU ground truth of each window and its class label.
- :func:`sample_finetune_batch`: fc fine-tuning mini-batch, 25% positives
  (IoU in ``[0.5, 1]``), the rest negatives (IoU in ``[0.1, 0.5)``).
- :func:`svm_positives` / :func:`svm_negatives`: per-class SVM training sets
  (positives = ground truth; negatives IoU ``<= 0.3`` with every positive, deduplicated
  at IoU ``> 0.7``).
- :func:`select_hard_negatives` / :func:`hard_negative_round`: the hard-negative rule
  and one round of cache update (the mining loop with the SVM solver lives in the engine).
- :func:`select_regression_windows` / :func:`regression_targets`: bounding-box
  regression windows (IoU ``>= 0.5``) and their R-CNN targets.

Shape shorthand:
    R  number of candidate windows (proposals)
    G  number of ground-truth boxes of an image
    B  number of sampled windows
    N  number of scored negatives
"""

from __future__ import annotations

import torch
from torch import Tensor

from sppnet._validate import check_int, check_real
from sppnet.ops.boxes import box_iou, check_boxes, encode_boxes, nms

__all__ = [
    "hard_negative_round",
    "label_windows",
    "regression_targets",
    "sample_finetune_batch",
    "select_hard_negatives",
    "select_regression_windows",
    "svm_negatives",
    "svm_positives",
]


# ----------------------------------------------------------------------------- checks


def _unit(value: object, name: str) -> float:
    out = check_real(name, value)
    if not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {out}")
    return out


def _float_vector(x: object, name: str, n: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N], got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 1 or (n is not None and x.shape[0] != n):
        want = "[N]" if n is None else f"[{n}]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if bool(torch.isnan(x.detach()).any()):
        raise ValueError(f"{name} must not hold NaN")
    return x.detach()


def _int_vector(x: object, name: str, n: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N], got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    if x.dim() != 1 or (n is not None and x.shape[0] != n):
        want = "[N]" if n is None else f"[{n}]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    return x.detach()


def _bool_vector(x: object, name: str, n: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [{n}], got {type(x).__name__}")
    if x.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got dtype {x.dtype}")
    if x.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}], got {list(x.shape)}")
    return x.detach()


def _check_gt(gt_boxes: Tensor, gt_labels: Tensor, gt_difficult: Tensor | None) -> Tensor:
    """Validate one image's ground truth; return the difficult mask ``BoolTensor[G]``."""
    check_boxes(gt_boxes, "gt_boxes")
    g = gt_boxes.shape[0]
    labels = _int_vector(gt_labels, "gt_labels", g)
    if g > 0 and int(labels.min()) < 1:
        raise ValueError(
            f"gt_labels must be class indices >= 1 (0 is background), got min {int(labels.min())}"
        )
    if gt_difficult is None:
        return torch.zeros(g, dtype=torch.bool, device=gt_boxes.device)
    return _bool_vector(gt_difficult, "gt_difficult", g)


# ------------------------------------------------------------------ labels and fine-tuning


def label_windows(
    proposals: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor | None = None,
    fg_threshold: float = 0.5,
    include_difficult: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Match each window to its best ground truth and label it (Sec. 4.2, as in R-CNN).

    A window's label is the class of its highest-IoU ground truth when that IoU is
    ``>= fg_threshold`` (0.5), else 0 (background). Ties between ground truths go to the
    lower index. Difficult objects are left out of the matching unless
    ``include_difficult`` (as R-CNN and Fast R-CNN train on VOC). Which background windows
    may be sampled, IoU in ``[0.1, 0.5)``, is decided by :func:`sample_finetune_batch`
    from ``max_iou``; every window below 0.5 is labelled 0 here. To train on the ground
    truth too, as R-CNN does, concatenate it to ``proposals`` before calling.

    Args:
        proposals: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)``; ``R`` may be 0.
        gt_boxes: ``Tensor[G, 4]`` ground-truth boxes; ``G`` may be 0.
        gt_labels: ``LongTensor[G]`` classes ``1..K``.
        gt_difficult: ``BoolTensor[G]`` VOC "difficult" flags, or ``None`` (none difficult).
        fg_threshold: IoU from which a window is foreground, in ``[0, 1]``.
        include_difficult: match windows to difficult objects as well.

    Returns:
        ``(max_iou, matched_gt, labels)``: ``Tensor[R]`` best IoU (0 with no usable ground
        truth, dtype of ``proposals``); ``LongTensor[R]`` index into ``gt_boxes`` of the
        best ground truth (-1 with none); ``LongTensor[R]`` labels in ``0..K``.

    Raises:
        TypeError, ValueError: for bad boxes (see :func:`~sppnet.ops.check_boxes`),
            ``gt_labels`` not integer ``[G]`` or below 1, ``gt_difficult`` not bool ``[G]``,
            or ``fg_threshold`` outside ``[0, 1]``.
    """
    check_boxes(proposals, "proposals")
    difficult = _check_gt(gt_boxes, gt_labels, gt_difficult)
    thr = _unit(fg_threshold, "fg_threshold")
    r = proposals.shape[0]
    device = proposals.device
    usable = torch.ones_like(difficult) if include_difficult else ~difficult  # [G]
    usable_idx = torch.nonzero(usable).flatten()  # [G']
    max_iou = torch.zeros(r, dtype=proposals.dtype, device=device)
    matched = torch.full((r,), -1, dtype=torch.long, device=device)
    labels = torch.zeros(r, dtype=torch.long, device=device)
    if r == 0 or usable_idx.numel() == 0:
        return max_iou, matched, labels
    with torch.no_grad():
        iou = box_iou(proposals.detach(), gt_boxes.detach()[usable_idx].to(proposals.dtype))
        # argmax returns the first maximum: ties go to the lower gt index.
        best, arg = iou.amax(dim=1), iou.argmax(dim=1)  # [R], [R]
        max_iou = best
        matched = usable_idx[arg]
        fg = best >= thr
        labels = torch.where(fg, gt_labels.detach().to(device).long()[matched], labels)
    return max_iou, matched, labels


def sample_finetune_batch(
    max_iou: Tensor,
    labels: Tensor,
    batch_size: int = 128,
    positive_fraction: float = 0.25,
    fg_threshold: float = 0.5,
    bg_range: tuple[float, float] = (0.1, 0.5),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample a fine-tuning mini-batch of windows (Sec. 4.2, as in R-CNN).

    Positives are windows with ``max_iou >= fg_threshold`` (IoU in ``[0.5, 1]``), negatives
    those with ``bg_range[0] <= max_iou < bg_range[1]`` (``[0.1, 0.5)``); windows below
    ``bg_range[0]`` are never sampled. ``round(batch_size * positive_fraction)`` positives
    (32 of 128) are drawn uniformly without replacement, fewer if there are not enough, and
    the rest of the batch is filled with negatives; when negatives run short too, the batch
    is smaller than ``batch_size`` (positives never fill in for negatives).

    Args:
        max_iou: ``Tensor[R]`` best IoU of each window (from :func:`label_windows`).
        labels: ``LongTensor[R]`` labels; every positive must have a label ``>= 1``.
        batch_size: windows per mini-batch, ``>= 1``.
        positive_fraction: share of positives, in ``[0, 1]``.
        fg_threshold: lowest positive IoU, in ``[0, 1]``.
        bg_range: ``(lo, hi)`` negative IoU band, ``0 <= lo <= hi <= fg_threshold``.
        generator: random generator for a reproducible draw; ``None`` uses torch's global
            generator. The same generator state gives the same batch.

    Returns:
        ``LongTensor[B]`` indices into the windows, ``B <= batch_size``: the sampled
        positives first, then the negatives, each group in random order.

    Raises:
        TypeError: for tensors of the wrong dtype or non-numeric settings.
        ValueError: for shapes that differ, NaN IoUs, settings out of range, or a positive
            window labelled 0.
    """
    iou = _float_vector(max_iou, "max_iou")
    lab = _int_vector(labels, "labels", iou.shape[0])
    size = check_int("batch_size", batch_size, min=1)
    frac = _unit(positive_fraction, "positive_fraction")
    fg = _unit(fg_threshold, "fg_threshold")
    if not isinstance(bg_range, (tuple, list)) or len(bg_range) != 2:
        raise ValueError(f"bg_range must be a pair (lo, hi), got {bg_range!r}")
    lo, hi = _unit(bg_range[0], "bg_range[0]"), _unit(bg_range[1], "bg_range[1]")
    if not lo <= hi <= fg:
        raise ValueError(
            f"bg_range must satisfy lo <= hi <= fg_threshold, got ({lo}, {hi}) with "
            f"fg_threshold {fg}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
    pos = torch.nonzero(iou >= fg).flatten()  # [P]
    neg = torch.nonzero((iou >= lo) & (iou < hi)).flatten()  # [Q]
    if pos.numel() > 0 and bool((lab[pos] < 1).any()):
        row = int(pos[lab[pos] < 1][0])
        raise ValueError(
            f"labels must be >= 1 for windows with max_iou >= {fg}, but window {row} has "
            f"IoU {float(iou[row])} and label {int(lab[row])}"
        )
    n_pos = min(round(size * frac), pos.numel())
    n_neg = min(size - n_pos, neg.numel())

    def draw(idx: Tensor, k: int) -> Tensor:
        # randperm on the CPU: the same generator gives the same order on every device.
        perm = torch.randperm(idx.numel(), generator=generator)[:k]
        return idx[perm.to(idx.device)]

    return torch.cat((draw(pos, n_pos), draw(neg, n_neg)))


# --------------------------------------------------------------------------------- SVMs


def svm_positives(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    cls: int,
    gt_difficult: Tensor | None = None,
    include_difficult: bool = False,
) -> Tensor:
    """Ground-truth boxes that are the positives of the class-``cls`` SVM (Sec. 4.2).

    As in R-CNN, an SVM's positives are the ground-truth windows of its class only;
    difficult objects are left out unless ``include_difficult``.

    Args:
        gt_boxes: ``Tensor[G, 4]`` ground-truth boxes of one image.
        gt_labels: ``LongTensor[G]`` classes ``1..K``.
        cls: the class, ``>= 1``.
        gt_difficult: ``BoolTensor[G]`` or ``None`` (none difficult).
        include_difficult: keep difficult objects as positives.

    Returns:
        ``LongTensor[P]`` ascending indices into ``gt_boxes``.

    Raises:
        TypeError, ValueError: as :func:`label_windows`; also for ``cls`` not an int ``>= 1``.
    """
    difficult = _check_gt(gt_boxes, gt_labels, gt_difficult)
    c = check_int("cls", cls, min=1)
    keep = gt_labels.detach() == c
    if not include_difficult:
        keep &= ~difficult.to(keep.device)
    return torch.nonzero(keep).flatten()


def svm_negatives(
    proposals: Tensor,
    gt_boxes_of_class: Tensor,
    neg_iou: float = 0.3,
    dedup_iou: float = 0.7,
) -> Tensor:
    """Negative windows of one class's SVM, deduplicated (Sec. 4.2).

    A window is a negative when its IoU with every positive (ground-truth box of the
    class) is ``<= neg_iou`` (the paper: "at most 30%", Sec. 4.2; R-CNN's code uses
    ``< 0.3``; the two differ only at exactly 0.3). Every window is a negative in an image
    without an object of the class. Then "a negative sample is removed if it overlaps
    another negative sample by more than 70%" (Sec. 4.2): greedily in input order (the
    proposal ranking), a negative is kept unless its IoU with an already kept negative is
    ``> dedup_iou``; so of two near-duplicates the earlier one stays.

    Args:
        proposals: ``Tensor[R, 4]`` windows of one image.
        gt_boxes_of_class: ``Tensor[G, 4]`` the class's positives in that image (``G``
            may be 0).
        neg_iou: largest IoU with a positive a negative may have, in ``[0, 1]``.
        dedup_iou: IoU above which a later negative is dropped, in ``[0, 1]``.

    Returns:
        ``LongTensor[Q]`` ascending indices into ``proposals``.

    Raises:
        TypeError, ValueError: for bad boxes (see :func:`~sppnet.ops.check_boxes`) or
            thresholds that are not numbers in ``[0, 1]``.
    """
    check_boxes(proposals, "proposals")
    check_boxes(gt_boxes_of_class, "gt_boxes_of_class")
    neg_thr = _unit(neg_iou, "neg_iou")
    dedup_thr = _unit(dedup_iou, "dedup_iou")
    with torch.no_grad():
        boxes = proposals.detach()
        if gt_boxes_of_class.shape[0] == 0 or boxes.shape[0] == 0:
            cand = torch.arange(boxes.shape[0], device=boxes.device)
        else:
            iou = box_iou(boxes, gt_boxes_of_class.detach().to(boxes.dtype))  # [R, G]
            cand = torch.nonzero((iou <= neg_thr).all(dim=1)).flatten()
        # Equal scores: nms visits boxes in index order (stable sort), i.e. greedy in
        # input order; its result is then already ascending.
        scores = torch.zeros(cand.numel(), dtype=boxes.dtype, device=boxes.device)
        keep = nms(boxes[cand], scores, dedup_thr)
        return cand[keep]


def select_hard_negatives(
    scores: Tensor,
    threshold: float = -1.0,
    max_count: int | None = None,
) -> Tensor:
    """Negatives that violate the SVM margin: ``score > threshold`` (hard negatives).

    With labels ``-1`` for negatives, a hinge-loss SVM penalises a negative whose score
    is above ``-1``; these are R-CNN's "hard negatives" (its code uses ``-1.0001``).
    With ``max_count``, only the highest-scoring ones are kept (ties: lower index).

    Args:
        scores: ``Tensor[N]`` SVM scores of negative windows, no NaN.
        threshold: the margin, usually ``-1``.
        max_count: optional cap on the number selected, ``>= 0``.

    Returns:
        ``LongTensor[H]`` ascending indices into ``scores``.

    Raises:
        TypeError: for a non-floating ``scores`` or non-numeric settings.
        ValueError: for a wrong shape, NaN scores, a non-finite threshold or a negative
            ``max_count``.
    """
    s = _float_vector(scores, "scores")
    thr = check_real("threshold", threshold)
    hard = torch.nonzero(s > thr).flatten()
    if max_count is not None:
        cap = check_int("max_count", max_count, min=0)
        if hard.numel() > cap:
            order = torch.sort(s[hard], descending=True, stable=True).indices[:cap]
            hard = torch.sort(hard[order]).values
    return hard


def hard_negative_round(
    cache: Tensor,
    cache_scores: Tensor,
    candidates: Tensor,
    candidate_scores: Tensor,
    hard_threshold: float = -1.0,
    evict_threshold: float = -1.2,
) -> Tensor:
    """One round of hard-negative mining: update the negative cache (as in R-CNN).

    After an SVM is trained on the cached negatives, the easy ones (score
    ``< evict_threshold``) are evicted, and the new candidates that violate the margin
    (score ``> hard_threshold``) are added (R-CNN uses -1.2 and -1.0001). The engine
    alternates this with training; the paper iterates mining once (Sec. 4.2).

    Args:
        cache: ``LongTensor[C]`` ids (any global numbering) of the cached negatives.
        cache_scores: ``Tensor[C]`` their current SVM scores.
        candidates: ``LongTensor[N]`` ids of newly scored negatives (may overlap ``cache``).
        candidate_scores: ``Tensor[N]`` their SVM scores.
        hard_threshold: a candidate is added when its score is ``> hard_threshold``.
        evict_threshold: a cached negative is dropped when its score is
            ``< evict_threshold``; must be ``<= hard_threshold`` so that a new hard
            negative is never evicted at once.

    Returns:
        ``LongTensor[C']`` the new cache: sorted, unique ids.

    Raises:
        TypeError, ValueError: for tensors of the wrong dtype or shape, NaN scores, or
            thresholds that are not finite with ``evict_threshold <= hard_threshold``.
    """
    ids = _int_vector(cache, "cache")
    ids_scores = _float_vector(cache_scores, "cache_scores", ids.shape[0])
    new = _int_vector(candidates, "candidates")
    new_scores = _float_vector(candidate_scores, "candidate_scores", new.shape[0])
    hard = check_real("hard_threshold", hard_threshold)
    evict = check_real("evict_threshold", evict_threshold)
    if evict > hard:
        raise ValueError(f"evict_threshold must be <= hard_threshold, got {evict} > {hard}")
    kept = ids[ids_scores >= evict]
    added = new[select_hard_negatives(new_scores, hard).to(new.device)]
    return torch.unique(torch.cat((kept.long(), added.long().to(kept.device))), sorted=True)


# ------------------------------------------------------------------------ box regression


def select_regression_windows(max_iou: Tensor, threshold: float = 0.5) -> Tensor:
    """Windows that train the bounding-box regressor: ``max_iou >= threshold``.

    The paper uses IoU ``>= 0.5`` with a ground truth (Sec. 4.2; R-CNN's own
    regressor used 0.6).

    Args:
        max_iou: ``Tensor[R]`` best IoU of each window with the ground truth.
        threshold: lowest IoU, in ``[0, 1]``.

    Returns:
        ``LongTensor[M]`` ascending indices into the windows.

    Raises:
        TypeError, ValueError: for a non-floating or non-``[R]`` ``max_iou``, NaN, or a
            threshold outside ``[0, 1]``.
    """
    iou = _float_vector(max_iou, "max_iou")
    thr = _unit(threshold, "threshold")
    return torch.nonzero(iou >= thr).flatten()


def regression_targets(
    proposals: Tensor,
    gt_boxes: Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> Tensor:
    """R-CNN box-regression targets of windows onto their matched ground truth.

    A thin wrapper of :func:`~sppnet.ops.encode_boxes`: ``dx = (gx - px) / pw``,
    ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``, ``dh = log(gh / ph)`` (R-CNN appendix C),
    times ``weights``; :func:`~sppnet.ops.decode_boxes` with the same weights inverts it.

    Args:
        proposals: ``Tensor[M, 4]`` windows, e.g. those of :func:`select_regression_windows`.
        gt_boxes: ``Tensor[M, 4]`` the ground truth matched to each window row by row
            (``gt_boxes[matched_gt[idx]]``).
        weights: ``(wx, wy, ww, wh)``, all ``> 0``.

    Returns:
        ``Tensor[M, 4]`` deltas ``(dx, dy, dw, dh)``.

    Raises:
        TypeError, ValueError: see :func:`~sppnet.ops.encode_boxes`.
    """
    return encode_boxes(proposals, gt_boxes, weights)
