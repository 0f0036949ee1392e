"""Typed settings: a model's hyperparameters (and the trainer's settings) are a dataclass, as nanoGPT's GPTConfig.

:func:`build_config` checks names and JSON-like values against the dataclass's annotations before the dataclass
is built, so ``--set dim=abc``, a misspelt key or a hand-edited ``config.json`` ends in one sentence naming the
key and the accepted ones. Range checks (``dim`` at least 1, ``heads`` dividing ``dim``) stay in each config's
``__post_init__``, next to the model they belong to.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from recmodels.errors import InvalidArgumentError, quote


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
    """Every name must be a field and every value of the field's type; ``owner`` names the config in messages,
    e.g. "model 'din'". Returns the fields' kinds."""
    kinds = field_kinds(config_class)
    accepted = f"it takes {', '.join(kinds)}" if kinds else "it takes none"
    for name, value in values.items():
        if name not in kinds:
            raise InvalidArgumentError(f"{quote(name)} is not a setting of {owner} ({accepted}).")
        if not fits(value, kinds[name]):
            raise InvalidArgumentError(
                f"{name} of {owner} must be {describe(kinds[name])}, got "
                f"{type(value).__name__} {quote(value)} ({accepted})."
            )
    return kinds


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
