"""Checking numeric options before any work starts: finite, in range, one error naming the parameter.

Every option a user can type goes through :func:`in_range` (or :func:`whole_number`), so a NaN never switches
a feature off silently (``nan < t`` is always false) and an absurd value never reaches the work.
"""

from __future__ import annotations

import math

from hsiseg.errors import HsisegError


def in_range(
    value: float, parameter: str, low: float | None = None, high: float | None = None, *,
    low_open: bool = False, high_open: bool = False,
) -> float:  # fmt: skip
    """``value`` when it is a finite number within [low, high] (``low_open``/``high_open``: bound excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HsisegError(f"{parameter} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise HsisegError(f"{parameter} must be {_interval(low, high, low_open, high_open)}, got {value:g}")
    return float(value)


def whole_number(value: int, parameter: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` when it is an integer within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise HsisegError(f"{parameter} must be a whole number, got {value!r}")
    in_range(value, parameter, low, high)
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'greater than' if low_open else 'at least'} {low:g}"
    if low is None:
        return f"{'less than' if high_open else 'at most'} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
