"""VOC detection AP (devkit rules): hand-made cases, a slow devkit reference, result files."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from sppnet.evaluation.voc_detection import (
    format_voc_results,
    parse_voc_results,
    per_class_ap_rows,
    per_class_ap_table,
    voc_detection_map,
)

A = (0.0, 0.0, 10.0, 10.0)
B = (20.0, 20.0, 30.0, 30.0)
C = (40.0, 40.0, 50.0, 50.0)
FAR = (100.0, 100.0, 110.0, 110.0)


def _ann(boxes, labels=None, difficult=None) -> dict[str, torch.Tensor]:
    n = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "labels": torch.tensor(labels if labels is not None else [0] * n, dtype=torch.int64),
        "difficult": torch.tensor(
            difficult if difficult is not None else [False] * n, dtype=torch.bool
        ),
    }


def _det(boxes, scores, labels=None) -> dict[str, torch.Tensor]:
    n = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels if labels is not None else [0] * n, dtype=torch.int64),
    }


def _ap(dets, anns, **kwargs) -> float:
    return voc_detection_map(dets, anns, **kwargs)["ap"][0]


# Ranking TP, FP, TP over 2 objects: recall [.5, .5, 1], precision [1, .5, 2/3].
# 11-point: t = 0..0.5 (6 thresholds) reach precision 1, t = 0.6..1 (5) reach 2/3.
AP07_TP_FP_TP = (6 * 1 + 5 * 2 / 3) / 11  # 28/33
AUC_TP_FP_TP = 0.5 * 1 + 0.5 * 2 / 3  # 5/6


def test_duplicate_detection_is_a_false_positive() -> None:
    anns = {"im": _ann([A, B])}
    dup = {"im": _det([A, A, B], [0.9, 0.8, 0.7])}
    r = voc_detection_map(dup, anns)
    assert r["ap"][0] == pytest.approx(AP07_TP_FP_TP, abs=1e-12)
    np.testing.assert_allclose(r["recall"][0], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(r["precision"][0], [1.0, 0.5, 2 / 3])
    assert _ap({"im": _det([A, B], [0.9, 0.7])}, anns) == 1.0


def test_use_07_metric_false_is_the_area_under_the_envelope() -> None:
    anns = {"im": _ann([A, B])}
    dup = {"im": _det([A, A, B], [0.9, 0.8, 0.7])}
    assert _ap(dup, anns, use_07_metric=False) == pytest.approx(AUC_TP_FP_TP, abs=1e-12)
    assert _ap(dup, anns, use_07_metric=True) == pytest.approx(AP07_TP_FP_TP, abs=1e-12)


def test_detection_of_a_difficult_object_counts_neither_way() -> None:
    anns = {"im": _ann([A, B, C], difficult=[False, True, False])}
    with_difficult = {"im": _det([A, B, FAR, C], [0.9, 0.8, 0.7, 0.6])}
    without = {"im": _det([A, FAR, C], [0.9, 0.7, 0.6])}
    r = voc_detection_map(with_difficult, anns)
    assert r["num_positives"][0] == 2  # recall over the non-difficult objects
    assert r["ap"][0] == pytest.approx(AP07_TP_FP_TP, abs=1e-12)
    assert r["ap"][0] == _ap(without, anns)
    assert _ap(with_difficult, anns, use_07_metric=False) == _ap(without, anns, use_07_metric=False)
    # The same detection of a non-difficult object would be a true positive.
    assert _ap(with_difficult, {"im": _ann([A, B, C])}) != r["ap"][0]


def test_difficult_detection_ranked_first_is_dropped_not_nan() -> None:
    anns = {"im": _ann([A, B], difficult=[False, True])}
    assert _ap({"im": _det([B, A], [0.9, 0.8])}, anns) == 1.0


def test_best_ground_truth_already_taken_is_a_false_positive() -> None:
    gt_a, gt_b = (0.0, 0.0, 10.0, 10.0), (5.0, 0.0, 15.0, 10.0)
    second = (2.0, 0.0, 12.0, 10.0)  # IoU 80/120 = 0.667 with a (taken), 70/130 = 0.538 with b
    r = voc_detection_map({"im": _det([gt_a, second], [0.9, 0.8])}, {"im": _ann([gt_a, gt_b])})
    # TP then FP: recall [.5, .5], precision [1, .5]; 11-point: 6 of 11 thresholds reach 1.
    np.testing.assert_allclose(r["recall"][0], [0.5, 0.5])
    np.testing.assert_allclose(r["precision"][0], [1.0, 0.5])
    assert r["ap"][0] == pytest.approx(6 / 11, abs=1e-12)


def test_equal_iou_picks_the_first_ground_truth() -> None:
    gt_a, gt_b = (0.0, 0.0, 10.0, 10.0), (5.0, 0.0, 15.0, 10.0)
    between = (2.5, 0.0, 12.5, 10.0)  # IoU 75 / 125 = 0.6 with both
    dets = {"im": _det([gt_b, between], [0.9, 0.8])}
    # Devkit "ov > ovmax": the first object in annotation order wins the tie.
    assert _ap(dets, {"im": _ann([gt_a, gt_b])}) == 1.0  # a is free: TP
    assert _ap(dets, {"im": _ann([gt_b, gt_a])}) == pytest.approx(6 / 11)  # b is taken: FP


def test_iou_exactly_at_threshold_is_a_match() -> None:
    anns = {"im": _ann([A])}
    half = {"im": _det([(0.0, 0.0, 10.0, 20.0)], [0.9])}  # IoU = 100 / 200 = 0.5 exactly
    assert _ap(half, anns, iou_threshold=0.5) == 1.0
    assert _ap(half, anns, iou_threshold=0.5000001) == 0.0
    exact = {"im": _det([A], [0.9])}
    assert _ap(exact, anns, iou_threshold=1.0) == 1.0


def test_empty_class_is_nan_and_left_out_of_the_mean() -> None:
    anns = {"im": _ann([A, B], labels=[0, 1], difficult=[False, True])}
    dets = {"im": _det([A, B, C], [0.9, 0.8, 0.7], labels=[0, 1, 2])}
    r = voc_detection_map(dets, anns, class_names=["cat", "dog", "cow"])
    assert list(r["ap"]) == ["cat", "dog", "cow"]
    assert r["ap"]["cat"] == 1.0
    assert math.isnan(r["ap"]["dog"])  # only a difficult object
    assert math.isnan(r["ap"]["cow"])  # no object at all, a detection nonetheless
    assert r["map"] == 1.0
    assert math.isnan(voc_detection_map({}, {"im": _ann([A], difficult=[True])})["map"])


def test_no_detections_give_zero_ap() -> None:
    anns = {"a": _ann([A, B], labels=[0, 1]), "b": _ann([C], labels=[1])}
    for dets in ({}, {"a": _det([], []), "b": _det([], [])}):
        r = voc_detection_map(dets, anns)
        assert r["ap"] == {0: 0.0, 1: 0.0}
        assert r["map"] == 0.0
        assert voc_detection_map(dets, anns, use_07_metric=False)["map"] == 0.0


def test_multiple_images_match_only_within_their_image() -> None:
    anns = {"one": _ann([A]), "two": _ann([C])}
    # C in image one matches nothing (C is in image two): FP, TP, TP.
    dets = {"one": _det([C, A], [0.9, 0.7]), "two": _det([C], [0.8])}
    r = voc_detection_map(dets, anns)
    np.testing.assert_allclose(r["recall"][0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(r["precision"][0], [0.0, 0.5, 2 / 3])
    assert r["ap"][0] == pytest.approx(2 / 3, abs=1e-12)
    assert _ap(dets, anns, use_07_metric=False) == pytest.approx(2 / 3, abs=1e-12)


def test_score_ties_follow_the_annotation_order() -> None:
    dets = {"two": _det([FAR], [0.5]), "one": _det([A], [0.5])}
    # Image one first: TP, FP -> AP 1. Image two first: FP, TP -> precision 1/2 at recall 1.
    assert _ap(dets, {"one": _ann([A]), "two": _ann([])}) == 1.0
    assert _ap(dets, {"two": _ann([]), "one": _ann([A])}) == 0.5


# --- slow reference, written from VOCevaldet.m / VOCap.m -----------------------------------


def _devkit_ap(dets, anns, cls, minoverlap, use_07):
    """VOCevaldet.m line by line on VOC 1-based inclusive boxes (hence the "+ 1")."""
    gt = {}
    npos = 0
    for image_id, a in anns.items():
        keep = a["labels"] == cls
        bb = a["boxes"][keep].double().tolist()
        # Our continuous (x1, y1, x2, y2) is VOC's inclusive 1-based (x1 + 1, y1 + 1, x2, y2).
        bb = [(b[0] + 1, b[1] + 1, b[2], b[3]) for b in bb]
        diff = a["difficult"][keep].tolist()
        gt[image_id] = {"BB": bb, "diff": diff, "det": [False] * len(bb)}
        npos += sum(not d for d in diff)
    ids, confidence, boxes = [], [], []
    for image_id in anns:  # the result file, written in image set order
        if image_id not in dets:
            continue
        d = dets[image_id]
        for b, s, lab in zip(
            d["boxes"].double().tolist(), d["scores"].tolist(), d["labels"], strict=True
        ):
            if int(lab) == cls:
                ids.append(image_id)
                confidence.append(s)
                boxes.append((b[0] + 1, b[1] + 1, b[2], b[3]))
    si = sorted(range(len(confidence)), key=lambda i: -confidence[i])  # stable, as MATLAB
    nd = len(si)
    tp, fp = [0] * nd, [0] * nd
    for d in range(nd):
        i = ids[si[d]]
        bb = boxes[si[d]]
        ovmax, jmax = -math.inf, -1
        for j, bbgt in enumerate(gt[i]["BB"]):
            bi = (
                max(bb[0], bbgt[0]),
                max(bb[1], bbgt[1]),
                min(bb[2], bbgt[2]),
                min(bb[3], bbgt[3]),
            )
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= minoverlap:
            if not gt[i]["diff"][jmax]:
                if not gt[i]["det"][jmax]:
                    tp[d] = 1
                    gt[i]["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    if npos == 0:
        return math.nan
    fp_c, tp_c = np.cumsum(fp, dtype=float), np.cumsum(tp, dtype=float)
    rec = tp_c / npos
    with np.errstate(invalid="ignore"):
        prec = tp_c / (fp_c + tp_c)  # 0/0 = NaN where only difficult matches came so far
    if use_07:
        ap = 0.0
        for t in [k / 10 for k in range(11)]:
            p = prec[(rec >= t) & ~np.isnan(prec)]  # MATLAB's max ignores NaN
            ap += (p.max() if p.size else 0.0) / 11
        return ap
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], np.nan_to_num(prec), [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = [i for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]]
    return float(sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in steps))


def _random_boxes(rng: random.Random, n: int) -> list[tuple[float, ...]]:
    out = []
    for _ in range(n):
        x1, y1 = rng.randint(0, 30), rng.randint(0, 30)
        out.append((x1, y1, x1 + rng.randint(1, 15), y1 + rng.randint(1, 15)))
    return out


def _random_case(seed: int, k: int = 3) -> tuple[dict, dict]:
    """Images with objects (some difficult), detections that are mostly jittered objects
    (so IoUs fall on both sides of the thresholds, duplicates and shared best objects occur)
    and a few distinct scores (so the tie rule matters)."""
    rng = random.Random(seed)
    anns, dets = {}, {}
    for i in range(rng.randint(2, 6)):
        g = rng.randint(0, 5)
        gt_boxes = _random_boxes(rng, g)
        gt_labels = [rng.randrange(k) for _ in range(g)]
        anns[f"im{i}"] = _ann(gt_boxes, gt_labels, [rng.random() < 0.25 for _ in range(g)])
        if rng.random() < 0.15:
            continue  # an image without detections
        boxes, labels = [], []
        for _ in range(rng.randint(0, 12)):
            if g and rng.random() < 0.7:
                j = rng.randrange(g)
                x1, y1, x2, y2 = gt_boxes[j]
                dx1, dy1 = rng.randint(-2, 2), rng.randint(-2, 2)
                dx2, dy2 = rng.randint(-2, 2), rng.randint(-2, 2)
                x1, x2 = sorted((x1 + dx1, x2 + dx2))
                y1, y2 = sorted((y1 + dy1, y2 + dy2))
                boxes.append((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
                labels.append(gt_labels[j] if rng.random() < 0.8 else rng.randrange(k))
            else:
                boxes += _random_boxes(rng, 1)
                labels.append(rng.randrange(k))
        scores = [rng.choice([0.1, 0.5, 0.9, rng.random()]) for _ in boxes]
        dets[f"im{i}"] = _det(boxes, scores, labels)
    return dets, anns


@pytest.mark.parametrize("seed", range(12))
def test_matches_slow_devkit_reference(seed: int) -> None:
    dets, anns = _random_case(seed)
    names = ["a", "b", "c"]
    for thr in (0.3, 0.5, 0.7):
        for use_07 in (True, False):
            r = voc_detection_map(dets, anns, thr, use_07, class_names=names)
            for c, name in enumerate(names):
                want = _devkit_ap(dets, anns, c, thr, use_07)
                if math.isnan(want):
                    assert math.isnan(r["ap"][name])
                else:
                    assert r["ap"][name] == pytest.approx(want, abs=1e-12), (thr, use_07, name)


def test_random_cases_are_not_trivial() -> None:
    """The reference comparison above is only worth something if APs are not all 0 or 1."""
    aps = [
        ap
        for seed in range(12)
        for ap in voc_detection_map(*_random_case(seed))["ap"].values()
        if not math.isnan(ap)
    ]
    assert sum(0.0 < ap < 1.0 for ap in aps) >= len(aps) // 3


# --- result file texts, table (the files: tests/detect/test_voc_results.py) ------------------


def test_result_texts_round_trip() -> None:
    rng = random.Random(0)
    names = ["aeroplane", "bicycle", "bird"]
    anns, dets = {}, {}
    for i in range(5):
        image_id = f"{i:06d}"
        anns[image_id] = _ann(_random_boxes(rng, 3), [rng.randrange(3) for _ in range(3)])
        n = rng.randint(0, 6)
        boxes = torch.tensor(_random_boxes(rng, n), dtype=torch.float32).reshape(n, 4)
        boxes = boxes + torch.rand(n, 1) * 0.5  # fractional coordinates
        dets[image_id] = {
            "boxes": boxes,
            "scores": torch.rand(n),
            "labels": torch.randint(0, 3, (n,)),
        }
    texts = format_voc_results(dets, names)
    assert len(texts) == 3
    back = parse_voc_results(zip(names, texts, strict=True), names)
    for image_id, d in dets.items():
        if len(d["boxes"]) == 0:
            assert image_id not in back
            continue
        got = back[image_id]
        # parse_voc_results groups an image's detections by class, keeping the order within one.
        order = torch.argsort(d["labels"], stable=True)
        torch.testing.assert_close(got["labels"], d["labels"][order])
        torch.testing.assert_close(got["boxes"], d["boxes"][order], atol=6e-4, rtol=0)
        torch.testing.assert_close(got["scores"], d["scores"][order], atol=0, rtol=6e-6)
    r1 = voc_detection_map(dets, anns, class_names=names)
    r2 = voc_detection_map(back, anns, class_names=names)
    assert r1["ap"] == pytest.approx(r2["ap"], nan_ok=True)


def test_result_text_uses_voc_one_based_inclusive_boxes() -> None:
    dets = {"000005": _det([(0.0, 0.0, 10.0, 10.0), B], [0.5, 0.123456789], labels=[1, 0])}
    texts = format_voc_results(dets, ["cat", "dog"])
    assert texts == [
        "000005 0.123457 21.000 21.000 30.000 30.000\n",
        "000005 0.5 1.000 1.000 10.000 10.000\n",
    ]
    back = parse_voc_results([("cat.txt", texts[0]), ("dog.txt", texts[1])], ["cat", "dog"])
    assert back["000005"]["boxes"].tolist() == [list(B), [0.0, 0.0, 10.0, 10.0]]


def test_ap_table() -> None:
    anns = {"im": _ann([A, B], labels=[0, 1], difficult=[False, True])}
    r = voc_detection_map({"im": _det([A], [0.9])}, anns, class_names=["cat", "dog"])
    table = per_class_ap_table(r, ["cat", "dog"])
    assert table.splitlines() == [
        "| class | AP (%) |",
        "| --- | ---: |",
        "| cat | 100.0 |",
        "| dog | n/a |",
        "| **mAP** | **100.0** |",
    ]
    assert per_class_ap_table(voc_detection_map({}, anns), ["Cat", "Dog"]).count("| Cat | 0.0 |")
    rows = per_class_ap_rows(r)
    assert [row[:2] for row in rows] == [("cat", "cat"), ("dog", "dog")]
    assert rows[0][2] == 1.0 and math.isnan(rows[1][2])
    with pytest.raises(ValueError, match="match neither"):
        per_class_ap_rows(r, ["a", "b", "c"])
    with pytest.raises(TypeError, match="with 'ap'"):
        per_class_ap_rows({})


# --- validation ------------------------------------------------------------------------------


def test_bad_inputs_raise() -> None:
    anns = {"im": _ann([A])}
    with pytest.raises(ValueError, match="'ghost'"):
        voc_detection_map({"ghost": _det([A], [0.9])}, anns)
    with pytest.raises(ValueError, match="lacks key 'scores'"):
        voc_detection_map({"im": {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}}, anns)
    with pytest.raises(TypeError, match="labels must be an integer"):
        bad = _det([A], [0.9])
        bad["labels"] = bad["labels"].float()
        voc_detection_map({"im": bad}, anns)
    with pytest.raises(ValueError, match="scores must have shape"):
        voc_detection_map({"im": _det([A, B], [0.9, 0.8]) | {"scores": torch.ones(3)}}, anns)
    with pytest.raises(ValueError, match="NaN"):
        voc_detection_map({"im": _det([A], [math.nan])}, anns)
    with pytest.raises(ValueError, match="x2 >= x1"):
        voc_detection_map({"im": _det([(5.0, 0.0, 1.0, 1.0)], [0.9])}, anns)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        voc_detection_map({"im": _det([A], [0.9], labels=[2])}, anns, class_names=["a", "b"])
    with pytest.raises(ValueError, match="labels must be >= 0"):
        voc_detection_map({"im": _det([A], [0.9], labels=[-1])}, anns)
    for thr in (0.0, 1.5):
        with pytest.raises(ValueError, match="iou_threshold"):
            voc_detection_map({}, anns, iou_threshold=thr)
    with pytest.raises(TypeError, match="difficult must be a BoolTensor"):
        voc_detection_map({}, {"im": _ann([A]) | {"difficult": torch.zeros(1)}})
    with pytest.raises(ValueError, match="lacks key 'difficult'"):
        voc_detection_map({}, {"im": {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()}})
    with pytest.raises(ValueError, match="distinct"):
        voc_detection_map({}, anns, class_names=["a", "a"])
    with pytest.raises(TypeError, match="detections must map"):
        voc_detection_map([_det([A], [0.9])], anns)


def test_bad_result_texts_raise() -> None:
    with pytest.raises(ValueError, match="whitespace"):
        format_voc_results({"a b": _det([A], [0.9])}, ["cat"])
    with pytest.raises(ValueError, match=r"outside 0\.\.0"):
        format_voc_results({"im": _det([A], [0.9], labels=[1])}, ["cat"])
    bad = [("cat.txt", "im 0.9 1 1 10 10\nim 0.8 1 1 10\n")]
    with pytest.raises(ValueError, match=r"cat.txt:2: expected"):
        parse_voc_results(bad, ["cat"])
    with pytest.raises(ValueError, match="x2 >= x1"):
        parse_voc_results([("cat.txt", "im 0.9 5 1 1 10\n")], ["cat"])
    with pytest.raises(TypeError, match="strings"):
        parse_voc_results([], [1])
