"""Models: one file each, sharing :class:`RecModel`'s interface, found and built by name through the registry.

The model files of this package are discovered, not listed here: ``registered_models()`` gives every model's
name in training order, ``model_info(name)`` its facts (title, task, config class, ...).
"""
from .base import LEVELS, AttentionMap, AttentionOverride, Batch, InputTap, RecModel, RecOutput, apply_override
from .config import NoConfig
from .layers import masked_softmax
from .registry import (ENTRY_POINT_GROUP, ModelInfo, available_models, build_model, import_model_module, model_class,
                       model_info, register_model, registered_models, source_hint)

__all__ = ["LEVELS", "AttentionMap", "AttentionOverride", "Batch", "InputTap", "RecModel", "RecOutput",
           "apply_override", "masked_softmax", "NoConfig", "ENTRY_POINT_GROUP", "ModelInfo", "available_models",
           "build_model", "import_model_module", "model_class", "model_info", "register_model", "registered_models",
           "source_hint"]
