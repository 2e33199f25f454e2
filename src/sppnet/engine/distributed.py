"""Multi-process helpers (beyond the paper): ``torchrun`` setup, reduction, sharded work.

``torchrun --nproc_per_node=P -m sppnet train ...`` starts P processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`init_distributed` reads them and joins the process group (gloo on CPU, nccl on CUDA).
Without those variables everything here degrades to one process, so the same training code
runs alone or under ``torchrun``.

The classifier trains with DDP. ``features``, ``train-det`` and ``eval-det`` instead split
their per-image work: :func:`shard_indices` deals the images out, each rank writes its own
files into the shared output folder, :func:`barrier` waits for all of them, and the stages
that need every image run on rank 0 (:func:`all_gather_objects` brings small per-image
results there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "process_group",
    "shard_indices",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank, 0..world_size-1 (rank 0 writes checkpoints and logs).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this machine (selects the GPU).
        device: the torch device this process computes on.
        initialized_here: whether :func:`init_distributed` created the process group (and
            :func:`cleanup_distributed` should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the ``torchrun`` process group if the environment describes one.

    Args:
        device: ``"cpu"`` (gloo backend) or ``"cuda"`` (nccl backend, one GPU per process,
            chosen by ``LOCAL_RANK``); ``"cuda:N"`` is accepted when running alone.

    Returns:
        A :class:`DistInfo`; ``world_size == 1`` when ``WORLD_SIZE`` is unset or 1.

    Raises:
        ValueError: a malformed environment variable, or an unknown device.
        RuntimeError: ``"cuda"`` asked for but CUDA is unavailable.
    """
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    use_cuda = device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch.cuda.is_available() is False")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size <= 1:
        return DistInfo(device=torch.device(device))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, {world_size}), got {rank}")
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    created = False
    if not dist.is_initialized():
        # nccl for GPU tensors; gloo is the backend that supports CPU tensors.
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            init_method="env://",
            world_size=world_size,
            rank=rank,
        )
        created = True
    return DistInfo(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        device=torch_device,
        initialized_here=created,
    )


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "cpu") -> Iterator[DistInfo]:
    """:func:`init_distributed` on entry, :func:`cleanup_distributed` on exit.

    Args:
        device: as for :func:`init_distributed`.

    Yields:
        The :class:`DistInfo` of this process (``world_size == 1`` outside ``torchrun``).
    """
    info = init_distributed(device)
    try:
        yield info
    finally:
        cleanup_distributed(info)


def barrier(info: DistInfo) -> None:
    """Wait for all processes (no-op when alone)."""
    if info.distributed:
        dist.barrier()


def all_reduce_sum(values: Tensor, info: DistInfo) -> Tensor:
    """Sum a tensor over all processes (returns it unchanged when alone).

    Args:
        values: any tensor on ``info.device`` (float64 keeps counts exact).
        info: the process group description.

    Returns:
        The summed tensor (the same object, reduced in place).
    """
    if info.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj`` (picklable, small: per-image results), in rank order.

    Args:
        obj: this process's contribution (tensors in it should be on the CPU).
        info: the process group description.

    Returns:
        ``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` when alone.
    """
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices ``rank, rank + P, rank + 2P, ...`` of ``range(n)``: disjoint, no padding.

    Used for evaluation, where every sample must be counted exactly once (a
    ``DistributedSampler`` pads with repeats so that ranks get equal counts).

    Args:
        n: dataset length.
        rank: this process's rank.
        world_size: number of processes P.

    Returns:
        This rank's indices (some ranks get one fewer when P does not divide n).

    Raises:
        ValueError: ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(range(rank, n, world_size))
