"""Pipeline checkpoints: retrieve with one checkpoint, rank the shortlist with another.

A pipeline is a folder with only ``config.json`` (no weights) naming its two stages and the shortlist size N::

    {"format": "recmodels-pipeline", "version": 1, "retriever": "../two_tower-ml100k",
     "ranker": "../din-ml100k", "shortlist": 200,
     "metrics": {"200": {"valid": {"ndcg@10": ...}, "test": {...}}, "100": {...}}}

``metrics`` (optional) holds what ``python -m recmodels pipeline`` measured, keyed by shortlist size: the pipeline's
own N and any others it was asked to sweep (:func:`recmodels.eval.shortlist.evaluate_pipeline`). Stage paths are
stored relative to the pipeline folder (so the three folders move together) and absolute ones are
accepted. The file is untrusted like any config: read with a byte cap and a nesting bound
(:func:`~recmodels.checkpoint.schema.load_config_json`), and each problem is one :class:`CheckpointError` sentence;
stages trained on other data are a :class:`FingerprintMismatchError`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from recmodels.checkpoint.config import CheckpointConfig
from recmodels.checkpoint.io import CONFIG_FILE, read_config
from recmodels.checkpoint.roots import inside_roots, resolved_roots
from recmodels.checkpoint.schema import SchemaProblem, load_config_json, mapping, measurements
from recmodels.checkpoint.schema import quote as quote_json
from recmodels.errors import CheckpointError, FingerprintMismatchError, InvalidArgumentError, quote

PIPELINE_FORMAT = "recmodels-pipeline"
PIPELINE_VERSION = 1
STAGES = ("retriever", "ranker")
KEYS = {"format", "version", *STAGES, "shortlist", "metrics"}
MAX_PATH = 4096
MAX_SWEEP = 64  # shortlist sizes measured in one pipeline file
PARTS = ("valid", "test")
__all__ = ["PIPELINE_FORMAT", "PIPELINE_VERSION", "Pipeline", "is_pipeline", "read_pipeline", "write_pipeline"]


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline: its folder, both stages' folders (resolved against it) and configs, and N."""

    path: Path
    retriever: Path
    ranker: Path
    shortlist: int
    retriever_config: CheckpointConfig
    ranker_config: CheckpointConfig
    metrics: dict = field(default_factory=dict)  # {N: {"valid": {...}, "test": {...}}}, as recorded

    @property
    def n_items(self) -> int:
        return int(self.ranker_config.spec["n_items"])

    def part_metrics(self, part: str, shortlist: int | None = None) -> dict:
        """The recorded metrics of "valid" or "test" at ``shortlist`` (the pipeline's own N by default); {} when
        none were recorded."""
        return dict(self.metrics.get(self.shortlist if shortlist is None else shortlist, {}).get(part) or {})


def _peek_format(config_path: Path, roots) -> object:
    """The ``format`` entry of a config file, or None when it has none (or is not an object)."""
    raw = load_config_json(inside_roots(config_path, roots))
    return raw.get("format") if isinstance(raw, dict) else None


def is_pipeline(path, roots=None) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` says it is a pipeline; a folder that is not one, or that
    cannot be read, is False (reading it as a checkpoint then says what is wrong)."""
    try:
        config_path = Path(path) / CONFIG_FILE
        if not config_path.is_file():
            return False
        return _peek_format(config_path, resolved_roots(roots)) == PIPELINE_FORMAT
    except (CheckpointError, OSError, ValueError):
        return False


def read_pipeline(path, roots=None) -> Pipeline:
    """The checked pipeline in the folder ``path``; with ``roots`` (folders) the pipeline and both stages must
    resolve inside one of them. Each problem is one sentence."""
    roots = resolved_roots(roots)
    folder = inside_roots(Path(path), roots, "pipeline folder")
    config_path = folder / CONFIG_FILE
    try:
        has_config = folder.is_dir() and config_path.is_file()
    except OSError as err:
        raise CheckpointError(
            f"{quote(str(folder))} cannot be a pipeline folder ({err.strerror or err}); pass the path of one."
        ) from None
    if not has_config:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}; it is not a recmodels pipeline.")
    return _checked(load_config_json(inside_roots(config_path, roots)), folder, config_path, roots)


def _checked(raw, folder: Path, config_path: Path, roots) -> Pipeline:
    """The pipeline a config's JSON value describes, every entry checked; stage paths read from ``folder``."""
    fix = "write it again with python -m recmodels pipeline"
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object, got {quote_json(raw)}; {fix}.")
    if raw.get("format") != PIPELINE_FORMAT:
        raise CheckpointError(
            f"{config_path}: format must be {PIPELINE_FORMAT!r}, got {quote_json(raw.get('format'))}; it is not a "
            f"pipeline, so {fix}."
        )
    version = raw.get("version")
    if isinstance(version, bool) or version != PIPELINE_VERSION:
        raise CheckpointError(
            f"{config_path}: version must be {PIPELINE_VERSION}, got {quote_json(version)}; this library reads "
            f"version {PIPELINE_VERSION}, so {fix}."
        )
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise CheckpointError(
            f"{config_path} has entries a pipeline does not have ({', '.join(quote(k) for k in unknown[:5])}); "
            f"a pipeline holds only {', '.join(sorted(KEYS))}, so {fix}."
        )
    stages, configs = {}, {}
    for stage in STAGES:
        stages[stage] = _stage_folder(raw.get(stage), stage, folder, config_path, fix)
        configs[stage] = _stage_config(stages[stage], stage, config_path, roots)
    retriever, ranker = configs["retriever"], configs["ranker"]
    if (retriever.dataset.fingerprint, retriever.dataset.name) != (ranker.dataset.fingerprint, ranker.dataset.name):
        raise FingerprintMismatchError(
            f"{config_path}: the retriever was trained on {retriever.dataset.name!r} (data fingerprint "
            f"{retriever.dataset.fingerprint}) but the ranker on {ranker.dataset.name!r} (data fingerprint "
            f"{ranker.dataset.fingerprint}); both stages must be trained on the same dataset, split and "
            "max_history."
        )
    n_items = int(ranker.spec["n_items"])
    shortlist = check_shortlist(raw.get("shortlist"), n_items, f"{config_path}: shortlist")
    metrics = _recorded(raw.get("metrics", {}), n_items, config_path, fix)
    return Pipeline(folder, stages["retriever"], stages["ranker"], shortlist, retriever, ranker, metrics)


def _recorded(raw, n_items: int, config_path: Path, fix: str) -> dict[int, dict]:
    """The ``metrics`` entry: shortlist sizes (decimal text keys, as JSON keys are) to parts to measured numbers."""
    try:
        recorded = {}
        if len(mapping("metrics", raw)) > MAX_SWEEP:
            raise SchemaProblem("metrics", f"an object of at most {MAX_SWEEP} shortlist sizes", raw, False)
        for key, parts in raw.items():
            size = int(key) if key.isascii() and key.isdecimal() and len(key) <= 9 else 0
            if not 1 <= size <= n_items or str(size) != key:
                raise SchemaProblem.saying(
                    f"metrics keys must be shortlist sizes from 1 to {n_items} written as whole numbers, got "
                    f"{quote_json(key)}"
                )
            for part, values in mapping(f"metrics.{size}", parts).items():
                if part not in PARTS:
                    raise SchemaProblem.saying(f"metrics.{size} holds only valid and test, got {quote_json(part)}")
                measurements(f"metrics.{size}.{part}", values)
            recorded[size] = {part: dict(values) for part, values in parts.items()}
        return recorded
    except SchemaProblem as problem:
        raise CheckpointError(f"{config_path}: {problem}; {fix}.") from None


def check_shortlist(value, n_items: int, where: str = "shortlist") -> int:
    """N as an int from 1 to the catalogue's size; bools, floats (NaN too) and text are refused, not coerced."""
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "NaN" if isinstance(value, float) and math.isnan(value) else quote_json(value)
        raise CheckpointError(f"{where} must be a whole number from 1 to {n_items} (the catalogue), got {shown}.")
    if not 1 <= value <= n_items:
        raise CheckpointError(
            f"{where} must be a whole number from 1 to {n_items} (the catalogue's items), got {value}."
        )
    return value


def _stage_folder(value, stage: str, folder: Path, config_path: Path, fix: str) -> Path:
    if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > MAX_PATH:
        raise CheckpointError(
            f"{config_path}: {stage} must name the {stage}'s checkpoint folder, got {quote_json(value)}; {fix}."
        )
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def _stage_config(path: Path, stage: str, config_path: Path, roots) -> CheckpointConfig:
    try:
        exists = path.is_dir()
    except OSError as err:
        raise CheckpointError(
            f"{config_path}: the {stage} {quote(str(path))} cannot be opened ({err.strerror or err}); point it "
            "at a checkpoint folder."
        ) from None
    if not exists:
        raise CheckpointError(
            f"{config_path}: the {stage} {quote(str(path), 200)} is not a folder; point it at a checkpoint folder "
            "that exists (stage paths are read from the pipeline folder)."
        )
    if is_pipeline(path, roots):
        raise CheckpointError(
            f"{config_path}: the {stage} {quote(str(path), 200)} is itself a pipeline; each stage must be a model "
            "checkpoint."
        )
    try:
        return read_config(path, roots)
    except FingerprintMismatchError:
        raise
    except CheckpointError as err:
        message = str(err)
        message = "t" + message[1:] if message.startswith("The ") else message
        raise CheckpointError(f"The pipeline's {stage} cannot be read: {message}") from None


def write_pipeline(out, retriever, ranker, shortlist, metrics: dict | None = None) -> Pipeline:
    """Write a pipeline folder ``out`` naming ``retriever`` and ``ranker`` (checkpoint folders) and the shortlist
    size, with ``metrics`` ({N: {"valid": {...}, "test": {...}}}) when measured; stage paths are stored relative to
    ``out``. Everything is checked as :func:`read_pipeline` checks it
    before anything is written; the file replaces a previous one atomically. Returns the pipeline written."""
    folder = Path(out)
    stages = {}
    for stage, value in (("retriever", retriever), ("ranker", ranker)):
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise InvalidArgumentError(f"{stage} must be a checkpoint folder, got {quote(value)}.")
        stages[stage] = Path(os.path.abspath(Path(value).expanduser()))  # links kept: they may move with it
    base = Path(os.path.abspath(folder.expanduser()))
    raw = {"format": PIPELINE_FORMAT, "version": PIPELINE_VERSION, **{k: str(v) for k, v in stages.items()}}
    raw["shortlist"] = shortlist
    if metrics:
        raw["metrics"] = {str(size): parts for size, parts in sorted(metrics.items())}
    pipeline = _checked(raw, base, folder / CONFIG_FILE, None)  # absolute paths: the folder may not exist yet
    for stage, path in stages.items():  # relative where that reaches the same folder (no link in between)
        relative = os.path.relpath(path, base)
        if (base / relative).resolve() == path.resolve():
            raw[stage] = relative
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    os.replace(tmp, folder / CONFIG_FILE)
    return pipeline
