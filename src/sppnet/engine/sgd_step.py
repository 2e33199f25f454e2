"""One SGD update with the NaN/inf stop, shared by the classifier and detector loops.

A diverged loss (Sec. 3.1's lr 0.01 can blow up on small data) stops the run *before* the
update, so the weights stay at the last good step; under DDP every process sees every
other's verdict, so they all stop together instead of one hanging in the next all-reduce.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from sppnet.engine.distributed import DistInfo, all_reduce_sum

__all__ = ["NonFiniteLossError", "sgd_step"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped before updating weights.

    Attributes:
        epoch: 1-based epoch where it happened.
        step: 0-based step within that epoch.
        lr: the learning rate in use.
        checkpoint: the last good checkpoint directory (None if none was written yet).
        advice: what to do, naming the options of the command that ran (default: the
            classifier's ``--lr`` and ``--resume``); a run without epochs and checkpoints
            (a detector stage) gives its own.
    """

    def __init__(
        self,
        epoch: int,
        step: int,
        lr: float,
        checkpoint: Path | None,
        advice: str | None = None,
    ) -> None:
        self.epoch, self.step, self.lr, self.checkpoint = epoch, step, lr, checkpoint
        if advice is not None:
            super().__init__(
                f"non-finite training loss at step {step} (lr {lr:g}); the run stopped before "
                f"this step's update. {advice}"
            )
            return
        kept = (
            f"the last good checkpoint is kept at {checkpoint}"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"non-finite training loss at epoch {epoch}, step {step} (lr {lr:g}); the run "
            f"stopped before this step's update and {kept}. Try a lower learning rate "
            "(--lr) and resume (--resume)."
        )


def sgd_step(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    step: int,
    lr: float,
    checkpoint: Path | None = None,
    info: DistInfo | None = None,
    advice: str | None = None,
) -> None:
    """Check ``loss`` is finite (on every process), then zero the gradients, backward, step.

    Args:
        loss: the scalar loss of this step.
        optimizer: the optimizer to step.
        epoch: 1-based epoch, for the error.
        step: 0-based step within the epoch, for the error.
        lr: the learning rate in use, for the error.
        checkpoint: the last good checkpoint, for the error.
        info: the process group under DDP (the verdict is all-reduced); None for one process.
        advice: what the error tells the user to do (see :class:`NonFiniteLossError`).

    Raises:
        NonFiniteLossError: the loss is NaN or infinite here or on another process; no
            weight was changed.
    """
    finite = torch.isfinite(loss.detach()).to(torch.float64).reshape(1)
    world_size = 1
    if info is not None and info.distributed:  # every process must stop together
        all_reduce_sum(finite, info)
        world_size = info.world_size
    if float(finite) < world_size:
        raise NonFiniteLossError(epoch, step, lr, checkpoint, advice)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
