"""Shared timing helpers and inputs for the benchmark commands (not part of the package)."""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from sppnet.memory import keep_freed_memory

__all__ = [
    "add_memory_option",
    "apply_memory_option",
    "environment_line",
    "interleaved_ms",
    "markdown_table",
    "median_ms",
    "random_boxes",
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


def median_ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def interleaved_ms(
    cases: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2
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
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
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
