"""Checkpoints: one folder with ``config.json`` and ``model.safetensors``. Nothing is ever unpickled.

``config.json`` holds the model name, hyperparameters, data spec, dataset name and fingerprint, split,
metrics, training history and library version; the weights and feature tables are in safetensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from recmodels.checkpoint.config import CheckpointConfig
from recmodels.checkpoint.roots import inside_roots, resolved_roots
from recmodels.checkpoint.schema import FORMAT_VERSION, MAX_HISTORY, load_config_json, quote, validate_config
from recmodels.checkpoint.weights import (
    check_feature_tables,
    check_index_tables,
    check_values,
    compare_with_model,
    declared_tensors,
    load_tensors,
    read_header,
    refuse_pickle_files,
)
from recmodels.errors import CheckpointError, FingerprintMismatchError
from recmodels.models import build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HANDED_OVER_BYTES = 64 * 1024**2  # tensors this large go to the model without a copy
__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "MAX_HISTORY",
    "WEIGHTS_FILE",
    "CheckpointConfig",
    "check_against_data",
    "check_fingerprint",
    "dataset_location",
    "load_checkpoint",
    "read_config",
    "read_config_json",
    "record_in_config",
    "save_checkpoint",
]


def save_checkpoint(
    path,
    model,
    data,
    training: dict | None = None,
    metrics: dict | None = None,
    history: list | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` trained on ``data`` (a :class:`~recmodels.data.RecData`) to the folder ``path``: its weights
    and feature tables in safetensors, and ``config.json`` with the record of
    :meth:`CheckpointConfig.describe <recmodels.checkpoint.config.CheckpointConfig.describe>` (``training``
    settings, ``metrics`` by part, the per-epoch ``history``, and ``extra`` top-level entries)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = CheckpointConfig.describe(model, data, training, metrics, history, extra).to_json()
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    # write to temporary names first so an interrupted save never leaves a half-written checkpoint
    tmp_weights, tmp_config = folder / (WEIGHTS_FILE + ".tmp"), folder / (CONFIG_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"model": model.name, "fingerprint": data.fingerprint})
    tmp_config.write_text(json.dumps(config, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp_weights, folder / WEIGHTS_FILE)
    os.replace(tmp_config, folder / CONFIG_FILE)
    return folder


def record_in_config(path, key: str, value) -> None:
    """Add (or replace) one top-level entry of a checkpoint's ``config.json``, checked and written atomically; the
    weights are not touched."""
    folder = Path(path)
    config = read_config_json(folder)
    config[key] = value
    validate_config(json.loads(json.dumps(config, default=_json_default)), folder / CONFIG_FILE)
    tmp_config = folder / (CONFIG_FILE + ".tmp")
    tmp_config.write_text(json.dumps(config, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp_config, folder / CONFIG_FILE)


def read_config(path, roots=None) -> CheckpointConfig:
    """The checked ``config.json`` of a checkpoint folder (see :mod:`recmodels.checkpoint.schema`), typed; with
    ``roots`` (folders), only when the folder and the file resolve inside one of them (:mod:`~.roots`)."""
    return CheckpointConfig.from_json(read_config_json(path, roots))


def read_config_json(path, roots=None) -> dict:
    """The checked ``config.json`` of a checkpoint folder as the JSON object it holds (for tools that rewrite it);
    ``roots`` as in :func:`read_config`."""
    roots = resolved_roots(roots)
    folder = inside_roots(path, roots, "checkpoint folder")
    try:
        is_folder, config_path = folder.is_dir(), inside_roots(folder / CONFIG_FILE, roots)
        has_config = is_folder and config_path.is_file()
    except OSError as err:  # a name too long for the file system, ...: quoted short, as it may be huge
        raise CheckpointError(
            f"{quote(str(folder))} cannot be a checkpoint folder ({err.strerror or err}); pass the path of one."
        ) from None
    if not is_folder:
        raise CheckpointError(
            f"{folder} is not a checkpoint folder; pass a folder that holds {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
    if not has_config:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}; it is not a recmodels checkpoint.")
    return validate_config(load_config_json(config_path), config_path)


def dataset_location(config: CheckpointConfig, folder) -> tuple[Path | None, Path | None]:
    """``(data_dir, image_dir)`` of a checkpoint's dataset; a relative path is taken from the checkpoint folder.

    Checkpoints store absolute paths; a relative one was written by hand (e.g. a dataset moved next to the
    checkpoint), and reading it against the checkpoint rather than the working directory keeps it portable.
    """
    base = Path(folder).resolve()

    def locate(value):
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()

    return locate(config.dataset.data_dir), locate(config.dataset.image_dir)


def load_checkpoint(path, device="cpu", data=None, roots=None):
    """Rebuild the model of a checkpoint folder; returns ``(model, config)``.

    When ``data`` (a :class:`~recmodels.data.RecData`) is given, its fingerprint must match the one the
    model was trained with; otherwise :class:`FingerprintMismatchError` says so. Config, sizes, header, dtypes
    and values are all checked before the model is built, so a hostile folder costs no more memory than its
    own weights file. With ``roots`` (folders), every file it opens must resolve inside one of them.
    """
    folder = Path(path)
    config = read_config(folder, roots)
    refuse_pickle_files(folder)
    if data is not None:
        check_fingerprint(config, data.fingerprint, folder)
        check_against_data(config, data, folder / CONFIG_FILE)
    weights_path = inside_roots(folder / WEIGHTS_FILE, resolved_roots(roots))
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}; the checkpoint is incomplete.")
    compare_with_model(weights_path, read_header(weights_path), declared_tensors(config, folder), config.model)
    state = load_tensors(weights_path)
    check_values(weights_path, state)
    if data is not None:
        check_feature_tables(weights_path, state, data)
    else:
        check_index_tables(weights_path, state, config.spec)
    model = build_model(config.model, config.spec, **config.hparams)
    # names, shapes and dtypes were all checked above. The model takes the file's tensors as they are, so that a
    # large table (EASE's B, 2.9 GB at ml-20m) is never held twice; smaller ones are copied into fresh memory
    # first, because the file packs them at unaligned addresses, where vectorised kernels round differently, and a
    # loaded model must score bit for bit as the one that was saved
    state = {name: tensor if tensor.nbytes >= HANDED_OVER_BYTES else tensor.clone() for name, tensor in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if data is not None:
        model.attach_data(data)
    elif getattr(model, "needs_data", False):
        raise CheckpointError(
            f"{folder} reads features from its dataset ({config.dataset.name}); load it "
            "with the data, e.g. RecService.from_checkpoint(path)."
        )
    model.to(device).eval()
    return model, config


def check_against_data(config: CheckpointConfig, data, config_path) -> None:
    """Sizes and history window must be the data's: a matching fingerprint alone can be copied by hand."""
    given = {f"spec.{key}": value for key, value in data.tables.spec().items()}
    given["dataset.max_history"] = data.max_history
    stored = {f"spec.{key}": value for key, value in config.spec.items()}
    stored["dataset.max_history"] = config.dataset.max_history
    for field, value in given.items():
        if stored.get(field) != value:
            raise CheckpointError(
                f"{config_path}: {field} is {quote(stored.get(field))}, but {data.dataset.name} "
                f"gives {quote(value)}; the config was edited or belongs to other data, so restore "
                "it or retrain."
            )


def check_fingerprint(config: CheckpointConfig, fingerprint: str, where="checkpoint") -> None:
    expected = config.dataset.fingerprint
    if expected != fingerprint:
        raise FingerprintMismatchError(
            f"{where} was trained on {config.dataset.name!r} with data fingerprint {expected}, but the "
            f"data given has fingerprint {fingerprint}; load the same dataset, split and max_history, or retrain."
        )


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
