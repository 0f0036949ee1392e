"""DIN: the decomposed activation unit equals the reference formula in both attention modes, with overrides.

The checks every model shares (gradients, padding, taps, maps, round trip) are in tests/test_model_contract.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels.data import TRAIN
from recmodels.explain.faithfulness import uniform_override
from recmodels.models import Batch, RecModel
from recmodels.models.din import DIN, DINConfig


def _model(data, attention="softmax", **hparams) -> DIN:
    torch.manual_seed(0)
    model = DIN.from_data(data, dim=8, attention_hidden=6, hidden=(16, 8), attention=attention, **hparams)
    with torch.no_grad():  # random weights everywhere, not the small initial ones, so every term matters
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model.eval()


def _batch(data, n=24, seed=0) -> Batch:
    rows = data.ctr_rows(TRAIN)
    pick = np.random.default_rng(seed).choice(len(rows), size=n, replace=False)
    part = rows.take(np.sort(pick))
    history = part.history.copy()
    history[0] = 0  # an empty history
    history[1, 1:] = 0  # a length-1 history
    history[1, 0] = max(history[1, 0], 1)
    return Batch.from_numpy(part.users, part.items, history, part.labels)


def reference_scores(model: DIN, users: torch.Tensor, items: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """DIN written out plainly, one (user, candidate) at a time: the activation unit on [q, k, q-k, q*k]."""
    out = []
    for user, item, hist in zip(users, items, history):
        valid = hist[hist != 0]
        q = torch.cat([model.item_embedding.weight[item], _genre_vector(model, item)])
        if len(valid):
            k = torch.stack([torch.cat([model.item_embedding.weight[i], _genre_vector(model, i)]) for i in valid])
            unit_in = torch.cat([q.expand_as(k), k, q - k, q * k], 1)
            a = model.attention_out(torch.relu(model.attention_in(unit_in))).squeeze(1)
            w = torch.softmax(a, 0) if model.attention == "softmax" else torch.sigmoid(a)
            interest = (w[:, None] * k).sum(0)
        else:
            interest = torch.zeros_like(q)
        fields = model.user_fields[user] + model.user_field_embedding.offsets
        user_part = torch.cat(
            [
                model.user_embedding.weight[user],
                *model.user_field_embedding.weight[fields],
                model.user_mean_rating[user].view(1),
            ]
        )
        candidate = torch.cat(
            [
                q,
                model.decade_embedding.weight[model.item_year[item]],
                model.item_mean_rating[item].view(1),
                model.item_popularity[item].view(1),
            ]
        )
        product = [interest * q] if model.interest_product else []
        out.append(model.mlp(torch.cat([user_part, interest, candidate, *product]).unsqueeze(0))[0, 0])
    return torch.stack(out)


def _genre_vector(model: DIN, item) -> torch.Tensor:
    genres = model.item_genres[item]
    return model.genre_embedding.weight @ (genres / genres.sum().clamp(min=1))


@pytest.mark.parametrize("attention,interest_product", [("softmax", False), ("unnormalised", False), ("softmax", True)])
def test_forward_and_score_items_equal_the_reference(tiny_data, attention, interest_product):
    model = _model(tiny_data, attention, interest_product=interest_product)
    batch = _batch(tiny_data)
    with torch.no_grad():
        expected = reference_scores(model, batch.users, batch.items, batch.history)
        assert torch.allclose(model(batch).scores, expected, atol=1e-5, rtol=1e-5)
        # every candidate for a few users, through the decomposed ranking path (small chunks too)
        items = torch.arange(1, tiny_data.dataset.n_items + 1)
        users, history = batch.users[:5], batch.history[:5]
        grid = reference_scores(
            model, users.repeat_interleave(len(items)), items.repeat(5), history.repeat_interleave(len(items), 0)
        ).view(5, -1)
        for chunk_rows, block_pairs in ((65536, DIN.block_pairs), (1, 7)):  # one block, and many small ones
            model.block_pairs = block_pairs
            assert torch.allclose(
                model.score_items(users, history, items, chunk_rows=chunk_rows), grid, atol=1e-5, rtol=1e-5
            )


def test_unnormalised_mode_exposes_raw_weights_and_their_shares(tiny_data):
    batch = _batch(tiny_data)
    with torch.no_grad():
        maps = _model(tiny_data, "unnormalised")(batch, output_attentions=True).attentions
    raw, share = maps["history"], maps["history_share"]
    assert raw.normalised_over is None and share.normalised_over == "history"
    assert torch.equal(raw.axis_items["history"], batch.history) and torch.equal(share.mask, batch.history_mask)
    mask = batch.history_mask
    assert torch.all(raw.values[~mask] == 0) and torch.all(share.values[~mask] == 0)
    assert torch.all((raw.values[mask] > 0) & (raw.values[mask] < 1))  # sigmoid weights, not normalised
    nonempty = mask.any(1)
    assert not torch.allclose(raw.values[nonempty].sum(1), torch.ones(int(nonempty.sum())))
    assert torch.allclose(share.values[nonempty].sum(1), torch.ones(int(nonempty.sum())), atol=1e-6)
    assert torch.allclose(share.values * raw.values.sum(1, keepdim=True), raw.values, atol=1e-6)


@pytest.mark.parametrize(
    "attention,name", [("softmax", "history"), ("unnormalised", "history"), ("unnormalised", "history_share")]
)
def test_attention_override_replaces_the_weights(tiny_data, attention, name):
    model = _model(tiny_data, attention)
    batch = _batch(tiny_data)
    keys = model.item_vectors(batch.history)
    with torch.no_grad():
        out = model(batch, output_attentions=True, attention_override={name: uniform_override})
        plain = model(batch, output_attentions=True)
    mask = batch.history_mask
    uniform = mask / mask.sum(1, keepdim=True).clamp(min=1)
    assert torch.allclose(out.attentions[name].values, uniform, atol=1e-6)
    if name == "history_share":  # the shares change; the total raw weight of each row is kept
        total = plain.attentions["history"].values.sum(1, keepdim=True)
        assert torch.allclose(out.attentions["history"].values, uniform * total, atol=1e-6)
    weights = out.attentions["history"].values
    # the overridden weights are the ones that pool the history: the scores match a model fed that pooling
    expected_interest = (weights.unsqueeze(-1) * keys).sum(1)
    with torch.no_grad():
        item = model.item_features(model.candidate_fields(batch.items), batch.items)
        expected = model._predict(model.user_features(batch.users), expected_interest, item)
    assert torch.allclose(out.scores, expected, atol=1e-5)
    assert not torch.allclose(out.scores, plain.scores, atol=1e-4)


def test_config_rejects_unknown_modes_and_sizes(tiny_data):
    assert DIN.config_class is DINConfig and DIN.predicts_probability and DIN.task == "ctr"
    with pytest.raises(ValueError, match="attention must be one of"):
        DIN(tiny_data.tables.spec(), attention="sparsemax")
    with pytest.raises(ValueError, match=r"hidden of DINConfig must be a list of whole numbers from 1 to 4096"):
        DINConfig(hidden=(16, 0))
    assert DINConfig(hidden=[16, 8]).hidden == (16, 8)


@pytest.mark.parametrize("attention", ["softmax", "unnormalised"])
def test_catalogue_attention_from_the_ranking_path_equals_forward(tiny_data, attention):
    model = _model(tiny_data, attention=attention)
    batch = _batch(tiny_data, n=3)
    items = torch.arange(1, tiny_data.dataset.n_items + 1)
    fast = model.catalogue_attention(batch.users, batch.history, items)
    slow = RecModel.catalogue_attention(model, batch.users, batch.history, items, chunk_rows=50)  # forward, chunked
    assert fast.keys() == slow.keys() == ({"history"} if attention == "softmax" else {"history", "history_share"})
    for name in fast:
        assert fast[name].shape == (3, len(items), batch.history.shape[1])
        assert torch.allclose(fast[name], slow[name], atol=1e-5), name
    with torch.no_grad():  # one pair by hand: the map forward returns for it
        pair = Batch(batch.users[1:2], items[7:8], batch.history[1:2])
        assert torch.allclose(
            fast["history"][1, 7], model(pair, output_attentions=True).attentions["history"].values[0], atol=1e-5
        )
