"""The built-in data of a run, written once even when ``torchrun`` starts several processes.

Rank 0 (or a lone process) generates the data into ``root`` with
:func:`~sppnet.classify.train.prepare_builtin_data`; the other ranks wait for the
``.complete`` marker it writes last, so no rank reads a half-written folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["BUILTIN_WAIT_SECONDS", "shared_builtin_data"]

# how long a rank other than 0 waits for rank 0's data (generating 600 images: ~1 min)
BUILTIN_WAIT_SECONDS = 1800.0


def shared_builtin_data(
    root: str | os.PathLike[str],
    sizes: Sequence[int],
    rank: int,
    *,
    log: Callable[[str], None] | None = None,
    timeout: float = BUILTIN_WAIT_SECONDS,
    poll: float = 0.5,
) -> Path:
    """The built-in data in ``root``: rank 0 writes them (once), other ranks wait for them.

    Args:
        root: the data folder (``root/voc`` and ``root/classification`` are written).
        sizes: images per split, ``(train, val, test)``.
        rank: this process's ``torchrun`` rank (0 alone).
        log: called with one line on rank 0 before the data are written (or reused).
        timeout: seconds a rank other than 0 waits.
        poll: seconds between looks for rank 0's ``.complete`` marker.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        TimeoutError: rank 0 did not finish within ``timeout`` seconds.
    """
    root = Path(root)
    if rank == 0:
        from sppnet.classify.train import prepare_builtin_data

        train_n, val_n, test_n = sizes
        if log is not None:
            log(f"built-in data in {root} (generated once)")
        prepare_builtin_data(root, sizes={"train": train_n, "val": val_n, "test": test_n})
        return root
    deadline = time.monotonic() + timeout
    while not (root / ".complete").is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not finish writing {root}")
        time.sleep(poll)
    return root
