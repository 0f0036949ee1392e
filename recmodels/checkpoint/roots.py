"""Checkpoint roots: the only folders a caller (the app) lets checkpoints and training runs be read from.

With roots given, every file read from a checkpoint or run folder (``config.json``, ``model.safetensors``,
``history.jsonl``, ``run.json``) is resolved, symlinks followed, and must lie inside one of them; the resolved path is
what is then opened, so a link cannot point elsewhere between the check and the read. Without roots (the library
and the CLI, which open what their user names) nothing is restricted.
"""

from __future__ import annotations

from pathlib import Path

from recmodels.errors import CheckpointError, quote

__all__ = ["inside_roots", "resolved_roots"]


def resolved_roots(roots) -> list[Path] | None:
    """The roots with symlinks resolved (None: no restriction); a root that cannot be resolved is left out."""
    if roots is None:
        return None
    out = []
    for root in roots:
        try:
            out.append(Path(root).resolve())
        except (OSError, RuntimeError, ValueError):
            continue
    return out


def inside_roots(path, roots: list[Path] | None, what: str = "file") -> Path:
    """``path`` resolved when it lies inside one of ``roots`` (from :func:`resolved_roots`); ``path`` as it is when
    ``roots`` is None; else one :class:`CheckpointError` sentence, which does not say where a link leads."""
    path = Path(path)
    if roots is None:
        return path
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long, a NUL
        raise CheckpointError(
            f"{quote(str(path))} could not be resolved (a link loop or a bad name); it was not opened."
        ) from None
    if any(real == root or real.is_relative_to(root) for root in roots):
        return real
    raise CheckpointError(
        f"The {what} {path} lies outside the checkpoint roots once links are followed, so it was not opened; keep "
        "checkpoints and their files inside a root, copied rather than linked."
    )
