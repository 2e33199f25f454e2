"""Pictures and JSON of what the networks do: detections on an image, pyramid bins.

* :func:`draw_detections` draws a detector's boxes (and optionally the ground truth) on
  the image, as a PNG of exactly the image's pixel size.
* :func:`draw_pyramid_bins` is the SPP-net picture (Sec. 2.2, 2.3): the same image at
  several input sizes, with the conv5 cells that each pyramid bin pools drawn back in
  image pixels. The conv map grows with the input but the number of bins does not, so
  the pooled vector has the same ``C * L`` values at every size.
* :func:`plot_precision_recall` draws the per-class precision-recall curves of a
  :func:`sppnet.evaluation.voc_detection_map` result.
* :func:`detections_to_json` / :func:`save_json` write detections as plain JSON.

Figures use matplotlib's Agg canvas directly (no pyplot, no global backend change) and are
written atomically: a reader sees the old file or the new one, never half of one.

Shape shorthand:
    N  detections (boxes) of one image
    M  ground-truth boxes of that image
    K  object classes; labels are ``0..K-1``, indices into ``class_names`` (the dataset's
       and the detector's convention: no background entry)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sppnet._atomic import atomic_save_figure
from sppnet._validate import check_int, check_real
from sppnet.engine.json_io import write_json
from sppnet.evaluation.voc_detection import per_class_ap_rows
from sppnet.ops.pyramid_bins import bin_edges, check_levels, num_pyramid_bins

if TYPE_CHECKING:
    from sppnet.models import SPPNet

__all__ = [
    "bin_pixel_edges",
    "detections_to_json",
    "draw_detections",
    "draw_pyramid_bins",
    "plot_precision_recall",
    "plot_training_curves",
    "save_json",
]

# 100 dpi with a figure of (W / 100, H / 100) inches gives a PNG of exactly W x H pixels.
_DPI = 100
# Per-level colours, finest level first (6x6 red ... 1x1 blue for the paper's pyramid).
_LEVEL_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple", "tab:brown")


# --------------------------------------------------------------------------- validation
def _check_image(image: object) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {image.width}x{image.height}")
    return image.convert("RGB")


def _to_numpy(value: object, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a Tensor or numpy array, got {type(value).__name__}")


def _check_class_names(class_names: object) -> tuple[str, ...]:
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"class_names must be a sequence of str (index = label), got "
            f"{type(class_names).__name__}"
        )
    names = tuple(class_names)
    if len(names) < 1:
        raise ValueError(f"class_names must hold at least one class, got {list(names)}")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"every class name must be a str, got {n!r} in {list(names)}")
    return names


def _check_boxes(value: object, name: str) -> np.ndarray:
    boxes = _to_numpy(value, name)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.number) or np.issubdtype(boxes.dtype, np.bool_):
        raise TypeError(f"{name} must be numeric, got dtype {boxes.dtype}")
    boxes = boxes.astype(np.float64)
    if not np.isfinite(boxes).all():
        row = int(np.nonzero(~np.isfinite(boxes).all(axis=1))[0][0])
        raise ValueError(f"{name} must be finite, but row {row} is {boxes[row].tolist()}")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        row = int(np.nonzero(bad)[0][0])
        raise ValueError(
            f"{name} must have x2 >= x1 and y2 >= y1, but row {row} is {boxes[row].tolist()}"
        )
    return boxes


def _check_labels(value: object, name: str, n: int, num_names: int) -> np.ndarray:
    labels = _to_numpy(value, name)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape [N] = [{n}] (one per box), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be integers 0..K-1, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_names)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError(
            f"{name} must lie in 0..{num_names - 1} (indices into class_names), but "
            f"{name}[{i}] = {int(labels[i])}"
        )
    return labels


def _check_detections(
    detections: object, num_names: int, name: str = "detections", scores: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(boxes [N, 4] float64, scores [N] float64 | None, labels [N] int64 | None)``.

    Detections need all three keys; ground truth (``scores=False``) needs only boxes.
    """
    if not isinstance(detections, Mapping):
        raise TypeError(
            f"{name} must be a mapping with 'boxes', 'scores' and 'labels', got "
            f"{type(detections).__name__}"
        )
    needed = ("boxes", "scores", "labels") if scores else ("boxes",)
    missing = [k for k in needed if k not in detections]
    if missing:
        raise ValueError(f"{name} lacks {missing}; it has keys {sorted(map(str, detections))}")
    boxes = _check_boxes(detections["boxes"], f"{name}['boxes']")
    n = boxes.shape[0]
    score = None
    if scores:
        score = _to_numpy(detections["scores"], f"{name}['scores']")
        if score.shape != (n,):
            raise ValueError(
                f"{name}['scores'] must have shape [N] = [{n}] (one per box), got {score.shape}"
            )
        if not np.issubdtype(score.dtype, np.number) or np.issubdtype(score.dtype, np.bool_):
            raise TypeError(f"{name}['scores'] must be numeric, got dtype {score.dtype}")
        score = score.astype(np.float64)
        if not np.isfinite(score).all():
            raise ValueError(f"{name}['scores'] must be finite, got {score.tolist()}")
    labels = None
    if scores or detections.get("labels") is not None:
        labels = _check_labels(detections["labels"], f"{name}['labels']", n, num_names)
    return boxes, score, labels


# ------------------------------------------------------------------------------ figures
def _class_colour(label: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    return colormaps["tab20"]((label - 1) % 20)


def _image_figure(width: int, height: int) -> tuple[Any, Any]:
    """A figure of exactly ``width x height`` pixels with one axes in continuous pixel units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    return fig, ax


def _show_image(ax: Any, image: Image.Image) -> None:
    # extent (0, W, H, 0): pixel i covers [i, i + 1), the library's box convention, so
    # boxes are drawn at their coordinates with no half-pixel shift.
    ax.imshow(np.asarray(image), extent=(0, image.width, image.height, 0), interpolation="none")
    ax.set_xlim(0, image.width)
    ax.set_ylim(image.height, 0)


def draw_detections(
    image: Image.Image,
    detections: Mapping[str, Tensor | np.ndarray],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    score_threshold: float = 0.0,
    max_boxes: int = 50,
    ground_truth: Mapping[str, Tensor | np.ndarray] | None = None,
) -> Path:
    """Draw detections (and optionally the ground truth) on an image and save a PNG.

    Boxes are coloured by class and captioned ``"name 0.87"`` (or, when ``detections``
    holds ``"probs"``, the probability a person reads: ``"name 87%"``); the highest-scoring
    ones are drawn last (on top). Ground-truth boxes are dashed and captioned with the class
    name only. The PNG has exactly the image's pixel size.

    Args:
        image: the image the boxes refer to (any PIL mode; shown as RGB).
        detections: ``{"boxes": [N, 4], "scores": [N], "labels": [N]}`` (Tensors or numpy
            arrays), boxes ``(x1, y1, x2, y2)`` in continuous pixel coordinates, labels
            ``0..K-1`` indexing ``class_names``; optional ``"probs"`` ``[N]`` in [0, 1]
            for the captions (the threshold and order stay by ``"scores"``).
        class_names: ``K`` names, index = label.
        path: the PNG to write (parent folders are created).
        score_threshold: detections scoring below it are not drawn.
        max_boxes: draw at most this many detections, the highest-scoring ones.
        ground_truth: optional ``{"boxes": [M, 4], "labels": [M]}`` (labels may be
            left out), drawn dashed.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``image`` not a PIL image; arrays that are not Tensors/numpy arrays or
            have non-numeric (or non-integer label) dtypes; bad ``class_names``,
            ``score_threshold`` or ``max_boxes`` types.
        ValueError: missing keys, wrong shapes (the message gives the expected ``[N, 4]``
            / ``[N]`` and the shape received), non-finite values, ``x2 < x1``, labels
            outside ``0..K-1``, or ``max_boxes < 0``.
    """
    rgb = _check_image(image)
    names = _check_class_names(class_names)
    boxes, scores, labels = _check_detections(detections, len(names))
    assert scores is not None and labels is not None
    threshold = check_real("score_threshold", score_threshold)
    limit = check_int("max_boxes", max_boxes, min=0)
    gt = (
        None
        if ground_truth is None
        else _check_detections(ground_truth, len(names), "ground_truth", scores=False)
    )

    probs = detections.get("probs")
    if probs is not None:
        probs = np.asarray(probs.cpu() if isinstance(probs, Tensor) else probs, dtype=float)
        if probs.shape != scores.shape:
            raise ValueError(f"probs must be [{len(scores)}], got {list(probs.shape)}")
    keep = np.nonzero(scores >= threshold)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")][:limit]
    fig, ax = _image_figure(rgb.width, rgb.height)
    _show_image(ax, rgb)
    linewidth = max(1.0, min(rgb.width, rgb.height) / 250)
    if gt is not None:
        _draw_ground_truth(ax, gt[0], gt[2], names, linewidth)
    for i in keep[::-1]:  # lowest score first, so the best boxes end up on top
        colour = _class_colour(int(labels[i]))
        value = f"{scores[i]:.2f}" if probs is None else f"{100 * probs[i]:.0f}%"
        caption = f"{names[labels[i]]} {value}"
        _draw_box(ax, boxes[i], colour, linewidth, caption, colour, alpha=0.8, below=False)
    return atomic_save_figure(path, fig, dpi=_DPI)


_BOX_TEXT = {"fontsize": 7, "clip_on": True, "color": "white"}


def _draw_box(
    ax: Any,
    box: np.ndarray,
    edgecolor: Any,
    linewidth: float,
    caption: str | None,
    facecolor: Any,
    alpha: float,
    below: bool,
    linestyle: str = "-",
) -> None:
    """One box, with its caption on a filled label at its top-left corner (inside the box
    when it would leave the image) or below its bottom-left one."""
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box
    ax.add_patch(
        Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=edgecolor, linestyle=linestyle,
            linewidth=linewidth,
        )
    )  # fmt: skip
    if caption is None:
        return
    bbox = {"facecolor": facecolor, "alpha": alpha, "pad": 1, "linewidth": 0}
    if below:
        ax.text(x1, y2, caption, va="top", bbox=bbox, **_BOX_TEXT)
    else:
        ax.text(x1, y1, caption, va="bottom" if y1 >= 10 else "top", bbox=bbox, **_BOX_TEXT)


def _draw_ground_truth(
    ax: Any, boxes: np.ndarray, labels: np.ndarray | None, names: Sequence[str], linewidth: float
) -> None:
    """Ground-truth boxes dashed in white, captioned ``"gt name"`` below when labelled."""
    for i, box in enumerate(boxes):
        caption = None if labels is None else f"gt {names[labels[i]]}"
        _draw_box(
            ax, box, "white", linewidth, caption, "black", alpha=0.6, below=True, linestyle="--"
        )


def bin_pixel_edges(map_size: int, n: int, stride: float, offset: float) -> np.ndarray:
    """Image-pixel extent of the ``n`` bins of one pyramid level along one side.

    Bin ``i`` pools cells ``floor(i * map_size / n) .. ceil((i + 1) * map_size / n) - 1``
    (Appendix A, :func:`~sppnet.ops.pyramid_bins.bin_edges`); cell ``j`` is centred at
    image position ``offset + stride * j`` (Appendix A, the model's ``feature_offset`` and
    ``feature_stride``). A cell is drawn as the ``stride``-wide span around its centre, so
    bin ``i`` covers ``offset + stride * (start - 1/2)`` to ``offset + stride * (end - 1/2)``
    with ``end`` exclusive. Neighbouring bins overlap where the floor/ceil rule makes them
    share a cell.

    Args:
        map_size: cells along the side of the conv map, ``>= 1``.
        n: bins per side of the level, ``>= 1``.
        stride: ``S``, image pixels between neighbouring cell centres, ``> 0``.
        offset: image position of the centre of cell 0.

    Returns:
        ``float64 array[n, 2]`` of ``(start, end)`` image positions, one row per bin.

    Raises:
        TypeError: non-integer ``map_size``/``n`` or non-numeric ``stride``/``offset``.
        ValueError: ``map_size < 1``, ``n < 1`` or ``stride <= 0``.
    """
    size = check_int("map_size", map_size, min=1)
    n = check_int("n", n, min=1)
    s = check_real("stride", stride)
    o = check_real("offset", offset)
    if s <= 0:
        raise ValueError(f"stride must be > 0 pixels, got {s}")
    start, end = bin_edges(torch.tensor(size), n)  # [n] each, cells, end exclusive
    cells = torch.stack([start, end], dim=1).numpy().astype(np.float64)  # [n, 2]
    return o + s * (cells - 0.5)


def draw_pyramid_bins(
    image: Image.Image,
    model: SPPNet,
    *,
    path: str | os.PathLike[str],
    sizes: Sequence[int] = (180, 224),
    levels: Sequence[int] | None = None,
    keep_aspect: bool = False,
) -> Path:
    """Draw the pyramid's bins over the same image at several input sizes (Sec. 2.2, 2.3).

    One panel per size. By default the image is resized to ``size x size``, as multi-size
    training resizes the same region to 180x180 and 224x224 (Sec. 2.3); with
    ``keep_aspect`` its shorter side becomes ``size`` instead (the any-size input of
    testing, Sec. 3.1.4). The conv map is ``h x w = model.feature_size(H, W)`` cells; the
    bin boundaries of each level (:func:`bin_pixel_edges`) are drawn in its own colour,
    coarser levels thicker, and the cell centres as dots. Each title gives the map size
    and the pooled length ``C * L``: the map changes with the size, ``C * L`` does not.
    Only the model's geometry is used; nothing is run through it.

    Args:
        image: any PIL image.
        model: an :class:`~sppnet.models.SPPNet` (``feature_size``, ``feature_stride``,
            ``feature_offset``, ``feature_channels``, ``min_input_size``, ``spp_levels``).
        path: the PNG to write (parent folders are created); keyword only.
        sizes: input sizes, one panel each, each ``>= model.min_input_size``.
        levels: pyramid levels to draw; default ``model.spp_levels``.
        keep_aspect: resize the shorter side to ``size`` instead of warping to a square.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``image`` not a PIL image; sizes or levels not ints.
        ValueError: no sizes, a size below the model's minimum input, or no levels given
            for a no-SPP model (``spp_levels=None``).
    """
    rgb = _check_image(image)
    sizes = _check_sizes(sizes, model)
    levels = _check_draw_levels(levels, model)
    length = int(model.feature_channels) * num_pyramid_bins(levels)  # C * L, size-independent

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(sizes), 4.9), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    by_fineness = sorted(set(levels), reverse=True)
    style = {
        n: {"color": _LEVEL_COLOURS[i % len(_LEVEL_COLOURS)], "linewidth": 0.8 + 1.2 * i}
        for i, n in enumerate(by_fineness)
    }  # coarser -> thicker
    for ax, size in zip(axes, sizes, strict=True):
        if keep_aspect:
            scale = size / min(rgb.width, rgb.height)
            im_w, im_h = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
        else:
            im_w = im_h = size
        shown = rgb.resize((im_w, im_h), Image.Resampling.BILINEAR)
        _draw_bins(ax, shown, model, by_fineness, style)
        map_h, map_w = model.feature_size(im_h, im_w)
        ax.set_title(
            f"input {im_w}x{im_h} -> conv map {map_w}x{map_h}\n"
            f"pooled: {model.feature_channels} x {num_pyramid_bins(levels)} = {length}",
            fontsize=9,
        )
    _pyramid_legend(fig, levels, style, length)
    return atomic_save_figure(path, fig, dpi=_DPI)


def _check_sizes(sizes: object, model: SPPNet) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError(f"sizes must be a non-empty sequence of ints, got {sizes!r}")
    minimum = int(getattr(model, "min_input_size", 1))
    out = [check_int("every size", s, min=1) for s in sizes]
    small = [s for s in out if s < minimum]
    if small:
        raise ValueError(
            f"every size must be >= the model's minimum input {minimum}, got {small} in {out}"
        )
    return out


def _check_draw_levels(levels: Sequence[int] | None, model: SPPNet) -> tuple[int, ...]:
    if levels is None:
        levels = getattr(model, "spp_levels", None)
        if levels is None:
            raise ValueError(
                "the model has no spatial pyramid (spp_levels=None, the no-SPP baseline); "
                "pass levels=(6, 3, 2, 1) to draw one"
            )
    return check_levels(levels)


def _draw_bins(
    ax: Any,
    shown: Image.Image,
    model: SPPNet,
    by_fineness: list[int],
    style: dict[int, dict[str, Any]],
) -> None:
    """One panel: the resized image, its conv cells' centres as dots and every level's bin
    boundaries in image pixels, the axes spanning the image and the cells."""
    stride, offset = float(model.feature_stride), float(model.feature_offset)
    im_w, im_h = shown.width, shown.height
    map_h, map_w = model.feature_size(im_h, im_w)
    _show_image(ax, shown)
    cx = offset + stride * np.arange(map_w)
    cy = offset + stride * np.arange(map_h)
    gx, gy = np.meshgrid(cx, cy)
    ax.plot(gx.ravel(), gy.ravel(), ".", color="white", markersize=2, alpha=0.7)
    for n in by_fineness:
        xs = np.unique(bin_pixel_edges(map_w, n, stride, offset))
        ys = np.unique(bin_pixel_edges(map_h, n, stride, offset))
        line = {**style[n], "alpha": 0.9}
        ax.vlines(xs, ys.min(), ys.max(), **line)
        ax.hlines(ys, xs.min(), xs.max(), **line)
    ax.set_xlim(min(0.0, offset - stride / 2), max(im_w, offset + stride * (map_w - 0.5)))
    ax.set_ylim(max(im_h, offset + stride * (map_h - 0.5)), min(0.0, offset - stride / 2))
    ax.set_axis_on()
    ax.tick_params(labelsize=7)


def _pyramid_legend(
    fig: Any, levels: tuple[int, ...], style: dict[int, dict[str, Any]], length: int
) -> None:
    """The levels' legend below the panels and the title above them; then the layout."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], **style[n]) for n in levels]
    fig.legend(
        handles,
        [f"{n}x{n} bins" for n in levels],
        loc="lower center",
        ncol=len(levels),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(
        f"spatial pyramid {'-'.join(map(str, levels))}: the same {length} values "
        f"(C x L) at every input size",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))


def plot_precision_recall(
    result: Mapping[str, object],
    path: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
) -> Path:
    """Save the precision-recall curve of every class with an AP as a PNG.

    Args:
        result: the dict returned by :func:`sppnet.evaluation.voc_detection_map` (with
            ``"recall"`` and ``"precision"``).
        path: the PNG file to write; its folder must exist.
        class_names: optional legend names, as in :func:`sppnet.evaluation.per_class_ap_table`.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``result`` without ``"ap"``, ``"recall"`` and ``"precision"``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = per_class_ap_rows(result, class_names)
    if not isinstance(result.get("recall"), Mapping) or not isinstance(
        result.get("precision"), Mapping
    ):
        raise TypeError("result must hold 'recall' and 'precision' curves (voc_detection_map)")
    rec, prec = result["recall"], result["precision"]
    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, name, value in rows:
        if math.isnan(value):
            continue
        r = np.concatenate([[0.0], np.asarray(rec[key])])  # type: ignore[index]
        p = np.asarray(prec[key])  # type: ignore[index]
        p = np.concatenate([[p[0] if p.size else 0.0], p])
        ax.plot(r, p, label=f"{name} ({100 * value:.1f})", linewidth=1)
    m = float(result.get("map", math.nan))  # type: ignore[arg-type]
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(
        f"precision-recall, mAP {100 * m:.1f}" if not math.isnan(m) else "precision-recall"
    )
    if rows:
        ax.legend(fontsize="small", loc="lower left", ncol=2)
    ax.grid(True, alpha=0.3)
    return atomic_save_figure(path, fig, dpi=100)


# --------------------------------------------------------------------------------- JSON
def plot_training_curves(
    path: str | os.PathLike[str],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    finetune_loss: Sequence[float] = (),
    *,
    dpi: int = 100,
) -> Path:
    """Per-epoch curves of classifier runs and, if given, the detector's fine-tuning loss.

    Panels: train loss; top-1 / top-5 error (train, and val where the history has it);
    the learning rate (log scale); with ``finetune_loss``, the loss of every fc
    fine-tuning iteration and its running mean.

    Args:
        path: the PNG to write (atomically).
        runs: run name -> its history, one dict per epoch with ``epoch``, ``train_loss``,
            ``lr`` and optionally ``train_error``, ``val_top1_error``, ``val_top5_error``
            (the rows of a run's ``log.json``); a name of ``""`` adds no prefix to labels.
        finetune_loss: fine-tuning losses, one per iteration (empty: no such panel).
        dpi: pixels per inch of the PNG.

    Returns:
        ``Path(path)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 4 if len(finetune_loss) else 3
    fig = Figure(figsize=(4.2 * panels, 3.8))
    FigureCanvasAgg(fig)  # renders off-screen without touching pyplot's global backend
    ax_loss, ax_err, ax_lr, *ax_ft = fig.subplots(1, panels)
    for name, history in runs.items():
        prefix = f"{name}: " if name else ""
        epochs = [row["epoch"] for row in history]
        ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label=f"{prefix}train")
        for key, label in (
            ("train_error", "train top-1"),
            ("val_top1_error", "val top-1 (center crop)"),
            ("val_top5_error", "val top-5 (center crop)"),
        ):
            points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
            if points:
                ax_err.plot(*zip(*points, strict=True), "o-", label=prefix + label)
        ax_lr.plot(epochs, [row["lr"] for row in history], "o-", label=prefix or None)
    ax_loss.set(xlabel="epoch", title="train loss")
    ax_err.set(xlabel="epoch", title="error")
    ax_lr.set(xlabel="epoch", title="learning rate", yscale="log")
    if ax_ft:
        losses = np.asarray(finetune_loss, dtype=np.float64)
        window = max(1, min(50, len(losses) // 10))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_ft[0].plot(np.arange(len(losses)) + 1, losses, color="0.8", linewidth=0.8, label="batch")
        ax_ft[0].plot(np.arange(len(smooth)) + window, smooth, label=f"mean of {window}")
        ax_ft[0].set(xlabel="iteration", title="detection: fc fine-tuning loss")
    for ax in (ax_loss, ax_err, *ax_ft):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    atomic_save_figure(out, fig, dpi=dpi)
    return out


def detections_to_json(
    detections: Mapping[str, Tensor | np.ndarray],
    class_names: Sequence[str],
    image: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Detections of one image as plain JSON-ready Python objects.

    Args:
        detections: ``{"boxes": [N, 4], "scores": [N], "labels": [N]}`` as for
            :func:`draw_detections`.
        class_names: ``K`` names, index = label.
        image: optional image id or file name, stored as given.
        image_size: optional ``(height, width)`` in pixels.

    Returns:
        ``{"image": str | None, "image_size": [height, width] | None, "detections":
        [{"box": [x1, y1, x2, y2], "label": int, "name": str, "score": float}, ...]}`` in
        the input order, boxes rounded to 2 decimals.

    Raises:
        TypeError, ValueError: as for :func:`draw_detections`'s detections; ``image`` not
            a str; ``image_size`` not two ints ``>= 1``.
    """
    names = _check_class_names(class_names)
    boxes, scores, labels = _check_detections(detections, len(names))
    assert scores is not None and labels is not None
    if image is not None and not isinstance(image, str):
        raise TypeError(f"image must be a str (an id or file name) or None, got {image!r}")
    size = None
    if image_size is not None:
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"image_size must be (height, width), got {image_size!r}")
        size = [check_int("image_size entries", v, min=1) for v in image_size]
    rows = [
        {
            "box": [round(float(v), 2) for v in box],
            "label": int(label),
            "name": names[int(label)],
            "score": float(score),
        }
        for box, score, label in zip(boxes, scores, labels, strict=True)
    ]
    return {"image": image, "image_size": size, "detections": rows}


def save_json(obj: Any, path: str | os.PathLike[str], indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (UTF-8, no NaN/Infinity) atomically.

    Args:
        obj: JSON-serialisable data (e.g. from :func:`detections_to_json`).
        path: the file to write (parent folders are created).
        indent: ``json.dumps`` indentation; None for one line.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``obj`` holds something JSON cannot encode.
        ValueError: ``obj`` holds NaN or infinity (not valid JSON).
    """
    return write_json(path, obj, indent=indent)
