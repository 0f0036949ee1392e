"""The dataset's own ids against the model's indices, and each user's rows in time order: what every service call
needs before it can run the model. Built once per service and only read afterwards."""

from __future__ import annotations

import numpy as np
import torch

from recmodels.data import RecData
from recmodels.errors import InvalidArgumentError, UnknownItemError, UnknownUserError, quote
from recmodels.explain.views import ItemNames
from recmodels.serving.arguments import identifier


class DatasetLookup:
    """Ids and rows of one dataset: users and items by the dataset's own ids, the item titles and genres the views
    label with, where each user's interactions start, and the histories the model is given."""

    def __init__(self, data: RecData):
        self.data = data
        dataset = data.dataset
        genres = [", ".join(g) for g in dataset.item_features["genres"]]
        self.names = ItemNames(
            raw_ids=dataset.item_ids,
            titles=np.array([""] + dataset.item_features["title"].astype(str).tolist(), dtype=object),
            genres=np.array([""] + genres, dtype=object),
        )
        self.titles, self.genres = self.names.titles, self.names.genres
        self.full_history = torch.as_tensor(data.full_history(np.arange(dataset.n_users + 1)))
        # interactions are sorted by user, then time: user u's rows are user_start[u]:user_start[u + 1]
        self.user_start = np.searchsorted(dataset.interactions["user"].to_numpy(), np.arange(dataset.n_users + 2))
        self._items = dataset.interactions["item"].to_numpy()

    @property
    def dataset_name(self) -> str:
        return self.data.dataset.name

    def user(self, user) -> int:
        """The index of a user id; an unknown one is one sentence."""
        index = self.data.dataset.user_index(identifier("user", user))
        if index is None:
            raise UnknownUserError(f"User {quote(user)} is not in {self.dataset_name}; pick one from the user list.")
        return index

    def item(self, item) -> int:
        """The index of an item id; one outside the catalogue is one sentence."""
        index = self.data.dataset.item_index(identifier("item", item))
        if index is None:
            raise UnknownItemError(
                f"Item {quote(item)} is not in the {self.dataset_name} catalogue; pick an item "
                "from the recommendations or the history."
            )
        return index

    def raw_items(self, indices) -> list[str]:
        return self.names.raw(indices)

    def rows(self, user_index: int) -> slice:
        """The user's interactions, in time order, as a slice of the dataset's interaction frame."""
        return slice(int(self.user_start[user_index]), int(self.user_start[user_index + 1]))

    def interactions_per_user(self) -> np.ndarray:
        return np.diff(self.user_start)[1 : self.data.dataset.n_users + 1]

    def seen_mask(self, user_index: int) -> torch.Tensor:
        """(n_items,) True at every item the user has interacted with (column i is item i + 1)."""
        seen = torch.zeros(self.data.dataset.n_items, dtype=torch.bool)
        seen[torch.tensor(self._items[self.rows(user_index)]) - 1] = True
        return seen

    def last_interactions(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each user's most recent item and the history strictly before it (the view training used)."""
        last_rows = self.user_start[users + 1] - 1
        return self._items[last_rows], self.data.histories(last_rows)

    def history_for(self, user_index: int, item_index: int) -> torch.Tensor:
        """The full history, or for an item the user has, the history strictly before that interaction."""
        rows = self.rows(user_index)
        match = np.flatnonzero(self._items[rows] == item_index)
        if match.size:
            return torch.as_tensor(self.data.histories(np.array([rows.start + match[-1]]))[0])
        return self.full_history[user_index].clone()

    # ------------------------------------------------------------------ a history someone wrote
    def written_history(self, history) -> np.ndarray:
        """The item indices of a history given by the dataset's own item ids, oldest first: every id in the catalogue,
        none twice, and no more than the model reads (``max_history``). One sentence for anything else."""
        if isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
            raise InvalidArgumentError(
                f"history must be a list of item ids, oldest first, got {type(history).__name__} {quote(history)}."
            )
        try:
            given = list(history)
        except TypeError:  # a 0-d array or tensor says it iterates and then cannot
            raise InvalidArgumentError(
                f"history must be a list of item ids, oldest first, got {type(history).__name__} {quote(history)}."
            ) from None
        limit = self.data.max_history
        if len(given) > limit:
            raise InvalidArgumentError(
                f"history lists {len(given)} items, but this model reads at most {limit} (its max_history); give the "
                f"most recent {limit}."
            )
        indices = np.array([self.item(item) for item in given], dtype=np.int64)
        repeated = [given[i] for i in range(len(given)) if indices[i] in indices[:i]]
        if repeated:
            raise InvalidArgumentError(
                f"history lists item {quote(repeated[0])} twice; an item is in a history once, at its last place."
            )
        return indices

    def window(self, indices: np.ndarray) -> torch.Tensor:
        """A history of item indices as the model reads it: (max_history,), oldest first, right-padded with 0."""
        window = torch.zeros(self.data.max_history, dtype=torch.long)
        window[: len(indices)] = torch.as_tensor(indices, dtype=torch.long)
        return window

    def seen_of(self, indices: np.ndarray) -> torch.Tensor:
        """(n_items,) True at the items of a given history (the items a what-if counts as seen)."""
        seen = torch.zeros(self.data.dataset.n_items, dtype=torch.bool)
        seen[torch.as_tensor(indices, dtype=torch.long) - 1] = True
        return seen
