"""Paths read from dataset files stay inside the folder the user named.

A COCO ``file_name``, a VOC ``<filename>``, a split file's image id or a proposal file's name
is text from a file: ``/etc/passwd``, ``../../secret.jpg`` or a symbolic link that leads out
of the folder must not make a training run, an evaluation or ``sppnet convert`` read (or
link, or copy) a file the user never pointed at. :func:`inside_root` is the one check.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from sppnet.errors import UserError

__all__ = ["OutsideRootError", "inside_root"]


class OutsideRootError(UserError):
    """A path named by a dataset file that leads outside its root folder."""


def inside_root(root: str | os.PathLike[str], name: str, *, source: object, record: str) -> Path:
    """``root / name``, refused unless it lies inside ``root`` once resolved.

    Absolute names, ``..`` that climbs out, and symbolic links (the file's or a folder's
    below ``root``) that lead out are refused; ``root`` itself may be a link (a dataset
    folder kept on another disk). The file need not exist.

    Args:
        root: the folder the name is relative to (``--images``, ``ROOT/JPEGImages``, ...).
        name: the relative path read from the file.
        source: the dataset file the name was read from (named in the error).
        record: which record of it (``"images[3] (id 7) file_name"``), named in the error.

    Returns:
        ``Path(root) / name``.

    Raises:
        OutsideRootError: (a ``UserError``) the name leads outside ``root``.
    """
    base = Path(root)

    def refuse(why: str) -> OutsideRootError:
        return OutsideRootError(
            f"{source}: {record} is {name!r}, which leads outside {base} ({why}); a dataset "
            "file may only name files inside the folder its names are relative to (refused, "
            "nothing read): fix the record, or move the file into that folder"
        )

    if "\0" in name:
        raise refuse("it holds a NUL character")
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive:
        raise refuse("an absolute path")
    path = base / name
    try:
        real_root = base.resolve()
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise refuse(f"cannot be resolved ({err})") from None
    if real != real_root and real_root not in real.parents:
        raise refuse(f"it resolves to {real}")
    return path
