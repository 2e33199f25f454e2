"""Benchmark scripts refuse unusable options at once (exit 2, one error line), before work."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).parents[1] / "benchmarks" / "detection_speed.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU to time")
def test_detection_speed_without_cuda_says_so():
    done = _run("--device", "cuda")
    assert done.returncode == 2
    assert "--device cuda: no CUDA device here" in done.stderr.splitlines()[-1]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device", "tpu"), "unknown device 'tpu'"),
        (("--device", "meta"), "'meta' is not timed here"),
        (("--fc-dim", "512"), "--svd-ranks 1024 256: each rank must be in 0..--fc-dim (512)"),
    ],
)
def test_detection_speed_bad_options(args, message):
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr.splitlines()[-1]
    assert done.stdout == ""
