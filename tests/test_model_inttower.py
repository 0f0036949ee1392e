"""IntTower: the reference formula with explicit loops, Light-SE and its overrides, the head-similarity map, the
CIR loss and the model's own training loss, and the tower-once ranking path.

The checks every model shares (gradients, padding, taps, maps, ranking, round trip) are in
tests/test_model_contract.py."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recmodels.data import TRAIN
from recmodels.models import Batch, build_model, model_class
from recmodels.models.inttower import IntTower, IntTowerOutput
from recmodels.models.losses import cir
from recmodels.train import TrainConfig


@pytest.fixture()
def model(tiny_data) -> IntTower:
    """A small IntTower with every parameter drawn at random (biases too), in eval mode."""
    torch.manual_seed(1)
    net = IntTower.from_data(tiny_data, dim=6, hidden=(10, 8, 7), user_heads=3, item_heads=2, head_dim=4)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    return net.eval()


def _batch(data, size=16, part=TRAIN, labels=False) -> Batch:
    rows = data.ctr_rows(part)
    pick = np.linspace(0, len(rows) - 1, size).astype(int)
    rows = rows.take(pick)
    return Batch.from_numpy(rows.users, rows.items, rows.history, rows.labels if labels else None)


# ---------------------------------------------------------------- the formula, written out
def _light_se(net_se, fields, override=None):
    """x + x * softmax(W mean_d(x)), one field at a time."""
    n_fields = fields.shape[0]
    z = torch.stack([fields[f].mean() for f in range(n_fields)])
    logits = torch.stack([sum(net_se.excitation.weight[g, f] * z[f] for f in range(n_fields)) for g in range(n_fields)])
    weights = torch.exp(logits) / torch.exp(logits).sum() if override is None else override
    return torch.stack([fields[f] + fields[f] * weights[f] for f in range(n_fields)]), weights


def reference_score(
    net: IntTower, user: int, history: list[int], item: int, user_weights=None, item_weights=None
) -> torch.Tensor:
    """One row's logit with explicit loops over fields, layers, user heads and item heads."""
    # user fields: id, each categorical field, history mean, mean rating
    fields = [net.user_embedding.weight[user]]
    offset = 0
    for f, size in enumerate(net.spec["user_field_sizes"]):
        fields.append(net.user_field_embedding.weight[offset + int(net.user_fields[user, f])])
        offset += size
    real = [h for h in history if h != 0]
    fields.append(sum(net.history_embedding.weight[h] for h in real) / len(real) if real else torch.zeros(net.dim))
    fields.append(net.user_rating.weight[:, 0] * net.user_mean_rating[user] + net.user_rating.bias)
    user_fields, _ = _light_se(net.user_se, torch.stack(fields), user_weights)
    # item fields: id, genres (mean of the item's genre embeddings), decade, mean rating
    genres = [g for g in range(net.item_genres.shape[1]) if net.item_genres[item, g] > 0]
    fields = [
        net.item_embedding.weight[item],
        sum(net.genre_embedding.weight[:, g] for g in genres) / max(len(genres), 1) if genres else torch.zeros(net.dim),
        net.decade_embedding.weight[int(net.item_year[item])],
        net.item_rating.weight[:, 0] * net.item_mean_rating[item] + net.item_rating.bias,
    ]
    item_fields, _ = _light_se(net.item_se, torch.stack(fields), item_weights)

    p = net.head_dim
    hidden = item_fields.flatten()
    for layer in net.item_mlp:
        hidden = torch.relu(layer.weight @ hidden + layer.bias)
    item_vector = net.item_head_projection.weight @ hidden + net.item_head_projection.bias
    item_heads = [item_vector[k * p : (k + 1) * p] for k in range(net.item_heads)]

    score = net.bias.clone()
    hidden = user_fields.flatten()
    for layer, projection in zip(net.user_mlp, net.user_head_projections):
        hidden = torch.relu(layer.weight @ hidden + layer.bias)
        user_vector = projection.weight @ hidden + projection.bias
        for h in range(net.user_heads):
            head = user_vector[h * p : (h + 1) * p]
            score = score + max(torch.dot(head, item_heads[k]) for k in range(net.item_heads))
    return score


def test_forward_equals_the_reference_formula(model, tiny_data):
    batch = _batch(tiny_data)
    batch.history[0] = 0  # an empty history is part of the check
    with torch.no_grad():
        scores = model(batch).scores
        expected = torch.stack(
            [
                reference_score(model, int(u), h.tolist(), int(i))
                for u, h, i in zip(batch.users, batch.history, batch.items)
            ]
        )
    assert scores.abs().max() > 1.0  # random weights give scores far from the bias alone
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_light_se_weights_are_distributions_with_field_labels(model, tiny_data):
    out = model(_batch(tiny_data), output_attentions=True)
    for name, labels in (
        ("user_fields", ["user id", "age", "gender", "occupation", "history", "mean rating"]),
        ("item_fields", ["item id", "genres", "decade", "mean rating"]),
    ):
        attention = out.attentions[name]
        assert attention.axes == ("field",) and attention.level == "field"
        assert attention.normalised_over == "field"
        assert attention.labels["field"] == labels and attention.values.shape == (16, len(labels))
        assert (attention.values > 0).all()
        torch.testing.assert_close(attention.values.sum(-1), torch.ones(16))


def test_head_similarity_map_and_its_argmax_make_the_score(model, tiny_data):
    out = model(_batch(tiny_data), output_attentions=True)
    heads = out.attentions["head_similarity"]
    assert heads.axes == ("layer", "user_head", "item_head") and heads.level == "head"
    assert heads.normalised_over is None and heads.values.shape == (16, 3, 3, 2)
    assert heads.meta["argmax_axis"] == "item_head"
    assert torch.equal(heads.meta["argmax"], heads.values.argmax(-1))
    chosen = heads.values.gather(-1, heads.meta["argmax"].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(chosen.sum((1, 2)) + model.bias, out.scores)
    assert len(heads.labels["layer"]) == 3 and len(heads.labels["item_head"]) == 2


# ---------------------------------------------------------------- CIR
def test_cir_is_cross_entropy_over_normalised_in_batch_pairs():
    torch.manual_seed(0)
    users, items, tau = torch.randn(6, 5), torch.randn(6, 5), 0.07
    logits = F.normalize(users, dim=-1) @ F.normalize(items, dim=-1).T / tau
    expected = F.cross_entropy(logits, torch.arange(6))
    by_hand = -np.mean(
        [math.log(math.exp(logits[i, i]) / sum(math.exp(logits[i, j]) for j in range(6))) for i in range(6)]
    )
    assert cir(users, items, tau).item() == pytest.approx(expected.item(), rel=1e-5)
    assert cir(users, items, tau).item() == pytest.approx(by_hand, rel=1e-4)
    # the temperature is used: a warmer one gives a different loss
    assert cir(users, items, 1.0).item() != pytest.approx(expected.item(), rel=1e-3)

    # the widely copied version indexes each row's "positive" column with the 0/1 click label, so every
    # row's positive is item 0 or item 1 instead of its own item: a different loss
    labels = torch.tensor([1, 0, 1, 1, 0, 1])
    shifted = logits - logits.max()
    wrong = (shifted.exp().sum(1).log() - shifted[torch.arange(6), labels]).mean()
    assert abs(wrong.item() - expected.item()) > 0.1


def test_the_training_loss_is_bce_plus_weighted_cir_over_the_liked_rows(model, tiny_data):
    rows = _batch(tiny_data, size=12, labels=True)
    negatives = torch.tensor([3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25])  # one per row, after all the rows
    batch = Batch(
        torch.cat([rows.users, rows.users]),
        torch.cat([rows.items, negatives]),
        torch.cat([rows.history, rows.history]),
        torch.cat([rows.labels, torch.zeros(12)]),
        negatives=1,
    )
    training = TrainConfig.for_model(IntTower, negatives=1)
    out = model(batch)
    assert isinstance(out, IntTowerOutput) and out.user_vector.shape == out.item_vector.shape == (24, 7)
    liked = rows.labels > 0
    assert 1 < int(liked.sum()) < 12
    expected = F.binary_cross_entropy_with_logits(out.scores, batch.labels) + 0.1 * cir(
        out.user_vector[:12][liked], out.item_vector[:12][liked], 0.07
    )
    torch.testing.assert_close(model.loss(out, batch, training), expected)
    torch.testing.assert_close(
        model.loss(out, batch, replace(training, aux_loss=None)),
        F.binary_cross_entropy_with_logits(out.scores, batch.labels),
    )


def test_output_vectors_are_the_towers_last_layers(model, tiny_data):
    batch = _batch(tiny_data)
    out = model(batch, output_attentions=True)
    _, user_vector, _ = model.user_tower(batch.users, batch.history)
    _, item_vector, _ = model.item_tower(batch.items)
    torch.testing.assert_close(out.user_vector, user_vector)
    torch.testing.assert_close(out.item_vector, item_vector)


# ---------------------------------------------------------------- ranking
def test_score_items_in_small_chunks_gives_the_same_numbers(model, tiny_data):
    batch = _batch(tiny_data, size=5)
    candidates = torch.arange(1, tiny_data.dataset.n_items + 1)
    with torch.no_grad():
        ranked = model.score_items(batch.users, batch.history, candidates)
        chunked = model.score_items(batch.users, batch.history, candidates, chunk_rows=2 * len(candidates))
    torch.testing.assert_close(chunked, ranked)


def test_score_items_runs_each_tower_once(model, tiny_data):
    calls = {"user": [], "item": []}
    user_tower, item_tower = model.user_tower, model.item_tower
    model.user_tower = lambda users, history, *a: calls["user"].append(len(users)) or user_tower(users, history, *a)
    model.item_tower = lambda items, *a: calls["item"].append(len(items)) or item_tower(items, *a)
    batch = _batch(tiny_data, size=3)
    model.score_items(batch.users, batch.history, torch.arange(1, 41))
    assert calls == {"user": [3], "item": [40]}


# ---------------------------------------------------------------- overrides, taps, training
@pytest.mark.parametrize("name", ["user_fields", "item_fields"])
def test_light_se_override_replaces_the_weights(model, tiny_data, name):
    batch = _batch(tiny_data, size=4)

    def first_field_only(weights, mask):
        assert mask.shape == weights.shape and mask.all()
        return F.one_hot(torch.zeros(weights.shape[:-1], dtype=torch.long), weights.shape[-1]).to(weights)

    with torch.no_grad():
        plain = model(batch).scores
        same = model(batch, attention_override={name: lambda w, m: w}).scores
        out = model(batch, output_attentions=True, attention_override={name: first_field_only})
        n_fields = out.attentions[name].values.shape[-1]
        one_hot = torch.zeros(n_fields)
        one_hot[0] = 1
        kwargs = {"user_weights" if name == "user_fields" else "item_weights": one_hot}
        expected = torch.stack(
            [
                reference_score(model, int(u), h.tolist(), int(i), **kwargs)
                for u, h, i in zip(batch.users, batch.history, batch.items)
            ]
        )
    torch.testing.assert_close(same, plain)
    assert torch.equal(out.attentions[name].values, F.one_hot(torch.zeros(4, dtype=torch.long), n_fields).float())
    assert not torch.allclose(out.scores, plain)
    torch.testing.assert_close(out.scores, expected, atol=1e-5, rtol=1e-5)
    assert model(batch).scores.allclose(plain)  # nothing is left behind on the model


def test_registered_with_ctr_training_and_cir_defaults(tiny_data):
    assert model_class("inttower") is IntTower and IntTower.predicts_probability and IntTower.task == "ctr"
    config = TrainConfig.for_model(IntTower)
    assert (config.samples, config.loss, config.aux_loss, config.temperature) == ("ctr", "bce", "cir", 0.07)
    net = build_model("inttower", tiny_data.tables.spec(), dim=4, hidden=[8], use_decade=False)
    assert net.item_field_labels == ["item id", "genres", "mean rating"]
