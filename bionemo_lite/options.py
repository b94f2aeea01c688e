"""Checking a verb's numeric options before any work: the right type, finite, in range.

Options reach a model from Python, from the CLI's ``--option KEY=VALUE`` (JSON
values) and from HTTP bodies whose family options pass through untyped, so a
model cannot trust ``int(value)``: ``"abc"`` would be a ``ValueError`` (an HTTP
500), ``2.7`` would silently become 2, ``True`` would count as 1 and an
infinite radius would turn every tensor into NaN. Each check raises an
`InvalidInputError` naming the option and the accepted range.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from .errors import InvalidInputError


def _range_text(low: float | None, high: float | None, low_open: bool = False, integer: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {low}..{high}" if integer else f"in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"> {low}" if low_open else f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    record: str | int | None = None,
) -> int:
    """`value` as an ``int`` if it is an integer (not a boolean) within ``low..high``.

    Raises:
        InvalidInputError: naming `name`, the accepted range and the value given.
    """
    accepted = f"{name} must be an integer {_range_text(low, high, integer=True)}".rstrip()
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidInputError(f"{accepted}, got {value!r}", record=record)
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidInputError(f"{accepted}, got {number}", record=record)
    return number


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    record: str | int | None = None,
) -> float:
    """`value` as a ``float`` if it is a finite real number (not a boolean) in range.

    Args:
        low_open: `low` itself is refused (``> low`` rather than ``>= low``).

    Raises:
        InvalidInputError: naming `name`, the accepted range and the value given.
    """
    accepted = f"{name} must be a finite number {_range_text(low, high, low_open)}".rstrip()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidInputError(f"{accepted}, got {value!r}", record=record)
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    if not math.isfinite(number) or too_low or (high is not None and number > high):
        raise InvalidInputError(f"{accepted}, got {number}", record=record)
    return number


def check_seed(value: Any, name: str = "seed", *, record: str | int | None = None) -> int | None:
    """None, or a non-negative integer seed."""
    return None if value is None else check_int(name, value, low=0, record=record)


# Sampling temperatures: below 1e-3 a softmax over log-probabilities is already one-hot whenever the two
# most likely tokens differ by 0.1 nats (exp(-100)), so a lower value changes nothing but can overflow
# float32 logits to inf/NaN (1e-40 did); above 100 the distribution is flat for all practical purposes.
MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 100.0


def check_temperature(value: Any, name: str = "temperature") -> float:
    """A sampling temperature in ``[MIN_TEMPERATURE, MAX_TEMPERATURE]`` (use ``top_k=1`` for greedy)."""
    return check_float(name, value, low=MIN_TEMPERATURE, high=MAX_TEMPERATURE)


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a boolean: ``0`` or ``"false"`` is refused rather than read as False."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidInputError(f"{name} must be true or false, got {value!r}")
