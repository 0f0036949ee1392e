"""One loaded dataset per (name, location, split, window) for the whole process.

Loading and splitting MovieLens takes seconds; every checkpoint trained on the same data (and every Streamlit
session) shares one :class:`RecData`, which is only read after it is built.
"""
from __future__ import annotations

import threading

from recmodels.data.prepared import RecData

_DATA_CACHE: dict[tuple, RecData] = {}
_DATA_LOCK = threading.Lock()


def load_data_cached(name: str, data_dir, image_dir, split: dict, max_history: int) -> RecData:
    """One RecData per dataset and split for the whole process (checkpoints on the same data share it)."""
    key = (name, str(data_dir), str(image_dir), tuple(sorted(split.items())), int(max_history))
    with _DATA_LOCK:
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = RecData.load(name, data_dir, image_dir=image_dir, split=split,
                                            max_history=max_history)
        return _DATA_CACHE[key]
