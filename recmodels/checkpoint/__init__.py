"""Checkpoints: one folder each, ``config.json`` and ``model.safetensors``; nothing is ever unpickled.

- :mod:`~recmodels.checkpoint.io`: saving and loading a folder (:func:`save_checkpoint`, :func:`load_checkpoint`,
  :func:`read_config`);
- :mod:`~recmodels.checkpoint.schema`: ``config.json`` read safely and checked field by field;
- :mod:`~recmodels.checkpoint.weights`: the safetensors header and values checked before a tensor is allocated;
- :mod:`~recmodels.checkpoint.roots`: with checkpoint roots given, every file opened must resolve inside one;
- :mod:`~recmodels.checkpoint.recbole`: a SASRec or BERT4Rec saved by RecBole, converted into a checkpoint.
"""

from recmodels.checkpoint.io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_fingerprint,
    dataset_location,
    load_checkpoint,
    read_config,
    record_in_config,
    save_checkpoint,
)
from recmodels.checkpoint.schema import FORMAT_VERSION, MAX_HISTORY

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "MAX_HISTORY",
    "WEIGHTS_FILE",
    "check_fingerprint",
    "dataset_location",
    "load_checkpoint",
    "read_config",
    "record_in_config",
    "save_checkpoint",
]
