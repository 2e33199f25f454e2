"""Shared timing helpers and inputs for the benchmark commands (not part of the package).

Generic helpers: round-robin timing of several cases (:func:`interleaved_ms`, the shared
vCPUs of small cloud machines drift in speed by 2x over minutes, so cases are timed in
turn rather than in one block each), the memory-policy option, the environment line,
markdown tables and random boxes.

Detection timing (:func:`time_detection`, used by ``detection_speed.py``): for one image
and R windows it times, in one run:
  * SPP-net, per scale set (1 scale and 5 scales): the conv maps of the whole image
    (:func:`~sppnet.detection.compute_conv_maps`, resizing and mean subtraction included),
    the window pooling (:func:`~sppnet.detection.pool_windows`) and fc6 + fc7 for the R
    windows (``forward_pooled(pooled, pre_logits=True)``);
  * R-CNN on the same network: warping every window and running the trunk and pool on it
    (:func:`~sppnet.detection.rcnn.rcnn_pooled_features`), then the same fc6 + fc7;
  * optionally fc6 + fc7 with truncated SVD (:func:`~sppnet.models.truncated_svd.compress_fc`,
    Fast R-CNN's compression), the fc layers being most of SPP-net's time once the convs
    are shared.

It also counts the multiply-adds of every conv analytically (:func:`conv_multiply_adds`),
so the measured conv speedup can be compared with the work ratio. Everything runs in eval
mode under ``torch.inference_mode``; every clock reading waits for the device's queued
work (:func:`sppnet._clock.device_clock`). Post-processing (SVM scores, NMS, box
regression) is the same for both methods and not timed.

Shape shorthand: R windows, S scales.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sppnet._clock import device_clock
from sppnet.data.transforms import check_mean, subtract_mean
from sppnet.detection.rcnn import rcnn_pooled_features
from sppnet.detection.scales import DETECTION_SCALES_1, DETECTION_SCALES_5, image_scale_factors
from sppnet.detection.window_features import compute_conv_maps, pool_windows
from sppnet.memory import keep_freed_memory
from sppnet.models.truncated_svd import compress_fc
from sppnet.ops.boxes import check_boxes

__all__ = [
    "add_memory_option",
    "apply_memory_option",
    "conv_multiply_adds",
    "detection_table",
    "environment_line",
    "interleaved_ms",
    "markdown_table",
    "median_ms",
    "random_boxes",
    "time_detection",
]

_MEMORY = {"policy": "glibc default (freed large blocks unmapped)"}


def add_memory_option(parser: argparse.ArgumentParser) -> None:
    """``--release-freed-memory``: time with glibc's default instead of the ``sppnet``
    command's policy (freed memory kept for reuse, :mod:`sppnet.memory`)."""
    parser.add_argument(
        "--release-freed-memory",
        action="store_true",
        help="glibc's default: unmap freed large blocks (sppnet's commands keep them mapped)",
    )


def apply_memory_option(args: argparse.Namespace) -> None:
    """Keep freed memory as the ``sppnet`` command does, unless ``--release-freed-memory``."""
    if not args.release_freed_memory and keep_freed_memory():
        _MEMORY["policy"] = "freed memory kept (as sppnet's commands)"


def median_ms(
    fn: Callable[[], object], repeats: int = 10, warmup: int = 2, device: torch.device | None = None
) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls (the
    clock waits for ``device``'s queued work)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = device_clock(device)
        fn()
        times.append(device_clock(device) - start)
    return statistics.median(times) * 1e3


def interleaved_ms(
    cases: dict[str, Callable[[], object]],
    repeats: int = 10,
    warmup: int = 2,
    device: torch.device | None = None,
) -> dict[str, tuple[float, float]]:
    """``{name: (median, best)}`` milliseconds, timing the cases round-robin.

    The shared vCPUs of this machine class drift in speed by 2x over minutes; timing the
    cases in turn, instead of one block each, keeps every ratio between them fair.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = device_clock(device)
            fn()
            times[name].append((device_clock(device) - start) * 1e3)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def environment_line(device: torch.device | None = None) -> str:
    """One line describing what the numbers were measured on (a CUDA ``device`` by name)."""
    thp = os.environ.get("THP_MEM_ALLOC_ENABLE", "0")
    line = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, THP_MEM_ALLOC_ENABLE={thp}, "
        f"{_MEMORY['policy']}"
    )
    if device is not None and device.type == "cuda":
        line += f", on {torch.cuda.get_device_name(device)}"
    return line


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def random_boxes(n: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """``Tensor[n, 4]`` boxes inside the image, log-uniform sides in [16, image side]."""
    lo = math.log(16)
    bh = torch.exp(lo + torch.rand(n, generator=gen) * (math.log(height) - lo))
    bw = torch.exp(lo + torch.rand(n, generator=gen) * (math.log(width) - lo))
    y1 = torch.rand(n, generator=gen) * (height - bh)
    x1 = torch.rand(n, generator=gen) * (width - bw)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _out_side(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1  # PyTorch's rule: the last window must start inside the input or padding
    return out


def conv_multiply_adds(model: nn.Module, height: int, width: int) -> int:
    """Multiply-adds of every ``Conv2d`` of ``model.features`` for one input image.

    Walks the trunk's layers with the shape arithmetic of ``Conv2d`` and ``MaxPool2d`` /
    ``AvgPool2d``; other layers (ReLU, LRN) keep the size and are not counted (nor are
    biases). A conv with ``C_in`` inputs, ``C_out`` outputs, groups ``g``, a ``k_h x k_w``
    kernel and an ``h x w`` output costs ``h * w * C_out * (C_in / g) * k_h * k_w``.

    Args:
        model: a module whose ``features`` is an ``nn.Sequential`` trunk (an SPPNet).
        height: input height in pixels, ``>= 1``.
        width: input width in pixels, ``>= 1``.

    Returns:
        The count for one ``3 x height x width`` image (an int).

    Raises:
        TypeError: ``model`` has no ``nn.Sequential`` ``features``, or non-int sizes.
        ValueError: a size < 1, or an input too small for the trunk (a map would vanish).
    """
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError(
            f"model must have an nn.Sequential trunk `features`, got {type(features).__name__}"
        )
    h, w = _check_int("height", height, 1), _check_int("width", width, 1)
    total = 0
    for name, layer in features.named_children():
        if isinstance(layer, nn.Conv2d):
            (kh, kw), (sh, sw) = _pair(layer.kernel_size), _pair(layer.stride)
            if isinstance(layer.padding, str):
                raise TypeError(f"conv {name} uses padding={layer.padding!r}; give ints")
            (ph, pw), (dh, dw) = _pair(layer.padding), _pair(layer.dilation)
            h = _out_side(h, kh, sh, ph, dh, False)
            w = _out_side(w, kw, sw, pw, dw, False)
            if h < 1 or w < 1:
                raise ValueError(f"a {height}x{width} input vanishes at {name} ({h}x{w})")
            per_out = (layer.in_channels // layer.groups) * kh * kw
            total += h * w * layer.out_channels * per_out
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            (kh, kw), (ph, pw) = _pair(layer.kernel_size), _pair(layer.padding)
            sh, sw = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
            dh, dw = _pair(getattr(layer, "dilation", 1))
            h = _out_side(h, kh, sh, ph, dh, layer.ceil_mode)
            w = _out_side(w, kw, sw, pw, dw, layer.ceil_mode)
            if h < 1 or w < 1:
                raise ValueError(f"a {height}x{width} input vanishes at {name} ({h}x{w})")
    return total


def _round_robin(
    cases: dict[str, Callable[[], object]],
    repeats: int,
    spread: list[Callable[[], object]],
    passes: int,
    device: torch.device | None = None,
) -> tuple[dict[str, float], float | None]:
    """Time ``cases`` round-robin and one long job, split in parts, across the rounds.

    Every round runs each case once, then its share of the ``passes * len(spread)`` parts
    of the long job (R-CNN's batches), so both see the same drift of the machine's speed
    instead of the long job landing in one fast or slow stretch. The clock waits for
    ``device``'s queued work at both ends of each timing (CUDA runs asynchronously).

    Returns:
        ``({name: median seconds}, median seconds of one pass over spread)``; the latter
        is None without parts.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    parts = [job for _ in range(passes) for job in spread]
    pass_times = [0.0] * passes
    for r in range(repeats):
        for name, fn in cases.items():
            start = device_clock(device)
            fn()
            times[name].append(device_clock(device) - start)
        for k in range(r * len(parts) // repeats, (r + 1) * len(parts) // repeats):
            start = device_clock(device)
            parts[k]()
            pass_times[k // len(spread)] += device_clock(device) - start
    medians = {name: statistics.median(t) for name, t in times.items()}
    return medians, (statistics.median(pass_times) if spread else None)


def _check_scales_list(scales_list: object) -> list[tuple[float, ...]]:
    if isinstance(scales_list, (str, bytes)) or not isinstance(scales_list, Sequence):
        raise TypeError(f"scales_list must be a sequence of scale sequences, got {scales_list!r}")
    if len(scales_list) == 0:
        raise ValueError("scales_list must hold at least one scale set, got none")
    out, counts = [], set()
    for scales in scales_list:
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
            raise ValueError(f"every scale set must be a non-empty sequence, got {scales!r}")
        if len(scales) in counts:
            raise ValueError(
                f"scale sets are keyed by their number of scales, so each count may appear "
                f"once; got {list(scales_list)!r}"
            )
        counts.add(len(scales))
        out.append(tuple(scales))
    return out


def time_detection(
    model: nn.Module,
    image: Tensor,
    boxes: Tensor,
    scales_list: Sequence[Sequence[float]] = (DETECTION_SCALES_1, DETECTION_SCALES_5),
    mean: float | Tensor = 128.0,
    rcnn: bool = True,
    rcnn_size: int = 224,
    svd_ranks: tuple[int | None, int | None] | None = None,
    repeats: int = 3,
    rcnn_repeats: int = 1,
    threads: int | None = None,
    rcnn_batch_size: int = 64,
    extra_cases: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, float]:
    """Time SPP-net's and R-CNN's feature computation for one image (Table 10).

    Every timed case is the median of its runs, the cases taken round-robin; each runs
    once untimed first (R-CNN on one batch only: it takes seconds per hundred windows).
    R-CNN's passes over the windows are split into their batches of ``rcnn_batch_size``
    and spread evenly over the ``repeats`` rounds, so its time (the sum over a pass's
    batches, median over passes) covers the same stretch of machine speed as the
    SPP-net cases rather than one fast or slow minute. The fc time is measured once and
    serves both methods (the same fc6 + fc7 on R rows).
    The model is put in eval mode and its mode restored afterwards; ``threads`` sets
    ``torch.set_num_threads`` for the run and is restored too.

    Args:
        model: an :class:`~sppnet.models.SPPNet`.
        image: ``Tensor[3, H, W]`` float pixels 0..255, on the model's device (a CUDA
            device is synchronised around every timing).
        boxes: ``Tensor[R, 4]`` windows ``(x1, y1, x2, y2)`` in image pixels, ``R >= 1``.
        scales_list: scale sets for SPP-net (shorter sides), each with a distinct number
            of scales ``n``, which names its keys (``spp1_...``, ``spp5_...``).
        mean: subtracted after resizing (SPP) or before warping (R-CNN).
        rcnn: also time R-CNN (seconds per hundred windows for a full-size network).
        rcnn_size: R-CNN's warp side (224).
        svd_ranks: ``(rank6, rank7)`` to also time fc6 + fc7 compressed by truncated SVD
            (either may be None to keep that layer); the SVD itself is not timed.
        repeats: timed runs of each SPP-net case and of the fc layers, ``>= 1``.
        rcnn_repeats: timed passes of R-CNN over all windows, ``>= 1``.
        threads: torch intra-op threads for the run (None: leave as is).
        rcnn_batch_size: windows per trunk pass for R-CNN.
        extra_cases: more ``{name: fn}`` to time in the same rounds (e.g. a reference
            conv measuring the machine's ceiling); each gives ``{name}_s``.

    Returns:
        A flat ``dict[str, float]``, seconds unless named otherwise:
        ``windows``, ``threads``; ``fc_s`` (fc6 + fc7, R windows); per scale set ``n``:
        ``spp{n}_conv_s``, ``spp{n}_pool_s``, ``spp{n}_fc_s``, ``spp{n}_total_s``,
        ``spp{n}_conv_macs`` (multiply-adds over the resized images). With ``rcnn``:
        ``rcnn_conv_s`` (warp + trunk + pool), ``rcnn_fc_s``, ``rcnn_total_s``,
        ``rcnn_conv_macs`` (``R`` windows of ``rcnn_size^2``) and per ``n`` the ratios
        ``spp{n}_speedup`` (R-CNN total / SPP total), ``spp{n}_conv_speedup`` (conv / conv)
        and ``spp{n}_mac_ratio`` (R-CNN conv MACs / SPP conv MACs). With ``svd_ranks``:
        ``svd_rank6``, ``svd_rank7`` (0 for a kept layer), ``svd_fc_s``,
        ``spp{n}_svd_total_s`` and, with ``rcnn``, ``spp{n}_svd_speedup`` (against the
        uncompressed R-CNN). With ``extra_cases``: ``{name}_s`` for each.

    Raises:
        TypeError: ``image`` not a floating tensor, bad boxes or non-int settings.
        ValueError: ``image`` not ``[3, H, W]`` or not on the model's device, no windows,
            bad scale sets, counts < 1, ``rcnn_size`` below the network's minimum input, or
            a bad SVD rank.
    """
    job = _TimingJob.checked(
        model, image, boxes, scales_list, mean, rcnn, rcnn_size, svd_ranks, repeats,
        rcnn_repeats, threads, rcnn_batch_size,
    )  # fmt: skip
    timed, rcnn_conv_s, used_threads = _measure(model, job, extra_cases or {})
    return _timing_result(model, job, timed, rcnn_conv_s, used_threads, extra_cases or {})


@dataclass(frozen=True)
class _TimingJob:
    """The checked arguments of :func:`time_detection`."""

    image: Tensor
    boxes: Tensor
    sets: list[tuple[float, ...]]
    mean: float | Tensor
    rcnn: bool
    rcnn_size: int
    svd_ranks: tuple[int | None, int | None] | None
    repeats: int
    rcnn_repeats: int
    threads: int | None
    rcnn_batch_size: int

    @classmethod
    def checked(
        cls,
        model: nn.Module,
        image: Tensor,
        boxes: Tensor,
        scales_list: Sequence[Sequence[float]],
        mean: float | Tensor,
        rcnn: bool,
        rcnn_size: int,
        svd_ranks: tuple[int | None, int | None] | None,
        repeats: int,
        rcnn_repeats: int,
        threads: int | None,
        rcnn_batch_size: int,
    ) -> _TimingJob:
        if not isinstance(image, Tensor) or not image.is_floating_point():
            got = image.dtype if isinstance(image, Tensor) else type(image).__name__
            raise TypeError(f"image must be a floating Tensor[3, H, W] of 0..255 pixels, got {got}")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be Tensor[3, H, W], got shape {tuple(image.shape)}")
        model_device = next((p.device for p in model.parameters()), image.device)
        if model_device != image.device:
            raise ValueError(
                f"image is on {image.device} but the model on {model_device}: move both to "
                f"the device to time (model.to(device), image.to(device))"
            )
        check_boxes(boxes, "boxes")
        if int(boxes.shape[0]) == 0:
            raise ValueError("boxes must hold at least one window to time, got 0")
        sets = _check_scales_list(scales_list)
        mean = check_mean(mean)
        repeats = _check_int("repeats", repeats, 1)
        rcnn_repeats = _check_int("rcnn_repeats", rcnn_repeats, 1)
        rcnn_batch_size = _check_int("rcnn_batch_size", rcnn_batch_size, 1)
        rcnn_size = _check_int("rcnn_size", rcnn_size, 1)
        minimum = int(getattr(model, "min_input_size", 1))
        if rcnn and rcnn_size < minimum:
            raise ValueError(
                f"rcnn_size must be >= the network's minimum input {minimum}, got {rcnn_size}"
            )
        if threads is not None:
            threads = _check_int("threads", threads, 1)
        if svd_ranks is not None and (
            not isinstance(svd_ranks, (tuple, list)) or len(svd_ranks) != 2
        ):
            raise ValueError(f"svd_ranks must be (rank6, rank7) or None, got {svd_ranks!r}")
        return cls(
            image, boxes, sets, mean, rcnn, rcnn_size, svd_ranks, repeats, rcnn_repeats,
            threads, rcnn_batch_size,
        )  # fmt: skip


def _measure(
    model: nn.Module, job: _TimingJob, extra_cases: Mapping[str, Callable[[], object]]
) -> tuple[dict[str, float], float | None, int]:
    """Warm every case up, then time them round-robin in eval mode (the model's mode and the
    thread count restored after): ``(median seconds per case, R-CNN's seconds per pass or
    None, threads used)``."""
    was_training = model.training
    old_threads = torch.get_num_threads()
    try:
        if job.threads is not None:
            torch.set_num_threads(job.threads)
        model.eval()
        compressed = None if job.svd_ranks is None else compress_fc(model, *job.svd_ranks)
        with torch.inference_mode():
            cases, pooled = _spp_cases(model, job)
            cases |= _fc_cases(model, compressed, pooled)
            batches = _rcnn_batches(model, job) if job.rcnn else []
            for name, fn in extra_cases.items():
                if name in cases:
                    raise ValueError(f"extra case {name!r} clashes with a timed case")
                fn()
                cases[name] = fn
            timed, rcnn_conv_s = _round_robin(
                cases, job.repeats, batches, job.rcnn_repeats, job.image.device
            )
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    return timed, rcnn_conv_s, job.threads if job.threads is not None else old_threads


def _spp_cases(model: nn.Module, job: _TimingJob) -> tuple[dict[str, Callable[[], object]], Tensor]:
    """Per scale set, the conv maps and the window pooling (each run once to warm up), and
    the pooled features ``[R, C*L]`` of the first set (the fc layers' input)."""
    image, boxes, mean = job.image, job.boxes, job.mean
    cases: dict[str, Callable[[], object]] = {}
    pooled = None
    for scales in job.sets:
        n = len(scales)
        maps = compute_conv_maps(model, image, scales, mean)  # also the warm-up
        pooled_n = pool_windows(model, maps, boxes)  # [R, C*L]
        pooled = pooled_n if pooled is None else pooled

        def conv(scales: tuple[float, ...] = scales) -> object:
            return compute_conv_maps(model, image, scales, mean)

        def pool(maps: object = maps) -> object:
            return pool_windows(model, maps, boxes)

        cases[f"spp{n}_conv"] = conv
        cases[f"spp{n}_pool"] = pool
    assert pooled is not None  # at least one scale set
    return cases, pooled


def _fc_cases(
    model: nn.Module, compressed: nn.Module | None, pooled: Tensor
) -> dict[str, Callable[[], object]]:
    """fc6 + fc7 on the R pooled rows, and with the SVD-compressed layers (warmed up)."""

    def fc() -> object:
        return model.forward_pooled(pooled, pre_logits=True)

    fc()
    cases: dict[str, Callable[[], object]] = {"fc": fc}
    if compressed is not None:

        def svd_fc() -> object:
            return compressed.forward_pooled(pooled, pre_logits=True)

        svd_fc()
        cases["svd_fc"] = svd_fc
    return cases


def _rcnn_batches(model: nn.Module, job: _TimingJob) -> list[Callable[[], object]]:
    """R-CNN's pass over the windows as its batches (the first run once to warm up)."""
    size = job.rcnn_batch_size

    def rcnn_batch(start: int) -> object:
        centred = subtract_mean(job.image, job.mean)  # [3, H, W]
        windows = job.boxes[start : start + size]
        return rcnn_pooled_features(model, centred, windows, job.rcnn_size, 0, size)

    rcnn_batch(0)
    return [functools.partial(rcnn_batch, start) for start in range(0, len(job.boxes), size)]


def _timing_result(
    model: nn.Module,
    job: _TimingJob,
    timed: dict[str, float],
    rcnn_conv_s: float | None,
    threads: int,
    extra_cases: Mapping[str, Callable[[], object]],
) -> dict[str, float]:
    """The flat result of :func:`time_detection` from the median times."""
    n_win = int(job.boxes.shape[0])
    out: dict[str, float] = {"windows": float(n_win), "threads": float(threads)}
    out["fc_s"] = timed["fc"]
    for name in extra_cases:
        out[f"{name}_s"] = timed[name]
    if job.rcnn:
        assert rcnn_conv_s is not None
        rcnn_macs = n_win * conv_multiply_adds(model, job.rcnn_size, job.rcnn_size)
        out |= {
            "rcnn_conv_s": rcnn_conv_s,
            "rcnn_fc_s": timed["fc"],
            "rcnn_total_s": rcnn_conv_s + timed["fc"],
            "rcnn_conv_macs": float(rcnn_macs),
        }
    if job.svd_ranks is not None:
        out["svd_rank6"] = float(job.svd_ranks[0] or 0)
        out["svd_rank7"] = float(job.svd_ranks[1] or 0)
        out["svd_fc_s"] = timed["svd_fc"]
    for scales in job.sets:
        out |= _spp_entries(model, job, scales, timed, out)
    return out


def _spp_entries(
    model: nn.Module,
    job: _TimingJob,
    scales: tuple[float, ...],
    timed: dict[str, float],
    out: dict[str, float],
) -> dict[str, float]:
    """The ``spp{n}_...`` entries of one scale set (ratios against R-CNN's in ``out``)."""
    n = len(scales)
    height, width = int(job.image.shape[1]), int(job.image.shape[2])
    factors = image_scale_factors(height, width, scales)
    macs = sum(
        conv_multiply_adds(model, max(1, round(height * f)), max(1, round(width * f)))
        for f in factors
    )
    conv_s, pool_s = timed[f"spp{n}_conv"], timed[f"spp{n}_pool"]
    total = conv_s + pool_s + timed["fc"]
    entries = {
        f"spp{n}_conv_s": conv_s,
        f"spp{n}_pool_s": pool_s,
        f"spp{n}_fc_s": timed["fc"],
        f"spp{n}_total_s": total,
        f"spp{n}_conv_macs": float(macs),
    }
    if job.rcnn:
        entries[f"spp{n}_speedup"] = out["rcnn_total_s"] / total
        entries[f"spp{n}_conv_speedup"] = out["rcnn_conv_s"] / conv_s
        entries[f"spp{n}_mac_ratio"] = out["rcnn_conv_macs"] / macs
    if job.svd_ranks is not None:
        svd_total = conv_s + pool_s + timed["svd_fc"]
        entries[f"spp{n}_svd_total_s"] = svd_total
        if job.rcnn:
            entries[f"spp{n}_svd_speedup"] = out["rcnn_total_s"] / svd_total
    return entries


def _fmt_s(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _fmt_x(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}x"


def _fmt_g(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.3g}"


def detection_table(result: dict[str, float]) -> str:
    """A Table-10-like markdown table of a :func:`time_detection` result.

    Columns: SPP-net for each scale set (and with SVD fc when timed), then R-CNN. Rows:
    conv, pooling, fc and total seconds per image, the speedup against R-CNN, the conv
    speedup, and the conv work in G multiply-adds with R-CNN's ratio to it (the rows
    comparing with R-CNN only when it was timed).

    Args:
        result: the dict :func:`time_detection` returned.

    Returns:
        The table as a string (GitHub markdown), no trailing newline.

    Raises:
        ValueError: ``result`` has no ``spp{n}_conv_s`` entry.
    """
    counts = sorted(int(m.group(1)) for k in result if (m := re.fullmatch(r"spp(\d+)_conv_s", k)))
    if not counts:
        raise ValueError(f"result holds no spp{{n}}_conv_s entry: keys {sorted(result)}")
    has_rcnn = "rcnn_total_s" in result
    columns = [column for n in counts for column in _spp_columns(result, n)]
    if has_rcnn:
        columns.append(_rcnn_column(result))
    rows = [
        [label, *(c[i] for c in columns)]
        for i, label in enumerate(_ROW_LABELS, start=1)
        if has_rcnn or "R-CNN" not in label
    ]
    return markdown_table(["", *(c[0] for c in columns)], rows)


# A column of detection_table: (header, conv, pool, fc, total, speedup, conv speedup, macs,
# mac ratio), the rows below the header labelled:
_ROW_LABELS = (
    "conv time (s)",
    "pooling time (s)",
    "fc6+fc7 time (s)",
    "total time (s)",
    "speedup vs R-CNN",
    "conv speedup vs R-CNN",
    "conv work (G mult-adds)",
    "conv work ratio R-CNN / this",
)


def _spp_columns(result: dict[str, float], n: int) -> list[tuple[str, ...]]:
    """The column of scale set ``n``, and its column with SVD fc when that was timed."""
    get = result.get
    p = f"spp{n}_"
    name = f"SPP ({n}-scale)"
    shared = (_fmt_s(get(p + "conv_s")), _fmt_s(get(p + "pool_s")))
    conv_info = (
        _fmt_x(get(p + "conv_speedup")),
        _fmt_g(get(p + "conv_macs")),
        _fmt_x(get(p + "mac_ratio")),
    )
    fc = (_fmt_s(get("fc_s")), _fmt_s(get(p + "total_s")), _fmt_x(get(p + "speedup")))
    columns = [(name, *shared, *fc, *conv_info)]
    if "svd_fc_s" in result:
        ranks = f"{int(result['svd_rank6']) or '-'}/{int(result['svd_rank7']) or '-'}"
        svd = (
            _fmt_s(get("svd_fc_s")),
            _fmt_s(get(p + "svd_total_s")),
            _fmt_x(get(p + "svd_speedup")),
        )
        columns.append((f"{name} + SVD fc ({ranks})", *shared, *svd, *conv_info))
    return columns


def _rcnn_column(result: dict[str, float]) -> tuple[str, ...]:
    get = result.get
    conv, fc, total = (_fmt_s(get(f"rcnn_{k}_s")) for k in ("conv", "fc", "total"))
    macs = _fmt_g(get("rcnn_conv_macs"))
    return ("R-CNN", conv, "(in conv)", fc, total, "1.0x", "1.0x", macs, "1.0x")
