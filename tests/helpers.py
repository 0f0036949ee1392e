"""Small builders the per-model test files share."""

from __future__ import annotations

import torch

from recmodels.models import Batch


def ragged_batch(data, lengths=(12, 7, 1, 0, 3), width: int = 12, seed: int = 2) -> Batch:
    """Rows with histories of the given lengths (right-padded to ``width``), including an empty one."""
    generator = torch.Generator().manual_seed(seed)
    n_items = data.dataset.n_items
    history = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        history[row, :length] = torch.randint(1, n_items + 1, (length,), generator=generator)
    users = torch.randint(1, data.dataset.n_users + 1, (len(lengths),), generator=generator)
    items = torch.randint(1, n_items + 1, (len(lengths),), generator=generator)
    return Batch(users, items, history)


def a_user_with_history(service, length: int = 8) -> str:
    """The first user (in the dataset's order) with at least ``length`` interactions: dropping two leaves some."""
    for user in service.data.dataset.user_ids[1:]:
        if len(service.history(user)) >= length:
            return str(user)
    raise AssertionError(f"no user with {length} interactions")
