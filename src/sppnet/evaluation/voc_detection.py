"""Pascal VOC detection AP / mAP (Sec. 4, Tables 9-12: VOC 2007 detection mAP).

The rules are those of the official devkit (``VOCevaldet.m``), per class:

- all detections of the class over all images are ranked by decreasing score;
- each detection is compared with the ground-truth objects of its class in its image and
  takes the single one with the highest IoU (the first in annotation order on an IoU tie, as
  the devkit's strict ``ov > ovmax``); only overlapping boxes are candidates;
- the match needs ``IoU >= iou_threshold`` (0.5), else the detection is a false positive;
- a match to a ``difficult`` object counts neither way (the detection is dropped from the
  curve; the devkit keeps it as a repeat of the previous point, which changes neither AP);
- a match to an object already taken by a higher-ranked detection is a false positive,
  even if the detection overlaps another, free object less (only the best-IoU object is
  tried); otherwise it is a true positive and the object is taken;
- recall is over the non-difficult objects; AP by :func:`~sppnet.evaluation.voc_ap.voc_ap`
  (11-point for VOC 2007, area under the envelope for VOC 2010+);
- a class without any non-difficult object has no AP: NaN, left out of the mean.

Ties in score are broken deterministically: by the position of the image in ``annotations``
(the image set order), then by the position of the detection within its image (a stable
sort, as the devkit's MATLAB ``sort`` over a result file written in that order).

IoU: the devkit adds 1 to widths and heights because its boxes are 1-based and inclusive
(pixels 1..10 span 10 pixels). Our boxes are continuous (the box convention: pixels 0..9 are
``(0, 0, 10, 10)``), so plain ``x2 - x1`` is the same width, and plain areas give the
devkit's IoU exactly. The conversion back to VOC coordinates happens only in
:func:`format_voc_results` (the text of VOC result files; :mod:`sppnet.detect.voc_results`
writes and reads the files).

Shape shorthand: D detections of one image, G ground-truth objects of one image, K classes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from sppnet._moved import moved_name
from sppnet.evaluation._arrays import ArrayLike, as_array
from sppnet.evaluation.voc_ap import voc_ap
from sppnet.ops.boxes import check_boxes

__all__ = [
    "format_voc_results",
    "parse_voc_results",
    "per_class_ap_rows",
    "per_class_ap_table",
    "voc_detection_map",
]

# Result file texts: scores with 6 significant digits, coordinates with 3 decimals (1/1000 px),
# so a write/read round trip changes a score by < 5e-6 relative and a box by <= 5e-4 px.
_SCORE_FORMAT = "{:.6g}"
_COORD_FORMAT = "{:.3f}"


def _one_per_box(arr: np.ndarray, n: int, where: str, name: str, ok: bool, kind: str) -> None:
    """Raise unless ``arr`` has an accepted dtype (``ok``, described by ``kind``) and
    shape ``[n]``."""
    if not ok:
        raise TypeError(f"{where}: {name} must be {kind}, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(
            f"{where}: {name} must have shape [{n}] (one per box), got {list(arr.shape)}"
        )


def _check_labels(labels: object, n: int, where: str) -> np.ndarray:
    out = as_array(labels, f"{where}: labels", f"[{n}]")
    if out.size == 0 and out.dtype.kind == "f":
        out = out.astype(np.int64)  # an empty list is float to numpy
    integer = out.dtype != bool and out.dtype.kind in "iu"
    _one_per_box(out, n, where, "labels", integer, "an integer array")
    out = out.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, got {int(out.min())}")
    return out


def _get(entry: object, key: str, where: str) -> object:
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
    if key not in entry:
        raise ValueError(f"{where} lacks key {key!r}; has {sorted(map(str, entry))}")
    return entry[key]


def _boxes(entry: object, where: str) -> np.ndarray:
    arr = as_array(_get(entry, "boxes", where), f"{where}['boxes']", "[N, 4]")
    if arr.size == 0 and arr.ndim == 1:
        arr = arr.reshape(0, 4)  # an empty list: no boxes
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(f"{where}['boxes'] must hold real numbers, got dtype {arr.dtype}")
    boxes = torch.from_numpy(arr.astype(np.float64))
    check_boxes(boxes, f"{where}['boxes']")
    return boxes.numpy()


def _per_image(
    mapping: object, name: str, keys: str, check: Callable[[object, str], tuple[np.ndarray, ...]]
) -> dict[object, tuple[np.ndarray, ...]]:
    """``{id: check(entry)}`` of a mapping image id -> entry, each entry checked in turn."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{name} must map image id -> {{{keys}}}, got {type(mapping).__name__}")
    return {image_id: check(entry, f"{name}[{image_id!r}]") for image_id, entry in mapping.items()}


def _scores(entry: object, n: int, where: str) -> np.ndarray:
    scores = as_array(_get(entry, "scores", where), f"{where}: scores", f"[{n}]")
    real = scores.dtype != bool and scores.dtype.kind in "iuf"
    _one_per_box(scores, n, where, "scores", real, "real numbers")
    s = scores.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError(f"{where}: scores contain NaN (index {int(np.isnan(s).argmax())})")
    return s


def _difficult(entry: object, n: int, where: str) -> np.ndarray:
    difficult = as_array(_get(entry, "difficult", where), f"{where}: difficult", "[G]")
    if difficult.size == 0:
        difficult = difficult.astype(bool)  # an empty list is float to numpy
    kind = f"a BoolTensor[{n}] (or bool array / list)"
    _one_per_box(difficult, n, where, "difficult", difficult.dtype == bool, kind)
    return difficult


def _detection(entry: object, where: str) -> tuple[np.ndarray, ...]:
    boxes = _boxes(entry, where)
    scores = _scores(entry, len(boxes), where)
    return boxes, scores, _check_labels(_get(entry, "labels", where), len(boxes), where)


def _annotation(entry: object, where: str) -> tuple[np.ndarray, ...]:
    boxes = _boxes(entry, where)
    labels = _check_labels(_get(entry, "labels", where), len(boxes), where)
    return boxes, labels, _difficult(entry, len(boxes), where)


def _check_detections(detections: object) -> dict[object, tuple[np.ndarray, ...]]:
    """Validate ``detections``; return ``{id: (boxes [D, 4], scores [D], labels [D])}``."""
    return _per_image(detections, "detections", "'boxes', 'scores', 'labels'", _detection)


def _check_annotations(annotations: object) -> dict[object, tuple[np.ndarray, ...]]:
    """Validate ``annotations``; return ``{id: (boxes [G, 4], labels [G], difficult [G])}``."""
    return _per_image(annotations, "annotations", "'boxes', 'labels', 'difficult'", _annotation)


def _check_class_names(class_names: object) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"class_names must be a sequence of strings, got {type(class_names).__name__}"
        )
    if not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must all be strings")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be distinct, got {list(class_names)}")
    return list(class_names)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``ndarray[D, G]`` in float64 of validated boxes; plain areas are the devkit's ``+1``
    areas in our convention (module docstring). Disjoint or touching boxes give 0."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # [D, G, 2]
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # [D, G, 2]
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]  # [D, G]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    # union == 0 only for two zero-area boxes, whose inter is 0 too: IoU 0 there.
    return inter / np.where(union > 0, union, 1.0)


def voc_detection_map(
    detections: Mapping[object, Mapping[str, ArrayLike]],
    annotations: Mapping[object, Mapping[str, ArrayLike]],
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    class_names: Sequence[str] | None = None,
) -> dict[str, object]:
    """Per-class AP and mean AP of detections, by the VOC devkit's rules (module docstring).

    Args:
        detections: image id -> ``{"boxes": Tensor[D, 4], "scores": Tensor[D],
            "labels": LongTensor[D]}`` (what the detector returns per image; numpy arrays
            and lists are taken alike). Images may be missing (no detections) and ``D`` may
            be 0. Every id must be in ``annotations``.
        annotations: image id -> ``{"boxes": Tensor[G, 4], "labels": LongTensor[G],
            "difficult": BoolTensor[G]}`` (or arrays / lists) for every image of the test
            set, ``G`` may be 0.
            Its order breaks score ties (module docstring).
        iou_threshold: the least IoU of a match, in ``(0, 1]``; 0.5 in VOC. IoU exactly at
            the threshold is a match (the devkit's ``>=``).
        use_07_metric: ``True`` for the VOC 2007 11-point AP (the paper's metric), ``False``
            for the VOC 2010+ area under the precision envelope.
        class_names: optional ``K`` names; labels must then lie in ``0..K-1`` and the names
            are the keys of the results. Without it the classes are the labels that occur in
            ``annotations`` or ``detections``, keyed by the int label, in increasing order.

    Returns:
        A dict with, per class key (name or int label), in class order:

        - ``"ap"``: ``{key: float}``, NaN for a class without non-difficult objects;
        - ``"map"``: the mean over the classes with an AP (NaN if none has one);
        - ``"recall"``, ``"precision"``: ``{key: ndarray[M]}``, the curve over the ``M``
          ranked detections of the class that are not matched to difficult objects;
        - ``"num_positives"``: ``{key: int}``, the non-difficult objects of the class.

    Raises:
        TypeError: inputs of the wrong type (not dicts, non-float boxes or scores, non-integer
            labels, non-bool difficult, non-string class names).
        ValueError: missing keys, wrong shapes, invalid boxes, NaN scores, negative labels or
            labels outside ``0..K-1``, a threshold outside ``(0, 1]``, detections for an image
            id that has no annotation.
    """
    dets = _check_detections(detections)
    anns = _check_annotations(annotations)
    thr = _check_threshold(iou_threshold)
    classes, keys = _classes(dets, anns, class_names)
    columns, positives = _best_matches(dets, anns)
    result: dict[str, dict[object, object]] = {
        k: {} for k in ("ap", "recall", "precision", "num_positives")
    }
    for c, key in zip(classes, keys, strict=True):
        n_pos = int((positives == c).sum())
        result["num_positives"][key] = n_pos
        if n_pos == 0:
            result["ap"][key] = math.nan
            result["recall"][key] = np.zeros(0)
            result["precision"][key] = np.zeros(0)
            continue
        outcome = _ranked_outcomes([col[columns[0] == c] for col in columns[1:]], thr)  # [M]
        tp = np.cumsum(outcome == 1)
        fp = np.cumsum(outcome == 0)
        recall = tp / n_pos
        precision = tp / np.maximum(tp + fp, 1)  # tp + fp >= 1 at every kept point
        result["ap"][key] = voc_ap(recall, precision, use_07_metric=use_07_metric)
        result["recall"][key] = recall
        result["precision"][key] = precision
    valid = [v for v in result["ap"].values() if not math.isnan(v)]  # type: ignore[arg-type]
    return {
        "ap": result["ap"],
        "map": float(sum(valid) / len(valid)) if valid else math.nan,
        "recall": result["recall"],
        "precision": result["precision"],
        "num_positives": result["num_positives"],
    }


def _check_threshold(iou_threshold: object) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
        raise TypeError(f"iou_threshold must be a real number, got {iou_threshold!r}")
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    return float(iou_threshold)


def _classes(
    dets: dict[object, tuple[np.ndarray, ...]],
    anns: dict[object, tuple[np.ndarray, ...]],
    class_names: Sequence[str] | None,
) -> tuple[list[int], list[object]]:
    """``(labels, keys)`` of the classes: all of ``class_names`` (keyed by name), else the
    labels that occur (keyed by label), in increasing order; after checking that every image
    with detections is annotated."""
    unknown = [i for i in dets if i not in anns]
    if unknown:
        raise ValueError(
            f"detections for image id {unknown[0]!r} (and {len(unknown) - 1} more) that has no "
            f"annotation; every image with detections must be in annotations"
        )
    all_labels = {int(v) for _, lab, _ in anns.values() for v in lab}
    all_labels |= {int(v) for _, _, lab in dets.values() for v in lab}
    if class_names is None:
        classes = sorted(all_labels)
        return classes, list(classes)
    names = _check_class_names(class_names)
    outside = [v for v in sorted(all_labels) if v >= len(names)]
    if outside:
        raise ValueError(
            f"label {outside[0]} is outside 0..{len(names) - 1} (class_names has "
            f"{len(names)} names)"
        )
    return list(range(len(names))), list(names)


def _best_matches(
    dets: dict[object, tuple[np.ndarray, ...]], anns: dict[object, tuple[np.ndarray, ...]]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per detection, the best-IoU object of its class in its image (independent of the
    ranking; the greedy pass per class then decides tp / fp / ignored).

    Returns:
        ``(columns, positives)``: the columns over all detections (label, score, image rank
        in ``anns``, index in the image, best object or -1 for none, its IoU, whether it is
        difficult) and the labels of all non-difficult objects.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    positive_labels = []
    for rank, (image_id, (gt_boxes, gt_labels, difficult)) in enumerate(anns.items()):
        positive_labels.append(gt_labels[~difficult])
        if image_id not in dets:
            continue
        boxes, scores, labels = dets[image_id]
        d = len(boxes)
        best = np.full(d, -1, dtype=np.int64)  # index into the image's objects; -1 none
        best_iou = np.zeros(d)
        best_difficult = np.zeros(d, dtype=bool)
        if d and len(gt_boxes):
            same = labels[:, None] == gt_labels[None, :]  # [D, G]
            iou = np.where(same, _iou(boxes, gt_boxes), -1.0)  # [D, G]
            j = iou.argmax(1)  # first maximum: the devkit's strict "ov > ovmax"
            best_iou = iou[np.arange(d), j]
            # Only overlapping boxes of the class are candidates (devkit: iw > 0 & ih > 0).
            best = np.where(best_iou > 0, j, -1)
            best_difficult = difficult[j]
        image = np.full(d, rank)
        parts.append((labels, scores, image, np.arange(d), best, best_iou, best_difficult))
    if parts:
        columns = [np.concatenate(p) for p in zip(*parts, strict=True)]
    else:
        columns = [np.zeros(0, dtype=np.int64)] * 5 + [np.zeros(0), np.zeros(0, dtype=bool)]
    pos = np.concatenate(positive_labels) if positive_labels else np.zeros(0, dtype=np.int64)
    return columns, pos


def _ranked_outcomes(columns: list[np.ndarray], thr: float) -> np.ndarray:
    """The greedy pass over one class's detections in ranking order: ``int8[M]``, 1 for a true
    positive, 0 for a false one (detections matched to difficult objects left out).

    ``columns``: score, image rank, index in the image, best object, its IoU, difficult.
    """
    score, img, idx, best, best_iou, diff = columns
    # Decreasing score; ties by image rank, then index in image (np.lexsort: last key first).
    order = np.lexsort((idx, img, -score.astype(np.float64)))
    outcome = np.zeros(order.size, dtype=np.int8)  # 1 tp, 0 fp, -1 ignored
    taken: set[tuple[int, int]] = set()  # (image rank, gt index) already detected
    ranked = zip(
        img[order].tolist(),
        best[order].tolist(),
        (best_iou[order] >= thr).tolist(),
        diff[order].tolist(),
        strict=True,
    )
    for k, (im, gt, overlaps, is_difficult) in enumerate(ranked):
        if gt < 0 or not overlaps:
            continue  # no object overlaps enough: false positive
        if is_difficult:
            outcome[k] = -1  # matched a difficult object: neither tp nor fp
        elif (im, gt) not in taken:
            outcome[k] = 1
            taken.add((im, gt))
        # else: its best object is already detected (a duplicate): false positive
    return outcome[outcome >= 0]


def format_voc_results(
    detections: Mapping[object, Mapping[str, ArrayLike]], class_names: Sequence[str]
) -> list[str]:
    """The text of the VOC result file of each class (written by
    :func:`sppnet.detect.voc_results.write_voc_results`).

    Each line is ``image_id score x1 y1 x2 y2`` in VOC's 1-based inclusive pixel coordinates,
    scores with 6 significant digits and coordinates with 3 decimals. Lines follow the order
    of ``detections``, then the order within each image. Every class gets a text, empty if it
    has no detections (the devkit expects a file per class).

    Args:
        detections: image id -> ``{"boxes": Tensor[D, 4], "scores": Tensor[D],
            "labels": LongTensor[D]}`` with labels in ``0..K-1``. Ids are written with
            ``str()`` and must not contain whitespace.
        class_names: the ``K`` class names.

    Returns:
        ``K`` texts, in class order.

    Raises:
        TypeError, ValueError: as :func:`voc_detection_map` for the detections; labels
            outside ``0..K-1``; image ids that are empty or contain whitespace.
    """
    dets = _check_detections(detections)
    names = _check_class_names(class_names)
    lines: list[list[str]] = [[] for _ in names]
    for image_id, (boxes, scores, labels) in dets.items():
        text_id = str(image_id)
        if not text_id or text_id.split() != [text_id]:
            raise ValueError(f"image id {image_id!r} must be non-empty without whitespace")
        if labels.size and labels.max() >= len(names):
            raise ValueError(
                f"detections[{image_id!r}]: label {int(labels.max())} is outside "
                f"0..{len(names) - 1} (class_names has {len(names)} names)"
            )
        for box, score, label in zip(boxes, scores, labels, strict=True):
            # The one conversion back to VOC: our continuous (x1, y1, x2, y2)
            # covers 1-based inclusive pixels x1 + 1 .. x2 (0..10 continuous is pixels 1..10).
            voc_box = (box[0] + 1.0, box[1] + 1.0, box[2], box[3])
            coords = " ".join(_COORD_FORMAT.format(v) for v in voc_box)
            lines[int(label)].append(f"{text_id} {_SCORE_FORMAT.format(score)} {coords}\n")
    return ["".join(class_lines) for class_lines in lines]


def parse_voc_results(
    texts: Iterable[tuple[str, str]], class_names: Sequence[str], where: str = "VOC results"
) -> dict[str, dict[str, Tensor]]:
    """Detections from the texts of VOC result files (inverse of :func:`format_voc_results`).

    Args:
        texts: ``(source, text)`` per class, in the order of ``class_names``; ``source``
            names the file in error messages. It may be lazy (a generator that reads files):
            it is consumed only after ``class_names`` are checked, one class at a time.
        class_names: the ``K`` class names; the label of a detection is its class's index.
        where: names the results in the message of an invalid box.

    Returns:
        image id (``str``) -> ``{"boxes": Tensor[D, 4] float32, "scores": Tensor[D] float32,
        "labels": LongTensor[D]}``, boxes converted back to our 0-based continuous
        convention. Images in order of first appearance (classes in class order), each
        image's detections by class, then in text order. A round trip gives the formatted
        values up to their precision (6 significant digits of score, 1/1000 pixel).

    Raises:
        TypeError: non-string class names.
        ValueError: a line that is not ``image_id score x1 y1 x2 y2`` with numbers (source and
            line number named), a box with ``x2 < x1`` or ``y2 < y1``, or a number of texts
            other than ``K``.
    """
    names = _check_class_names(class_names)
    rows: dict[str, list[tuple[float, float, float, float, float, int]]] = {}
    for label, (_, (source, text)) in enumerate(zip(names, texts, strict=True)):
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 6:
                    raise ValueError
                score, x1, y1, x2, y2 = (float(v) for v in fields[1:])
            except ValueError:
                raise ValueError(
                    f"{source}:{number}: expected 'image_id score x1 y1 x2 y2', got {line!r}"
                ) from None
            # VOC 1-based inclusive pixels x1..x2 are our continuous (x1 - 1, ..., x2).
            rows.setdefault(fields[0], []).append((x1 - 1.0, y1 - 1.0, x2, y2, score, label))
    out: dict[str, dict[str, Tensor]] = {}
    for image_id, image_rows in rows.items():
        table = torch.tensor(image_rows, dtype=torch.float64).reshape(-1, 6)  # [D, 6]
        boxes = table[:, :4].to(torch.float32)
        check_boxes(boxes, f"boxes of image {image_id!r} in {where}")
        out[image_id] = {
            "boxes": boxes,
            "scores": table[:, 4].to(torch.float32),
            "labels": table[:, 5].to(torch.int64),
        }
    return out


def per_class_ap_rows(
    result: Mapping[str, object], class_names: Sequence[str] | None = None
) -> list[tuple[object, str, float]]:
    """The per-class rows of a :func:`voc_detection_map` result: ``(key, name, AP)``.

    Args:
        result: the dict returned by :func:`voc_detection_map`.
        class_names: optional display names; either the keys of ``result["ap"]`` (any
            subset order) or one name per class in its order. ``str(key)`` otherwise.

    Returns:
        ``(key into result's dicts, display name, AP as a float, NaN without one)`` per row.

    Raises:
        TypeError: ``result`` without ``"ap"``; non-string names.
        ValueError: ``class_names`` that fit neither the keys nor the number of classes.
    """
    if not isinstance(result, Mapping) or not isinstance(result.get("ap"), Mapping):
        raise TypeError("result must be the dict returned by voc_detection_map (with 'ap')")
    ap = result["ap"]
    keys = list(ap)  # type: ignore[arg-type]
    if class_names is None:
        pairs = [(k, str(k)) for k in keys]
    else:
        names = _check_class_names(class_names)
        if all(n in ap for n in names):  # type: ignore[operator]
            pairs = [(n, n) for n in names]
        elif len(names) == len(keys):
            pairs = list(zip(keys, names, strict=True))
        else:
            raise ValueError(
                f"class_names ({len(names)}) match neither the keys nor the number of classes "
                f"({len(keys)}) of result['ap']"
            )
    return [(key, name, float(ap[key])) for key, name in pairs]  # type: ignore[index]


def per_class_ap_table(
    result: Mapping[str, object], class_names: Sequence[str] | None = None
) -> str:
    """A markdown table of the per-class AP and the mAP, in percent as the paper's tables.

    Args:
        result: the dict returned by :func:`voc_detection_map`.
        class_names: optional names for the rows, as in :func:`per_class_ap_rows`.

    Returns:
        ``| class | AP (%) |`` rows with one decimal (``n/a`` for NaN), then a bold mAP row.

    Raises:
        TypeError: ``result`` without ``"ap"``; non-string names.
        ValueError: ``class_names`` that fit neither the keys nor the number of classes.
    """
    rows = ["| class | AP (%) |", "| --- | ---: |"]
    for _, name, value in per_class_ap_rows(result, class_names):
        rows.append(f"| {name} | {'n/a' if math.isnan(value) else f'{100 * value:.1f}'} |")
    m = float(result.get("map", math.nan))  # type: ignore[union-attr, arg-type]
    rows.append(f"| **mAP** | **{'n/a' if math.isnan(m) else f'{100 * m:.1f}'}** |")
    return "\n".join(rows) + "\n"


# name -> the module that holds it now (they write or read files, which evaluation does not)
_MOVED = {
    "write_voc_results": "sppnet.detect.voc_results",
    "read_voc_results": "sppnet.detect.voc_results",
    "plot_precision_recall": "sppnet.visualize",
}


def __getattr__(name: str) -> object:
    """``write_voc_results``, ``read_voc_results`` and ``plot_precision_recall`` moved to
    :mod:`sppnet.detect.voc_results` and :mod:`sppnet.visualize`: still found here, with a
    DeprecationWarning."""
    return moved_name(name, __name__, _MOVED)
