"""The ``name=value, ...`` list that reprs show (``__repr__`` and ``extra_repr``).

It imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

__all__ = ["format_fields"]


def format_fields(**fields: object) -> str:
    """``"a=1, b='x'"``: each keyword as ``name=repr(value)``, in the order given.

    Args:
        **fields: the values to show, under the names to show them by.

    Returns:
        The fields joined by ``", "``; ``""`` when there are none.
    """
    return ", ".join(f"{name}={value!r}" for name, value in fields.items())
