"""EASE against its paper's closed form (Steck, WWW 2019): B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import recmodels.checkpoint.weights as checkpoint_weights
import recmodels.models.ease as ease
from recmodels.checkpoint.io import load_checkpoint, read_config, save_checkpoint
from recmodels.data import TRAIN
from recmodels.errors import CheckpointError
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
    assert "item_weights" not in model.state_dict()  # a small catalogue: solved from the data, not stored


def test_the_blocked_sparse_solve_equals_the_formula_across_block_edges(tiny_data, monkeypatch):
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
        rows = model(
            Batch(users.repeat_interleave(len(items)), items.repeat(3), history.repeat_interleave(len(items), 0))
        ).scores.view(3, -1)
    np.testing.assert_allclose(ranked.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(rows.numpy(), expected, atol=1e-5)
    assert not ranked[2].any()  # no history, no score


def _refuse_to_solve(*args, **kwargs):
    raise AssertionError("B was solved again although the checkpoint stores it")


def test_a_large_catalogue_stores_b_and_loads_it_without_solving_or_data(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ease, "STORE_ABOVE_ITEMS", tiny_data.dataset.n_items - 1)  # the tiny catalogue is "large"
    model = EASE.from_data(tiny_data, l2=30.0).eval()
    assert model.hparams["store_weights"] is True  # the decision is recorded, not re-made from the constant
    folder = save_checkpoint(tmp_path / "ease", model, tiny_data)
    assert "item_weights" in load_file(str(folder / "model.safetensors"))
    monkeypatch.setattr(ease, "STORE_ABOVE_ITEMS", 10**9)  # a later default does not change a saved model
    monkeypatch.setattr(ease, "closed_form", _refuse_to_solve)
    for data in (tiny_data, None):
        loaded, _ = load_checkpoint(folder, data=data)
        assert torch.equal(loaded.item_weights, model.item_weights)
    history = torch.tensor([[3, 7, 12, 0]])
    items = torch.arange(1, tiny_data.dataset.n_items + 1)
    assert torch.equal(
        loaded.score_items(torch.tensor([1]), history, items), model.score_items(torch.tensor([1]), history, items)
    )


def test_a_small_catalogue_solves_b_again_at_load_and_says_it_needs_its_data(tiny_data, tmp_path):
    model = EASE.from_data(tiny_data, l2=30.0)
    folder = save_checkpoint(tmp_path / "ease", model, tiny_data)
    assert read_config(folder).hparams["store_weights"] is False
    assert torch.equal(load_checkpoint(folder, data=tiny_data)[0].item_weights, model.item_weights)
    with pytest.raises(CheckpointError, match="reads features from its dataset"):
        load_checkpoint(folder)
    # a config edited to claim a stored B that the file lacks, or to hold a non-boolean
    config = json.loads((folder / "config.json").read_text())
    for value, message in ((True, "lacks tensor 'item_weights'"), ("yes", "store_weights must be true or false")):
        config["hparams"]["store_weights"] = value
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(folder, data=tiny_data)


def test_a_stored_b_with_a_nan_in_its_last_slice_is_refused(tiny_data, tmp_path, monkeypatch):
    model = EASE.from_data(tiny_data, l2=30.0, store_weights=True)
    folder = save_checkpoint(tmp_path / "ease", model, tiny_data)
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    state["item_weights"][-1, -1] = float("nan")
    save_file(state, str(weights))
    monkeypatch.setattr(checkpoint_weights, "VALUE_CHUNK", 5)  # the check reads many slices; the NaN is in the last
    with pytest.raises(CheckpointError, match="item_weights.*NaN or infinite"):
        load_checkpoint(folder, data=tiny_data)
    state["item_weights"][-1, -1] = 0.0
    state["item_weights"][-1, -2] = -3e6  # the largest magnitude, negative, in a late slice
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="item_weights.*3e\\+06"):
        load_checkpoint(folder, data=tiny_data)
