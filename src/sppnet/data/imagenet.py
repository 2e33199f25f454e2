"""The 1,000 ImageNet-1k class names, shipped as package data (``imagenet_classes.txt``).

One line per class in the standard index order (the sorted WordNet ids): ``wnid<TAB>lemmas``,
e.g. ``n02835271<TAB>bicycle-built-for-two, tandem bicycle, tandem``. The short name shown to
users is the first lemma.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_class_names", "imagenet_synsets"]


@lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, str], ...]:
    text = resources.files("sppnet.data").joinpath("imagenet_classes.txt").read_text("utf-8")
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line.strip())
    if len(rows) != 1000 or any(len(r) != 2 for r in rows):
        raise RuntimeError("sppnet/data/imagenet_classes.txt is damaged: reinstall sppnet")
    return rows  # type: ignore[return-value]


def imagenet_class_names(full: bool = False) -> list[str]:
    """The 1,000 class names in index order.

    Args:
        full: all the WordNet lemmas (``"bell cote, bell cot"``) instead of the first one.

    Returns:
        1,000 strings; index ``i`` names logit ``i`` of an ImageNet classifier.
    """
    return [lemmas if full else lemmas.split(",")[0].strip() for _, lemmas in _rows()]


def imagenet_synsets() -> list[str]:
    """The 1,000 WordNet ids (``"n01440764"``, ...) in index order."""
    return [wnid for wnid, _ in _rows()]
