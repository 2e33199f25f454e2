"""A resumable stage runner: each finished stage leaves a JSON record; a rerun reuses it.

``sppnet demo`` and ``sppnet train-det`` both run named stages that may be interrupted
and rerun. Each stage, when it finishes, writes a *record* (a JSON file, atomically) that
holds a *stamp*: what the result depends on (a format version, the settings). A later
run reuses the stage when its record holds the same stamp, instead of running it again.

Two kinds of record:

- the record keeps the result (``load=None``): ``{**stamp, "seconds": s, "result": r}``,
  for stages whose result is a small JSON value (the demo's ``DIR/stages/<stage>.json``);
- the record is the stamp alone (``load`` given): the stage writes its own files (weights,
  losses) and ``load`` reads them back (train-det's ``DIR/<stage>/settings.json``).

With ``cascade=True`` a stage that runs makes every later stage run too (each depends on
the results before it); a record that exists but holds another stamp is logged with what
changed.

Usage::

    runner = StageRunner(log=print)
    data = runner.run("data", make_data, record=out / "data.json", stamp={"format": 1})
    runner.seconds  # {"data": 12.3}; runner.reused: ["data"] on the second run
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sppnet._atomic import atomic_write_json
from sppnet.engine.safe_load import load_json_file

__all__ = ["StageRunner"]

T = TypeVar("T")
Log = Callable[[str], None]

# Keys a record that keeps its result adds to the stamp.
_RESULT_KEYS = ("seconds", "result")


class StageRunner:
    """Runs stages once each; a stage whose record still holds its stamp is reused.

    Args:
        log: called with the lines of stages run with a ``title`` and with what changed
            in a stale record (``cascade``); ``None`` is quiet.
        cascade: a stage that runs makes every later stage run, and a record with another
            stamp is logged as ``"<stage>: settings changed (...)"``.
        indent: JSON indent of the records.
        allow_nan: whether a record may hold NaN or infinity.

    Attributes:
        seconds: per stage run or reused, in order: its time (a record that keeps its
            result keeps its time too: a reused stage reports the time it took then).
        reused: the stages reused, in order.
        redone: whether a stage has run (with ``cascade``: every later one runs too).
    """

    def __init__(
        self,
        log: Log | None = None,
        *,
        cascade: bool = False,
        indent: int | None = 2,
        allow_nan: bool = True,
    ) -> None:
        self.log: Log = log if log is not None else (lambda _line: None)
        self.cascade = cascade
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []
        self.redone = False
        self._json = {"indent": indent, "allow_nan": allow_nan}

    def run(
        self,
        name: str,
        work: Callable[[], T],
        *,
        record: Path,
        stamp: Mapping[str, Any],
        load: Callable[[], T] | None = None,
        outputs: Sequence[Path] = (),
        title: str | None = None,
    ) -> T:
        """Reuse stage ``name`` if its record holds ``stamp``, else run ``work`` and record it.

        Args:
            name: the stage's name (keys :attr:`seconds`).
            work: computes the result (and, with ``load``, writes the stage's files).
            record: the stage's JSON record.
            stamp: what the result depends on; the record must hold exactly this.
            load: reads a finished stage's result from its own files; ``None``: the result
                is kept in the record (it must then be JSON-serialisable).
            outputs: files the stage writes; missing ones mean it did not finish.
            title: logged as ``"<title> ..."`` before ``work``, ``"<title>: 1.2 s"`` after,
                ``"<title>: finished before (1.2 s then), reused"`` on reuse.

        Returns:
            The result, computed now or reused.
        """
        stored = self._finished(name, record, stamp, outputs, keeps_result=load is None)
        if stored is not None:
            start = time.perf_counter()
            result = stored["result"] if load is None else load()
            seconds = float(stored["seconds"]) if load is None else time.perf_counter() - start
            self.seconds[name] = seconds
            self.reused.append(name)
            if title is not None:
                self.log(f"{title}: finished before ({seconds:.1f} s then), reused")
            return result
        self.redone = True
        if title is not None:
            self.log(f"{title} ...")
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
        kept = dict(stamp) if load is not None else {**stamp, "seconds": seconds, "result": result}
        atomic_write_json(record, kept, **self._json)
        self.seconds[name] = seconds
        if title is not None:
            self.log(f"{title}: {seconds:.1f} s")
        return result

    def _finished(
        self,
        name: str,
        record: Path,
        stamp: Mapping[str, Any],
        outputs: Sequence[Path],
        *,
        keeps_result: bool,
    ) -> dict[str, Any] | None:
        """The stage's record if the stage can be reused, else ``None``."""
        if (self.cascade and self.redone) or not all(p.is_file() for p in outputs):
            return None
        stored = load_json_file(record) if record.is_file() else {}
        held = stored
        if keeps_result:
            held = {k: v for k, v in stored.items() if k not in _RESULT_KEYS}
        complete = not keeps_result or all(k in stored for k in _RESULT_KEYS)
        if complete and held == dict(stamp):
            return stored
        if self.cascade:
            keys = sorted(set(held) | set(stamp))
            detail = ", ".join(
                f"{k} {held.get(k, 'unset')!s:.16} -> {stamp.get(k, 'unset')!s:.16}"
                for k in keys
                if held.get(k) != stamp.get(k)
            )
            self.log(f"{name}: settings changed ({detail}); redoing it and the later stages")
        return None
