"""Two-tower with a multi-head-attention user tower: the vectorised forward against a per-head loop, masking,
the map, gradients, edge-case histories, the ranking path, overrides, taps and a short train-and-reload."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recmodels.checkpoint import load_checkpoint, save_checkpoint
from recmodels.models import Batch, build_model, model_class
from recmodels.models.two_tower import TwoTower
from recmodels.train import TrainConfig, seed_everything, train_model
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
        features += [model.user_field_embedding.weight[offsets[f] + model.user_fields[user, f]]
                     for f in range(len(sizes))]
        profile = F.linear(torch.cat(features), model.user_projection.weight, model.user_projection.bias)
        items = batch.history[row][batch.history[row] != 0]
        x = model.item_embedding.weight[items] + genres(items)                   # (n, d)
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


def test_registered():
    assert model_class("two_tower") is TwoTower


def test_forward_equals_the_per_head_loop(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    out = model(batch, output_attentions=True)
    expected, maps = _reference(model, batch)
    assert torch.allclose(out.scores, expected, atol=1e-5, rtol=1e-6)
    weights = out.attentions["user_attention"].values
    for row, length in enumerate((batch.history != 0).sum(1).tolist()):
        assert torch.allclose(weights[row, :, :length], maps[row], atol=1e-6)
    assert weights[0].max() > 2 / 12  # far from uniform, so the comparison means something


def test_padding_changes_nothing(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    wider = Batch(batch.users, batch.items, torch.cat([batch.history, torch.zeros(len(batch), 5, dtype=torch.long)], 1))
    assert torch.allclose(model(batch).scores, model(wider).scores, atol=1e-5)


def test_attention_is_a_distribution_over_valid_positions_and_padding_gets_exactly_zero(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    attention = model(batch, output_attentions=True).attentions["user_attention"]
    assert attention.axes == ("head", "history") and attention.level == "head"
    assert attention.normalised_over == "history"
    assert torch.equal(attention.axis_items["history"], batch.history)
    valid = batch.history != 0
    weights, mask = attention.values, attention.full_mask()
    assert torch.equal(mask, valid[:, None, :].expand_as(weights))
    assert torch.all(weights[~mask] == 0)
    sums = weights.sum(-1)                                                      # (B, H)
    has_history = valid.any(1)
    assert torch.allclose(sums[has_history], torch.ones(()), atol=1e-6)
    assert torch.all(sums[~has_history] == 0)


def test_gradients_reach_every_parameter(tiny_data):
    model = _model(tiny_data, dropout=0.1).train()
    batch = _batch(tiny_data)
    loss = F.binary_cross_entropy_with_logits(model(batch).scores, torch.ones(len(batch)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_training_encodes_repeated_rows_once_with_the_same_values_and_gradients(tiny_data):
    batch = _batch(tiny_data)
    repeat = torch.tensor([0, 1, 2, 3, 4, 0, 0, 2, 3, 1])
    repeated = Batch(batch.users[repeat], torch.randint(1, 41, (len(repeat),)), batch.history[repeat])
    results = []
    for mode in ("train", "eval"):
        model = _model(tiny_data)
        model.train(mode == "train")
        scores = model(repeated).scores
        (scores * torch.arange(1.0, len(repeat) + 1)).sum().backward()
        results.append((scores.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    for trained, evaluated in zip(results[0][1], results[1][1]):
        assert torch.allclose(trained, evaluated, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_empty_and_length_one_histories_are_finite(tiny_data, mode):
    model = _model(tiny_data)
    model.train(mode == "train")
    batch = _batch(tiny_data, lengths=(0, 1, 0, 1))
    out = model(batch, output_attentions=True)
    assert torch.isfinite(out.scores).all()
    weights = out.attentions["user_attention"].values
    assert torch.isfinite(weights).all()
    assert torch.all(weights[1, :, 0] == 1) and torch.all(weights[0] == 0)
    out.scores.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.score_items(batch.users, batch.history, torch.arange(1, 41))).all()
    # two users with empty histories still get different, personal scores
    assert out.scores[0] != out.scores[2]


def test_score_items_equals_forward(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    candidates = torch.arange(1, tiny_data.dataset.n_items + 1)
    ranked = model.score_items(batch.users, batch.history, candidates)
    n, c = len(batch), len(candidates)
    rows = Batch(batch.users.repeat_interleave(c), candidates.repeat(n), batch.history.repeat_interleave(c, 0))
    assert ranked.shape == (n, c)
    assert torch.allclose(ranked, model(rows).scores.view(n, c), atol=1e-4, rtol=1e-5)


def test_override_replaces_the_weights_in_the_forward_pass(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    seen = []

    def uniform(weights, mask):
        seen.append((weights.shape, mask.shape))
        return mask.float() / mask.float().sum(-1, keepdim=True).clamp(min=1)

    assert torch.equal(model(batch, attention_override={"user_attention": lambda w, m: w}).scores,
                       model(batch).scores)
    out = model(batch, output_attentions=True, attention_override={"user_attention": uniform})
    expected, _ = _reference(model, batch, weights_fn=lambda row, head, w: torch.full_like(w, 1 / max(len(w), 1)))
    assert torch.allclose(out.scores, expected, atol=1e-5, rtol=1e-6)
    assert not torch.allclose(out.scores, model(batch).scores, atol=1e-3)
    assert seen == [((5, HEADS, 12), (5, HEADS, 12))]
    assert torch.allclose(out.attentions["user_attention"].values[0], torch.full((HEADS, 12), 1 / 12))


def test_input_taps_are_each_called_once_with_their_units(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    taps = model.input_taps()
    assert set(taps) == {"history_tap", "user_tap", "candidate_tap"}
    assert taps["history_tap"].units == ("history",) and taps["history_tap"].item_axis == "history"
    user_labels = ["user id", *tiny_data.tables.user_field_names]
    assert taps["user_tap"].units == ("user_feature",) and taps["user_tap"].labels == user_labels
    assert taps["candidate_tap"].units == ("item_feature",)
    assert taps["candidate_tap"].labels == ["item id", "genres", "decade"]
    calls = {}
    handles = [tap.register_forward_hook(lambda m, i, o, name=name: calls.setdefault(name, []).append(o.shape))
               for name, tap in taps.items()]
    model(batch)
    for handle in handles:
        handle.remove()
    assert calls == {"history_tap": [(5, 12, DIM)], "user_tap": [(5, len(user_labels), DIM)],
                     "candidate_tap": [(5, 3, DIM)]}


def test_without_decade_and_without_user_fields(tiny_data):
    spec = {**tiny_data.tables.spec(), "user_field_names": [], "user_field_sizes": []}
    model = build_model("two_tower", spec, dim=8, heads=2, hidden=[8], use_decade=False).eval()
    batch = _batch(tiny_data)
    assert model.candidate_tap.labels == ["item id", "genres"] and model.user_tap.labels == ["user id"]
    ranked = model.score_items(batch.users, batch.history, torch.arange(1, 41))
    assert ranked.shape == (5, 40) and torch.isfinite(ranked).all()
    with pytest.raises(ValueError, match="multiple of heads"):
        build_model("two_tower", tiny_data.tables.spec(), dim=10, heads=4)


def test_short_training_learns_and_the_checkpoint_reproduces_it(tiny_data, tmp_path):
    seed_everything(0)
    model = TwoTower.from_data(tiny_data, dim=8, heads=2, hidden=[16, 8])
    config = TrainConfig.for_model(TwoTower, epochs=3, batch_size=64, patience=10)
    result = train_model(model, tiny_data, config, device="cpu", progress=False)
    losses = [entry["train_loss"] for entry in result.history[1:]]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    assert set(result.history[1]["attention"]) == {"user_attention"}
    save_checkpoint(tmp_path / "ck", result.model, tiny_data)
    loaded, _ = load_checkpoint(tmp_path / "ck", data=tiny_data)
    batch = _batch(tiny_data)
    assert torch.equal(result.model.eval()(batch).scores, loaded(batch).scores)
