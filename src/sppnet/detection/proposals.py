"""Region proposals: selective search, EdgeBoxes, precomputed files and a disk cache.

Paper Sec. 4: selective search "fast" mode gives about 2,000 windows
per image for training and testing; EdgeBoxes is the fast alternative at test time
(Sec. 4.3); precomputed proposals (a per-image ``.npy``/JSON file, or R-CNN's selective
search ``.mat`` files) must be loadable. Both detectors come from OpenCV contrib
(``cv2.ximgproc``; no model file is needed, nothing downloads).

Every function returns boxes in the library's box convention: float32
``(x1, y1, x2, y2)``, 0-based, continuous, so a box covering pixels ``0..9`` is
``(0, 0, 10, 10)``. Boxes are clipped to the image when its size is known, and zero-area
boxes are dropped; an empty result is ``Tensor[0, 4]``.

Shape shorthand:
    R     number of proposals of one image
    H, W  image height and width in pixels
"""

from __future__ import annotations

import ctypes
import inspect
import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from sppnet._atomic import atomic_save_npy, atomic_write_bytes
from sppnet._validate import check_int, check_real
from sppnet.errors import DamagedFileError
from sppnet.ops.boxes import check_boxes, clip_boxes

__all__ = [
    "PROPOSAL_MAX_SIDE",
    "ProposalCache",
    "edge_boxes",
    "load_proposals",
    "load_rcnn_mat",
    "selective_search",
]

ImageLike = Union["PIL.Image.Image", np.ndarray]  # noqa: F821 - PIL is optional here

_METHODS = ("selective_search", "edge_boxes")


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "proposals need OpenCV contrib: pip install opencv-contrib-python-headless"
        ) from exc
    if not hasattr(cv2, "ximgproc"):  # pragma: no cover - plain opencv-python installed
        raise ImportError(
            "cv2.ximgproc is missing: install opencv-contrib-python-headless, not opencv-python"
        )
    return cv2


def _to_rgb_array(image: object) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``uint8`` array ``[H, W, 3]`` in RGB order."""
    if isinstance(image, np.ndarray):
        arr = image
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None  # noqa: N806
        if Image is None or not isinstance(image, Image.Image):
            raise TypeError(
                "image must be a PIL image or a uint8 numpy array [H, W, 3], "
                f"got {type(image).__name__}"
            )
        arr = np.asarray(image.convert("RGB"))
    if arr.dtype != np.uint8:
        raise TypeError(f"image array must have dtype uint8, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image array must have shape [H, W, 3] (RGB), got {list(arr.shape)}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {list(arr.shape)}")
    return np.ascontiguousarray(arr)


#: Proposals of a larger image are computed on a copy resized to this longer side and the
#: boxes scaled back: EdgeBoxes on a 10,000 x 10,000 image took 78 s and 13.9 GB at full
#: size, and no window of the detector's scales (<= 1200) needs more detail than this.
PROPOSAL_MAX_SIDE = 1024


def _bounded_rgb(image: object) -> tuple[np.ndarray, int, int]:
    """``(rgb, H, W)``: the image as RGB ``uint8``, longer side <= :data:`PROPOSAL_MAX_SIDE`.

    ``H, W`` are the original image's; ``rgb`` may be smaller (resized with its aspect).
    A large PIL image is resized before its RGB array is made (no full-size copy).
    """
    if isinstance(image, np.ndarray):
        rgb = _to_rgb_array(image)
        height, width = rgb.shape[:2]
        if max(height, width) <= PROPOSAL_MAX_SIDE:
            return rgb, height, width
        from PIL import Image

        image = Image.fromarray(rgb)
    width, height = getattr(image, "size", (0, 0))
    if max(height, width) > PROPOSAL_MAX_SIDE:
        from PIL import Image

        scale = PROPOSAL_MAX_SIDE / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.convert("RGB").resize(size, Image.BILINEAR, reducing_gap=2.0)
    rgb = _to_rgb_array(image)
    return rgb, (height or rgb.shape[0]), (width or rgb.shape[1])


def _scale_back(boxes: Tensor, rgb: np.ndarray, height: int, width: int) -> Tensor:
    """Boxes on the (maybe) resized ``rgb`` -> boxes on the original ``height x width``."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return boxes
    factor = torch.tensor([width / w, height / h, width / w, height / h], dtype=boxes.dtype)
    return boxes * factor


def _xywh_to_boxes(rects: np.ndarray) -> Tensor:
    """OpenCV ``[R, 4]`` ``(x, y, w, h)`` pixel rects -> ``Tensor[R, 4]`` in our convention.

    A rect starting at pixel ``x`` and ``w`` pixels wide covers pixels ``x .. x + w - 1``,
    that is the continuous interval ``[x, x + w]``.
    """
    r = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    out = np.empty_like(r)
    out[:, 0:2] = r[:, 0:2]
    out[:, 2:4] = r[:, 0:2] + r[:, 2:4]
    return torch.from_numpy(out)


def _finish(boxes: Tensor, height: int, width: int, min_size: float = 0.0) -> tuple[Tensor, Tensor]:
    """Clip to the image, drop zero-area boxes and sides < ``min_size``; return boxes, kept idx."""
    boxes = clip_boxes(boxes, float(height), float(width))
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    keep = torch.nonzero((w > 0) & (h > 0) & (w >= min_size) & (h >= min_size)).flatten()
    return boxes[keep].contiguous(), keep


# C ``rand()`` and OpenCV's generator are process-wide: two selective searches in threads
# would draw from one sequence and rank each other's regions. One search at a time holds
# this lock from seeding to the end of ``process()``.
_RANK_RNG_LOCK = threading.Lock()


def _seed_libc_rand(seed: int) -> bool:
    """Seed C ``rand()``; OpenCV's selective search ranks regions with it. False if no libc."""
    try:
        libc = ctypes.CDLL(None)
        libc.srand(ctypes.c_uint(seed))
    except (OSError, AttributeError, TypeError):  # pragma: no cover - non-POSIX platforms
        return False
    return True


def selective_search(
    image: ImageLike,
    *,
    mode: str = "fast",
    max_proposals: int = 2000,
    min_size: float = 0.0,
    seed: int = 0,
) -> Tensor:
    """Selective search proposals (Uijlings et al.) through OpenCV contrib.

    The paper uses the "fast" mode with about 2,000 windows per image (Sec. 4.2). OpenCV
    ranks the hierarchical-grouping regions with C ``rand()``, so the order (and, after
    ``max_proposals``, the set) would vary from run to run; we seed libc's generator and
    OpenCV's (``cv2.setRNGSeed``) with ``seed`` just before ``process()`` so that the same
    image always gives the same boxes in the same order. Both generators are process-wide:
    calling this function resets them, and calls from several threads run their searches
    one at a time so that each draws its own sequence. Where libc cannot be reached
    (non-POSIX), the boxes are sorted by coordinates instead, which is deterministic but
    loses the ranking.
    OpenCV's implementation is single-threaded; no global thread setting is changed.

    Args:
        image: PIL image (converted to RGB) or ``uint8`` numpy array ``[H, W, 3]`` in RGB;
            one with a longer side above :data:`PROPOSAL_MAX_SIDE` is searched on a resized
            copy (the boxes come back in its own pixels).
        mode: ``"fast"`` (the paper's setting) or ``"quality"`` (more boxes, ~5x slower).
        max_proposals: keep at most this many boxes, best ranked first.
        min_size: drop boxes whose width or height (after clipping) is below this; boxes
            of zero area are always dropped.
        seed: seed of the C and OpenCV random generators.

    Returns:
        ``Tensor[R, 4]`` float32 boxes ``(x1, y1, x2, y2)`` inside ``[0, W] x [0, H]``,
        in OpenCV's rank order; ``R <= max_proposals`` and may be 0.

    Raises:
        TypeError: if ``image`` is not a PIL image or ``uint8`` array, or ``min_size`` is
            not a number.
        ValueError: for an array that is not ``[H, W, 3]``, an unknown ``mode``, or a
            ``max_proposals`` that is not a positive integer.
    """
    if mode not in ("fast", "quality"):
        raise ValueError(f"mode must be 'fast' or 'quality', got {mode!r}")
    max_proposals = check_int("max_proposals", max_proposals, min=1)
    min_size = check_real("min_size", min_size, min=0)
    rgb, height, width = _bounded_rgb(image)
    cv2 = _import_cv2()

    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV expects BGR
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    with _RANK_RNG_LOCK:
        seeded = _seed_libc_rand(seed)
        cv2.setRNGSeed(seed)
        rects = ss.process()  # [R, 4] int32 (x, y, w, h), best ranked first
    boxes = _scale_back(_xywh_to_boxes(rects), rgb, height, width)
    if not seeded:  # pragma: no cover - non-POSIX fallback, see docstring
        order = np.lexsort(boxes.numpy().T[::-1])
        boxes = boxes[torch.from_numpy(order)]
    boxes, _ = _finish(boxes, height, width, min_size)
    return boxes[:max_proposals]


def _edge_and_orientation(rgb: np.ndarray, cv2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Edge map ``[H, W]`` float32 in [0, 1] and orientation ``[H, W]`` in [0, pi).

    Stand-in for the structured-edge detector, whose model file is not available offline
    (nothing may download at run time): Sobel gradient magnitude, kept only where Canny fires (thin
    edges; unthinned ones make EdgeBoxes ~15x slower). Orientation as in OpenCV's
    ``StructuredEdgeDetection::computeOrientation``: second derivatives of the smoothed
    edge-strength map, ``atan2(Dyy * sign(-Dxy), Dxx) mod pi``.
    """
    # Colour gradient: per pixel, the channel with the strongest Sobel response (as in
    # colour Canny), so that iso-luminant colour edges are not lost to a grey conversion.
    blurred = cv2.GaussianBlur(rgb, (3, 3), 0)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)  # [H, W, 3]
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)  # [H, W, 3]
    mag3 = gx * gx + gy * gy
    best = np.argmax(mag3, axis=2)[:, :, None]  # [H, W, 1]
    gx = np.take_along_axis(gx, best, axis=2)[:, :, 0]
    gy = np.take_along_axis(gy, best, axis=2)[:, :, 0]
    magnitude = np.sqrt(np.take_along_axis(mag3, best, axis=2)[:, :, 0])
    peak = float(magnitude.max())
    if peak <= 0:  # flat image: no edges, no boxes
        zeros = np.zeros(magnitude.shape, np.float32)
        return zeros, zeros.copy()
    # Canny on our gradients, thresholds relative to this image's gradient statistics
    # (fixed thresholds miss low-contrast images entirely).
    high = max(float(np.percentile(magnitude, 90)), 0.2 * peak)
    canny = cv2.Canny(
        np.clip(gx, -32768, 32767).astype(np.int16),
        np.clip(gy, -32768, 32767).astype(np.int16),
        0.4 * high,
        high,
        L2gradient=True,
    )
    magnitude = (magnitude / peak).astype(np.float32)
    edges = np.where(canny > 0, magnitude, 0.0).astype(np.float32)

    smooth = cv2.GaussianBlur(magnitude, (9, 9), 0)
    dx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    dxx = cv2.Sobel(dx, cv2.CV_32F, 1, 0, ksize=3)
    dxy = cv2.Sobel(dx, cv2.CV_32F, 0, 1, ksize=3)
    dyy = cv2.Sobel(dy, cv2.CV_32F, 0, 1, ksize=3)
    orientation = np.mod(np.arctan2(dyy * np.sign(-dxy), dxx), np.pi).astype(np.float32)
    return np.ascontiguousarray(edges), np.ascontiguousarray(orientation)


def edge_boxes(
    image: ImageLike,
    *,
    max_boxes: int = 2000,
    alpha: float = 0.65,
    beta: float = 0.75,
    min_score: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """EdgeBoxes proposals (Zitnick and Dollar) through OpenCV contrib, Sec. 4.3.

    The edge map is ours (Sobel magnitude thinned by Canny, see
    :func:`_edge_and_orientation`) because the structured-edge model is not available
    offline, so the scores are lower and the recall somewhat worse than with structured
    edges. Deterministic.

    Args:
        image: PIL image (converted to RGB) or ``uint8`` numpy array ``[H, W, 3]`` in RGB;
            one with a longer side above :data:`PROPOSAL_MAX_SIDE` is searched on a resized
            copy (the boxes come back in its own pixels).
        max_boxes: keep at most this many boxes.
        alpha: step size of the sliding-window search (EdgeBoxes' alpha).
        beta: NMS threshold of the boxes (EdgeBoxes' beta).
        min_score: drop boxes scoring below this.

    Returns:
        ``(boxes, scores)``: ``Tensor[R, 4]`` float32 boxes inside ``[0, W] x [0, H]`` and
        ``Tensor[R]`` float32 scores, in descending score order; ``R`` may be 0.

    Raises:
        TypeError: if ``image`` is not a PIL image or ``uint8`` array.
        ValueError: for an array that is not ``[H, W, 3]``, a ``max_boxes`` that is not a
            positive integer, ``alpha`` or ``beta`` outside ``(0, 1]``, or a negative or
            non-finite ``min_score``.
    """
    max_boxes = check_int("max_boxes", max_boxes, min=1)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (isinstance(value, (int, float)) and 0 < float(value) <= 1):
            raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    if not (isinstance(min_score, (int, float)) and 0 <= float(min_score) < math.inf):
        raise ValueError(f"min_score must be a finite number >= 0, got {min_score!r}")
    rgb, height, width = _bounded_rgb(image)
    cv2 = _import_cv2()
    edges, orientation = _edge_and_orientation(rgb, cv2)

    eb = cv2.ximgproc.createEdgeBoxes()
    eb.setMaxBoxes(max_boxes)
    eb.setAlpha(float(alpha))
    eb.setBeta(float(beta))
    eb.setMinScore(float(min_score))
    out = eb.getBoundingBoxes(edges, orientation)
    # OpenCV >= 4.5 returns (rects, scores); older builds return rects only.
    if out is None:
        rects, raw_scores = (), None
    elif isinstance(out, tuple):
        rects = out[0] if len(out) > 0 else ()
        raw_scores = out[1] if len(out) > 1 else None
    else:
        rects, raw_scores = out, None
    rects = np.asarray(() if rects is None else rects, dtype=np.float32).reshape(-1, 4)
    if raw_scores is None or np.asarray(raw_scores).size != rects.shape[0]:
        # No scores from this OpenCV: keep its (descending) order with a rank score.
        scores_np = np.linspace(1.0, 0.0, rects.shape[0], endpoint=False, dtype=np.float32)
    else:
        scores_np = np.asarray(raw_scores, dtype=np.float32).reshape(-1)
    boxes, keep = _finish(_scale_back(_xywh_to_boxes(rects), rgb, height, width), height, width)
    scores = torch.from_numpy(np.ascontiguousarray(scores_np))[keep]
    order = torch.argsort(scores, descending=True, stable=True)
    return boxes[order][:max_boxes], scores[order][:max_boxes].contiguous()


def _validate_loaded(boxes: np.ndarray, source: str, image_size: tuple[int, int] | None) -> Tensor:
    arr = np.asarray(boxes)
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{source}: proposals must have shape [R, 4], got {list(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{source}: proposals must be numbers, got dtype {arr.dtype}")
    out = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    try:
        check_boxes(out, name=source)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if image_size is not None:
        height, width = image_size
        out, _ = _finish(out, int(height), int(width))
    return out


def load_proposals(
    path: str | os.PathLike[str], *, image_size: tuple[int, int] | None = None
) -> Tensor:
    """Load one image's precomputed proposals from ``.npy`` or ``.json``.

    ``.npy``: a float array ``[R, 4]`` of ``(x1, y1, x2, y2)`` in our convention.
    ``.json``: ``{"boxes": [[x1, y1, x2, y2], ...]}`` in our convention.

    Args:
        path: the file.
        image_size: ``(height, width)``; when given, boxes are clipped to the image and
            zero-area boxes dropped.

    Returns:
        ``Tensor[R, 4]`` float32; ``R`` may be 0.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message names it).
        ValueError: for an unknown suffix, a JSON without a ``"boxes"`` list, a shape that
            is not ``[R, 4]``, or non-finite or inverted boxes.
        sppnet.errors.DamagedFileError: (a ``ValueError``) a truncated or corrupt file, an
            object array, JSON that does not parse.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"proposal file not found: {p}")
    suffix = p.suffix.lower()
    fix = "delete it to recompute (a proposal cache) or write it again"
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:  # truncated, object array, not .npy
            raise DamagedFileError(p, f"not a readable .npy array: {err}", fix) from None
    elif suffix == ".json":
        try:
            with p.open("r", encoding="utf-8") as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise DamagedFileError(p, f"not valid JSON: {err}", fix) from None
        if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
            raise ValueError(f"{p}: expected a JSON object {{'boxes': [[x1, y1, x2, y2], ...]}}")
        try:
            arr = np.asarray(data["boxes"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{p}: 'boxes' must be a list of [x1, y1, x2, y2] numbers") from None
    else:
        raise ValueError(f"proposal file must end in .npy or .json, got {p}")
    return _validate_loaded(arr, str(p), image_size)


def _mat_string(value: Any) -> str:
    """A MATLAB char array read by scipy (``array(['000005'])``) -> ``'000005'``."""
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return "".join(str(s) for s in arr.ravel())
    if arr.dtype == object and arr.size == 1:
        return _mat_string(arr.ravel()[0])
    raise ValueError(f"expected a string image id in 'images', got {arr!r}")


def load_rcnn_mat(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load R-CNN's precomputed selective-search proposals (``*.mat``, MATLAB v5/v7).

    The file holds ``images`` (cell array of image ids) and ``boxes`` (cell array of
    ``[R, 4]`` double arrays), one entry per image. R-CNN stores boxes 1-based and
    inclusive in ``[y1 x1 y2 x2]`` order; a box covering pixels 1..10 (1-based) covers
    0..9 0-based, i.e. the continuous ``[0, 10]``, so ours is
    ``(x1 - 1, y1 - 1, x2, y2)``.

    Args:
        path: the ``.mat`` file.

    Returns:
        ``{image_id: Tensor[R, 4]}`` float32 boxes in our convention, in file order.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message names it).
        ValueError: if the file cannot be read as MATLAB v5/v7, lacks ``images`` or
            ``boxes``, their lengths differ, or a box array is not ``[R, 4]``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"R-CNN proposal file not found: {p}")
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover
        raise ImportError("load_rcnn_mat needs scipy") from exc
    try:
        mat = loadmat(str(p))
    except (ValueError, NotImplementedError, OSError) as exc:
        raise ValueError(f"{p}: cannot read as a MATLAB v5/v7 file ({exc})") from None
    for key in ("images", "boxes"):
        if key not in mat:
            raise ValueError(f"{p}: missing field {key!r} (R-CNN layout: 'images', 'boxes')")
    images = np.asarray(mat["images"], dtype=object).ravel()
    boxes = np.asarray(mat["boxes"], dtype=object).ravel()
    if images.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"{p}: 'images' has {images.shape[0]} entries but 'boxes' has {boxes.shape[0]}"
        )
    out: dict[str, Tensor] = {}
    for image_id, b in zip(images, boxes, strict=True):
        key = _mat_string(image_id)
        arr = np.asarray(b, dtype=np.float64)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"{p}: boxes of {key!r} must have shape [R, 4], got {list(arr.shape)}")
        # 1-based inclusive [y1 x1 y2 x2] -> 0-based continuous (x1, y1, x2, y2).
        ours = np.stack((arr[:, 1] - 1, arr[:, 0] - 1, arr[:, 3], arr[:, 2]), axis=1)
        out[key] = _validate_loaded(ours, f"{p} [{key}]", None)
    return out


def _compute(method: str, image: ImageLike, settings: Mapping[str, Any]) -> Tensor:
    if method == "selective_search":
        return selective_search(image, **settings)
    boxes, _ = edge_boxes(image, **settings)
    return boxes


class ProposalCache:
    """Per-image proposals computed once and stored on disk.

    Layout: ``root/<method>/<image_id>.npy`` (float32 ``[R, 4]``, our convention) and
    ``root/<method>/settings.json`` holding the method's keyword arguments. Files are
    written atomically (temporary file, then ``os.replace``), so an interrupted run never
    leaves a truncated file and a resumed run recomputes only what is missing.

    Args:
        root: cache directory (created when first needed).
        method: ``"selective_search"`` or ``"edge_boxes"``.
        **settings: keyword arguments of that function (e.g. ``mode="fast"``,
            ``max_proposals=2000``); they must match the stored ``settings.json``.

    Raises:
        TypeError: for a keyword the method does not take.
        ValueError: for an unknown method, or settings (defaults filled in) that differ
            from those stored in an existing cache (the message shows both).
    """

    def __init__(
        self, root: str | os.PathLike[str], method: str = "selective_search", **settings: Any
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        self.root = Path(root)
        self.method = method
        # Fill in the defaults, so that mode="fast" given or left out is the same cache; an
        # unknown keyword fails here (TypeError), not on the first image.
        func = selective_search if method == "selective_search" else edge_boxes
        bound = inspect.signature(func).bind(None, **settings)
        bound.apply_defaults()
        self.settings = {k: v for k, v in sorted(bound.arguments.items()) if k != "image"}
        self.directory = self.root / method
        self._settings_checked = False
        # Fail on a mismatch at construction, not after hours of computing.
        self._check_settings(create=False)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(root={str(self.root)!r}, method={self.method!r}, settings={self.settings})"

    def _settings_payload(self) -> dict[str, Any]:
        return {"method": self.method, "settings": self.settings}

    def _check_settings(self, create: bool) -> None:
        if self._settings_checked:
            return
        path = self.directory / "settings.json"
        expected = json.loads(json.dumps(self._settings_payload()))  # tuples -> lists
        if path.is_file():
            with path.open("r", encoding="utf-8") as f:
                stored = json.load(f)
            if stored != expected:
                raise ValueError(
                    f"proposal cache {self.directory} was built with {stored}, "
                    f"but {expected} was asked for; use another root or delete it"
                )
            self._settings_checked = True
        elif create:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(expected, indent=2, sort_keys=True).encode())
            self._settings_checked = True

    def write_settings(self) -> None:
        """Write ``settings.json`` now (else it comes with the first computed image), so
        that the processes which then fill the cache in parallel find it and write nothing.

        Raises:
            ValueError: the stored settings differ from this cache's.
        """
        self._check_settings(create=True)

    def path(self, image_id: str) -> Path:
        """The cache file of ``image_id``.

        Raises:
            ValueError: if ``image_id`` is empty or would leave the cache directory.
        """
        if not isinstance(image_id, str) or not image_id or image_id in (".", ".."):
            raise ValueError(f"image_id must be a non-empty string, got {image_id!r}")
        if "/" in image_id or "\\" in image_id or "\0" in image_id:
            raise ValueError(f"image_id must not contain path separators, got {image_id!r}")
        return self.directory / f"{image_id}.npy"

    def __contains__(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    def get(self, image_id: str, image_or_loader: ImageLike | Callable[[], ImageLike]) -> Tensor:
        """Proposals of one image, from disk if cached, else computed and stored.

        Args:
            image_id: unique name of the image (becomes the file name).
            image_or_loader: the image (PIL or ``uint8`` ``[H, W, 3]`` RGB array), or a
                callable returning it, called only when the proposals must be computed.

        Returns:
            ``Tensor[R, 4]`` float32 boxes in our convention.

        Raises:
            ValueError: for a bad ``image_id``, settings that differ from the stored ones,
                or a corrupt cache file.
        """
        path = self.path(image_id)
        self._check_settings(create=False)
        if path.is_file():
            return load_proposals(path)
        image = image_or_loader() if callable(image_or_loader) else image_or_loader
        boxes = _compute(self.method, image, self.settings)
        self._check_settings(create=True)
        atomic_save_npy(path, np.ascontiguousarray(boxes.numpy(), dtype=np.float32))
        return boxes
