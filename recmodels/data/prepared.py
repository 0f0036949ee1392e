"""A dataset with its split and feature tables, and the leakage-free samples drawn from it.

Every history handed to a model comes from :meth:`RecData.histories` or :meth:`RecData.history_before`:
it holds only the user's interactions with a timestamp strictly earlier than the target's.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recmodels.data.features import FeatureTables, build_feature_tables
from recmodels.data.loaders import load_dataset
from recmodels.data.schema import PAD, InteractionData
from recmodels.data.split import TEST, TRAIN, VALID, SplitConfig, check_parts, split_parts

CTR_DROPPED_RATING = 3.0  # as in the IntTower paper: rating > 3 is a click, rating 3 is ambiguous and dropped
POSITIVE_RATING = 4.0     # top-K positives: test ratings >= 4
WINDOW_CHUNK = 262_144    # rows per block when windows are cut: the temporaries stay ~100 MB at any scale


@dataclass
class Rows:
    """(user, item) rows with the history before each and a label; arrays of equal length N."""

    users: np.ndarray     # (N,) int64
    items: np.ndarray     # (N,) int64
    history: np.ndarray   # (N, T) int32 where the item ids fit (half an epoch's memory), chronological,
                          # right-padded with 0; Batch.from_numpy widens each batch to int64
    labels: np.ndarray    # (N,) float32

    def __len__(self) -> int:
        return len(self.users)

    def take(self, index) -> "Rows":
        return Rows(self.users[index], self.items[index], self.history[index], self.labels[index])


@dataclass
class TopKCases:
    """Everything full-ranking evaluation needs for one part, one entry per evaluated user."""

    users: np.ndarray            # (U,)
    history: np.ndarray          # (U, T): interactions before the user's first one in the part
    seen_indptr: np.ndarray      # CSR over users: items excluded from ranking (train, and valid for test)
    seen_items: np.ndarray
    positive_indptr: np.ndarray  # CSR over users: the part's items rated >= POSITIVE_RATING
    positive_items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


class RecData:
    """A loaded dataset plus its temporal split, feature tables and fingerprint."""

    def __init__(self, dataset: InteractionData, split: SplitConfig = SplitConfig(), max_history: int = 50):
        self.dataset = dataset
        self.split = split
        self.max_history = int(max_history)
        self.part = split_parts(dataset.interactions, split)
        self.tables: FeatureTables = build_feature_tables(dataset, self.part)  # aggregates from TRAIN only
        frame = dataset.interactions
        self._users = frame["user"].to_numpy()
        self._items = frame["item"].to_numpy()
        self._ratings = frame["rating"].to_numpy()
        self._times = frame["timestamp"].to_numpy()
        # one sortable key per (user, time): searchsorted on it finds "strictly earlier" boundaries
        time_rank = _time_order(self._times, dataset.n_users)
        self._time_span = int(time_rank.max()) + 2 if len(time_rank) else 2
        self._key = self._users.astype(np.int64) * self._time_span + time_rank.astype(np.int64)
        self._time_rank = time_rank
        self._user_start = np.searchsorted(self._users, np.arange(dataset.n_users + 2), side="left")
        self.implicit = bool(len(self._ratings) and np.all(self._ratings == self._ratings[0]))
        # with a global cut, users who joined after it have nothing to be ranked from: they are not evaluated
        # (Ji et al., TOIS 2023); the per-user split always keeps one train interaction, so there are none
        self.has_train = np.zeros(dataset.n_users + 1, dtype=bool)
        self.has_train[self._users[self.part == TRAIN]] = True
        self.fingerprint = self._fingerprint()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, name: str = "ml-100k", data_dir: str | Path | None = None, image_dir=None,
             split: SplitConfig | dict | None = None, max_history: int = 50) -> "RecData":
        if isinstance(split, dict):
            split = SplitConfig(**split)
        return cls(load_dataset(name, data_dir, image_dir=image_dir), split or SplitConfig(), max_history)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps({
            "name": self.dataset.name,
            "split": self.split.to_dict(),
            "max_history": self.max_history,  # the window shapes every sample, so metrics hold for one window only
            "tables": self.tables.spec(),
            "user_vocabs": self.tables.user_field_vocabs,
            "years": self.tables.year_vocab,
        }, sort_keys=True).encode())
        for array in (self.dataset.user_ids, self.dataset.item_ids):
            digest.update("\x1f".join(map(str, array)).encode())
        for array in (self._users, self._items, self._times, self.part):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    # ------------------------------------------------------------------ histories
    def histories(self, rows: np.ndarray, max_len: int | None = None, dtype=np.int64) -> np.ndarray:
        """History for each interaction row: the user's items strictly earlier than that row's time."""
        rows = np.asarray(rows, dtype=np.int64)
        end = np.searchsorted(self._key, self._key[rows], side="left")
        return self._window(self._users[rows], end, max_len, dtype)

    def history_before(self, users: np.ndarray, time_rank: np.ndarray, max_len: int | None = None) -> np.ndarray:
        """History of each user with times strictly earlier than the given time ranks."""
        users = np.asarray(users, dtype=np.int64)
        end = np.searchsorted(self._key, users * self._time_span + np.asarray(time_rank), side="left")
        return self._window(users, end, max_len)

    def full_history(self, users: np.ndarray, max_len: int | None = None) -> np.ndarray:
        """Every known interaction of each user (the serving-time view); the most recent ``max_len``."""
        users = np.asarray(users, dtype=np.int64)
        return self._window(users, self._user_start[users + 1], max_len)

    def _window(self, users: np.ndarray, end: np.ndarray, max_len: int | None, dtype=np.int64) -> np.ndarray:
        length = self.max_history if max_len is None else int(max_len)
        windows = np.empty((len(users), length), dtype=dtype)
        offsets, last = np.arange(length)[None, :], len(self._items) - 1
        # in blocks: at 16M rows one pass would hold four rows x T temporaries, 25 GB of int64
        for lo in range(0, len(users), WINDOW_CHUNK):
            hi = lo + WINDOW_CHUNK
            index = np.maximum(self._user_start[users[lo:hi]], end[lo:hi] - length)[:, None] + offsets
            windows[lo:hi] = np.where(index < end[lo:hi, None], self._items[np.minimum(index, last)], PAD)
        return windows

    def _row_histories(self, rows: np.ndarray) -> np.ndarray:
        """The histories of a sample's rows, in the narrowest integer type that holds every item id."""
        fits = self.dataset.n_items < np.iinfo(np.int32).max
        return self.histories(rows, dtype=np.int32 if fits else np.int64)

    # ------------------------------------------------------------------ samples
    def rows_of(self, part: int) -> np.ndarray:
        return np.flatnonzero(self.part == part)

    def ctr_rows(self, part: int, sample: int | None = None, seed: int = 0, users: np.ndarray | None = None) -> Rows:
        """CTR samples of one part: label = rating > 3, rating 3 dropped (all kept for implicit data). With
        ``users``, only theirs; with ``sample``, a seeded sample of that many, in order. Only the histories of the
        rows kept are built."""
        rows = self.rows_of(part)
        rows = rows[self.has_train[self._users[rows]]]
        if users is not None:
            rows = rows[np.isin(self._users[rows], users)]
        if not self.implicit:
            rows = rows[self._ratings[rows] != CTR_DROPPED_RATING]
        if sample is not None:
            rng = np.random.default_rng(seed)
            rows = rows[np.sort(rng.choice(len(rows), size=min(sample, len(rows)), replace=False))]
        labels = (self._ratings[rows] > CTR_DROPPED_RATING) if not self.implicit else np.ones(len(rows), bool)
        return Rows(self._users[rows], self._items[rows], self._row_histories(rows), labels.astype(np.float32))

    def interaction_rows(self, part: int = TRAIN) -> Rows:
        """Every interaction of a part as an implicit positive (label 1), with its history."""
        rows = self.rows_of(part)
        return Rows(self._users[rows], self._items[rows], self._row_histories(rows), np.ones(len(rows), np.float32))

    def sequence_rows(self, part: int = TRAIN, stride: int | None = None) -> Rows:
        """One row every ``stride`` interactions (default ``max_history``) of each user in ``part``, counted back
        from the user's last one. With the default, a sequence model trained on every position of each row's
        history plus its item sees each interaction of the part as a target once; a shorter stride overlaps the
        windows, so each target is also seen later in a window, with more context before it."""
        rows = self.rows_of(part)
        users = self._users[rows]                      # rows are sorted by user, then time
        from_end = np.searchsorted(users, users, side="right") - 1 - np.arange(len(rows))
        rows = rows[from_end % max(stride or self.max_history, 1) == 0]
        return Rows(self._users[rows], self._items[rows], self._row_histories(rows), np.ones(len(rows), np.float32))

    def seen_matrix_rows(self, parts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr over all users, items) of each user's interactions within ``parts``."""
        mask = np.isin(self.part, parts)
        users, items = self._users[mask], self._items[mask]
        indptr = np.searchsorted(users, np.arange(self.dataset.n_users + 2), side="left")
        return indptr, items

    def _positive(self) -> np.ndarray:
        """The interactions that count as hits when ranking: ratings >= POSITIVE_RATING, or every interaction
        for implicit data and under the next-item split (there the next item is the target whatever its rating,
        as in SASRec's and BERT4Rec's papers and RecBole)."""
        if self.implicit or self.split.mode == "next_item":
            return np.ones(len(self._ratings), dtype=bool)
        return self._ratings >= POSITIVE_RATING

    def topk_cases(self, part: int) -> TopKCases:
        """Full-ranking cases for ``part`` (VALID or TEST): users with a train interaction and at least one
        positive in the part."""
        in_part = self.part == part
        positive = in_part & self._positive() & self.has_train[self._users]
        users = np.unique(self._users[positive])
        # the part begins at each user's first interaction in it; the history stops strictly before that
        first_rank = np.full(self.dataset.n_users + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_rank, self._users[in_part], self._time_rank[in_part])
        history = self.history_before(users, first_rank[users])

        excluded = (TRAIN,) if part == VALID else (TRAIN, VALID)
        seen_indptr_all, seen_items_all = self.seen_matrix_rows(excluded)
        pos_users, pos_items = self._users[positive], self._items[positive]
        pos_indptr_all = np.searchsorted(pos_users, np.arange(self.dataset.n_users + 2), side="left")
        seen_indptr, seen_items = _select_csr(seen_indptr_all, seen_items_all, users)
        pos_indptr, pos_items = _select_csr(pos_indptr_all, pos_items, users)
        return TopKCases(users, history, seen_indptr, seen_items, pos_indptr, pos_items)

    def summary(self) -> dict:
        counts = {name: int((self.part == p).sum()) for name, p in (("train", TRAIN), ("valid", VALID),
                                                                     ("test", TEST))}
        if self.split.mode != "per_user":  # the per-user summary stays as shipped checkpoints store it
            counts["users_without_train"] = self.users_without_train()
        return {**self.dataset.summary(), **counts, "fingerprint": self.fingerprint}

    def check_parts(self) -> None:
        """Refuse data whose split leaves train, valid or test with nothing to train or measure on (one
        :class:`~recmodels.errors.DataFormatError` naming the part and the split); training calls it first. A
        split with an empty part is still a RecData: its facts can be read, it cannot train."""
        where = self.dataset.extras.get("data_dir") or self.dataset.name
        check_parts(self._users, self.part, self._positive(), self.split, where)

    def users_without_train(self) -> int:
        """Users with interactions but none in train: the global split leaves them out of evaluation."""
        known = np.zeros(self.dataset.n_users + 1, dtype=bool)
        known[self._users] = True
        return int((known & ~self.has_train).sum())


def _time_order(times: np.ndarray, n_users: int) -> np.ndarray:
    """A number per interaction that orders and ties them as their timestamps do, small enough that user * span +
    number stays within int64: the time since the first one where that fits (no sort: seconds at ml-20m scale), else
    the rank among the distinct timestamps."""
    if not len(times):
        return np.zeros(0, dtype=np.int64)
    first = int(times.min())
    if (n_users + 2) * (int(times.max()) - first + 2) < 2 ** 63:
        return times.astype(np.int64) - first
    return np.unique(times, return_inverse=True)[1].astype(np.int64)


def _select_csr(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    new_indptr = np.r_[0, np.cumsum(lengths)]
    index = np.repeat(starts - new_indptr[:-1], lengths) + np.arange(new_indptr[-1])
    return new_indptr, values[index]
