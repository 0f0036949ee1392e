"""Finding a user or an item among many, on the server, so that a picker sends the browser a short list and never
every user (ml-20m has 138,493) or the whole catalogue.

Ids are sorted as text once per checkpoint (:class:`PrefixIndex`); a prefix is then two binary searches, and the
matches come back in the dataset's natural order (user 2 before user 10), which is the order of
:meth:`RecService.users` and :meth:`RecService.items`. Items are also found by a part of their title
(:class:`ItemIndex`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recmodels_explorer.text import plain

MAX_SHOWN = 50  # users (or items) a picker lists at once
MAX_QUERY = 200  # characters a search box takes
_LAST_CHAR = chr(0x10FFFF)


def _after_prefix(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix``; None when nothing is (all U+10FFFF)."""
    stem = prefix.rstrip(_LAST_CHAR)
    return stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None


class PrefixIndex:
    """Ids (strings, in their natural order) sorted as text once, so that a prefix or an exact id is found by
    binary search; positions are the ids' places in the natural order."""

    def __init__(self, ids):
        ids = np.asarray(ids, dtype=object)
        self._by_text = np.argsort(ids, kind="stable")  # natural positions, ids in text order
        self._sorted = ids[self._by_text]

    def __len__(self) -> int:
        return len(self._sorted)

    def _span(self, prefix: str) -> tuple[int, int]:
        """The range of ``_sorted`` whose ids start with ``prefix``."""
        low = int(np.searchsorted(self._sorted, prefix, side="left"))
        after = _after_prefix(prefix)
        high = len(self._sorted) if after is None else int(np.searchsorted(self._sorted, after, side="left"))
        return low, high

    def starting_with(self, prefix: str) -> np.ndarray:
        """The natural positions of every id that starts with ``prefix`` (unordered)."""
        low, high = self._span(prefix)
        return self._by_text[low:high]

    def position(self, key) -> int | None:
        """The natural position of the id ``key`` (exactly), or None."""
        if not isinstance(key, str):
            return None
        low = int(np.searchsorted(self._sorted, key, side="left"))
        return int(self._by_text[low]) if low < len(self._sorted) and self._sorted[low] == key else None

    def positions(self, keys) -> np.ndarray:
        """The natural positions of those ``keys`` that are ids, in the order given (the others are left out)."""
        keys = np.asarray([k for k in keys if isinstance(k, str)], dtype=object)
        if not len(keys) or not len(self._sorted):
            return np.zeros(0, dtype=np.int64)
        low = np.minimum(np.searchsorted(self._sorted, keys, side="left"), len(self._sorted) - 1)
        found = self._sorted[low] == keys
        return self._by_text[low[found]].astype(np.int64)


class UserIndex:
    """Every user of one service (the rows of ``service.users()``), searchable by id prefix."""

    def __init__(self, users: pd.DataFrame):
        self.users = users.reset_index(drop=True)
        self._ids = PrefixIndex(self.users["user"].to_numpy(dtype=object))

    def __len__(self) -> int:
        return len(self.users)

    def find(self, prefix: str, limit: int = MAX_SHOWN) -> tuple[pd.DataFrame, int]:
        """``(rows, matches)``: at most ``limit`` users whose id starts with ``prefix`` (every user for ""), in
        natural order with the exact id first when there is one, and how many users match in all."""
        if not prefix:
            return self.users.iloc[:limit], len(self.users)
        positions = self._ids.starting_with(prefix)
        matches = len(positions)
        if matches > limit:  # the first ``limit`` in natural order, without sorting every match
            positions = np.partition(positions, limit - 1)[:limit]
        positions = np.sort(positions)
        exact = self.position(prefix)
        if exact is not None:
            positions = np.r_[exact, positions[positions != exact]][:limit]
        return self.users.iloc[positions], matches

    def position(self, user) -> int | None:
        """The row of ``user`` (its exact id), or None."""
        return self._ids.position(user)

    def row(self, user) -> dict | None:
        position = self.position(user)
        return None if position is None else self.users.iloc[position].to_dict()

    def random(self, rng: np.random.Generator) -> str:
        return self.users["user"].iloc[int(rng.integers(len(self.users)))]


def _folded(titles) -> pd.Series:
    """Titles as case-folded text to search in; a missing or non-text title matches nothing."""
    series = pd.Series(titles, dtype=object)
    return series.where(series.map(lambda title: isinstance(title, str)), "").str.casefold()


class ItemIndex:
    """Every item of one service (the rows of ``service.items()``), searchable by id prefix and title."""

    def __init__(self, items: pd.DataFrame):
        self.ids = items["item"].to_numpy(dtype=object)
        self.titles = items["title"].to_numpy(dtype=object)
        self._ids = PrefixIndex(self.ids)
        self._folded = _folded(self.titles)

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, item) -> bool:
        return self._ids.position(item) is not None

    def label(self, item) -> str:
        """``"title (id)"`` as plain text for a picker's option (cut: titles are data and may be huge)."""
        position = self._ids.position(item)
        title = self.titles[position] if position is not None else None
        return f"{plain(title, 60)} ({plain(item, 30)})"

    def _matching(self, query: str) -> np.ndarray:
        """A mask over the catalogue: ids that start with ``query``, or titles that contain it in any case."""
        mask = self._folded.str.contains(query.casefold(), regex=False).to_numpy(dtype=bool, copy=True)
        mask[self._ids.starting_with(query)] = True
        return mask

    def find(self, query: str, preferred=(), limit: int = MAX_SHOWN) -> tuple[list[str], int]:
        """``(ids, matches)``: at most ``limit`` items whose id starts with ``query`` or whose title contains it
        (every item for ""): the exact id first, then those of ``preferred`` (ids, in their order), then the others
        in catalogue order; and how many items match in all."""
        query = query.strip()[:MAX_QUERY] if isinstance(query, str) else ""
        head = self._ids.positions(preferred)
        if len(head):  # each once, where it first comes
            _, first = np.unique(head, return_index=True)
            head = head[np.sort(first)]
        if query:
            mask = self._matching(query)
            matches = int(mask.sum())
            head = head[mask[head]]
            rest = np.flatnonzero(mask)[: limit + len(head)]
        else:
            matches = len(self.ids)
            rest = np.arange(min(limit + len(head), len(self.ids)))
        exact = self._ids.position(query)
        if exact is not None:
            head = np.r_[exact, head[head != exact]]
        order = np.r_[head, rest[~np.isin(rest, head)]][:limit].astype(np.int64)
        return list(self.ids[order]), matches
