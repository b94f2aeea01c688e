"""`bionemo_lite.options`: the checks every family runs on its numeric options."""

from __future__ import annotations

import numpy as np
import pytest

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.options import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    check_bool,
    check_float,
    check_int,
    check_seed,
    check_temperature,
)


def test_integers_are_returned_as_int_and_numpy_integers_accepted():
    assert check_int("n", 3, low=1, high=5) == 3
    value = check_int("n", np.int64(4), low=1)
    assert value == 4 and type(value) is int


@pytest.mark.parametrize("value", [True, False, 2.0, 2.5, "2", None, float("nan"), [2]])
def test_integers_refuse_other_types_and_booleans(value):
    with pytest.raises(InvalidInputError, match=r"n must be an integer in 1\.\.5, got "):
        check_int("n", value, low=1, high=5)


def test_integer_ranges_name_the_bounds():
    with pytest.raises(InvalidInputError, match=r"^n must be an integer >= 0, got -1$"):
        check_int("n", -1, low=0)
    with pytest.raises(InvalidInputError, match=r"^n must be an integer in 1\.\.5, got 6$"):
        check_int("n", 6, low=1, high=5)
    with pytest.raises(InvalidInputError) as err:
        check_int("n", 0, low=1, record="r1")
    assert err.value.record == "r1"


def test_floats_accept_integers_and_refuse_non_finite_values():
    assert check_float("x", 1, low=0, high=2) == 1.0 and check_float("x", np.float32(0.5)) == 0.5
    for bad in (float("inf"), float("-inf"), float("nan"), "1.0", True, None):
        with pytest.raises(InvalidInputError, match="x must be a finite number"):
            check_float("x", bad)


def test_float_ranges_closed_and_open():
    assert check_float("p", 1.0, low=0.0, high=1.0, low_open=True) == 1.0
    with pytest.raises(InvalidInputError, match=r"^p must be a finite number in \(0\.0, 1\.0\], got 0\.0$"):
        check_float("p", 0.0, low=0.0, high=1.0, low_open=True)
    assert check_float("r", 0.0, low=0.0, high=2.0) == 0.0
    with pytest.raises(InvalidInputError, match=r"^r must be a finite number in \[0\.0, 2\.0\], got 2\.5$"):
        check_float("r", 2.5, low=0.0, high=2.0)
    with pytest.raises(InvalidInputError, match=r"^t must be a finite number > 0, got 0\.0$"):
        check_float("t", 0, low=0, low_open=True)


def test_temperature_range():
    assert check_temperature(MIN_TEMPERATURE) == MIN_TEMPERATURE and check_temperature(MAX_TEMPERATURE) == 100.0
    for bad in (1e-40, MIN_TEMPERATURE / 2, MAX_TEMPERATURE * 2, 0.0):
        with pytest.raises(InvalidInputError, match=r"temperature must be a finite number in \[0\.001, 100\.0\]"):
            check_temperature(bad)


def test_seeds_and_booleans():
    assert check_seed(None) is None and check_seed(7) == 7
    with pytest.raises(InvalidInputError, match="seed must be an integer >= 0, got True"):
        check_seed(True)
    assert check_bool("flag", True) is True and check_bool("flag", np.bool_(False)) is False
    for bad in (0, 1, "false", None):
        with pytest.raises(InvalidInputError, match="flag must be true or false"):
            check_bool("flag", bad)
