"""Two-tower with a multi-head-attention user tower: the vectorised forward and overrides against a per-head loop.

The checks every model shares (gradients, padding, taps, maps, ranking, round trip) are in
tests/test_model_contract.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recmodels.models import Batch, build_model
from recmodels.models.two_tower import TwoTower
from tests.helpers import ragged_batch

DIM, HEADS = 16, 4


def _model(data, **hparams) -> TwoTower:
    """A model with random (not initial) weights, so every attention is far from uniform."""
    model = TwoTower.from_data(data, **{"dim": DIM, "heads": HEADS, "hidden": (24, 12), "dropout": 0.0, **hparams})
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                # embeddings at 0.5, linear weights at 1/sqrt(fan_in): large enough for peaked attention,
                # small enough that the scores stay O(1) and float32 comparisons stay tight
                std = parameter.shape[-1] ** -0.5 if isinstance(module, torch.nn.Linear) and name == "weight" else 0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


def _batch(data, lengths=(12, 7, 1, 0, 3)) -> Batch:
    return ragged_batch(data, lengths)


def _mlp(layers: list[torch.nn.Linear], x: torch.Tensor) -> torch.Tensor:
    for i, layer in enumerate(layers):
        x = F.linear(x, layer.weight, layer.bias)
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def _reference(model: TwoTower, batch: Batch, weights_fn=None):
    """The design written out one row and one head at a time, on each history with its padding cut off.

    Returns (scores, per-row (H, n) attention weights). ``weights_fn(row, head, weights)`` may replace them.
    """
    d_h = model.dim // model.heads
    sizes = model.spec["user_field_sizes"]
    offsets = [sum(sizes[:f]) for f in range(len(sizes))]
    user_layers = [m for m in model.user_mlp if isinstance(m, torch.nn.Linear)]
    item_layers = [m for m in model.item_mlp if isinstance(m, torch.nn.Linear)]

    def genres(ids):
        g = model.item_genres[ids]
        return (g / g.sum(-1, keepdim=True).clamp(min=1)) @ model.genre_embedding.weight.T

    scores, maps = [], []
    for row in range(len(batch)):
        user = batch.users[row]
        features = [model.user_embedding.weight[user]]
        features += [
            model.user_field_embedding.weight[offsets[f] + model.user_fields[user, f]] for f in range(len(sizes))
        ]
        profile = F.linear(torch.cat(features), model.user_projection.weight, model.user_projection.bias)
        items = batch.history[row][batch.history[row] != 0]
        x = model.item_embedding.weight[items] + genres(items)  # (n, d)
        q = F.linear(profile, model.attention_query.weight, model.attention_query.bias)
        k = F.linear(x, model.attention_key.weight, model.attention_key.bias)
        v = F.linear(x, model.attention_value.weight, model.attention_value.bias)
        heads, row_maps = [], []
        for h in range(model.heads):
            part = slice(h * d_h, (h + 1) * d_h)
            a = torch.softmax(k[:, part] @ q[part] / math.sqrt(d_h), dim=0)
            if weights_fn is not None:
                a = weights_fn(row, h, a)
            heads.append(a @ v[:, part])
            row_maps.append(a)
        attended = F.linear(torch.cat(heads), model.attention_output.weight, model.attention_output.bias)
        u = _mlp(user_layers, torch.cat([profile, attended]))

        item = batch.items[row]
        fields = [model.item_embedding.weight[item], genres(item)]
        if model.decade_embedding is not None:
            fields.append(model.decade_embedding.weight[model.item_year[item]])
        scores.append(u @ _mlp(item_layers, torch.cat(fields)))
        maps.append(torch.stack(row_maps))
    return torch.stack(scores), maps


def test_forward_equals_the_per_head_loop(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    out = model(batch, output_attentions=True)
    expected, maps = _reference(model, batch)
    assert torch.allclose(out.scores, expected, atol=1e-5, rtol=1e-6)
    weights = out.attentions["user_attention"].values
    for row, length in enumerate((batch.history != 0).sum(1).tolist()):
        assert torch.allclose(weights[row, :, :length], maps[row], atol=1e-6)
    assert weights[0].max() > 2 / 12  # far from uniform, so the comparison means something


def test_override_replaces_the_weights_in_the_forward_pass(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    seen = []

    def uniform(weights, mask):
        seen.append((weights.shape, mask.shape))
        return mask.float() / mask.float().sum(-1, keepdim=True).clamp(min=1)

    assert torch.equal(model(batch, attention_override={"user_attention": lambda w, m: w}).scores, model(batch).scores)
    out = model(batch, output_attentions=True, attention_override={"user_attention": uniform})
    expected, _ = _reference(model, batch, weights_fn=lambda row, head, w: torch.full_like(w, 1 / max(len(w), 1)))
    assert torch.allclose(out.scores, expected, atol=1e-5, rtol=1e-6)
    assert not torch.allclose(out.scores, model(batch).scores, atol=1e-3)
    assert seen == [((5, HEADS, 12), (5, HEADS, 12))]
    assert torch.allclose(out.attentions["user_attention"].values[0], torch.full((HEADS, 12), 1 / 12))


def test_without_decade_and_without_user_fields(tiny_data):
    spec = {**tiny_data.tables.spec(), "user_field_names": [], "user_field_sizes": []}
    model = build_model("two_tower", spec, dim=8, heads=2, hidden=[8], use_decade=False).eval()
    batch = _batch(tiny_data)
    assert model.candidate_tap.labels == ["item id", "genres"] and model.user_tap.labels == ["user id"]
    ranked = model.score_items(batch.users, batch.history, torch.arange(1, 41))
    assert ranked.shape == (5, 40) and torch.isfinite(ranked).all()
    with pytest.raises(ValueError, match="multiple of heads"):
        build_model("two_tower", tiny_data.tables.spec(), dim=10, heads=4)


def test_the_catalogue_vectors_kept_for_serving_follow_every_weight_change(tiny_data):
    model = _model(tiny_data)
    batch = _batch(tiny_data)
    items = torch.arange(1, tiny_data.dataset.n_items + 1)
    with torch.no_grad():
        first = model.score_items(batch.users, batch.history, items)
        assert model.candidate_vectors(items) is model.candidate_vectors(items), "kept between calls"
        again = model.score_items(batch.users, batch.history, items)
        torch.testing.assert_close(again, first, rtol=0, atol=0)
        some = items[:5]
        torch.testing.assert_close(model.score_items(batch.users, batch.history, some), first[:, :5])
        model.item_embedding.weight.mul_(2.0)  # an in-place change, as an optimiser step makes
        changed = model.score_items(batch.users, batch.history, items)
    assert not torch.allclose(changed, first)
    fresh = model.item_tower(model.item_fields(items))
    torch.testing.assert_close(model.candidate_vectors(items), fresh, rtol=0, atol=0)
    model.train()
    assert model.candidate_vectors(items).requires_grad, "training never reads kept vectors"
