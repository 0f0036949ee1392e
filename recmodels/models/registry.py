"""Model name -> class, as in timm: ``build_model("din", spec, dim=32)``."""
from __future__ import annotations

from ..errors import UnknownModelError

MODEL_REGISTRY: dict[str, type] = {}


def register_model(cls):
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered")
    MODEL_REGISTRY[cls.name] = cls
    return cls


def model_class(name: str):
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"Unknown model {name!r}; choose one of {', '.join(sorted(MODEL_REGISTRY))}.") \
            from None


def build_model(name: str, spec: dict, **hparams):
    return model_class(name)(spec, **hparams)


def available_models() -> list[str]:
    return sorted(MODEL_REGISTRY)
