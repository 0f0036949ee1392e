"""The checkpoint folders directly inside a folder, as every lister reads them (``list``, ``results``, ``bench``, the
app's picker, the tests): model checkpoints and pipelines apart, because only a model checkpoint has weights and a
:class:`~recmodels.checkpoint.config.CheckpointConfig`."""

from __future__ import annotations

from pathlib import Path

from recmodels.checkpoint.io import CONFIG_FILE
from recmodels.checkpoint.pipeline import is_pipeline

__all__ = ["checkpoint_folders", "model_checkpoint_folders", "pipeline_folders"]


def checkpoint_folders(root) -> list[Path]:
    """Every folder directly inside ``root`` with a config.json, sorted; [] when ``root`` is not a folder."""
    root = Path(root)
    try:
        return sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file()) if root.is_dir() else []
    except OSError:
        return []


def model_checkpoint_folders(root, roots=None) -> list[Path]:
    """The model checkpoints inside ``root`` (pipelines left out)."""
    return [p for p in checkpoint_folders(root) if not is_pipeline(p, roots)]


def pipeline_folders(root, roots=None) -> list[Path]:
    """The pipelines inside ``root``."""
    return [p for p in checkpoint_folders(root) if is_pipeline(p, roots)]
