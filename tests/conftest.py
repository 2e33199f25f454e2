"""Shared test fixtures: one torch thread, tiny ZF-5 networks, tiny built-in VOC datasets.

- ``one_thread``: one torch thread for the test (tiny tensors; it avoids oversubscribing a
  loaded 2-core runner). A module opts in with ``pytestmark =
  pytest.mark.usefixtures("one_thread")``.
- ``tiny_zf5(num_classes=3, **kwargs)``: a narrow ZF-5 (width 0.125: 12 to 32 channels,
  fc6/fc7 of 16) in eval mode, its weights seeded without touching the global RNG.
- ``tiny_voc(train=8, test=3, seed=5, max_side=200)``: the built-in VOC-layout scenes,
  generated once per session for each set of arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

# A narrow ZF-5: zf5's smallest input is 29 px; its fc layers are 16 wide.
TINY_ZF5: dict[str, Any] = {"width": 0.125, "fc_dim": 16}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread during the test, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_zf5() -> Callable[..., torch.nn.Module]:
    """Factory of narrow ZF-5 networks: ``tiny_zf5(num_classes=3, *, seed=0, **kwargs)``.

    ``kwargs`` go to :func:`sppnet.models.create_model` over :data:`TINY_ZF5`; the model is
    in eval mode and its weights depend on ``seed`` only (the global RNG is left as it was).
    """
    from sppnet.models import create_model

    def make(num_classes: int = 3, *, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_model("zf5", num_classes=num_classes, **{**TINY_ZF5, **kwargs})
        return model.eval()

    return make


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory of built-in VOC-layout datasets: ``tiny_voc(train=8, test=3, seed=5,
    max_side=200)`` -> its root; each set of arguments is generated once per session.
    Tests that change a dataset's files must copy it first."""
    from sppnet.data.synthetic import generate_voc_dataset

    made: dict[tuple[int, int, int, int], Path] = {}

    def make(train: int = 8, test: int = 3, seed: int = 5, max_side: int = 200) -> Path:
        key = (train, test, seed, max_side)
        if key not in made:
            root = tmp_path_factory.mktemp(f"voc_{train}_{test}_{seed}_{max_side}")
            made[key] = generate_voc_dataset(
                root, sizes={"train": train, "test": test}, seed=seed, max_side=max_side
            )
        return made[key]

    return make
