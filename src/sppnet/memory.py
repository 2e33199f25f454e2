"""Process memory policy: keep freed memory for reuse instead of returning it to the OS.

A detector allocates the same large buffers for every image: the pooled windows
(``R x C * L`` floats, 98 MiB for 2,000 windows of ZF-5), fc6/fc7 activations of tens of
MiB. glibc's malloc serves every block over 32 MiB with a fresh ``mmap`` and returns it with
``munmap`` when freed, so each image page-faults its buffers in again: ~40 ms for 98 MiB
with 4 KiB pages, and 8-160 ms with transparent huge pages (the kernel zeroes, and
sometimes compacts, 2 MiB pages on the fault). Measured on 2 cores, window pooling of
2,000 windows took 19-160 ms per call this way against 13-14 ms when the memory stays
mapped, and one whole image 1.10 s against 0.89 s (``benchmarks/detect_image_speed.py``).

:func:`keep_freed_memory` asks glibc (``mallopt``) to serve large blocks from its heap
(no per-block ``mmap``) and to give the heap back only when over 2 GiB of it lies free:
freed blocks are reused by the next image at no cost. The price is that the process keeps
its peak heap size (up to that much of it free) until it exits, which suits a command that
works through images or epochs and then ends. PyTorch has no caching allocator on the CPU
and no option for this, and a preloaded allocator (jemalloc, tcmalloc) needs the user's
environment: hence these few lines of ``ctypes``.

The ``sppnet`` command applies it at start (``SPPNET_KEEP_FREED_MEMORY=0`` turns it off);
library users call it themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# memory goes back to the OS only when this much lies free at the top of the heap (2 GiB,
# the largest value mallopt takes)
_TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory mapped and reuse it for later allocations.

    Affects blocks allocated after the call, for the whole process (and children forked
    later). Calling it again does nothing more.

    Returns:
        True when the policy is in force: Linux with glibc; False elsewhere (macOS, musl,
        Windows), where nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
