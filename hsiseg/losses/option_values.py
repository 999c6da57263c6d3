"""The values of a loss's options, checked before any data is read: every loss says what each option must be
(:attr:`TreeLoss.option_kinds <hsiseg.losses.base.TreeLoss.option_kinds>`), and :func:`check_option_values`
refuses a value of the wrong type or a number that is not finite and >= 0, naming the option.

Options typed on the command line arrive YAML-parsed (``smooth=nan`` is the text ``'nan'``, ``smooth=.nan`` a
NaN): neither may reach the loss, where the first fails with a type error and the second trains to a NaN loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.losses.base import LOSSES

NUMBER = "number"  # a finite number >= 0
NUMBERS = "numbers"  # a list of finite numbers >= 0
FLAG = "flag"  # true or false


def check_option_values(name: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`HsisegError` naming the first option of loss ``name`` whose value is not what the loss
    takes; ``None`` is accepted where it is the option's default (an option that is off unless given)."""
    kinds = LOSSES.lookup(name).option_kinds
    defaults = LOSSES.options(name)
    for option, value in options.items():
        if value is None and option in defaults and defaults[option] is None:
            continue
        if option in kinds:
            check_value(option, value, kinds[option])


def check_value(option: str, value: Any, kind: str) -> None:
    """One option's value against its kind (:data:`NUMBER`, :data:`NUMBERS` or :data:`FLAG`)."""
    parameter = f"loss option {option!r}"
    if kind == FLAG:
        if not isinstance(value, bool | np.bool_):
            raise HsisegError(f"{parameter} must be true or false, got {value!r}")
    elif kind == NUMBERS:
        items = value.tolist() if isinstance(value, np.ndarray) else value
        if not isinstance(items, list | tuple) or not items or not all(_finite(item) and item >= 0 for item in items):
            raise HsisegError(f"{parameter} must be a list of non-negative finite numbers (e.g. [1, 0.5]), "
                              f"got {value!r}")  # fmt: skip
    elif not _finite(value):
        raise HsisegError(f"{parameter} must be a finite number >= 0, got {value!r}")
    elif value < 0:
        raise HsisegError(f"{parameter} must be >= 0, got {value:g}")


def _finite(value: Any) -> bool:
    """A real number (not a bool, not text), finite."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(value)
