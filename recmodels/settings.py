"""Every environment variable that recmodels, its app and its tools read, in one place.

- ``RECMODELS_CHECKPOINT_ROOTS`` (the app): the folders the app may open checkpoints from, separated by
  ``os.pathsep`` (the current folder's ``checkpoints/`` when unset); ``recmodels explore --checkpoint-root`` adds to
  it. Each folder is taken literally: an empty value or entry (``a::b``, a trailing ``:``), which elsewhere would mean
  the current folder, and an entry with spaces around it are refused, never stripped or skipped.
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

from recmodels.errors import InvalidArgumentError, quote


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
    """A list of folders separated by ``os.pathsep`` ([] when unset), each read by :func:`path_entry`: an empty
    value, an empty entry or one with spaces around it is one :class:`InvalidArgumentError` sentence."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a recmodels setting")
    value = os.environ.get(name)
    if value is None:
        return []
    if not value.strip():
        raise InvalidArgumentError(
            f"{name} is set but {'empty' if not value else 'blank'}; unset it for the default, or name the folders "
            f"separated by {os.pathsep!r} (. for the current folder)."
        )
    return [path_entry(part, f"{name} holds", separated=True) for part in value.split(os.pathsep)]


def path_entry(value: str, where: str, separated: bool = False) -> Path:
    """One folder name of a path list or a folder flag, taken literally. Refused, with ``where`` leading the sentence
    (e.g. "--checkpoint-root is"): an empty or blank name, which would silently mean the current folder; spaces around
    it (paths are not stripped, so the spaces are refused rather than guessed at); and, for a name that will be
    written into a path list, ``os.pathsep``, which would split it in two."""
    if not value.strip():
        empty = "an empty entry (two separators in a row, or one at an end)" if separated else "empty"
        raise InvalidArgumentError(
            f"{where} {empty}, which would mean the current folder; name the folder, . for the current one."
        )
    if value != value.strip():
        raise InvalidArgumentError(
            f"{where} {quote(value)}, with spaces around the folder name; paths are taken literally, not stripped, so "
            "remove the spaces."
        )
    if not separated and os.pathsep in value:
        raise InvalidArgumentError(
            f"{where} {quote(value)}, which holds {os.pathsep!r}, the separator of a list of folders; pass the "
            "folders one at a time."
        )
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~name of a user this machine does not have
        raise InvalidArgumentError(
            f"{where} {quote(value)}, whose ~ names no home folder on this machine; write the folder in full."
        ) from None


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
    """Append folders to a path-list variable of this process (and the processes it starts); each one, and what
    the variable already holds, as :func:`paths` reads them."""
    existing = [str(folder) for folder in paths(name)]
    for folder in folders:
        path_entry(folder, "a folder to add is")
    if folders:
        os.environ[name] = os.pathsep.join([*existing, *folders])
