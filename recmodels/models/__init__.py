"""Models: one file each, sharing :class:`RecModel`'s interface, found and built by name through the registry.

The model files of this package are discovered, not listed here: ``registered_models()`` gives every model's
name in training order, ``model_info(name)`` its facts (title, task, config class, ...).
"""

from recmodels.models.base import RecModel
from recmodels.models.config import Bound, NoConfig, bounded, field_bounds
from recmodels.models.layers import masked_softmax
from recmodels.models.outputs import LEVELS, AttentionMap, AttentionOverride, Batch, InputTap, RecOutput, apply_override
from recmodels.models.registry import (
    ENTRY_POINT_GROUP,
    ModelInfo,
    available_models,
    build_model,
    import_model_module,
    model_class,
    model_info,
    register_model,
    registered_models,
    source_hint,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LEVELS",
    "AttentionMap",
    "AttentionOverride",
    "Batch",
    "Bound",
    "InputTap",
    "ModelInfo",
    "NoConfig",
    "RecModel",
    "RecOutput",
    "apply_override",
    "available_models",
    "bounded",
    "build_model",
    "field_bounds",
    "import_model_module",
    "masked_softmax",
    "model_class",
    "model_info",
    "register_model",
    "registered_models",
    "source_hint",
]
