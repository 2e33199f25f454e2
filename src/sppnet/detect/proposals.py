"""Proposals of a detection dataset's images: selective search or EdgeBoxes computed once
and cached on disk (shared out over processes and ``torchrun`` ranks), or read from a
folder of precomputed ``<id>.npy`` / ``<id>.json`` files. Used by detector training, the
CLI's ``eval-det`` and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from sppnet.data._paths import inside_root
from sppnet.data.voc import VOCDetection
from sppnet.detect.proposal_workers import map_in_processes
from sppnet.detection.proposals import ProposalCache, load_proposals
from sppnet.engine.distributed import DistInfo, barrier, shard_indices


def _proposal_work(job: tuple[Any, ProposalCache], i: int) -> None:
    """Compute and store the proposals of image ``i`` (in a worker process or here)."""
    dataset, cache = job
    cache.get(dataset.ids[i], lambda: dataset[i][0])


def get_proposals(
    dataset: VOCDetection,
    source: str,
    out: Path,
    max_proposals: int = 2000,
    progress: bool = False,
    max_images: int | None = None,
    *,
    workers: int = 0,
    info: DistInfo | None = None,
) -> dict[str, Tensor]:
    """Proposals of every image: computed and cached, or loaded from ``source/<id>.npy|json``.

    Computed proposals come in two passes: the missing ones are computed and written
    (``workers`` processes, and under ``torchrun`` each rank its share of the images), then
    every image's are read back from the cache. Each image's boxes depend on that image
    alone, so the result is the same however the work was split.

    Args:
        dataset: the images.
        source: ``"selective_search"``, ``"edge_boxes"`` or a directory of precomputed files.
        out: cache root for computed proposals.
        max_proposals: cap per image.
        progress: tqdm bar.
        max_images: only the first N images (an evaluation on part of a split).
        workers: processes computing proposals (:func:`~sppnet.detect.proposal_workers.
            map_in_processes`); 0 or 1: this process.
        info: the ``torchrun`` process group (:func:`~sppnet.engine.distributed.
            init_distributed`): rank r computes images r, r + P, ...; ``None``: alone.

    Returns:
        ``{image_id: Tensor[R, 4]}`` for every image (on every rank).

    Raises:
        FileNotFoundError: a precomputed file is missing (named).
    """
    info = info or DistInfo()
    result: dict[str, Tensor] = {}
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    if source in ("selective_search", "edge_boxes"):
        key = "max_proposals" if source == "selective_search" else "max_boxes"
        cache = ProposalCache(out, source, **{key: max_proposals})
        if info.is_main:
            cache.write_settings()  # once, before any process fills the cache
        barrier(info)
        mine = shard_indices(n, info.rank, info.world_size)
        missing = [i for i in mine if dataset.ids[i] not in cache]
        map_in_processes(_proposal_work, (dataset, cache), missing, workers, progress=progress)
        barrier(info)  # every rank's files are written
        for i in range(n):
            image_id = dataset.ids[i]
            result[image_id] = cache.get(image_id, lambda i=i: dataset[i][0])
        return result
    root = Path(source)
    for i, image_id in enumerate(dataset.ids[:n]):
        path = next(
            (
                root / f"{image_id}{ext}"
                for ext in (".npy", ".json")
                if (root / f"{image_id}{ext}").is_file()
            ),
            None,
        )
        if path is None:
            raise FileNotFoundError(
                f"{root}: no proposals for image {image_id!r} ({image_id}.npy or .json)"
            )
        path = inside_root(root, path.name, source=root, record=f"the proposals of {image_id!r}")
        boxes = load_proposals(path, image_size=dataset.sizes[i])
        result[image_id] = boxes[:max_proposals]
    return result
