"""Every environment variable that recmodels, its app and its tools read, in one place.

- ``RECMODELS_CHECKPOINT_ROOTS`` (the app): the folders the app may open checkpoints from, separated by
  ``os.pathsep`` (the current folder's ``checkpoints/`` when unset); ``recmodels explore --checkpoint-root`` adds to
  it.
- ``RECMODELS_WORKERS`` (the service): requests that compute at once in one process (0, the default: no bound).
- ``RECMODELS_TORCH_THREADS`` (the service): torch's intra-op threads (0, the default: torch's own choice).
- ``RECMODELS_CACHE`` (image regions): where region features are cached (default ``.cache/recmodels`` in the
  repository).
- ``RECMODELS_RESNET50_WEIGHTS`` (image regions): torchvision's ResNet-50 ImageNet weights file, never downloaded.
- ``RECMODELS_CHROMIUM`` (``tools/app_browser.py``): the Chromium the browser timings drive (default
  ``/usr/bin/chromium``).

Reading this module costs nothing: it imports no torch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str
    read_by: str
    meaning: str


SETTINGS = {
    setting.name: setting
    for setting in (
        Setting("RECMODELS_CHECKPOINT_ROOTS", "the app", "the folders the app may open checkpoints from"),
        Setting("RECMODELS_WORKERS", "the service", "requests that compute at once in one process (0: no bound)"),
        Setting("RECMODELS_TORCH_THREADS", "the service", "torch's intra-op threads (0: torch's own choice)"),
        Setting("RECMODELS_CACHE", "image regions", "where region features are cached"),
        Setting("RECMODELS_RESNET50_WEIGHTS", "image regions", "torchvision's ResNet-50 ImageNet weights file"),
        Setting("RECMODELS_CHROMIUM", "tools/app_browser.py", "the Chromium the browser timings drive"),
    )
}
CHECKPOINT_ROOTS, WORKERS, TORCH_THREADS, CACHE, RESNET50_WEIGHTS, CHROMIUM = SETTINGS


def text(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a recmodels setting")
    value = os.environ.get(name, "")
    return value if value.strip() else None


def path(name: str) -> Path | None:
    value = text(name)
    return None if value is None else Path(value).expanduser()


def paths(name: str) -> list[Path]:
    """A list of folders separated by ``os.pathsep``; blank entries are skipped."""
    value = text(name) or ""
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def whole_number(name: str, default: int, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``; anything else warns once and gives ``default``."""
    value = text(name)
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        warnings.warn(
            f"{name} must be a whole number from {low} to {high}, got {value!r}; using {default}.", stacklevel=2
        )
        return default
    return number


def add_paths(name: str, folders: list[str]) -> None:
    """Append folders to a path-list variable of this process (and the processes it starts)."""
    existing = [part for part in os.environ.get(name, "").split(os.pathsep) if part.strip()]
    if folders:
        os.environ[name] = os.pathsep.join([*existing, *folders])
