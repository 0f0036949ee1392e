"""EASE against its paper's closed form (Steck, WWW 2019): B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1."""
from __future__ import annotations

import numpy as np
import torch

from recmodels.data import TRAIN
from recmodels.models import Batch
from recmodels.models.ease import EASE


def reference_weights(data, l2: float) -> np.ndarray:
    """The paper's formula in numpy, on the binary matrix of the train part (items 1..n as columns 0..n-1)."""
    frame = data.dataset.interactions
    train = data.part == TRAIN
    x = np.zeros((data.dataset.n_users + 1, data.dataset.n_items))
    x[frame["user"].to_numpy()[train], frame["item"].to_numpy()[train] - 1] = 1.0
    p = np.linalg.inv(x.T @ x + l2 * np.eye(data.dataset.n_items))
    return np.eye(data.dataset.n_items) - p @ np.diag(1.0 / np.diag(p))


def test_fitted_weights_are_the_closed_form_with_a_zero_diagonal(tiny_data):
    model = EASE.from_data(tiny_data, l2=30.0)
    weights = model.item_weights.double().numpy()
    np.testing.assert_allclose(weights[1:, 1:], reference_weights(tiny_data, 30.0), atol=1e-6)
    assert np.all(np.diag(weights) == 0) and not weights[0].any() and not weights[:, 0].any()
    assert np.abs(weights).max() > 1e-3  # not trivially zero
    assert "item_weights" not in model.state_dict()  # solved from the data, never stored


def test_the_blocked_sparse_solve_equals_the_formula_across_block_edges(tiny_data, monkeypatch):
    import recmodels.models.ease as ease

    monkeypatch.setattr(ease, "GRAM_BLOCK", 7)  # many blocks, the last one short
    weights = EASE.from_data(tiny_data, l2=30.0).item_weights.double().numpy()
    np.testing.assert_allclose(weights[1:, 1:], reference_weights(tiny_data, 30.0), atol=1e-6)


def test_scores_are_the_history_multi_hot_times_b(tiny_data):
    model = EASE.from_data(tiny_data, l2=30.0).eval()
    weights = model.item_weights.double().numpy()
    history = torch.tensor([[3, 7, 7, 12, 0, 0], [5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # 7 repeated: counts once
    users = torch.tensor([1, 2, 3])
    items = torch.arange(1, tiny_data.dataset.n_items + 1)
    multi_hot = np.zeros((3, tiny_data.dataset.n_items + 1))
    multi_hot[0, [3, 7, 12]] = 1.0
    multi_hot[1, 5] = 1.0
    expected = multi_hot @ weights[:, 1:]
    with torch.no_grad():
        ranked = model.score_items(users, history, items)
        rows = model(Batch(users.repeat_interleave(len(items)), items.repeat(3),
                           history.repeat_interleave(len(items), 0))).scores.view(3, -1)
    np.testing.assert_allclose(ranked.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(rows.numpy(), expected, atol=1e-5)
    assert not ranked[2].any()  # no history, no score
