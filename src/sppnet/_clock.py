"""Wall-clock readings for stage and benchmark timings that wait for a device's queued work.

CUDA kernels run asynchronously: a clock read right after launching them measures the time
to queue the work, not to do it. :func:`device_clock` waits for the device first.
"""

from __future__ import annotations

import time

import torch

__all__ = ["device_clock"]


def device_clock(device: torch.device | None) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` is done.

    Args:
        device: where the timed work runs; a CUDA device is synchronised first, any other
            device (or None) reads the clock at once.

    Returns:
        Seconds from an arbitrary origin, as ``time.perf_counter()``.
    """
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
