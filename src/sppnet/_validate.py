"""Argument checks shared by every layer of the package: a bad argument is refused with a
message naming it, what was expected and what came.

Each check takes ``(name, value)`` in that order, returns the value as a plain Python
``int`` / ``float``, and raises ``TypeError`` for a wrong type and ``ValueError`` for a
value out of range; the message names the argument, what was expected and what came.
It imports nothing from the package, so ``ops`` may use it too.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_int", "check_real"]


def check_int(name: str, value: object, *, min: int | None = None, max: int | None = None) -> int:
    """``value`` as an ``int`` after checking it is an integer in ``[min, max]``.

    Args:
        name: the argument's name, for the message.
        value: what came; any integral number but a ``bool`` (numpy integers too).
        min: smallest allowed value, or None.
        max: largest allowed value, or None.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an integer (``bool`` included).
        ValueError: ``value < min`` or ``value > max``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    out = int(value)
    if min is not None and out < min:
        raise ValueError(f"{name} must be >= {min}, got {out}")
    if max is not None and out > max:
        raise ValueError(f"{name} must be <= {max}, got {out}")
    return out


def check_real(
    name: str,
    value: object,
    *,
    min: float | None = None,
    max: float | None = None,
    positive: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a ``float`` after checking it is a real number in range.

    Args:
        name: the argument's name, for the message.
        value: what came; any real number but a ``bool`` (numpy scalars too).
        min: smallest allowed value (inclusive), or None.
        max: largest allowed value (inclusive), or None.
        positive: also require ``value > 0``.
        finite: reject NaN and +-inf.

    Returns:
        ``float(value)``.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` included).
        ValueError: not finite (with ``finite``), not ``> 0`` (with ``positive``), or
            outside ``[min, max]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    out = float(value)
    if finite and not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    if positive and not out > 0:
        raise ValueError(f"{name} must be a positive number, got {out}")
    if min is not None and not out >= min:
        raise ValueError(f"{name} must be >= {min}, got {out}")
    if max is not None and not out <= max:
        raise ValueError(f"{name} must be <= {max}, got {out}")
    return out
