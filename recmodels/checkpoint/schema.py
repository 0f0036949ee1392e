"""Reading ``config.json`` safely and checking it against the checkpoint schema before anything is built.

A config is untrusted input: every field a loader or the app reads is checked for its JSON type and its range
here, and the first problem becomes one :class:`CheckpointError` sentence that names the field, e.g.
``config.json: dataset.max_history must be a whole number from 1 to 10000, got 1000000000000.0; ...``.
Sizes (``spec``) are only checked for shape here; ``checkpoint.load_checkpoint`` compares them with the data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from recmodels.errors import CheckpointError, RecModelsError
from recmodels.models.config import Bound, describe_bound, field_bounds, field_kinds

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "hparams", "spec", "dataset")
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # shipped configs are ~30 kB; a bigger file is not a config
MAX_NESTING = 64  # the schema itself is 5 levels deep
MAX_HISTORY = 10_000  # the longest history window a checkpoint may ask for
MAX_ROWS = 1_000_000_000  # users or items in a spec
MAX_HPARAM_INT = 1_000_000  # a whole-number hyperparameter without declared bounds (a plugin's)
MAX_HPARAM_FLOAT = 1e6
MAX_LIST = 100_000  # names in a spec, epochs in a history
MAX_HPARAM_LIST = 64  # e.g. hidden layer sizes
MAX_TEXT = 4096
QUOTE_CHARS = 60
FIX = "restore config.json from the original checkpoint or retrain"


class SchemaProblem(Exception):
    """One field that breaks the schema; turned into a CheckpointError naming the file."""

    def __init__(self, field: str, expected: str, value=None, show_value: bool = True):
        got = f", got {quote(value)}" if show_value else ""
        super().__init__(f"{field} must be {expected}{got}")

    @classmethod
    def saying(cls, message: str) -> SchemaProblem:
        problem = cls.__new__(cls)
        Exception.__init__(problem, message)
        return problem


def quote(value) -> str:
    """A JSON value as it appears in the file, cut to about 60 characters, with its JSON type."""
    try:
        shown = json.dumps(value, allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        shown = repr(value)
    return f"{cut(shown)} ({json_type(value)})"


def escaped_key(name: str) -> str:
    """An object key from the file as part of a field path: escaped (no newlines) and cut."""
    return cut(json.dumps(name, ensure_ascii=False)[1:-1])


def cut(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


# ---------------------------------------------------------------------------------------------- reading
def load_config_json(config_path: Path) -> dict:
    """Parse a config file with bounded size and nesting; any unreadable file is one CheckpointError."""
    try:
        with open(config_path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise CheckpointError(
            f"{config_path} could not be read ({err.strerror or err}); check the file's permissions or restore it."
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError(
            f"{config_path} is larger than {MAX_CONFIG_BYTES // 2**20} MB, far more than a "
            f"checkpoint config holds; {FIX}."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{config_path} is not UTF-8 text (bad byte at offset {err.start}); the file is corrupt, so {FIX}."
        ) from None
    try:
        config = json.loads(text)
    except RecursionError:
        raise CheckpointError(
            f"{config_path} nests lists or objects too deeply to be a checkpoint config; {FIX}."
        ) from None
    except ValueError as err:  # JSONDecodeError, or an integer literal with thousands of digits
        reason = err.__class__.__name__ if isinstance(err, json.JSONDecodeError) else "a number too long to read"
        raise CheckpointError(
            f"{config_path} is not valid JSON ({reason}); the file is corrupt or truncated, so {FIX}."
        ) from None
    if nesting_depth(config) > MAX_NESTING:
        raise CheckpointError(
            f"{config_path} nests lists or objects more than {MAX_NESTING} levels deep, which "
            f"no checkpoint config does; {FIX}."
        )
    return config


def nesting_depth(value) -> int:
    """Depth of nested lists and objects, without recursion (the value may be 1,000 levels deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                return depth
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


# ---------------------------------------------------------------------------------------------- checking
def validate_config(config, config_path) -> dict:
    """Check ``config`` (parsed JSON) against the schema; returns it unchanged or raises CheckpointError."""
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{config_path} holds {json_type(config)}, not an object; it was not written by recmodels."
        )
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise CheckpointError(f"{config_path} lacks {', '.join(missing)}; it was not written by recmodels.")
    try:
        version = config["format_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SchemaProblem("format_version", f"a whole number such as {FORMAT_VERSION}", version)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{config_path} has format version {version}, newer than this library reads "
                f"({FORMAT_VERSION}); upgrade recmodels."
            )
        if config.get("model_source") is not None:
            check_model_source(config["model_source"])
        model_cls = registered_model("model", config["model"], config.get("model_source"), config_path)
        check_hparams(model_cls, config["hparams"])
        check_spec(config["spec"])
        check_dataset(config["dataset"])
        check_record(config)
    except SchemaProblem as problem:
        raise CheckpointError(f"{config_path}: {problem}; {FIX}.") from None
    return config


def registered_model(field: str, value, source=None, config_path="config.json"):
    """The model class a config names. For a plugin model that is not installed, the sentence says where it came
    from (config.json's "model_source"): that module is never imported from here, the user installs or passes it."""
    from recmodels.models import model_class, registered_models, source_hint

    name = text(field, value, 200)
    try:
        return model_class(name)
    except RecModelsError as err:
        hint = source_hint(source)
        if hint:
            raise CheckpointError(
                f"{config_path}: model '{escaped_key(name)}' is not installed here; {hint}."
            ) from None
        if not str(err).startswith("Unknown model"):  # an installed plugin that failed to load says why
            raise CheckpointError(f"{config_path}: {err}") from None
        raise SchemaProblem(field, f"a registered model ({', '.join(registered_models())})", value) from None


def check_model_source(source) -> None:
    """Where a plugin model came from: {"entry_point", "distribution"} or {"module"}, each text or null."""
    for key, value in mapping("model_source", source).items():
        if key not in ("entry_point", "distribution", "module"):
            raise SchemaProblem.saying(
                f"model_source.{escaped_key(key)} is not a field of model_source (it has "
                "entry_point, distribution and module)"
            )
        if value is not None:
            text(f"model_source.{key}", value, MAX_TEXT)


def check_spec(spec) -> None:
    spec = mapping("spec", spec)
    for key in ("n_users", "n_items", "user_field_names", "genre_names", "n_years"):
        if key not in spec:
            raise SchemaProblem(f"spec.{key}", "present", show_value=False)
    whole("spec.n_users", spec["n_users"], 1, MAX_ROWS)
    whole("spec.n_items", spec["n_items"], 1, MAX_ROWS)
    whole("spec.n_years", spec["n_years"], 1, MAX_ROWS)
    names = texts("spec.user_field_names", spec["user_field_names"])
    texts("spec.genre_names", spec["genre_names"])
    sizes = items("spec.user_field_sizes", spec.get("user_field_sizes", []), MAX_LIST)
    for index, size in enumerate(sizes):
        whole(f"spec.user_field_sizes[{index}]", size, 1, MAX_ROWS)
    if "user_field_sizes" in spec and len(sizes) != len(names):
        raise SchemaProblem("spec.user_field_sizes", f"a list of {len(names)} sizes, one per user field", sizes)


def check_fraction_split(split: dict) -> None:
    """The per-user split (two fractions) or the global one (the same with mode "global")."""
    if set(split) - {"mode"} != {"valid_fraction", "test_fraction"}:
        raise SchemaProblem(
            "dataset.split",
            'an object with exactly valid_fraction and test_fraction (and mode "global" for the global split), '
            'or {"mode": "next_item"}',
            split,
        )
    if "mode" in split and split["mode"] != "global":  # the per-user split is written without a mode
        raise SchemaProblem("dataset.split.mode", '"global" (or left out for the per-user split)', split["mode"])
    fractions = [number(f"dataset.split.{key}", split[key], 0.0, 1.0) for key in ("valid_fraction", "test_fraction")]
    if max(fractions) >= 1 or sum(fractions) >= 1:
        raise SchemaProblem("dataset.split", "two fractions below 1 that sum to less than 1", split)


def check_dataset(dataset) -> None:
    dataset = mapping("dataset", dataset)
    for key in ("name", "split", "max_history", "fingerprint"):
        if key not in dataset:
            raise SchemaProblem(f"dataset.{key}", "present", show_value=False)
    text("dataset.name", dataset["name"], 200)
    text("dataset.fingerprint", dataset["fingerprint"], 64)
    whole("dataset.max_history", dataset["max_history"], 1, MAX_HISTORY)
    for key in ("data_dir", "image_dir"):
        if dataset.get(key) is not None:
            text(f"dataset.{key}", dataset[key], MAX_TEXT)
    split = mapping("dataset.split", dataset["split"])
    if split != {"mode": "next_item"}:  # leave one out takes no fractions
        check_fraction_split(split)
    if dataset.get("citation") is not None:
        text("dataset.citation", dataset["citation"], MAX_TEXT, empty=True)
    if "simulated" in dataset and not isinstance(dataset["simulated"], bool):
        raise SchemaProblem("dataset.simulated", "true or false", dataset["simulated"])
    if "summary" in dataset:
        mapping("dataset.summary", dataset["summary"])


def check_record(config: dict) -> None:
    """What the app and the CLI show: versions, training settings, metrics and the per-epoch history."""
    for key in ("library_version", "created"):
        if config.get(key) is not None:
            text(key, config[key], 200, empty=True)
    training = mapping("training", config.get("training", {}))
    if "monitor" in training:
        text("training.monitor", training["monitor"], 200, empty=True)
    if config.get("collapse_example") is not None and not isinstance(config["collapse_example"], (str, bool)):
        raise SchemaProblem("collapse_example", "text or true/false", config["collapse_example"])
    for part, values in mapping("metrics", config.get("metrics", {})).items():
        measurements(f"metrics.{escaped_key(part)}", values)
    for index, entry in enumerate(items("history", config.get("history", []), MAX_LIST)):
        check_history_entry(f"history[{index}]", entry)
    if config.get("recovery") is not None:
        check_recovery(config["recovery"])


def check_history_entry(field: str, entry) -> None:
    """One record of a training history (config.json's "history", or a line of a run folder's history.jsonl): a
    whole-number epoch (and step, when it has one), and numbers (or null) everywhere the figures read."""
    entry = mapping(field, entry)
    if "epoch" not in entry:
        raise SchemaProblem(f"{field}.epoch", "present", show_value=False)
    whole(f"{field}.epoch", entry["epoch"], 0, MAX_ROWS)
    if "step" in entry:
        whole(f"{field}.step", entry["step"], 0, 2**53)
    measurements(field, {k: entry[k] for k in ("train_loss", "seconds", "rows", "train_seconds") if k in entry})
    measurements(f"{field}.valid", entry.get("valid", {}))
    for name, stats in mapping(f"{field}.attention", entry.get("attention", {})).items():
        measurements(f"{field}.attention.{escaped_key(name)}", stats)
    for layer, stats in mapping(f"{field}.effective_rank", entry.get("effective_rank", {})).items():
        measurements(f"{field}.effective_rank.{escaped_key(layer)}", stats)


RECOVERY_TEXT = ("map", "part", "over")


def check_recovery(recovery) -> None:
    """The planted-cell recovery the model card shows: a few labels, the grid, and objects of measurements (an
    interval is a pair of numbers)."""
    recovery = mapping("recovery", recovery)
    for key, value in recovery.items():
        field = f"recovery.{escaped_key(key)}"
        if key in RECOVERY_TEXT:
            text(field, value, 200)
        elif key == "grid":
            if not (isinstance(value, list) and len(value) == 2):
                raise SchemaProblem(field, "a [rows, columns] pair", value)
            for axis, size in enumerate(value):
                whole(f"{field}[{axis}]", size, 1, 1024)
        else:
            figures = mapping(field, value)
            for name, figure in figures.items():
                if isinstance(figure, list):
                    if len(figure) != 2:
                        raise SchemaProblem(f"{field}.{escaped_key(name)}", "a [low, high] interval", figure)
                    measurements(f"{field}.{escaped_key(name)}", {str(i): v for i, v in enumerate(figure)})
            measurements(field, {name: figure for name, figure in figures.items() if not isinstance(figure, list)})


def measurements(field: str, values) -> None:
    """An object of measured numbers; NaN is allowed here (an undefined metric), null means not measured."""
    for name, value in mapping(field, values).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SchemaProblem(f"{field}.{escaped_key(name)}", "a number or null", value)


# ---------------------------------------------------------------------------------------------- hyperparameters
def check_hparams(model_cls, hparams) -> None:
    """Names must be fields of the model's config class; values must fit the types those fields declare, and the
    range a field declares (:func:`~recmodels.models.config.field_bounds`, the one source ``--set`` reads too);
    a field without one (a plugin's) is held to the generic caps below."""
    hparams = mapping("hparams", hparams)
    declared = field_kinds(model_cls.config_class)
    bounds = field_bounds(model_cls.config_class)
    for name, value in hparams.items():
        if name not in declared:
            takes = f"it takes {', '.join(declared)}" if declared else "it takes none"
            raise SchemaProblem.saying(
                f"hparams.{escaped_key(name)} is not a hyperparameter of model {model_cls.name!r} ({takes})"
            )
        hparam_value(f"hparams.{escaped_key(name)}", value, declared[name], bounds.get(name))


KIND_WORDS = {
    "int": f"a whole number from 0 to {MAX_HPARAM_INT}",
    "float": f"a number within ±{MAX_HPARAM_FLOAT:g}",
    "bool": "true or false",
    "str": "text",
    "null": "null",
}


def hparam_value(field: str, value, kinds: set[str] | None, bound: Bound | None = None) -> None:
    kinds = kinds or {"any"}
    if "any" in kinds:
        kinds = {"int", "float", "bool", "str", "null", "list:int", "list:float", "list:str"}
    if isinstance(value, list):
        element_kinds = {k[5:] for k in kinds if k.startswith("list:")}
        if element_kinds and len(value) <= MAX_HPARAM_LIST:
            for index, element in enumerate(value):
                hparam_value(f"{field}[{index}]", element, element_kinds, bound)
            return
    elif any(fits_kind(value, kind, bound) for kind in kinds):
        return
    listed = any(k.startswith("list:") for k in kinds)
    if bound is not None and listed:  # the range the config declares, as --set words it
        words = [describe_bound(bound, kinds).replace("a list of ", f"a list of at most {MAX_HPARAM_LIST} ", 1)]
    elif bound is not None:
        words = [describe_bound(bound, kinds)]
    else:
        words = [KIND_WORDS[k] for k in sorted(kinds) if k in KIND_WORDS]
        words += [f"a list of at most {MAX_HPARAM_LIST} values"] if listed else []
    raise SchemaProblem(field, " or ".join(words), value)


def fits_kind(value, kind: str, bound: Bound | None = None) -> bool:
    if kind == "null":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int) and (bound.contains(value) if bound else 0 <= value <= MAX_HPARAM_INT)
    if kind == "float":
        if bound is not None:
            return isinstance(value, (int, float)) and bound.contains(value)
        return isinstance(value, (int, float)) and finite_within(value, -MAX_HPARAM_FLOAT, MAX_HPARAM_FLOAT)
    return kind == "str" and isinstance(value, str) and len(value) <= 200


# ---------------------------------------------------------------------------------------------- primitives
def whole(field: str, value, low: int, high: int) -> int:
    """An integer in [low, high]; 50.0, true and "50" are refused (JSON writers never produce them here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SchemaProblem(field, f"a whole number from {low} to {high}", value)
    return value


def number(field: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite_within(value, low, high):
        raise SchemaProblem(field, f"a finite number from {low:g} to {high:g}", value)
    return float(value)


def finite_within(value: int | float, low: float, high: float) -> bool:
    # compared before any float conversion: a 400-digit integer would overflow it
    return low <= value <= high and (isinstance(value, int) or math.isfinite(value))


def text(field: str, value, max_chars: int, empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or empty) or len(value) > max_chars:
        raise SchemaProblem(field, f"{'' if empty else 'non-empty '}text of at most {max_chars} characters", value)
    return value


def mapping(field: str, value) -> dict:
    if not isinstance(value, dict):
        raise SchemaProblem(field, "an object", value)
    return value


def items(field: str, value, max_items: int) -> list:
    if not isinstance(value, list) or len(value) > max_items:
        raise SchemaProblem(field, f"a list of at most {max_items} entries", value)
    return value


def texts(field: str, value) -> list[str]:
    for index, entry in enumerate(items(field, value, MAX_LIST)):
        if not isinstance(entry, str) or len(entry) > MAX_TEXT:
            raise SchemaProblem(f"{field}[{index}]", f"text of at most {MAX_TEXT} characters", entry)
    return value
