"""The shared argument checks: (name, value), TypeError for types, ValueError for ranges."""

import math

import numpy as np
import pytest

from sppnet._validate import check_int, check_real


def test_check_int_returns_plain_int():
    assert check_int("n", 3) == 3
    out = check_int("n", np.int64(4), min=1)
    assert out == 4 and type(out) is int
    assert check_int("n", 0, min=0, max=0) == 0


@pytest.mark.parametrize(
    ("value", "kwargs", "exc", "match"),
    [
        (True, {}, TypeError, "n must be an int, got bool True"),
        (1.0, {}, TypeError, "n must be an int, got float 1.0"),
        ("3", {}, TypeError, "n must be an int, got str '3'"),
        (0, {"min": 1}, ValueError, "n must be >= 1, got 0"),
        (5, {"max": 4}, ValueError, "n must be <= 4, got 5"),
    ],
)
def test_check_int_errors(value, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        check_int("n", value, **kwargs)


def test_check_real_returns_plain_float():
    out = check_real("x", np.float32(0.5), min=0, max=1)
    assert out == 0.5 and type(out) is float
    assert check_real("x", 2) == 2.0
    assert math.isinf(check_real("x", math.inf, finite=False))


@pytest.mark.parametrize(
    ("value", "kwargs", "exc", "match"),
    [
        (False, {}, TypeError, "x must be a real number, got bool False"),
        ("0.5", {}, TypeError, "x must be a real number, got str '0.5'"),
        (math.nan, {}, ValueError, "x must be finite, got nan"),
        (-math.inf, {}, ValueError, "x must be finite, got -inf"),
        (0.0, {"positive": True}, ValueError, "x must be a positive number, got 0.0"),
        (-0.1, {"min": 0}, ValueError, "x must be >= 0, got -0.1"),
        (1.5, {"max": 1}, ValueError, "x must be <= 1, got 1.5"),
        (math.nan, {"finite": False, "min": 0}, ValueError, "x must be >= 0, got nan"),
    ],
)
def test_check_real_errors(value, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        check_real("x", value, **kwargs)
