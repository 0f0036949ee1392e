"""Which checkpoints the app's sessions have open, so that one nobody has open any more is released.

Every session shares one loaded service per checkpoint (``st.cache_resource``); at ml-20m scale that is gigabytes.
A session holds the checkpoints its last two runs opened: the previous run's, because a run starts before it has
opened anything. A checkpoint is released at the first run, in any session, after no live session holds it. A
session is live while Streamlit says so and it has run within :data:`IDLE_SECONDS` (a closed tab is not).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_SECONDS = 30 * 60


@dataclass
class _Session:
    last_run: float
    previous: dict[str, str] = field(default_factory=dict)  # path -> data fingerprint, the run before
    current: dict[str, str] = field(default_factory=dict)  # this run's, so far


class OpenCheckpoints:
    """The process-wide record of who holds which checkpoint. Thread-safe: sessions run on their own threads."""

    def __init__(
        self,
        is_live: Callable[[str], bool] = lambda session: True,
        clock: Callable[[], float] = time.monotonic,
        idle_seconds: float = IDLE_SECONDS,
    ):
        self._is_live, self._clock, self._idle = is_live, clock, idle_seconds
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._loaded: dict[str, str] = {}  # every checkpoint held since it was last released

    def begin_run(self, session: str) -> list[tuple[str, str]]:
        """A run of ``session`` starts. Returns the (path, fingerprint) of each checkpoint nobody holds now,
        which the caller releases; each is returned once."""
        with self._lock:
            now = self._clock()
            state = self._sessions.setdefault(session, _Session(now))
            # a run that opened nothing (stopped by a newer click, or it failed) leaves what the session held
            state.previous, state.current, state.last_run = state.current or state.previous, {}, now
            self._sessions = {
                name: s
                for name, s in self._sessions.items()
                if name == session or (now - s.last_run <= self._idle and self._is_live(name))
            }
            held = {path for s in self._sessions.values() for path in (*s.previous, *s.current)}
            released = [(path, fingerprint) for path, fingerprint in self._loaded.items() if path not in held]
            for path, _ in released:
                del self._loaded[path]
            return released

    def hold(self, session: str, path: str, fingerprint: str) -> None:
        """``session``'s current run has ``path`` open."""
        with self._lock:
            state = self._sessions.setdefault(session, _Session(self._clock()))
            state.current[path] = fingerprint
            self._loaded[path] = fingerprint

    def held(self) -> set[str]:
        with self._lock:
            return set(self._loaded)
