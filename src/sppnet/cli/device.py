"""The one ``--device`` policy of the ``sppnet`` commands.

Every command that computes with a network takes ``--device``: ``cpu``, ``cuda``,
``cuda:N``, ``mps`` or ``auto`` (no other kind torch knows, e.g. ``meta``); ``auto`` (the
default) is ``cuda`` where torch sees a CUDA device, else ``cpu``. The name is checked
before any work (:func:`check_device`) and turned into a torch device name in the handler
(:func:`resolve_device`), the only place torch is loaded.
"""

from __future__ import annotations

import argparse

from sppnet.errors import UserError

__all__ = ["AUTO", "add_device_option", "check_device", "resolve_device"]

AUTO = "auto"
_HELP = "cpu, cuda, cuda:N, mps or auto (default auto: cuda if available, else cpu)"


def add_device_option(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--device DEVICE`` with the shared help; ``note`` is appended (e.g. resume rules).

    The default is None, read as ``auto``, so that a command can tell "not given" apart.
    """
    parser.add_argument("--device", metavar="DEVICE", help=_HELP + note)


def resolve_device(device: str | None) -> str:
    """``device``, with None and ``auto`` turned into ``cuda`` if available, else ``cpu``."""
    if device is None or device == AUTO:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_device(device: str) -> None:
    """``--device`` names a device torch knows and this machine has (``auto`` always does).

    Raises:
        UserError: not ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (torch's other
            kinds, e.g. ``meta``, hold no data: a checkpoint loaded there would look
            damaged), or a CUDA/MPS device this machine lacks.
    """
    if device == AUTO:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        kind = None
    if kind not in ("cpu", "cuda", "mps"):  # meta, xpu, ...: torch names them, we do not run
        raise UserError(
            f"--device {device} is not a device sppnet runs on; use cpu, cuda, cuda:N, mps or auto"
        )
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device here; use --device cpu")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise UserError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: no MPS device here; use --device cpu")
