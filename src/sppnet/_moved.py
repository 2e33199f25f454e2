"""Old import paths that still work: a name or a module that moved answers at its old
path, with a DeprecationWarning naming the new one.

Only the paths that the README once documented are forwarded. The look-up is by module
name (:func:`importlib.import_module`), so a package forwarding to a higher layer does not
import it until the old path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType

__all__ = ["forward_modules", "moved_name"]


def moved_name(name: str, where: str, moved: Mapping[str, str]) -> object:
    """The object a name that left ``where`` now refers to.

    Args:
        name: the attribute asked for.
        where: the module it was asked of (named in the error and the warning).
        moved: each moved name -> the module that holds it now.

    Returns:
        The object in its new module, after a DeprecationWarning naming that module.

    Raises:
        AttributeError: ``name`` never lived in ``where``.
    """
    if name not in moved:
        raise AttributeError(f"module {where!r} has no attribute {name!r}")
    home = moved[name]
    warnings.warn(
        f"{where}.{name} moved to {home}.{name}; import it from there",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(home), name)


class _Forward(ModuleType):
    """A moved module's old name: each public attribute is looked up in the new module,
    with a DeprecationWarning."""

    def __init__(self, name: str, home: str) -> None:
        super().__init__(name, f"Moved to :mod:`{home}`; import from there.")
        self.__home = home

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        public = getattr(importlib.import_module(self.__home), "__all__", ())
        return moved_name(name, self.__name__, {name: self.__home} if name in public else {})

    def __dir__(self) -> list[str]:
        return sorted(getattr(importlib.import_module(self.__home), "__all__", ()))


class _ForwardFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of moved modules (:func:`forward_modules`)."""

    def __init__(self) -> None:
        self.moved: dict[str, str] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.moved:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _Forward(spec.name, self.moved[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the forwarding module looks names up when asked."""


_FINDER = _ForwardFinder()


def forward_modules(moved: Mapping[str, str]) -> None:
    """Let ``import OLD`` work for each moved module: ``OLD.name`` is ``NEW.name``, with a
    DeprecationWarning at each look-up.

    Args:
        moved: each old module name -> its new module name.
    """
    _FINDER.moved.update(moved)
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
