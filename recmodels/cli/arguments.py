"""What several commands share: reading ``--set`` values, whole-number argument types, and ``--model-module``."""

from __future__ import annotations

import argparse
import json


def parse_value(text: str):
    """A ``--set`` or ``--grid`` value: JSON where it parses (numbers, true/false, null, lists), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_settings(pairs: list[str]) -> dict:
    """``["lr=0.001", "dim=64"]`` -> ``{"lr": 0.001, "dim": 64}``."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def whole_numbers(text: str, flag: str, high: int, what: str) -> list[int]:
    """A comma-separated list of whole numbers from 1 to ``high`` (blank entries skipped), sorted and each once;
    anything else is one sentence naming ``flag`` and ``what`` the numbers are (e.g. "shortlist sizes")."""
    from recmodels.errors import InvalidArgumentError, quote

    sizes = []
    for part in (part.strip() for part in str(text).split(",")):
        if not part:
            continue
        size = int(part) if part.isascii() and part.isdecimal() and len(part) <= 9 else 0
        if not 1 <= size <= high:
            raise InvalidArgumentError(
                f"{flag} takes {what} from 1 to {high:,} separated by commas, got {quote(part, 40)}."
            )
        sizes.append(size)
    return sorted(set(sizes))


def int_argument(low: int, high: int | None = None, what: str = "a whole number", bounds: str | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``), refused with ``bounds`` or the range in words."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            words = bounds or (f"must be from {low} to {high}" if high is not None else f"must be at least {low}")
            raise argparse.ArgumentTypeError(f"{words}, got {value}")
        return value

    return parse


def float_argument(low: float, high: float, what: str = "a number"):
    """An argparse type: a finite number from ``low`` to ``high`` (NaN and infinities are refused: a benchmark
    given ``--seconds inf`` would never end)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:  # False for NaN too
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text!r}")
        return value

    return parse


def history_length(text: str) -> int:
    """--max-history: refused here, as loading the checkpoint would refuse it later."""
    from recmodels.checkpoint.schema import MAX_HISTORY

    return int_argument(1, MAX_HISTORY)(text)


def add_model_module(
    parser: argparse.ArgumentParser, help: str = "the module (or .py file) of a plugin model the checkpoint names"
) -> None:
    parser.add_argument("--model-module", action="append", metavar="MODULE", help=help)


def import_model_modules(args) -> None:
    """``--model-module``: import the modules the user named, registering the models they define."""
    from recmodels.models import import_model_module

    for spec in args.model_module or []:
        import_model_module(spec)
