"""Checkpoints: one folder with ``config.json`` and ``model.safetensors``. Nothing is ever unpickled.

``config.json`` holds the model name, hyperparameters, data spec, dataset name and fingerprint, split,
metrics, training history and library version; the weights and feature tables are in safetensors.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import CheckpointError, FingerprintMismatchError, RecModelsError
from .models import build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "hparams", "spec", "dataset")


def save_checkpoint(path, model, data, training: dict | None = None, metrics: dict | None = None,
                    history: list | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` trained on ``data`` (a :class:`~recmodels.data.RecData`) to the folder ``path``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model.name,
        "hparams": model.hparams,
        "spec": model.spec,
        "dataset": {
            "name": data.dataset.name,
            "data_dir": data.dataset.extras.get("data_dir"),
            "fingerprint": data.fingerprint,
            "split": data.split.to_dict(),
            "max_history": data.max_history,
            "summary": data.summary(),
            "citation": data.dataset.citation,
            "simulated": data.dataset.simulated,
        },
        "training": training or {},
        "metrics": metrics or {},
        "history": history or [],
        **(extra or {}),
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    # write to temporary names first so an interrupted save never leaves a half-written checkpoint
    tmp_weights, tmp_config = folder / (WEIGHTS_FILE + ".tmp"), folder / (CONFIG_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"model": model.name, "fingerprint": data.fingerprint})
    tmp_config.write_text(json.dumps(config, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp_weights, folder / WEIGHTS_FILE)
    os.replace(tmp_config, folder / CONFIG_FILE)
    return folder


def read_config(path) -> dict:
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a checkpoint folder; pass a folder that holds {CONFIG_FILE} "
                              f"and {WEIGHTS_FILE}.")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}; it is not a recmodels checkpoint.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON ({err.__class__.__name__}); the file is "
                              "corrupt or truncated, so retrain or restore it.") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(config, dict) or key not in config]
    if missing:
        raise CheckpointError(f"{config_path} lacks {', '.join(missing)}; it was not written by recmodels.")
    if config["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{config_path} has format version {config['format_version']}, newer than this "
                              f"library reads ({FORMAT_VERSION}); upgrade recmodels.")
    return config


def load_checkpoint(path, device="cpu", data=None):
    """Rebuild the model of a checkpoint folder; returns ``(model, config)``.

    When ``data`` (a :class:`~recmodels.data.RecData`) is given, its fingerprint must match the one the
    model was trained with; otherwise :class:`FingerprintMismatchError` says so.
    """
    folder = Path(path)
    config = read_config(folder)
    if data is not None:
        check_fingerprint(config, data.fingerprint, folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}; the checkpoint is incomplete.")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path} could not be read ({str(err).splitlines()[0][:120]}); the file "
                              "is corrupt or truncated, so retrain or restore it.") from None
    try:
        model = build_model(config["model"], config["spec"], **config["hparams"])
    except RecModelsError:
        raise
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{folder}: the stored hyperparameters do not fit model {config['model']!r} "
                              f"({err}); the checkpoint was written by another version.") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{weights_path} does not match model {config['model']!r} ({first[:160]}); the "
                              "checkpoint was written by another version or is corrupt.") from None
    if data is not None:
        model.attach_data(data)
    elif getattr(model, "needs_data", False):
        raise CheckpointError(f"{folder} reads features from its dataset ({config['dataset'].get('name')}); load it "
                              "with the data, e.g. RecService.from_checkpoint(path).")
    model.to(device).eval()
    return model, config


def check_fingerprint(config: dict, fingerprint: str, where="checkpoint") -> None:
    expected = config["dataset"].get("fingerprint")
    if expected != fingerprint:
        raise FingerprintMismatchError(
            f"{where} was trained on {config['dataset'].get('name')!r} with data fingerprint {expected}, but the "
            f"data given has fingerprint {fingerprint}; load the same dataset and split, or retrain.")


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
