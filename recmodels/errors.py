"""Errors a user can cause. Each message is one sentence: what was wrong and what to do.

The app shows ``str(error)`` as it is, so messages never carry tracebacks or internal indices.
"""
from __future__ import annotations


class RecModelsError(Exception):
    """Base class for every error this library raises on purpose."""


class DataFormatError(RecModelsError, ValueError):
    """A data file is missing, malformed or of an unknown format."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class UnknownDatasetError(RecModelsError, ValueError):
    """A dataset name or folder that no loader understands."""


class CheckpointError(RecModelsError):
    """A checkpoint folder that is missing, corrupt or written by something else."""


class FingerprintMismatchError(CheckpointError):
    """A checkpoint trained on other data (other ids or another split) than the data given."""


class UnknownModelError(RecModelsError, ValueError):
    """A model name that is not in the registry."""


class UnknownUserError(RecModelsError, LookupError):
    """A user id that the dataset does not have."""

    def __str__(self) -> str:  # LookupError would quote the message
        return self.args[0]


class UnknownItemError(RecModelsError, LookupError):
    """An item id outside the catalogue."""

    def __str__(self) -> str:
        return self.args[0]


class EmptyHistoryError(RecModelsError, ValueError):
    """A user with no interactions, where an explanation needs some."""
