"""Finding an item in a large catalogue (ml-20m has 26,744): ids by prefix and titles by case-insensitive
substring, searched on the server, so that an item picker sends the browser a short list, never the catalogue.

The titles are case-folded once per checkpoint; a search is one vectorised pass over them plus two binary searches
over the sorted ids. Matches come in the order a person wants them: the exact id, then the items the caller
prefers (the user's recommendations, then their history), then the rest in catalogue order.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .text import plain
from .users import MAX_QUERY, MAX_SHOWN, PrefixIndex


def _folded(titles) -> pd.Series:
    """Titles as case-folded text to search in; a missing or non-text title matches nothing."""
    series = pd.Series(titles, dtype=object)
    return series.where(series.map(type) == str, "").str.casefold()


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
