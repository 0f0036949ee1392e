"""DIN: the decomposed activation unit equals the reference formula, masking, both attention modes, taps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels.data import TEST, TRAIN
from recmodels.explain.faithfulness import uniform_override
from recmodels.models import Batch, build_model
from recmodels.models.din import DIN

MODES = ("softmax", "unnormalised")


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
    history[0] = 0                      # an empty history
    history[1, 1:] = 0                  # a length-1 history
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
        fields = model.user_fields[user] + model.user_field_offsets
        user_part = torch.cat([model.user_embedding.weight[user], *model.user_field_embedding.weight[fields],
                               model.user_mean_rating[user].view(1)])
        candidate = torch.cat([q, model.decade_embedding.weight[model.item_year[item]],
                               model.item_mean_rating[item].view(1), model.item_popularity[item].view(1)])
        product = [interest * q] if model.interest_product else []
        out.append(model.mlp(torch.cat([user_part, interest, candidate, *product]).unsqueeze(0))[0, 0])
    return torch.stack(out)


def _genre_vector(model: DIN, item) -> torch.Tensor:
    genres = model.item_genres[item]
    return model.genre_embedding.weight @ (genres / genres.sum().clamp(min=1))


@pytest.mark.parametrize("attention,interest_product", [("softmax", False), ("unnormalised", False),
                                                         ("softmax", True)])
def test_forward_and_score_items_equal_the_reference(tiny_data, attention, interest_product):
    model = _model(tiny_data, attention, interest_product=interest_product)
    batch = _batch(tiny_data)
    with torch.no_grad():
        expected = reference_scores(model, batch.users, batch.items, batch.history)
        assert torch.allclose(model(batch).scores, expected, atol=1e-5, rtol=1e-5)
        # every candidate for a few users, through the decomposed ranking path (small chunks too)
        items = torch.arange(1, tiny_data.dataset.n_items + 1)
        users, history = batch.users[:5], batch.history[:5]
        grid = reference_scores(model, users.repeat_interleave(len(items)), items.repeat(5),
                                history.repeat_interleave(len(items), 0)).view(5, -1)
        for chunk_rows, block_pairs in ((65536, DIN.block_pairs), (1, 7)):  # one block, and many small ones
            model.block_pairs = block_pairs
            assert torch.allclose(model.score_items(users, history, items, chunk_rows=chunk_rows), grid,
                                  atol=1e-5, rtol=1e-5)


def test_softmax_weights_sum_to_one_over_the_valid_history(tiny_data):
    batch = _batch(tiny_data)
    with torch.no_grad():
        out = _model(tiny_data)(batch, output_attentions=True)
    assert set(out.attentions) == {"history"}
    history = out.attentions["history"]
    assert history.axes == ("history",) and history.level == "item" and history.normalised_over == "history"
    assert torch.equal(history.mask, batch.history_mask)
    assert torch.equal(history.axis_items["history"], batch.history)
    weights = history.values
    assert torch.all(weights[~batch.history_mask] == 0)
    nonempty = batch.history_mask.any(1)
    assert torch.allclose(weights[nonempty].sum(1), torch.ones(int(nonempty.sum())), atol=1e-6)
    assert torch.all(weights[~nonempty] == 0)
    assert weights[1, 0] == pytest.approx(1.0)  # a length-1 history puts all its weight on its one item


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


@pytest.mark.parametrize("attention", MODES)
def test_gradients_reach_every_parameter(tiny_data, attention):
    model = _model(tiny_data, attention, interest_product=True).train()
    batch = _batch(tiny_data, n=64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).scores, batch.labels)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("attention", MODES)
def test_empty_and_length_one_histories_give_finite_scores(tiny_data, attention):
    model = _model(tiny_data, attention)
    users, items = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    history = torch.zeros(3, 7, dtype=torch.long)
    history[1, 0] = 9
    with torch.no_grad():
        out = model(Batch(users, items, history), output_attentions=True)
        ranked = model.score_items(users, history, torch.arange(1, tiny_data.dataset.n_items + 1))
        no_columns = model.score_items(users, history[:, :0], items)
    assert torch.isfinite(out.scores).all() and torch.isfinite(ranked).all() and torch.isfinite(no_columns).all()
    for attention_map in out.attentions.values():
        assert torch.all(attention_map.values[0] == 0)
    # with an empty history the interest vector is 0, so the score matches any other empty-history width
    assert torch.allclose(no_columns[0, 0], out.scores[0], atol=1e-6)


@pytest.mark.parametrize("attention,name", [("softmax", "history"), ("unnormalised", "history"),
                                            ("unnormalised", "history_share")])
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


def test_input_taps_cover_history_user_and_candidate(tiny_data):
    model = _model(tiny_data)
    taps = model.input_taps()
    assert set(taps) == {"history_tap", "user_tap", "candidate_tap"}
    assert taps["history_tap"].units == ("history",) and taps["history_tap"].item_axis == "history"
    assert taps["user_tap"].labels == ["user id", *tiny_data.tables.user_field_names]
    assert taps["candidate_tap"].labels == ["item id", "genres", "decade"]
    seen = {}
    handles = [tap.register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, []).append(o.shape))
               for name, tap in taps.items()]
    batch = _batch(tiny_data, n=5)
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    n_fields = 1 + len(tiny_data.tables.user_field_names)
    assert seen == {"history_tap": [(5, batch.history.shape[1], 16)], "user_tap": [(5, n_fields, 8)],
                    "candidate_tap": [(5, 3, 8)]}  # each tap exactly once per forward


def test_registered_and_rejects_unknown_modes(tiny_data):
    spec = tiny_data.tables.spec()
    assert isinstance(build_model("din", spec), DIN) and DIN.predicts_probability
    with pytest.raises(ValueError, match="attention must be one of"):
        build_model("din", spec, attention="sparsemax")


@pytest.mark.slow
def test_a_short_training_run_learns_the_ctr_task(tiny_data):
    from recmodels.eval import evaluate_topk
    from recmodels.train import TrainConfig, seed_everything, train_model

    seed_everything(0)
    model = DIN.from_data(tiny_data, dim=8, attention_hidden=8, hidden=(16,))
    config = TrainConfig.for_model(DIN, epochs=3, batch_size=64, patience=5)
    result = train_model(model, tiny_data, config, device="cpu", progress=False)
    losses = [entry["train_loss"] for entry in result.history[1:]]
    assert losses[-1] < losses[0]
    assert "history" in result.history[-1]["attention"]
    assert np.isfinite(evaluate_topk(result.model, tiny_data, TEST)["ndcg@10"])
