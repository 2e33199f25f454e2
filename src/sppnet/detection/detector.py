"""The SPP-net detector: shared conv maps, window pyramids, fc layers, SVMs, box regression.

Stages (Sec. 4.1-4.2), each a method so the engine can time it and tests can check it:

1. ``conv``: :func:`~sppnet.detection.compute_conv_maps`, the trunk once per scale;
2. ``pooling``: :func:`~sppnet.detection.pool_windows`, a pyramid per window (``[R, P]``);
3. ``fc``: fc6 and fc7 of the fine-tuned network (``[R, D]``);
4. ``svm``: per-class linear SVM scores on fc7 (or, without SVMs, the softmax of the
   fine-tuned ``(K+1)``-way fc8, background dropped), and box regression on the pooled
   features;
5. ``nms``: per class, at IoU 0.3 (Sec. 4.2), then a score threshold and a cap.

Labels are class indices ``0..K-1`` into ``class_names`` (the dataset's convention, and
what :func:`~sppnet.evaluation.voc_detection_map` takes with ``class_names``).

Shape shorthand:
    R  candidate windows of one image
    K  object classes (no background)
    P  pooled features per window, ``C * L``
    D  fc7 width
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future

import torch
from torch import Tensor, nn

from sppnet._clock import device_clock
from sppnet._repr import format_fields
from sppnet.detection._checks import check_positive_finite
from sppnet.detection.box_regression import apply_box_regression
from sppnet.detection.scales import DETECTION_SCALES_1
from sppnet.detection.window_features import compute_conv_maps, pool_checked_windows
from sppnet.ops.boxes import batched_nms, check_boxes, clip_boxes

__all__ = [
    "Detector",
    "PostprocessStage",
    "await_proposals",
    "combine_scored_windows",
    "postprocess_detections",
]


def postprocess_detections(
    scores: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    nms_threshold: float = 0.3,
    score_threshold: float | None = None,
    max_detections: int = 100,
    *,
    return_windows: bool = False,
) -> dict[str, Tensor]:
    """Per-class NMS over scored windows, then a score threshold and a cap (Sec. 4.2).

    Args:
        scores: ``Tensor[R, K]`` score of every window for every class.
        boxes: ``Tensor[R, K, 4]`` (class-specific, after box regression) or ``Tensor[R, 4]``.
        image_size: ``(height, width)``; boxes are clipped to the image.
        nms_threshold: IoU above which a lower-scored box of the same class is suppressed.
        score_threshold: keep only scores above it (``None``: keep all).
        max_detections: at most this many detections per image, best first.
        return_windows: also return ``"windows"``, ``LongTensor[M]``: the row of
            ``scores`` (the proposal) each detection came from.

    Returns:
        ``{"boxes": Tensor[M, 4], "scores": Tensor[M], "labels": LongTensor[M]}``, by
        decreasing score.

    Raises:
        ValueError: inconsistent shapes or a negative ``max_detections``.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be Tensor[R, K], got {tuple(scores.shape)}")
    r, k = scores.shape
    if boxes.dim() == 2:
        boxes = boxes[:, None, :].expand(r, k, 4)
    if boxes.shape != (r, k, 4):
        raise ValueError(f"boxes must be Tensor[{r}, {k}, 4] or [{r}, 4], got {tuple(boxes.shape)}")
    if (
        isinstance(max_detections, bool)
        or not isinstance(max_detections, int)
        or max_detections < 0
    ):
        raise ValueError(f"max_detections must be an int >= 0, got {max_detections!r}")
    flat_scores = scores.reshape(-1)  # [R*K]
    flat_boxes = clip_boxes(boxes.reshape(-1, 4), *image_size)  # [R*K, 4]
    flat_labels = torch.arange(k, device=scores.device).repeat(r)  # [R*K]
    keep = torch.isfinite(flat_scores)
    if score_threshold is not None:
        keep &= flat_scores > score_threshold
    # A box clipped to nothing (a window outside the image) cannot be a detection.
    keep &= (flat_boxes[:, 2] > flat_boxes[:, 0]) & (flat_boxes[:, 3] > flat_boxes[:, 1])
    idx = torch.nonzero(keep).flatten()
    # the first max_detections kept boxes, by decreasing score: NMS stops there
    kept = batched_nms(
        flat_boxes[idx], flat_scores[idx], flat_labels[idx], nms_threshold, max_keep=max_detections
    )
    idx = idx[kept]
    out = {"boxes": flat_boxes[idx], "scores": flat_scores[idx], "labels": flat_labels[idx]}
    if return_windows:
        out["windows"] = torch.div(idx, k, rounding_mode="floor")
    return out


def combine_scored_windows(scored: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Model combination (Sec. 4.4): the union of several models' scored windows.

    Each model scores its windows (:meth:`Detector.score_windows`); the union then goes
    through one :func:`postprocess_detections`, so NMS picks the best-scored window of
    either model. Scores must be on one scale (SVM margins of detectors trained alike).

    Args:
        scored: dicts with ``"scores"`` ``Tensor[R_i, K]`` and ``"boxes"`` ``Tensor[R_i, K, 4]``.

    Returns:
        ``{"scores": Tensor[sum R_i, K], "boxes": Tensor[sum R_i, K, 4]}``.

    Raises:
        ValueError: nothing to combine, or different numbers of classes.
    """
    if not scored:
        raise ValueError("combine_scored_windows needs at least one model's scored windows")
    ks = {int(s["scores"].shape[1]) for s in scored}
    if len(ks) != 1:
        raise ValueError(f"every model must score the same classes, got class counts {sorted(ks)}")
    return {
        "scores": torch.cat([s["scores"] for s in scored]),
        "boxes": torch.cat([s["boxes"] for s in scored]),
    }


class PostprocessStage:
    """Stage 5 of a detector that holds its settings: ``nms_threshold``,
    ``score_threshold`` and ``max_detections`` (:class:`Detector`, and the ONNX Runtime
    detector of :mod:`sppnet.export.onnx_detector`)."""

    nms_threshold: float
    score_threshold: float | None
    max_detections: int

    def postprocess(
        self, scored: Mapping[str, Tensor], image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Stage 5 with this detector's settings (see :func:`postprocess_detections`).

        Args:
            scored: ``{"scores": Tensor[R, K], "boxes": Tensor[R, K, 4]}`` of the windows.
            image_size: ``(height, width)`` of the image.

        Returns:
            ``{"boxes": Tensor[M, 4], "scores": Tensor[M], "labels": LongTensor[M]}``.
        """
        return postprocess_detections(
            scored["scores"],
            scored["boxes"],
            image_size,
            self.nms_threshold,
            self.score_threshold,
            self.max_detections,
        )


def await_proposals(
    proposals: Tensor | Future[Tensor], since: float, timing: dict[str, float]
) -> tuple[Tensor, float]:
    """The windows of ``proposals``, waiting for them if they are a future.

    Args:
        proposals: ``Tensor[R, 4]`` (returned as is; its caller checked it before any work)
            or a :class:`~concurrent.futures.Future` of one, checked once it arrives.
        since: ``time.perf_counter()`` when the caller began to wait (its last stage's end).
        timing: stage seconds; gains ``"proposals_wait"`` for a future.

    Returns:
        ``(windows, now)``: the windows and the clock when they were there.

    Raises:
        whatever the future raised; TypeError, ValueError for bad boxes.
    """
    if not isinstance(proposals, Future):
        return proposals, since
    windows = proposals.result()
    now = time.perf_counter()
    timing["proposals_wait"] = now - since
    check_boxes(windows, "proposals")
    return windows, now


def _check_svm_head(model: nn.Module, k: int, weight: Tensor | None, bias: Tensor | None) -> None:
    """SVMs ``Tensor[K, fc_dim]`` with a bias, or none and a ``K + 1``-way fc8."""
    fc_dim = getattr(model, "fc_dim", None)
    if weight is None:
        if model.num_classes != k + 1:
            raise ValueError(
                f"without SVMs the model's fc8 must be {k + 1}-way (K classes + "
                f"background), got {model.num_classes}"
            )
    elif weight.dim() != 2 or weight.shape[0] != k or bias is None:
        raise ValueError(
            f"svm_weight must be Tensor[{k}, D] with an svm_bias, got "
            f"{tuple(weight.shape)} and {bias!r}"
        )
    elif fc_dim is not None and weight.shape[1] != fc_dim:
        raise ValueError(f"svm_weight must be Tensor[{k}, {fc_dim}], got {tuple(weight.shape)}")


def _check_box_head(model: nn.Module, k: int, weight: Tensor | None, bias: Tensor | None) -> None:
    """Box regression ``Tensor[K, pooled_dim, 4]`` with a bias, or none."""
    if weight is None:
        return
    p = getattr(model, "pooled_dim", None)
    if weight.dim() != 3 or weight.shape[0] != k or bias is None:
        raise ValueError(
            f"box_weight must be Tensor[{k}, P, 4] with a box_bias, got {tuple(weight.shape)}"
        )
    if p is not None and weight.shape[1] != p:
        raise ValueError(f"box_weight must be Tensor[{k}, {p}, 4], got {tuple(weight.shape)}")


class Detector(PostprocessStage, nn.Module):
    """SPP-net detector (Sec. 4); see the module docstring for the stages.

    Args:
        model: the fine-tuned :class:`~sppnet.models.SPPNet` (its fc8 is ``K + 1``-way when
            ``svm_weight`` is ``None``).
        class_names: the ``K`` object classes, label ``i`` is ``class_names[i]``.
        mean: the pixel mean subtracted in training.
        scales: shorter-side lengths of the image pyramid, ``(688,)`` or five scales.
        max_long_side: optional cap on a resized image's longer side.
        svm_weight: ``Tensor[K, D]`` per-class SVM weights on fc7 (``None``: softmax).
        svm_bias: ``Tensor[K]``.
        svm_scale: multiplies fc7 before the SVMs (mean norm 20 in training).
        box_weight: ``Tensor[K, P, 4]`` ridge weights of box regression (``None``: none).
        box_bias: ``Tensor[K, 4]``.
        box_scale: multiplies the pooled features before the regression.
        nms_threshold: per-class NMS IoU (0.3).
        score_threshold: optional least score of a detection.
        max_detections: cap per image.

    Raises:
        ValueError: shapes that do not fit each other or the model.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        class_names: Sequence[str],
        mean: float | Tensor = 128.0,
        scales: Sequence[float] = DETECTION_SCALES_1,
        max_long_side: float | None = None,
        svm_weight: Tensor | None = None,
        svm_bias: Tensor | None = None,
        svm_scale: float = 1.0,
        box_weight: Tensor | None = None,
        box_bias: Tensor | None = None,
        box_scale: float = 1.0,
        nms_threshold: float = 0.3,
        score_threshold: float | None = None,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.model = model
        self.class_names = list(class_names)
        k = len(self.class_names)
        if k == 0:
            raise ValueError("class_names must hold at least one class")
        self.mean = mean
        self.scales = tuple(float(s) for s in scales)
        if not self.scales:
            raise ValueError("scales must hold at least one scale")
        self.max_long_side = max_long_side
        _check_svm_head(model, k, svm_weight, svm_bias)
        _check_box_head(model, k, box_weight, box_bias)
        check_positive_finite("svm_scale", svm_scale)
        check_positive_finite("box_scale", box_scale)
        self.register_buffer("svm_weight", None if svm_weight is None else svm_weight.float())
        self.register_buffer("svm_bias", None if svm_bias is None else svm_bias.float())
        self.register_buffer("box_weight", None if box_weight is None else box_weight.float())
        self.register_buffer("box_bias", None if box_bias is None else box_bias.float())
        self.svm_scale = float(svm_scale)
        self.box_scale = float(box_scale)
        self.nms_threshold = float(nms_threshold)
        self.score_threshold = score_threshold
        self.max_detections = int(max_detections)

    @property
    def num_classes(self) -> int:
        """K, the object classes (background not counted)."""
        return len(self.class_names)

    def extra_repr(self) -> str:
        return format_fields(
            classes=self.num_classes,
            scales=self.scales,
            svm=self.svm_weight is not None,
            box_regression=self.box_weight is not None,
            nms_threshold=self.nms_threshold,
        )

    # ------------------------------------------------------------------------- stages
    def pooled_features(
        self, image: Tensor, proposals: Tensor | Future[Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        """Stages 1-2: ``Tensor[R, P]`` pooled features, and the seconds of each stage.

        ``proposals`` may be a :class:`~concurrent.futures.Future` of the windows (e.g. a
        proposal method running in a thread): it is awaited after the convolutions, which
        need only the image, and the seconds spent waiting are ``"proposals_wait"``.
        """
        if not isinstance(proposals, Future):  # checked before any work
            check_boxes(proposals, "proposals")
        t0 = device_clock(image.device)
        maps = compute_conv_maps(self.model, image, self.scales, self.mean, self.max_long_side)
        t1 = device_clock(image.device)
        timing = {"conv": t1 - t0}
        proposals, t1 = await_proposals(proposals, t1, timing)
        pooled = pool_checked_windows(self.model, maps, proposals.to(image.device))
        timing["pooling"] = device_clock(image.device) - t1
        return pooled, timing

    def score_pooled(self, pooled: Tensor, proposals: Tensor) -> dict[str, object]:
        """Stages 3-4 on pooled features: per-class scores and class-specific boxes.

        Args:
            pooled: ``Tensor[R, P]`` from :meth:`pooled_features`.
            proposals: ``Tensor[R, 4]`` the windows.

        Returns:
            ``{"scores": Tensor[R, K], "boxes": Tensor[R, K, 4], "probs": Tensor[R, K],
            "timing": {"fc", "svm"}}``. ``probs`` is the softmax of the fine-tuned
            ``(K + 1)``-way fc8, background dropped (a probability a person can read beside
            the SVM margins; the scores themselves without SVMs); it is absent when the
            network's fc8 is not ``K + 1``-way.
        """
        t0 = device_clock(pooled.device)
        k = self.num_classes
        probs = None
        if self.svm_weight is None:
            logits = self.model.forward_pooled(pooled)  # [R, K+1]
            t1 = device_clock(pooled.device)
            scores = probs = torch.softmax(logits.float(), dim=1)[:, 1:]  # [R, K]; 0: background
        else:
            fc7 = self.model.forward_pooled(pooled, pre_logits=True)  # [R, D]
            t1 = device_clock(pooled.device)
            # the feature scale goes into the [K, D] weights, not into the [R, D] features
            weight = (self.svm_weight * self.svm_scale).T  # [D, K]
            scores = torch.addmm(self.svm_bias, fc7.float(), weight)  # [R, K]
            fc8 = getattr(self.model, "fc8", None)
            if isinstance(fc8, nn.Linear) and fc8.out_features == k + 1:
                probs = torch.softmax(fc8(fc7).float(), dim=1)[:, 1:]  # [R, K]
        boxes = proposals.to(scores.dtype)[:, None, :].expand(-1, k, 4)  # [R, K, 4]
        if self.box_weight is not None and proposals.shape[0] > 0:
            # likewise: scaling the [K, P, 4] weights spares a copy of the [R, P] features
            boxes = apply_box_regression(
                proposals.to(scores.dtype),
                pooled.float(),
                self.box_weight * self.box_scale,
                self.box_bias,
            )
        t2 = device_clock(pooled.device)
        out = {"scores": scores, "boxes": boxes, "timing": {"fc": t1 - t0, "svm": t2 - t1}}
        if probs is not None:
            out["probs"] = probs
        return out

    @torch.inference_mode()
    def score_windows(self, image: Tensor, proposals: Tensor | Future[Tensor]) -> dict[str, object]:
        """Stages 1-4: every window scored for every class (no NMS).

        Args:
            image: ``Tensor[3, H, W]`` float pixels 0..255.
            proposals: ``Tensor[R, 4]`` candidate windows in image pixels, or a
                :class:`~concurrent.futures.Future` of them, awaited only after the
                convolutions (so proposals computed in a thread overlap the trunk).

        Returns:
            ``{"scores": Tensor[R, K], "boxes": Tensor[R, K, 4], "timing": {stage: s}}``;
            ``timing`` holds ``"proposals_wait"`` when ``proposals`` was a future.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            pooled, timing = self.pooled_features(image, proposals)
            if isinstance(proposals, Future):
                proposals = proposals.result()
            out = self.score_pooled(pooled, proposals.to(pooled.device))
        finally:
            self.model.train(was_training)
        out["timing"] = {**timing, **out["timing"]}
        return out

    def forward(self, image: Tensor, proposals: Tensor) -> dict[str, Tensor]:
        """Detect objects in one image.

        Args:
            image: ``Tensor[3, H, W]`` float pixels 0..255 (see
                :func:`~sppnet.data.transforms.to_tensor`).
            proposals: ``Tensor[R, 4]`` candidate windows (selective search, EdgeBoxes or
                loaded), ``(x1, y1, x2, y2)`` in image pixels.

        Returns:
            ``{"boxes": Tensor[M, 4], "scores": Tensor[M], "labels": LongTensor[M]}`` with
            labels ``0..K-1`` into ``class_names``, by decreasing score.
        """
        scored = self.score_windows(image, proposals)
        return self.postprocess(scored, (int(image.shape[1]), int(image.shape[2])))
