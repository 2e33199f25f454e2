"""The process memory policy: freed large blocks stay mapped and are reused (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import sppnet.memory

_CHILD = """
import sys
import numpy as np
from sppnet.memory import keep_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "keep":
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # once is enough; again changes nothing
before = rss_mib()
block = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
del block
after = rss_mib()
print(round(after - before))
"""


def _kept_mib(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_blocks_stay_mapped_only_with_the_policy():
    # without it glibc unmaps a 256 MiB block when it is freed; with it the block stays in
    # the heap for the next allocation
    assert _kept_mib("default") < 64
    assert _kept_mib("keep") > 192


def test_elsewhere_nothing_changes(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    sppnet.memory.keep_freed_memory.cache_clear()
    try:
        assert sppnet.memory.keep_freed_memory() is False
    finally:
        sppnet.memory.keep_freed_memory.cache_clear()


def test_the_command_applies_it_unless_turned_off(monkeypatch):
    from sppnet.cli import app

    calls = []
    monkeypatch.setattr(sppnet.memory, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setenv("SPPNET_KEEP_FREED_MEMORY", "0")
    app._memory_policy()
    assert calls == []
    monkeypatch.delenv("SPPNET_KEEP_FREED_MEMORY")
    app._memory_policy()
    assert calls == [1]
