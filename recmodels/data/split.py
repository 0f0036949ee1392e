"""The temporal splits: per user (each user's timeline cut into train, valid, test), global (one time cut for
valid and one for test, shared by all users) or next item (leave one out: each user's last interaction is test and
the one before it valid, as SASRec's and BERT4Rec's papers and RecBole's ``LS`` ordering judge them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recmodels.errors import DataFormatError, InvalidArgumentError

TRAIN, VALID, TEST = 0, 1, 2
PART_NAMES = {"train": TRAIN, "valid": VALID, "test": TEST}
SPLIT_MODES = ("per_user", "global", "next_item")
NEXT_ITEM_MIN_INTERACTIONS = 3  # one train, one valid, one test; users with fewer stay wholly in train


@dataclass(frozen=True)
class SplitConfig:
    """Fractions taken from the end of the timeline: of each user's interactions (``per_user``), or of all
    interactions at once (``global``); ``next_item`` takes one interaction per user instead and ignores them."""

    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    mode: str = "per_user"

    def __post_init__(self):
        if not (0 <= self.valid_fraction < 1 and 0 <= self.test_fraction < 1
                and self.valid_fraction + self.test_fraction < 1):
            raise InvalidArgumentError(
                "valid_fraction and test_fraction must be in [0, 1) and sum to less than 1, got "
                f"{self.valid_fraction!r} and {self.test_fraction!r}.")
        if self.mode not in SPLIT_MODES:
            raise InvalidArgumentError(f"split mode must be one of {', '.join(SPLIT_MODES)}, got {self.mode!r}.")

    def describe(self) -> str:
        """"the per-user split (valid_fraction 0.1, test_fraction 0.2)", for messages."""
        if self.mode == "next_item":
            return "the next-item split (each user's last interaction is test and the one before it valid)"
        mode = "per-user" if self.mode == "per_user" else self.mode
        return f"the {mode} split (valid_fraction {self.valid_fraction:g}, test_fraction {self.test_fraction:g})"

    def to_dict(self) -> dict:
        # the per-user form stays the two fractions: shipped checkpoints' fingerprints hash this dict
        if self.mode == "next_item":  # the fractions play no part, so they are not recorded
            return {"mode": self.mode}
        out = {"valid_fraction": self.valid_fraction, "test_fraction": self.test_fraction}
        return out if self.mode == "per_user" else {**out, "mode": self.mode}


def split_parts(interactions: pd.DataFrame, config: SplitConfig = SplitConfig()) -> np.ndarray:
    """Label each interaction TRAIN, VALID or TEST with the config's mode."""
    if config.mode == "next_item":
        return next_item_split(interactions)
    return global_split(interactions, config) if config.mode == "global" else temporal_split(interactions, config)


def next_item_split(interactions: pd.DataFrame) -> np.ndarray:
    """Label each user's last interaction TEST, the one before it VALID and the rest TRAIN (leave one out).

    ``interactions`` must be sorted by user, then time, then item (as every loader returns them), so among
    interactions in the same second the one with the larger item id counts as the later. Users with fewer than
    three interactions cannot give one to each part: they stay wholly in train and are not evaluated. Histories
    stay strictly earlier in time than their target (:class:`~recmodels.data.RecData`), so a valid interaction in
    the same second as the test one is not in the test history; it is only left out of the test ranking.
    """
    users = interactions["user"].to_numpy()
    n = len(users)
    part = np.full(n, TRAIN, dtype=np.int8)
    if n == 0:
        return part
    ends = np.flatnonzero(np.r_[users[1:] != users[:-1], True])  # each user's last row
    starts = np.r_[0, ends[:-1] + 1]
    kept = ends[ends - starts + 1 >= NEXT_ITEM_MIN_INTERACTIONS]
    part[kept] = TEST
    part[kept - 1] = VALID
    return part


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


def global_split(interactions: pd.DataFrame, config: SplitConfig = SplitConfig()) -> np.ndarray:
    """Label each interaction TRAIN, VALID or TEST by two time cuts shared by every user.

    Test is every interaction at or after the time of the round(n * test_fraction)-th latest one, valid every
    other one at or after the time of the round(n * (valid_fraction + test_fraction))-th latest. Interactions in
    the same second fall on the same side of a cut, so a part can exceed its fraction by the ties at its cut.
    Users may end up with no train interaction (they joined after the valid cut); evaluation skips them.
    """
    times = interactions["timestamp"].to_numpy()
    n = len(times)
    part = np.full(n, TRAIN, dtype=np.int8)
    ordered = np.sort(times)
    for fraction, label in ((config.valid_fraction + config.test_fraction, VALID), (config.test_fraction, TEST)):
        count = int(np.floor(n * fraction + 0.5))
        if count > 0:
            part[times >= ordered[n - count]] = label
    return part


def check_parts(users: np.ndarray, part: np.ndarray, positive: np.ndarray, config: SplitConfig, where) -> None:
    """Refuse a split that leaves a part with nothing in it: training needs train, early stopping valid and the
    metrics test, and valid and test each need a positive of a user with a train interaction (only those are
    ranked). Without this, such data trained to NaN metrics and a checkpoint that could not recommend. ``positive``
    marks the interactions that count as hits; ``where`` names the data."""
    counts = np.bincount(part, minlength=3)
    has_train = np.zeros(int(users.max(initial=0)) + 1, dtype=bool)
    has_train[users[part == TRAIN]] = True
    problems = [] if counts[TRAIN] else ["train is empty"]
    for name, label in (("valid", VALID), ("test", TEST)):
        if not counts[label]:
            problems.append(f"{name} is empty")
        elif counts[TRAIN] and not (positive & has_train[users])[part == label].any():
            problems.append(f"{name} holds no positive of a user with a train interaction, so nothing to rank")
    if not problems:
        return
    hints = {
        "per_user": "give users more interactions (one with n interactions gives round(n x fraction) to valid and to test and "
        "keeps one in train), or raise --valid-fraction and --test-fraction",
        "global": "interactions in the same second stay on one side of each time cut, so use data spread over more "
        "seconds, other fractions, or --split per_user",
        "next_item": f"give users at least {NEXT_ITEM_MIN_INTERACTIONS} interactions (one each for train, valid "
        "and test)",
    }
    hint = hints[config.mode]
    raise DataFormatError(
        where,
        f"{config.describe()} gives {counts[TRAIN]:,} train, {counts[VALID]:,} valid and {counts[TEST]:,} test "
        f"interactions: {' and '.join(problems)}, but a model needs all three parts to train, stop early and be "
        f"measured; {hint}.",
    )
