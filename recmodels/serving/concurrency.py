"""The thread policy of one process that serves many sessions: how many requests compute at once, and with how
many torch threads each.

Every :class:`~recmodels.serving.service.RecService` call that runs the model takes a slot first. Many small torch ops
collapse when more threads want the cores than there are cores (a single forward went from 0.2 to 140 ms on this
project's 2-core machine with two busy threads), so requests beyond ``workers`` wait for a slot instead of
competing for the cores. ``set_policy`` changes both numbers for the whole process; ``RECMODELS_WORKERS`` and
``RECMODELS_TORCH_THREADS`` set them at import. The defaults were chosen with ``python -m recmodels bench
--concurrency`` (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

import torch

from recmodels import settings
from recmodels.errors import InvalidArgumentError, quote

# measured on an idle 2-core machine (docs/benchmarks.md, "Under load"): the only policy that met both targets (x1.78
# the throughput at 4 clients, p95 x2.8 the idle p50); workers=2 with 1 thread serves more but with a longer tail
DEFAULT_WORKERS = 0  # 0: no bound (every request computes at once)
DEFAULT_TORCH_THREADS = 0  # 0: leave torch's own choice

_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None
_workers = 0
_held = threading.local()  # a call inside a call (explain ranks the catalogue) keeps its one slot


def set_policy(workers: int | None = None, torch_threads: int | None = None) -> None:
    """``workers`` requests compute at once (0: no bound); ``torch_threads`` intra-op threads (0: unchanged)."""
    global _slots, _workers
    for name, value in (("workers", workers), ("torch_threads", torch_threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1024):
            raise InvalidArgumentError(f"{name} must be a whole number from 0 to 1024, got {quote(value)}.")
    with _lock:
        if workers is not None:
            _workers = workers
            _slots = threading.BoundedSemaphore(workers) if workers else None
    if torch_threads:
        torch.set_num_threads(torch_threads)


def policy() -> dict:
    return {"workers": _workers, "torch_threads": torch.get_num_threads()}


@contextmanager
def compute_slot():
    """Hold one of the process's compute slots for the duration (no wait when unbounded or already held)."""
    slots = _slots
    if slots is None or getattr(_held, "depth", 0):
        yield
        return
    with slots:
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0


def computes(method):
    """A service method that runs the model: it takes a compute slot first."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with compute_slot():
            return method(*args, **kwargs)

    return wrapper


set_policy(
    settings.whole_number(settings.WORKERS, DEFAULT_WORKERS, 0, 1024),
    settings.whole_number(settings.TORCH_THREADS, DEFAULT_TORCH_THREADS, 0, 1024),
)
