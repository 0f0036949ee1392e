"""The temporal split: each user's interactions, in time order, go to train, then valid, then test."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

TRAIN, VALID, TEST = 0, 1, 2
PART_NAMES = {"train": TRAIN, "valid": VALID, "test": TEST}


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of each user's interactions, taken from the end of their timeline."""

    valid_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self):
        if not (0 <= self.valid_fraction < 1 and 0 <= self.test_fraction < 1
                and self.valid_fraction + self.test_fraction < 1):
            raise ValueError("valid_fraction and test_fraction must be in [0, 1) and sum to less than 1.")

    def to_dict(self) -> dict:
        return asdict(self)


def temporal_split(interactions: pd.DataFrame, config: SplitConfig = SplitConfig()) -> np.ndarray:
    """Label each interaction TRAIN, VALID or TEST.

    ``interactions`` must be sorted by user, then time (as every loader returns them). Per user with n
    interactions, the last round(n * test_fraction) go to test and the round(n * valid_fraction) before
    them to valid; at least one always stays in train.
    """
    users = interactions["user"].to_numpy()
    n = len(users)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, n])
    n_test = np.floor(counts * config.test_fraction + 0.5).astype(np.int64)
    n_valid = np.floor(counts * config.valid_fraction + 0.5).astype(np.int64)
    n_test = np.minimum(n_test, counts - 1)
    n_valid = np.minimum(n_valid, counts - 1 - n_test)
    position = np.arange(n) - np.repeat(starts, counts)
    count = np.repeat(counts, counts)
    part = np.full(n, TRAIN, dtype=np.int8)
    part[position >= count - np.repeat(n_test + n_valid, counts)] = VALID
    part[position >= count - np.repeat(n_test, counts)] = TEST
    return part
