"""recmodels: attention-based recommenders trained on real interaction data, with every score explained.

The public API, importable from here::

    from recmodels import RecService, RecModel, AttentionMap, load_checkpoint, save_checkpoint

Each name is imported on first use, so ``import recmodels`` (or a light module such as ``recmodels.settings``)
loads no torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from recmodels.version import __version__

# public name -> the module that defines it
_PUBLIC = {
    "RecService": "recmodels.serving.service",
    "load_checkpoint": "recmodels.checkpoint.io",
    "save_checkpoint": "recmodels.checkpoint.io",
    "read_config": "recmodels.checkpoint.io",
    "RecModel": "recmodels.models.base",
    "AttentionMap": "recmodels.models.outputs",
    "Batch": "recmodels.models.outputs",
    "RecOutput": "recmodels.models.outputs",
    "InputTap": "recmodels.models.outputs",
    "apply_override": "recmodels.models.outputs",
    "masked_softmax": "recmodels.models.layers",
    "register_model": "recmodels.models.registry",
    "RecData": "recmodels.data.prepared",
    "SplitConfig": "recmodels.data.split",
    "TrainConfig": "recmodels.train.trainer",
    "train_model": "recmodels.train.trainer",
    "TrainingBatches": "recmodels.train.batches",
    "BatchSettings": "recmodels.train.batches",
    "AttentionMonitor": "recmodels.train.monitor",
    "CollapseThresholds": "recmodels.explain.collapse",
    "RecModelsError": "recmodels.errors",
}
_SUBMODULES = ("viz",)

__all__ = [  # noqa: RUF022 - in the order of _PUBLIC, which a test keeps equal to this list
    "__version__",
    "RecService",
    "load_checkpoint",
    "save_checkpoint",
    "read_config",
    "RecModel",
    "AttentionMap",
    "Batch",
    "RecOutput",
    "InputTap",
    "apply_override",
    "masked_softmax",
    "register_model",
    "RecData",
    "SplitConfig",
    "TrainConfig",
    "train_model",
    "TrainingBatches",
    "BatchSettings",
    "AttentionMonitor",
    "CollapseThresholds",
    "RecModelsError",
    "viz",
]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"recmodels.{name}")
    else:
        raise AttributeError(f"module 'recmodels' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from recmodels import viz
    from recmodels.checkpoint.io import load_checkpoint, read_config, save_checkpoint
    from recmodels.data.prepared import RecData
    from recmodels.data.split import SplitConfig
    from recmodels.errors import RecModelsError
    from recmodels.explain.collapse import CollapseThresholds
    from recmodels.models.base import RecModel
    from recmodels.models.layers import masked_softmax
    from recmodels.models.outputs import AttentionMap, Batch, InputTap, RecOutput, apply_override
    from recmodels.models.registry import register_model
    from recmodels.serving.service import RecService
    from recmodels.train.batches import BatchSettings, TrainingBatches
    from recmodels.train.monitor import AttentionMonitor
    from recmodels.train.trainer import TrainConfig, train_model
