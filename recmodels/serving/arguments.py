"""Checks for the numbers and flags callers pass to the service: one sentence for each bad value."""

from __future__ import annotations

import numbers

import numpy as np

from recmodels.errors import InvalidArgumentError, quote


def whole_number(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; bools, floats and strings are refused rather than coerced."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(
            f"{name} must be a whole number from {low} to {high}, got {type(value).__name__} {quote(value)}."
        )
    if not low <= int(value) <= high:
        raise InvalidArgumentError(f"{name} must be a whole number from {low} to {high}, got {int(value)}.")
    return int(value)


def optional_whole_number(name: str, value, low: int, high: int) -> int | None:
    return None if value is None else whole_number(name, value, low, high)


def flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name} must be True or False, got {type(value).__name__} {quote(value)}.")
    return bool(value)


def identifier(kind: str, value) -> str:
    """A user or item id as the dataset's own string; ids are strings or whole numbers (``196`` is ``"196"``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, numbers.Integral)):
        raise InvalidArgumentError(
            f"{kind} ids are strings or whole numbers, got {type(value).__name__} {quote(value)}."
        )
    return str(value)
