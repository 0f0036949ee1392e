"""Errors a user can cause. Each message is one sentence: what was wrong and what to do.

The app shows ``str(error)`` as it is, so messages never carry tracebacks or internal indices.
"""

from __future__ import annotations

import re

# a quoted value inside a message: '...' or "..." (reprs of file content, ids, config values)
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
MAX_QUOTED = 60
_SEPARATORS = {"'\\t'", "'::'", "'|'", "','"}  # named in format errors, not file content


def quote(value, width: int = MAX_QUOTED) -> str:
    """``repr`` of a value for a message, at most ``width`` characters with an ellipsis, so that a 1 MB id or a
    line of binary junk cannot fill a message."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not turn into a second error
        text = f"<{type(value).__name__}>"
    if len(repr(text)) <= width:
        return repr(text)
    text = text[:width]
    while text and len(repr(text + "…")) > width:  # escapes such as '\x85' take four characters each
        text = text[:-1]
    return repr(text + "…")


class RecModelsError(Exception):
    """Base class for every error this library raises on purpose."""

    def public_message(self) -> str:
        """The sentence to show a browser visitor: the message without anything it quotes from files."""
        return str(self)


class DataFormatError(RecModelsError, ValueError):
    """A data file is missing, malformed or of an unknown format."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{self.where}: {problem}")

    def public_message(self) -> str:
        # a checkpoint's data_dir can point at any file, so a browser never sees what the file holds
        problem = _QUOTED.sub(lambda m: m.group(0) if m.group(0) in _SEPARATORS else "'…'", self.problem)
        return f"{self.where}: {problem} (open the checkpoint in a terminal for the details)."


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


class InvalidArgumentError(RecModelsError, ValueError):
    """An argument of the API (k, n_steps, a batch size, ...) of the wrong type or out of range."""


class NotFiniteError(RecModelsError, ArithmeticError):
    """Numbers that stopped being numbers: a model's scores that are NaN or infinite, so nothing can be ranked."""


class TrainingDivergedError(NotFiniteError):
    """A training run whose loss, gradients or weights are no longer finite; it stops, and nothing of it is kept."""

    def __init__(self, message: str, epoch: int, step: int, setting: str | None = None):
        self.epoch, self.step, self.setting = epoch, step, setting
        super().__init__(message)


class ModelOutputError(RecModelsError, ValueError):
    """A model's forward (or ranking path) returned what the rules of its output do not allow: not a RecOutput,
    scores of the wrong shape or dtype, NaN, or an attention map that does not match its axes or declaration."""


class NotFiniteScoresError(NotFiniteError, ModelOutputError):
    """A model's scores that are NaN or infinite where they are ranked: both numbers that stopped being numbers and
    an output that breaks the model's rules, so either ``except`` catches it."""
