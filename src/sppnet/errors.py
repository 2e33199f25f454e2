"""Expected failures: what the ``sppnet`` command reports as one ``error:`` line.

An *expected* failure is the user's input, not a bug: a missing or damaged file, an option
out of range, a device that is not there, an output folder that cannot be written. The
library raises the standard exception that fits (``ValueError`` for a bad value,
``FileNotFoundError`` for a missing file, ...) or, where the message should carry what
happened, which file or option, and how to fix it, a :class:`UserError`. The CLI's single
error boundary (``sppnet.cli.main``) turns every exception of :data:`EXPECTED_ERRORS` into
one line ``error: <message>`` and exit code 2 (a :class:`UserError` may choose another
code); anything else (``RuntimeError``, ``KeyError``, ...) is a bug and keeps its
traceback. ``sppnet --debug`` or ``SPPNET_DEBUG=1`` shows the traceback of expected
failures too.

This module imports nothing heavy: the CLI loads it before torch.
"""

from __future__ import annotations

import errno
import os
import shutil

__all__ = ["EXPECTED_ERRORS", "DamagedFileError", "DiskFullError", "UserError", "is_disk_full"]


class UserError(ValueError):
    """An expected failure whose message says what, which file or option, and how to fix it.

    A ``ValueError``, so code that already catches bad values keeps catching it.

    Attributes:
        exit_code: the exit code of the ``sppnet`` command when this ends it (2).
    """

    exit_code = 2


class DamagedFileError(UserError):
    """A file that exists but cannot be read back: truncated, corrupt, or of the wrong kind.

    Args:
        path: the damaged file.
        detail: what is wrong with it (the reader's own words, shortened).
        fix: how to get a good one; by default "delete it to recompute" (a cache). Give
            e.g. "the checkpoint is damaged: ..." for files that cannot be recomputed.
    """

    def __init__(self, path: str | os.PathLike[str], detail: str, fix: str | None = None) -> None:
        self.path = os.fspath(path)
        self.detail = " ".join(str(detail).split())[:200]
        self.fix = fix or "delete it to recompute"
        super().__init__(f"{self.path} is damaged ({self.detail}), {self.fix}")


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or the user's quota) is full: an ``OSError`` with
    ``ENOSPC`` / ``EDQUOT``, or a writer's own error quoting it (safetensors' ``IoError``)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _free_space(path: str) -> str:
    """``"1.2 GiB free in /data"`` for the nearest existing folder of ``path``."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"free space in {folder} unknown"
    units = [("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)]
    amount = next(((free / size, unit) for unit, size in units if free >= size), (free, "B"))
    return f"{amount[0]:.1f} {amount[1]} free in {folder}"


class DiskFullError(UserError):
    """Writing a file failed for want of disk space; the files written before are intact.

    Args:
        path: the file being written.
        resume: how to go on once there is space (default: run the same command again).
    """

    def __init__(self, path: str | os.PathLike[str], resume: str | None = None) -> None:
        self.path = os.fspath(path)
        super().__init__(
            f"{self.path}: no space left on device while writing it ({_free_space(self.path)}); "
            "the files written before are intact: free some space, then "
            + (resume or "run the same command again")
        )


# What the CLI reports as one line (exit code 2): the standard exceptions the library
# raises for bad input, plus UserError (a ValueError). ImportError: an optional package
# (a weights wheel, OpenCV contrib) is missing and the message names it.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ImportError,
    TimeoutError,
)
