"""Per-image work (proposals) in parallel processes, results in input order (beyond the paper).

OpenCV's selective search and EdgeBoxes use one core per image; a command that needs the
proposals of many images (``train-det``, ``eval-det``, ``detect`` with several images)
hands them to ``--proposal-workers N`` processes with :func:`map_in_processes`. Processes,
not threads: selective search ranks its regions with the process-wide C ``rand()`` (seeded
for each image), which threads would interleave. Each image's boxes depend on that image
alone, so the results equal the serial ones, in the same order.

Usage::

    def work(dataset, i):  # a module-level function: workers import it by name
        return compute_something(dataset[i][0])

    results = map_in_processes(work, dataset, range(len(dataset)), workers=4)
"""

from __future__ import annotations

import multiprocessing
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["iter_in_processes", "map_in_processes"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

# What a worker process holds: the ``state`` given to map_in_processes, set once by the
# pool's initializer (inherited when forked, unpickled once per worker when spawned).
_WORKER_STATE: dict[str, Any] = {}


def _init_worker(state: Any) -> None:
    import signal

    import torch

    # Ctrl-C reaches the whole process group: the parent reports it (one line) and ends
    # the pool; a worker's own KeyboardInterrupt traceback would only clutter the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    torch.set_num_threads(1)  # as in DataLoader workers: one core each
    _WORKER_STATE["state"] = state


def _run_one(job: tuple[Callable[[Any, Any], Any], Any]) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)``; an exception that does not survive
    pickling (e.g. one whose ``__init__`` takes other arguments) travels as a ValueError of
    its message, so the parent still reports it as one line."""
    work, item = job
    try:
        return True, work(_WORKER_STATE["state"], item)
    except Exception as err:
        try:
            pickle.loads(pickle.dumps(err))
        except Exception:
            err = ValueError(str(err))
        return False, err


def map_in_processes(
    work: Callable[[S, T], R],
    state: S,
    items: Sequence[T],
    workers: int,
    *,
    progress: bool = False,
    desc: str = "proposals",
) -> list[R]:
    """``[work(state, item) for item in items]``, spread over ``workers`` processes.

    Forked on Linux (as torch's DataLoader workers are; spawning would re-run a calling
    script that lacks a ``__main__`` guard), spawned elsewhere. Each worker runs torch on
    one thread.

    Args:
        work: a module-level function (workers find it by name) of ``(state, item)``; it
            must not depend on which process runs it or on the order of items.
        state: what every call shares (e.g. the dataset); passed to each worker once.
        items: the inputs, e.g. image indices.
        workers: processes; ``0`` or ``1`` runs everything in this process (no pool).
        progress: a tqdm bar over items.
        desc: the bar's label.

    Returns:
        The results in the order of ``items``.

    Raises:
        ValueError: ``workers`` is not an int >= 0.
        Exception: the first failing item's exception, re-raised here.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="img")
    try:
        workers = min(workers, len(items))
        if workers <= 1:
            results = []
            for item in items:
                results.append(work(state, item))
                if bar is not None:
                    bar.update(1)
            return results
        from concurrent.futures import ProcessPoolExecutor

        method = "fork" if sys.platform == "linux" else "spawn"
        context = multiprocessing.get_context(method)
        # a few chunks per worker: little pickling, and a slow image delays one chunk only
        chunksize = max(1, len(items) // (workers * 4))
        results = []
        pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(state,)
        )
        try:
            for ok, value in pool.map(_run_one, [(work, i) for i in items], chunksize=chunksize):
                if not ok:
                    raise value
                results.append(value)
                if bar is not None:
                    bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on a failure: start no more
        return results
    finally:
        if bar is not None:
            bar.close()


def iter_in_processes(
    work: Callable[[S, T], R], state: S, items: Sequence[T], workers: int
) -> Iterator[R]:
    """:func:`map_in_processes` as a stream: each result as soon as it and those before it
    are done, so the caller works on item ``i`` while the workers compute the next ones.

    Args:
        work, state, items: as for :func:`map_in_processes`.
        workers: processes (>= 1); all items are queued at once (their results are small).

    Yields:
        The results in the order of ``items``.

    Raises:
        ValueError: ``workers`` is not an int >= 1.
        Exception: a failing item's exception, re-raised when its turn comes.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform == "linux" else "spawn"
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(
        min(workers, max(1, len(items))), mp_context=context, initializer=_init_worker,
        initargs=(state,),
    )  # fmt: skip
    try:
        for ok, value in pool.map(_run_one, [(work, i) for i in items]):
            if not ok:
                raise value
            yield value
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
