"""One file per model; all share :class:`RecModel`'s interface and are built by name from the registry."""
import importlib
import importlib.util

from .base import (LEVELS, AttentionMap, AttentionOverride, Batch, InputTap, RecModel, RecOutput, apply_override,
                   masked_softmax)
from .registry import MODEL_REGISTRY, available_models, build_model, model_class, register_model

# importing a model file registers it
for _module in ("baselines", "din", "nrms", "two_tower", "inttower", "acf"):
    if importlib.util.find_spec(f"{__name__}.{_module}") is not None:
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["LEVELS", "AttentionMap", "AttentionOverride", "Batch", "InputTap", "RecModel", "RecOutput",
           "apply_override", "masked_softmax", "MODEL_REGISTRY", "available_models", "build_model", "model_class",
           "register_model"]
