"""Detection on image files (``sppnet detect``): proposals per image, every stage timed.

For each image: a working copy no larger than the detector's largest scale, its proposals
(EdgeBoxes, selective search, or a ``<stem>.npy`` file), the windows scored and the
detections kept by NMS, with the seconds of each stage; then a picture and a JSON record.
With several images and ``proposal_workers >= 1`` the proposals are computed ahead in
worker processes while the network runs on the earlier images (the same boxes as one by
one).

Shape shorthand: R windows, K classes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from sppnet.data.decode import ImageDecodeError, load_image
from sppnet.detect.device import detector_device, postprocess_on_cpu
from sppnet.detection.scales import image_scale_factors

__all__ = [
    "COMPUTED_PROPOSALS",
    "ImageDetections",
    "ImageFailure",
    "detect_images",
    "detection_copy",
    "image_proposals",
    "output_names",
    "save_image_detections",
]

# proposal methods computed on the image; any other --proposals is a folder of <stem>.npy
COMPUTED_PROPOSALS = ("edge_boxes", "selective_search")
# what a bad image raises: reported per image, the others still detected
_IMAGE_ERRORS = (ImageDecodeError, ValueError, FileNotFoundError)


@dataclass(frozen=True)
class ImageDetections:
    """The detections of one image file.

    Attributes:
        path: the image file.
        name: its output name (:func:`output_names`).
        image: the PIL working copy the detector saw (at most its largest scale).
        original_size: ``(height, width)`` of the file's image.
        factor: ``Tensor[4]`` ``(fx, fy, fx, fy)``, copy pixels per original pixel.
        detections: ``{"boxes": Tensor[N, 4], "scores": Tensor[N], "labels": Tensor[N]}`` in
            the working copy's pixels, on the CPU, and ``"probs"`` ``Tensor[N]`` (the fc8
            softmax) for a detector whose fc8 gives them.
        windows: R, the proposals scored.
        timing: seconds per stage (proposals, conv, pooling, fc, svm, nms) and the
            image's wall time (``total``); with proposals computed beside ``conv`` the
            stages add up to more than ``total``.
    """

    path: Path
    name: str
    image: Image.Image
    original_size: tuple[int, int]
    factor: Tensor
    detections: dict[str, Tensor]
    windows: int
    timing: dict[str, float]


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be detected: its file and why."""

    path: Path
    message: str


def detection_copy(image: Image.Image, scale: float) -> tuple[Image.Image, Tensor]:
    """``(copy, factor)``: a PIL ``image`` resized so its shorter side is at most ``scale``.

    An image larger than the detector's largest scale works on a copy of that size (the
    conv maps see no more detail). ``factor`` is ``Tensor[4]`` ``(fx, fy, fx, fy)``, copy
    pixels per original pixel (ones, and the image itself, when it is not larger).
    """
    width, height = image.size
    shrink = min(1.0, float(scale) / min(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    if size == (width, height):
        return image, torch.ones(4)
    copy = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
    fx, fy = size[0] / width, size[1] / height
    return copy, torch.tensor([fx, fy, fx, fy])


def image_proposals(image: Image.Image, method: str, max_proposals: int) -> Tensor:
    """``Tensor[R, 4]``: EdgeBoxes or selective-search proposals of one PIL image."""
    from sppnet.detection.proposals import edge_boxes, selective_search

    if method == "edge_boxes":
        boxes, _ = edge_boxes(image, max_boxes=max_proposals)
        return boxes
    return selective_search(image, max_proposals=max_proposals)


def _worker_proposals(setting: tuple[str, int, float], path: str) -> tuple[Tensor, float] | str:
    """Proposals of one image on its detection copy (run in a worker process):
    ``(boxes, seconds)``, or the message of an image that cannot be read."""
    method, max_proposals, scale = setting
    try:
        image, _ = detection_copy(load_image(path), scale)
        t0 = time.perf_counter()
        boxes = image_proposals(image, method, max_proposals)
        return boxes, time.perf_counter() - t0
    except _IMAGE_ERRORS as err:
        return str(err)


def output_names(images: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One output name per image: its stem; later images of a stem already taken get
    ``stem-2``, ``stem-3``, ... (``a/x.jpg b/x.jpg`` -> ``x``, ``x-2``), so none overwrites
    another's outputs."""
    names: list[str] = []
    taken: set[str] = set()
    for image in images:
        stem = Path(image).stem
        name, k = stem, 1
        while name in taken:
            k += 1
            name = f"{stem}-{k}"
        taken.add(name)
        names.append(name)
    return names


def _detect_one(
    detector: Any,
    path: Path,
    name: str,
    ready: tuple[Tensor, float] | str | None,
    proposals: str,
    max_proposals: int,
    beside: ThreadPoolExecutor | None,
) -> ImageDetections:
    """Detect in one image file; ``ready``: its proposals from a worker, or None.

    With a ``beside`` thread, computed proposals run there while the detector's trunk
    computes the conv maps (OpenCV releases the GIL; the maps need only the image), and the
    detector waits for them only before pooling: ``timing["proposals"]`` is then the
    proposal method's own seconds, overlapping ``conv``. ``timing["total"]`` is the image's
    wall time.
    """
    if isinstance(ready, str):  # the worker could not read the image
        raise ValueError(ready)
    original = load_image(path)
    image, factor = detection_copy(original, max(detector.scales))  # factor [4]
    # an image too large at a scale is refused before its proposals are computed
    cap = getattr(detector, "max_long_side", None)
    image_scale_factors(image.height, image.width, detector.scales, cap)
    t0 = time.perf_counter()
    spent: dict[str, float] = {}
    windows: Tensor | Future[Tensor]
    if ready is not None:
        windows, spent["proposals"] = ready  # the worker's time for this image
    elif proposals in COMPUTED_PROPOSALS and beside is not None:
        windows = beside.submit(_timed_proposals, image, proposals, max_proposals, spent)
    elif proposals in COMPUTED_PROPOSALS:
        windows = _timed_proposals(image, proposals, max_proposals, spent)
    else:
        from sppnet.data._paths import inside_root
        from sppnet.detection.proposals import load_proposals

        t = time.perf_counter()
        record = f"the proposals of {path.name}"
        source = inside_root(proposals, f"{path.stem}.npy", source=proposals, record=record)
        windows = load_proposals(source, image_size=original.size[::-1])
        windows = windows * factor
        spent["proposals"] = time.perf_counter() - t
    from sppnet.data.transforms import to_tensor

    x = to_tensor(image).to(detector_device(detector))
    scored = detector.score_windows(x, windows)  # scores [R, K], boxes [R, K, 4]
    boxes = windows.result() if isinstance(windows, Future) else windows
    t2 = time.perf_counter()
    dets = postprocess_on_cpu(detector, scored, (x.shape[1], x.shape[2]), probs=True)
    t3 = time.perf_counter()
    timing = {"proposals": spent["proposals"], **scored["timing"], "nms": t3 - t2, "total": t3 - t0}
    size = original.size[::-1]
    return ImageDetections(path, name, image, size, factor, dets, int(boxes.shape[0]), timing)


def _timed_proposals(
    image: Image.Image, method: str, max_proposals: int, spent: dict[str, float]
) -> Tensor:
    """:func:`image_proposals`, its seconds written to ``spent["proposals"]``."""
    t0 = time.perf_counter()
    boxes = image_proposals(image, method, max_proposals)
    spent["proposals"] = time.perf_counter() - t0
    return boxes


def detect_images(
    detector: Any,
    images: Sequence[str | os.PathLike[str]],
    *,
    proposals: str = "edge_boxes",
    max_proposals: int = 2000,
    proposal_workers: int = 0,
    proposals_beside_conv: bool | None = None,
) -> Iterator[ImageDetections | ImageFailure]:
    """Detect in each image file, in order; a file that fails is reported, not raised.

    Args:
        detector: a :class:`~sppnet.detection.detector.Detector` or an ONNX detector
            (``scales``, ``score_windows``, ``postprocess``). A Detector runs on its own
            device (:func:`~sppnet.detect.io.load_detector`'s ``map_location``):
            each image goes there; proposals and NMS stay on the CPU.
        images: image files.
        proposals: ``edge_boxes``, ``selective_search``, or a folder of ``<stem>.npy``
            boxes in the original image's pixels.
        max_proposals: R at most, for computed proposals.
        proposal_workers: with several images and computed proposals, processes computing
            the proposals of the next images while the network runs on this one (0: each
            image's proposals, then its network, one image after the other).
        proposals_beside_conv: compute an image's proposals in a thread while the trunk
            computes its conv maps. ``None`` (default): only when the detector is not on
            the CPU (a GPU trunk leaves the CPU free). On a 2-core CPU the two compete for
            the same cores, and overlapping them measured slower than one after the other
            (``benchmarks/detect_image_speed.py``).

    Yields:
        :class:`ImageDetections` per image, or :class:`ImageFailure` for an image that
        cannot be read or has no proposals file.
    """
    paths = [Path(p) for p in images]
    ready: Iterable[Any] = [None] * len(paths)
    if proposals in COMPUTED_PROPOSALS and proposal_workers >= 1 and len(paths) > 1:
        from sppnet.detect.proposal_workers import iter_in_processes

        setting = (proposals, max_proposals, max(detector.scales))
        ready = iter_in_processes(
            _worker_proposals, setting, [str(p) for p in paths], proposal_workers
        )
    if proposals_beside_conv is None:
        proposals_beside_conv = detector_device(detector).type != "cpu"
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="proposals") as pool:
        beside = pool if proposals_beside_conv else None
        for path, name, pooled in zip(paths, output_names(paths), ready, strict=True):
            try:
                result: ImageDetections | ImageFailure = _detect_one(
                    detector, path, name, pooled, proposals, max_proposals, beside
                )
            except _IMAGE_ERRORS as err:
                result = ImageFailure(path, str(err))
            yield result


def detection_record(
    detections: dict[str, Tensor],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    size: tuple[int, int],
) -> dict[str, Any]:
    """One image's detections as its JSON record (boxes in the image's own pixels).

    :func:`~sppnet.visualize.detections_to_json` of the boxes, with each row's ``prob``
    (the fc8 softmax beside the SVM score) where the detections have ``"probs"``.
    """
    from sppnet.visualize import detections_to_json

    data = detections_to_json(detections, class_names, image=str(path), image_size=size)
    if "probs" in detections:
        for row, prob in zip(data["detections"], detections["probs"].tolist(), strict=True):
            row["prob"] = round(prob, 6)
    return data


def save_image_detections(
    result: ImageDetections,
    out: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    draw_threshold: float = 0.0,
    picture: bool = True,
    record: bool = True,
) -> tuple[Path | None, Path | None, list[str]]:
    """Write ``out/<name>.png`` (the boxes drawn) and ``out/<name>.json`` (the record).

    The picture is at the working size (a huge PNG costs memory and seconds); the JSON
    boxes are in the original image's pixels, with the windows and the time per stage.
    ``picture=False`` or ``record=False`` leaves that file out.

    Returns:
        ``(picture, json_file, replaced)``: the files written (None for one left out), and
        those of them an earlier run had written (now replaced).
    """
    from sppnet.visualize import draw_detections, save_json

    out = Path(out)
    targets = [out / f"{result.name}.png", out / f"{result.name}.json"]
    targets = [t for t, wanted in zip(targets, (picture, record), strict=True) if wanted]
    replaced = [str(t) for t in targets if t.exists()]
    dets = result.detections
    drawn = None
    if picture:
        drawn = Path(draw_detections(
            result.image, dets, class_names, targets[0], score_threshold=draw_threshold
        ))  # fmt: skip
    if not record:
        return drawn, None, replaced
    data = detection_record(
        {**dets, "boxes": dets["boxes"] / result.factor},
        class_names,
        result.path,
        result.original_size,
    )
    data["windows"] = result.windows
    data["timing"] = result.timing
    save_json(data, targets[-1])
    return drawn, targets[-1], replaced
