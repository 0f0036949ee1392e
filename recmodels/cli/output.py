"""The commands' output folders (``train --out``, ``--log-dir``, ``synth --out``): checked before the work that fills
them, and cleared of what a failed run wrote.

A folder that could not be written used to fail with a traceback after the whole run; :func:`check_output_folder`
says so in one sentence before anything starts. :class:`WrittenSince` remembers a folder's files so that a run that
fails (a diverged training) can remove exactly what it wrote there. No torch here: ``synth`` imports it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from recmodels.errors import InvalidArgumentError, quote

__all__ = ["WrittenSince", "check_output_folder"]


def check_output_folder(path, flag: str = "--out") -> Path:
    """The folder ``path`` names, if it can be written: an existing folder we may create files in, or a new one
    whose nearest existing parent is such a folder. Creates nothing (a probe file is made and removed at once)."""
    if path is None or not str(path).strip():
        raise InvalidArgumentError(f"{flag} is an empty name; pass a folder to write to.")
    folder = Path(path).expanduser()
    shown = quote(str(folder), 200)
    try:
        existing = folder.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        is_folder = existing.is_dir()
    except OSError as err:  # a loop of links, a name too long
        raise InvalidArgumentError(
            f"{flag} {shown} cannot be used ({err.strerror or err}); pass another folder."
        ) from None
    if not is_folder:
        what = (
            "is a file" if existing == folder.absolute() else f"is inside {quote(str(existing), 200)}, which is a file"
        )
        raise InvalidArgumentError(f"{flag} {shown} {what}, not a folder; pass a new or existing folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise InvalidArgumentError(
            f"{flag} {shown} cannot be written ({err.strerror or err} in {quote(str(existing), 200)}); pass a "
            "folder you can write to."
        ) from None
    return folder


class WrittenSince:
    """The files under a folder now; :meth:`remove_new` later removes the files created or changed since, and the
    folders created since once empty. A folder that does not exist yet is all new."""

    def __init__(self, folder):
        self.folder = None if folder is None else Path(folder)
        self.before = self._state()

    def _state(self) -> dict[Path, tuple[int, int] | None]:
        state: dict[Path, tuple[int, int] | None] = {}
        if self.folder is None or not self.folder.is_dir():
            return state
        for root, folders, files in os.walk(self.folder):
            state[Path(root)] = None
            for name in files:
                path = Path(root) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                state[path] = (stat.st_mtime_ns, stat.st_size)
            state.update((Path(root) / name, None) for name in folders)
        return state

    def remove_new(self) -> list[Path]:
        """Remove what was written since; returns the files removed."""
        removed = []
        now = self._state()
        for path, stamp in now.items():
            if stamp is not None and self.before.get(path) != stamp:
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
        for path in sorted((p for p, s in now.items() if s is None and p not in self.before), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty: a file that was there before stays
        return removed
