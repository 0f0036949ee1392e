"""Checks for the numbers and flags callers pass to the service: one sentence for each bad value."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

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


def folder_path(name: str, value, optional: bool = False) -> Path | None:
    """A folder argument as a Path: a str or an ``os.PathLike`` naming a path (None too when ``optional``); a blank
    name is refused, since it would silently mean the current folder."""
    if value is None and optional:
        return None
    try:
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    except Exception:  # noqa: BLE001 - a PathLike whose __fspath__ fails is refused like any other non-path
        text = None
    if not isinstance(text, str):
        optionally = " (or None)" if optional else ""
        got = "None" if value is None else f"{type(value).__name__} {quote(value)}"
        raise InvalidArgumentError(f"{name} must be a folder, as a str or pathlib.Path{optionally}, got {got}.")
    if not text.strip() or "\x00" in text:
        raise InvalidArgumentError(f"{name} must name a folder, got {quote(text)}; pass the folder's path.")
    return Path(text)


def folder_paths(name: str, value) -> list[Path]:
    """A list (or tuple) of folders, each as :func:`folder_path` reads one; a lone str is refused, not split."""
    if not isinstance(value, (list, tuple)):
        raise InvalidArgumentError(
            f"{name} must be a list of folders, got {type(value).__name__} {quote(value)}; pass [folder, ...]."
        )
    return [folder_path(f"each of {name}", item) for item in value]
