"""Typed settings: a model's hyperparameters (and the trainer's settings) are a dataclass, as nanoGPT's GPTConfig.

:func:`build_config` checks names and JSON-like values against the dataclass's annotations before the dataclass
is built, so ``--set dim=abc``, a misspelt key or a hand-edited ``config.json`` ends in one sentence naming the
key and the accepted ones. Every numeric field carries its accepted range in its metadata (:func:`bounded`), the
one source that ``--set``, ``--grid``, the checkpoint schema and each config's constructor (:func:`check_bounds` in
``__post_init__``) read; :func:`field_bounds` lists them. Checks across fields (``heads`` dividing ``dim``) stay in
each config's ``__post_init__``, next to the model they belong to.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import NamedTuple

from recmodels.errors import InvalidArgumentError, quote

BOUND = "recmodels.bound"  # the metadata key of a field's accepted range

# caps shared by several models' fields; the shipped checkpoints use widths 8 to 256, 2 to 4 heads, 2 layers
MAX_WIDTH = 4096  # any embedding or layer size: wider is far past these models, and past memory on large catalogues
MAX_HEADS = 64
MAX_LAYERS = 48
MAX_POSITIONS = 10_001  # the longest history a checkpoint may ask for (10,000), plus BERT4Rec's mask token
MAX_COMPONENTS = 1024  # component slots per item (ACF: genres; the shipped data has at most 6 per item)
MAX_GRID = 256  # cells along one side of an image's region grid (the shipped backbones give 7)


class Bound(NamedTuple):
    """The accepted range of a numeric setting, ``low`` to ``high``; an open end excludes the value itself (lr > 0).
    For a list (layer sizes) every element must be in range; None passes where the field allows null."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value) -> bool:
        """Whether a single number is in range; NaN, infinities, bools and non-numbers never are."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def describe(self, whole: bool = False, plural: bool = False) -> str:
        """The range in words: "a whole number from 1 to 4096", "a finite number above 0 and at most 10"."""
        low, high = _number(self.low), _number(self.high)
        if whole:
            return f"{'whole numbers' if plural else 'a whole number'} from {low} to {high}"
        what = "finite numbers" if plural else "a finite number"
        if not (self.low_open or self.high_open):
            return f"{what} from {low} to {high}"
        start = f"above {low}" if self.low_open else f"of at least {low}"
        end = f"below {high}" if self.high_open else f"at most {high}"
        return f"{what} {start} and {end}"


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def bounded(default, low, high, *, low_open: bool = False, high_open: bool = False):
    """A dataclass field with its accepted range: ``dim: int = bounded(64, 1, MAX_WIDTH)``."""
    return dataclasses.field(default=default, metadata={BOUND: Bound(low, high, low_open, high_open)})


def field_bounds(config_class) -> dict[str, Bound]:
    """{field name: its :class:`Bound` (low, high, ...)} of a config dataclass (or instance), for the fields that
    declare one; a plugin's config without bounds gives {}."""
    if not dataclasses.is_dataclass(config_class):
        return {}
    return {f.name: f.metadata[BOUND] for f in dataclasses.fields(config_class) if BOUND in f.metadata}


@dataclass
class NoConfig:
    """The config of a model without hyperparameters (MostPopular)."""


def kinds_of(hint) -> set[str]:
    """JSON kinds for a type hint: int, float, bool, str, null, and list:<kind> for lists and tuples."""
    if hint is None or hint is typing.Any:
        return {"any"}
    if hint is type(None):
        return {"null"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(kinds_of(arg) for arg in args))
    if origin in (list, tuple):
        element = next((a for a in args if a is not Ellipsis), None)
        return {f"list:{kind}" for kind in kinds_of(element)}
    names = {int: "int", float: "float", bool: "bool", str: "str"}
    return {names[hint]} if hint in names else {"any"}


def field_kinds(config_class) -> dict[str, set[str]]:
    """{field name: accepted JSON kinds} of a config dataclass, in field order."""
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 - a plugin's unresolvable annotation: accept any JSON value
        hints = {}
    return {f.name: kinds_of(hints.get(f.name)) for f in dataclasses.fields(config_class) if f.init}


def fits(value, kinds: set[str]) -> bool:
    """Whether a JSON-like value has one of the kinds; an int fits a float, a bool fits neither."""
    if "any" in kinds:
        return True
    if isinstance(value, (list, tuple)):
        elements = {k[5:] for k in kinds if k.startswith("list:")}
        return bool(elements) and all(fits(v, elements) for v in value)
    if value is None:
        return "null" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return "int" in kinds or "float" in kinds
    if isinstance(value, float):
        return "float" in kinds
    return isinstance(value, str) and "str" in kinds


KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text", "null": "null"}


def describe(kinds: set[str]) -> str:
    """``{"int", "null"}`` -> "a whole number or null"."""
    words = [KIND_WORDS[k] for k in ("int", "float", "bool", "str", "null") if k in kinds]
    words += [f"a list of {describe({k[5:]})}" for k in sorted(kinds) if k.startswith("list:")]
    return " or ".join(words) or "any value"


def check_values(config_class, values: dict, owner: str) -> dict[str, set[str]]:
    """Every name must be a field, every value of the field's type and within its bounds; ``owner`` names the
    config in messages, e.g. "model 'din'". Returns the fields' kinds."""
    kinds = field_kinds(config_class)
    bounds = field_bounds(config_class)
    accepted = f"it takes {', '.join(kinds)}" if kinds else "it takes none"
    for name, value in values.items():
        if name not in kinds:
            raise InvalidArgumentError(f"{quote(name)} is not a setting of {owner} ({accepted}).")
        if not fits(value, kinds[name]):
            raise InvalidArgumentError(
                f"{name} of {owner} must be {describe(kinds[name])}, got "
                f"{type(value).__name__} {quote(value)} ({accepted})."
            )
        if name in bounds and not within(value, bounds[name]):
            raise InvalidArgumentError(
                f"{name} of {owner} must be {describe_bound(bounds[name], kinds[name])}, got {shown(value)}."
            )
    return kinds


def within(value, bound: Bound) -> bool:
    """A value of a bounded field in range: None (where allowed), a number, or a list of numbers each in range."""
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(bound.contains(element) for element in value)
    return bound.contains(value)


def describe_bound(bound: Bound, kinds: set[str]) -> str:
    """The range in words for a field of these kinds, e.g. "a list of whole numbers from 1 to 4096"."""
    plural = any(kind.startswith("list:") for kind in kinds)
    words = bound.describe(whole=not kinds & {"float", "list:float"}, plural=plural)
    return ("a list of " if plural else "") + words + (" (or null)" if "null" in kinds else "")


def shown(value) -> str:
    """A number (or list) as typed, cut like :func:`quote`: a 400-digit integer does not fill the message."""
    if isinstance(value, int) and value.bit_length() > 192:  # repr of a huge integer is slow, and no help to read
        return f"a whole number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(list(value) if isinstance(value, tuple) else value)
    except ValueError:  # a list holding an integer past Python's 4,300-digit limit
        return "a list with a number too long to show"
    return text if len(text) <= 60 else quote(text)


def check_bounds(config, owner: str | None = None) -> None:
    """The constructor's check (each config's ``__post_init__`` calls it): every bounded field of ``config`` of its
    type and in range, so ``DINConfig(dim=-4)`` fails as ``--set dim=-4`` does."""
    bounds = field_bounds(config)
    check_values(type(config), {name: getattr(config, name) for name in bounds}, owner or type(config).__name__)


def build_config(config_class, values: dict, owner: str):
    """``config_class(**values)`` after :func:`check_values`. Lists become tuples for tuple fields; range errors
    come from the config's ``__post_init__``."""
    kinds = check_values(config_class, values, owner)
    try:
        return config_class(**{name: _shaped(value, kinds[name]) for name, value in values.items()})
    except InvalidArgumentError:
        raise
    except (TypeError, ValueError) as err:  # the config's own range checks (__post_init__)
        raise InvalidArgumentError(f"{owner}: {err}.") from None


def _shaped(value, kinds: set[str]):
    """Ints given for a float field become floats; lists for tuple fields become tuples (hashable, immutable)."""
    if isinstance(value, int) and not isinstance(value, bool) and "float" in kinds and "int" not in kinds:
        return float(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def config_dict(config) -> dict:
    """A config as the JSON object config.json stores ("hparams"): tuples become lists."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in ((f.name, getattr(config, f.name)) for f in dataclasses.fields(config))
    }
