"""The demo's report: ``DIR/report.md`` written from the metrics alone, section by section."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sppnet.demo._common import _pct

_VIEW_TITLES = {
    "center": "1 crop",
    "ten": "10 views",
    "full": "full image",
    "multiview": "multi-view",
}


def _standard_error(error_pct: float, n: int) -> float:
    """Binomial standard error, in points, of an error rate measured on ``n`` images."""
    p = min(max(error_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / max(n, 1))


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f}"


def _network_sentence(cfg: Mapping[str, Any]) -> str:
    if cfg.get("pretrained"):
        frozen = (
            "frozen (only fc6-fc8 train)"
            if cfg["trunk_lr_scale"] == 0
            else f"fine-tuned at {cfg['trunk_lr_scale']}x the head's learning rate"
        )
        return (
            f"{cfg['model']} trunk with its ImageNet weights, {frozen}, under an SPP head "
            f"(fc {cfg['fc_dim']}, dropout {cfg['dropout']});"
        )
    return (
        f"Narrow {cfg['model']} (width {cfg['width']}, fc {cfg['fc_dim']}), trained from "
        "scratch for"
    )


def _replay_note(cfg: Mapping[str, Any]) -> str:
    views = int(cfg.get("cache_views", 0) or 0)
    if not views:
        return ""
    return (
        f" (the trunk ran on {views} epochs of crops; later epochs replay their cached "
        "pooled vectors)"
    )


def _detector_start(cfg: Mapping[str, Any]) -> str:
    if cfg.get("pretrained"):
        return (
            f"the frozen ImageNet {cfg['model']} trunk with new fc6-fc8 (fc "
            f"{cfg['detection_fc_dim']})"
        )
    return "the SPP classifier's trunk and fc layers"


def _table(
    header: tuple[str, str], rows: Sequence[tuple[str, str]], total: tuple[str, str]
) -> list[str]:
    """A two-column markdown table (numbers right-aligned) closed by a bold total row."""
    return [
        f"| {header[0]} | {header[1]} |",
        "|---|---:|",
        *(f"| {name} | {value} |" for name, value in rows),
        f"| **{total[0]}** | **{total[1]}** |",
        "",
    ]


def _report(metrics: Mapping[str, Any]) -> str:
    """The markdown report: every number comes from ``metrics``."""
    det = metrics["detection"]
    lines = _intro_lines(metrics)
    lines += _classification_lines(metrics["config"], metrics["classification"])
    transfer = metrics.get("transfer")
    if transfer is not None:
        lines += _transfer_lines(transfer)
    lines += _detection_lines(metrics["config"], det)
    rcnn = det.get("rcnn")
    if rcnn is not None:
        lines += _rcnn_lines(rcnn)
    lines += _closing_lines(metrics)
    return "\n".join(lines)


def _intro_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The title, the run's facts and the data."""
    data = metrics["data"]
    return [
        "# SPP-net demo report",
        "",
        f"Seed {metrics['seed']}, {metrics['settings']} settings, "
        f"{metrics['threads']} torch threads; total {metrics['total_seconds'] / 60:.1f} min "
        f"of stage time. A rerun with the same seed, on the same machine and number of "
        "threads, gives the same numbers (only the times change).",
        "",
        "## Data",
        "",
        f"Built-in VOC-layout scenes: {data['scenes']['train']} train / "
        f"{data['scenes']['val']} val / {data['scenes']['test']} test; classification view: "
        f"{data['crops']['train']} / {data['crops']['val']} / {data['crops']['test']} object "
        f"crops of {len(data['classes'])} classes ({', '.join(data['classes'])}); chance "
        f"top-1 error {100 * (1 - 1 / len(data['classes'])):.1f}%.",
        "",
    ]


def _classification_lines(cfg: Mapping[str, Any], cls: Mapping[str, Any]) -> list[str]:
    """Tables 2-4 in spirit: top-1 (top-5) error per model and test view."""
    lines = [
        "## Classification (Tables 2-4 in spirit)",
        "",
        _network_sentence(cfg)
        + f" {cfg['epochs']} epochs{_replay_note(cfg)}, batch {cfg['batch_size']}, lr "
        f"{cfg['lr']} divided by 10 "
        f"on val plateaus. SPP: pyramid {'-'.join(map(str, cfg['spp_levels']))}, multi-size "
        f"training ({cfg['crop']} / {cfg['small_crop']}); no SPP: the same trunk with a fixed "
        f"pool, single-size {cfg['crop']}. One run per network (one seed: a second does not "
        f"fit the time budget). Top-1 error % (top-5 in parentheses) on the "
        f"{cls['SPP']['test_images']} test crops, best val checkpoint:",
        "",
    ]
    n_test = int(cls["SPP"]["test_images"])
    p_err = float(cls["SPP"]["views"]["center"]["top1_error_pct"])
    header = ["model"] + [
        f"{_VIEW_TITLES[v]} ({_fmt(cls['SPP']['views'][v]['views_per_image'], 0)} views)"
        if v == "multiview" and cls["SPP"]["views"][v] is not None
        else _VIEW_TITLES[v]
        for v in _VIEW_TITLES
    ]
    lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for model in cls.values():
        cells = []
        for view in _VIEW_TITLES:
            e = model["views"].get(view)
            cells.append(
                "n/a" if e is None else f"{e['top1_error_pct']:.1f} ({e['top5_error_pct']:.1f})"
            )
        lines.append(f"| {model['title']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Multi-view testing uses scales {', '.join(map(str, cfg['multiview_scales']))} "
        "(Sec. 3.1.5 uses six, up to 560). The no-SPP network takes only fixed-size crops. "
        f"With {n_test} test crops, one standard error of an error rate near "
        f"{p_err:.0f}% is {_standard_error(p_err, n_test):.1f} points.",
        "",
    ]
    for model in cls.values():
        lines.append(
            f"- {model['title']}: {model['epochs']} epochs in {model['train_seconds']:.0f} s, "
            f"best val top-1 error {_fmt(model['best_val_top1_error_pct'])}% (epoch "
            f"{model['epoch']})."
        )
    return lines


def _transfer_lines(transfer: Mapping[str, Any]) -> list[str]:
    """Table 6 in spirit: features + linear SVMs per view."""
    n_t = int(transfer["test_images"])
    lines = [
        "",
        "## Transfer: features + SVM (Table 6 in spirit)",
        "",
        f"The SPP vector ({'-'.join(map(str, transfer['levels']))} pyramid, "
        f"{next(iter(transfer['views'].values()))['dim']}-d, l2-normalised) of "
        f"{transfer['network']}, no fine-tuning, and one-vs-rest linear SVMs (C chosen on "
        f"a held-out fifth of the {transfer['train_images']} training crops); top-1 error "
        f"% (top-5) on the {n_t} test crops. Full: the whole crop, shorter side "
        f"{transfer['size']}, aspect kept; crop: its center {transfer['size']}x"
        f"{transfer['size']}; warp: resized to {transfer['size']}x{transfer['size']}.",
        "",
        "| view | top-1 (top-5) error % | standard error |",
        "|---|---:|---:|",
    ]
    for view_name, r in transfer["views"].items():
        lines.append(
            f"| {view_name} | {r['top1_error_pct']:.1f} ({r['top5_error_pct']:.1f}) | "
            f"{_standard_error(r['top1_error_pct'], n_t):.1f} |"
        )
    return lines


def _detection_lines(cfg: Mapping[str, Any], det: Mapping[str, Any]) -> list[str]:
    """Table 9 in spirit: AP per class and mAP."""
    lines = [
        "",
        "## Detection (Table 9 in spirit)",
        "",
        f"SPP-net detector on {_detector_start(cfg)}: {cfg['proposals'].replace('_', ' ')} "
        f"(up to {cfg['max_proposals']} windows, {det['windows_per_image']:.0f} per test "
        f"image on average), {len(det['scales'])} scale(s) "
        f"({', '.join(f'{s:g}' for s in det['scales'])} px shorter side), "
        f"fc6-fc8 fine-tuned on cached pooled features for {cfg['finetune_iterations']} "
        f"iterations, per-class linear SVMs with hard-negative mining, box regression. "
        f"Trained on {det['train_images']} trainval scenes, tested on {det['images']} test "
        f"scenes. VOC07 11-point AP (%), IoU 0.5:",
        "",
    ]
    rows = [(name, _fmt(_pct(ap))) for name, ap in det["ap"].items()]
    return lines + _table(("class", "AP (%)"), rows, ("mAP", _fmt(_pct(det["map"]))))


def _rcnn_lines(rcnn: Mapping[str, Any]) -> list[str]:
    """Table 10 in spirit: SPP-net against R-CNN, time per image and mAP."""
    spp_t, rc_t = rcnn["spp_timing"], rcnn["timing"]
    return [
        "## SPP-net vs R-CNN (Table 10 in spirit)",
        "",
        f"The first {rcnn['images']} test images, the same network, SVMs, box regressors "
        f"and windows ({rcnn['windows_per_image']:.0f} per image); R-CNN warps every "
        f"window to {rcnn['size']}x{rcnn['size']} and runs the whole network on it, "
        "SPP-net runs the convolutions once per image and pools every window from the "
        "shared conv5 map. Milliseconds per image on the CPU, timed interleaved:",
        "",
        "| method | conv | pooling | fc | SVM + box reg. | NMS | total | speedup "
        "(conv / total) | mAP (%) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| R-CNN | {_ms(rc_t['conv'])} | - | {_ms(rc_t['fc'])} | {_ms(rc_t['svm'])} | "
        f"{_ms(rc_t['nms'])} | {_ms(rc_t['total'])} | 1x / 1x | "
        f"{_fmt(_pct(rcnn['map']))} |",
        f"| SPP-net, 1 scale | {_ms(spp_t['conv'])} | {_ms(spp_t['pooling'])} | "
        f"{_ms(spp_t['fc'])} | {_ms(spp_t['svm'])} | {_ms(spp_t['nms'])} | "
        f"{_ms(spp_t['total'])} | **{rcnn['speedup']['conv']:.0f}x** / "
        f"**{rcnn['speedup']['total']:.1f}x** | {_fmt(_pct(rcnn['spp_map']))} |",
        "",
    ]


def _closing_lines(metrics: Mapping[str, Any]) -> list[str]:
    """SPP-net's time per image, the pictures and the time per stage."""
    det = metrics["detection"]
    t = det["timing"]
    lines = [
        f"SPP-net on all {det['images']} test images: "
        + ", ".join(f"{k} {_ms(v)} ms" for k, v in t.items() if k != "total")
        + f"; total {_ms(t['total'])} ms per image.",
        "",
        "## Pictures",
        "",
    ]
    pics = metrics["pictures"]
    lines += [
        f"![training curves](pictures/{pics['training_curves']})",
        "",
        f"![precision-recall](pictures/{pics['precision_recall']})",
        "",
        f"![pyramid bins](pictures/{pics['pyramid_bins']})",
        "",
    ]
    for name in pics["detections"]:
        lines += [f"![detections](pictures/{name})", ""]
    lines += ["## Time per stage", ""]
    rows = [(stage, f"{seconds:.1f}") for stage, seconds in metrics["stage_seconds"].items()]
    return lines + _table(("stage", "seconds"), rows, ("total", f"{metrics['total_seconds']:.1f}"))
