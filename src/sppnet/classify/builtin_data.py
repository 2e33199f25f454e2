"""The built-in data of a run, written once even when ``torchrun`` starts several processes.

Rank 0 (or a lone process) generates the data into ``root`` with
:func:`prepare_builtin_data`; the other ranks wait for the
``.complete`` marker it writes last, so no rank reads a half-written folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sppnet._atomic import atomic_write_text
from sppnet.data.synthetic import generate_voc_dataset, make_classification_view

__all__ = ["BUILTIN_WAIT_SECONDS", "prepare_builtin_data", "shared_builtin_data"]

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


def prepare_builtin_data(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    progress: bool = False,
) -> Path:
    """Generate the built-in dataset (once) and its image-folder classification view.

    The classification view holds one crop per non-difficult object, with some context
    (``make_classification_view(crop_objects=True)``): images of every size and aspect
    ratio, one object each. Whole scenes labelled by their largest object are a much
    harder task for a network trained from scratch on a few hundred images (a narrow ZF-5
    stayed at chance for 6 epochs on them, while it learns on the crops).

    Args:
        root: folder to write into; the VOC-layout data goes to ``root/voc`` and the
            classification view (one folder per class, ``splits/*.txt``) to
            ``root/classification``.
        seed: generator seed.
        sizes: images per split, e.g. ``{"train": 300, "val": 100, "test": 200}``; None
            uses the generator's default.
        progress: show the generator's progress bar.

    Returns:
        The classification view's root, ready for ``ClassifierTrainConfig(data=...)``.
    """
    root = Path(root)
    view = root / "classification"
    marker = root / ".complete"
    settings = json.dumps({"seed": seed, "sizes": sizes, "view": "object crops"}, sort_keys=True)
    if marker.is_file() and view.is_dir() and marker.read_text(encoding="utf-8") == settings:
        return view
    kwargs: dict[str, Any] = {"seed": seed, "progress": progress}
    if sizes is not None:
        kwargs["sizes"] = sizes
    # Resumable: finished images are skipped; other settings in root raise a ValueError.
    voc = generate_voc_dataset(root / "voc", **kwargs)
    view = Path(make_classification_view(voc, view, crop_objects=True))
    atomic_write_text(marker, settings)  # written last: other ranks wait for it
    return view
