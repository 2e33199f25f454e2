"""The built-in data written once: other ranks wait for rank 0's marker."""

from __future__ import annotations

import pytest

from sppnet.classify.builtin_data import shared_builtin_data


def test_other_ranks_wait_for_the_marker(tmp_path):
    (tmp_path / ".complete").write_text("", encoding="utf-8")
    assert shared_builtin_data(tmp_path, (1, 1, 1), rank=1, timeout=1.0) == tmp_path


def test_other_ranks_give_up_after_the_timeout(tmp_path):
    with pytest.raises(TimeoutError, match="rank 0"):
        shared_builtin_data(tmp_path, (1, 1, 1), rank=1, timeout=0.05, poll=0.01)
