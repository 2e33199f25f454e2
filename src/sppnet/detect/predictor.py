"""A detector you call on images: ``sppnet.load_detector(path).predict(images)``.

``sppnet.load_detector`` (:mod:`sppnet.api`) opens a ``sppnet train-det`` output (PyTorch,
:func:`open_saved_detector`) or an exported ONNX detector directory (``sppnet export
--detector``; ONNX Runtime runs its graphs). Its
:meth:`DetectionPredictor.predict` takes images in any of the kinds of
:mod:`sppnet.data.inputs`, computes their proposals (or takes yours), and returns one dict per
image in torchvision's detection convention, boxes in the image's own pixels. It runs the
same steps as ``sppnet detect`` (:mod:`sppnet.detect.images`): an image whose shorter side
exceeds the detector's largest scale is detected on a copy of that size, its proposals
computed on the copy; so the boxes equal the command's.

Scores. ``scores`` is the paper's score: the linear SVM's margin of the class (a real number,
unbounded; 0 is the SVM's decision boundary), or for a detector trained without SVMs the
softmax probability of its fine-tuned fc8. ``probs`` is a probability a person can read: the
softmax of the fine-tuned ``(K + 1)``-way fc8 (the detector's own fc layers, trained on the
same windows before the SVMs) for the detected class, at the detected window. It is not a
calibration of the SVM score: the two rank windows alike but not identically. An exported
ONNX detector's window graph outputs the SVM scores only, so its results carry no ``probs``.

Shape shorthand: R windows, K classes, M detections.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sppnet.data.inputs import as_image_list, check_images, image_label, to_pil
from sppnet.detect.device import detector_device, postprocess_on_cpu
from sppnet.detect.images import COMPUTED_PROPOSALS, detection_copy, image_proposals
from sppnet.detection.detector import Detector

__all__ = ["DetectionPredictor", "open_saved_detector"]


class DetectionPredictor:
    """A loaded detector with :meth:`predict` (see the module docstring).

    Args:
        detector: a :class:`~sppnet.detection.Detector` or an ONNX detector.
        source: where it was loaded from (shown by ``repr``).

    Attributes:
        detector: the wrapped detector (``Detector(image, proposals)`` still works on it).
        class_names: the K classes; label ``i`` is ``class_names[i]``.
    """

    def __init__(self, detector: Any, source: str = "") -> None:
        self.detector = detector
        self.class_names: list[str] = list(detector.class_names)
        self.source = source

    def __repr__(self) -> str:
        kind = type(self.detector).__name__
        return f"DetectionPredictor({kind}, classes={len(self.class_names)}, {self.source!r})"

    @property
    def device(self) -> torch.device:
        """Where the network runs (the CPU for an ONNX detector)."""
        return detector_device(self.detector)

    @property
    def has_probs(self) -> bool:
        """Whether results carry ``probs``: a PyTorch detector with a ``K + 1``-way fc8."""
        fc8 = getattr(getattr(self.detector, "model", None), "fc8", None)
        return isinstance(self.detector, Detector) and (
            getattr(fc8, "out_features", None) == len(self.class_names) + 1
        )

    def predict(
        self,
        images: Any,
        *,
        proposals: str | Sequence[Tensor] = "edge_boxes",
        max_proposals: int = 2000,
        score_threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Detect objects in one image or a list of images.

        The images are processed one after the other (each has its own size and its own
        conv maps, so there is no batch to form); every input is checked before the first
        is detected.

        Args:
            images: a path, PIL image, uint8 ``[H, W, 3]`` array or float ``[3, H, W]``
                tensor in ``[0, 1]``, or a list of them.
            proposals: ``"edge_boxes"`` or ``"selective_search"`` (computed here), or one
                ``Tensor[R, 4]`` per image, ``(x1, y1, x2, y2)`` in that image's pixels.
            max_proposals: R at most for computed proposals.
            score_threshold: keep detections scoring above it (``None``: the detector's
                own setting, by default none).

        Returns:
            One dict per image: ``"boxes"`` ``Tensor[M, 4]`` in the image's pixels,
            ``"scores"`` ``Tensor[M]`` (the paper's score), ``"labels"`` ``LongTensor[M]``,
            ``"names"`` ``list[str]`` and, where :attr:`has_probs`, ``"probs"``
            ``Tensor[M]``; best first, on the CPU.

        Raises:
            FileNotFoundError, TypeError, ValueError: a bad image (named by position or
                path), proposals of the wrong kind or number, a bad ``max_proposals``.
        """
        items = as_image_list(images)
        check_images(items)
        given = _check_proposals(proposals, len(items), max_proposals)
        results = []
        for i, item in enumerate(items):
            try:
                results.append(
                    self._predict_one(
                        to_pil(item, i), i, proposals, given, max_proposals, score_threshold
                    )
                )
            except ValueError as err:
                label = image_label(item, i)
                raise ValueError(err if str(err).startswith(label) else f"{label}: {err}") from err
        return results

    __call__ = predict

    def _predict_one(
        self,
        original: Any,
        index: int,
        method: Any,
        given: list[Tensor] | None,
        max_proposals: int,
        score_threshold: float | None,
    ) -> dict[str, Any]:
        """The steps of ``sppnet detect`` on one PIL image (:mod:`sppnet.detect.images`)."""
        from sppnet.data.transforms import to_tensor

        detector = self.detector
        image, factor = detection_copy(original, max(detector.scales))  # factor [4]
        if given is None:
            windows = image_proposals(image, method, max_proposals)
        else:
            windows = given[index].float().cpu() * factor
        x = to_tensor(image).to(self.device)
        scored = detector.score_windows(x, windows)  # scores [R, K], boxes [R, K, 4]
        dets = postprocess_on_cpu(
            detector, scored, (int(x.shape[1]), int(x.shape[2])),
            probs=True, score_threshold=score_threshold,
        )  # fmt: skip
        out: dict[str, Any] = {
            "boxes": dets["boxes"] / factor,
            "scores": dets["scores"],
            "labels": dets["labels"],
            "names": [self.class_names[int(c)] for c in dets["labels"]],
        }
        if "probs" in dets:
            out["probs"] = dets["probs"]
        return out


def _check_proposals(
    proposals: str | Sequence[Tensor], count: int, max_proposals: int
) -> list[Tensor] | None:
    """The given windows (checked), or None for a computed method."""
    from sppnet.ops.boxes import check_boxes

    if isinstance(proposals, str):
        if proposals not in COMPUTED_PROPOSALS:
            raise ValueError(
                f"proposals must be one of {COMPUTED_PROPOSALS} or one Tensor[R, 4] per "
                f"image, got {proposals!r}"
            )
        if (
            isinstance(max_proposals, bool)
            or not isinstance(max_proposals, int)
            or max_proposals < 1
        ):
            raise ValueError(f"max_proposals must be an int >= 1, got {max_proposals!r}")
        return None
    given = list(proposals)
    if len(given) != count:
        raise ValueError(f"{count} images but {len(given)} proposal tensors: give one per image")
    for i, boxes in enumerate(given):
        check_boxes(boxes, f"proposals of image {i}")
    return given


def open_saved_detector(path: str | os.PathLike[str], device: str = "auto") -> DetectionPredictor:
    """The predictor of a ``sppnet train-det`` output folder (``sppnet.load_detector`` also
    opens ONNX exports).

    Args:
        path: the folder (or its ``detector/``).
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``
            or ``"mps"``.

    Returns:
        The predictor.

    Raises:
        FileNotFoundError: no detector there.
        ValueError: a damaged detector.
    """
    from sppnet.detect.io import load_detector as load_saved

    detector, _ = load_saved(path, map_location=_resolve(device))
    return DetectionPredictor(detector, str(path))


def _resolve(device: str) -> str:
    """``"auto"``: ``cuda`` when a GPU is there, else ``cpu`` (as the command's ``--device``)."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
