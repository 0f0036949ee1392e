"""Device choice: CUDA when present, unless the caller says otherwise."""

from __future__ import annotations

import torch

from recmodels.errors import InvalidArgumentError, quote


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise InvalidArgumentError(
            f"device must be 'auto', 'cpu' or 'cuda[:N]', got {type(device).__name__} {quote(device)}."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InvalidArgumentError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {quote(device)}.") from None
    if resolved.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device {quote(device)} is not supported; use 'auto', 'cpu' or 'cuda[:N]'.")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(
                "device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"device {quote(device)} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    return resolved


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"
