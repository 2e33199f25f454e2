"""One run at a time in an output folder: a lock file naming its owner's pid and host.

Two ``sppnet train`` (or ``train-det``) processes writing one ``--out`` would replace each
other's checkpoints and caches and both report success. :func:`run_lock` holds
``OUT/.sppnet.lock`` (created exclusively, JSON: ``pid``, ``host``, ``command``, ``started``)
while a run writes there, and removes it when the run ends, however it ends. A lock whose
pid is no longer running on this host is *stale* (a run killed with ``kill -9`` or a power
cut): it is reported with the owner it names and how to clear it (delete the file), never
taken over silently, since a folder on a shared disk can also be locked from another host.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sppnet.errors import UserError

__all__ = ["LOCK_NAME", "run_lock"]

LOCK_NAME = ".sppnet.lock"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _owner(path: Path) -> dict | None:
    """The lock file's record, or None when it cannot be read (being written, damaged)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _refusal(out: Path, path: Path) -> UserError:
    """The error for a lock held (or left behind) by another run."""
    owner = _owner(path)
    if owner is None:
        return UserError(
            f"--out {out} is locked by {path}, which names no readable owner; if no run "
            "writes to this folder, delete that file and run again"
        )
    pid, host = owner.get("pid"), owner.get("host")
    who = (
        f"pid {pid} on host {host}, `{owner.get('command', '?')}` started "
        f"{owner.get('started', '?')}"
    )
    if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return UserError(
            f"--out {out} holds a stale lock {path} of a run that is no longer running "
            f"({who}); if no other run writes to this folder, delete that file and run again "
            "(with --resume to continue that run)"
        )
    return UserError(
        f"--out {out} is in use by another run ({who}): one run at a time writes to a "
        f"folder; wait for it to finish or choose another --out (if that run is gone, "
        f"delete {path})"
    )


@contextmanager
def run_lock(out: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold ``out``'s lock file while the block runs (``out`` is created if needed, and
    removed again if the block leaves it empty).

    Args:
        out: the run's output folder.
        command: what runs, recorded in the lock (``"sppnet train"``).

    Yields:
        The lock file's path.

    Raises:
        UserError: another run holds the lock, or a stale lock is left from a run that is
            no longer running (the message names its pid, host and how to clear it).
    """
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise _refusal(out, path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        yield path
    finally:
        if _owner(path) in (record, None):  # ours (or our unwritten one): remove it
            path.unlink(missing_ok=True)
        if created and not any(out.iterdir()):  # a run refused at once leaves no folder
            out.rmdir()
