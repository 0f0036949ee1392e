"""NRMS: the vectorised forward against the per-head loop of the reference design, masking, maps, gradients,
edge-case histories, the ranking path, overrides, taps and a short train-and-reload."""
from __future__ import annotations

import math

import pytest
import torch

from recmodels.checkpoint import load_checkpoint, save_checkpoint
from recmodels.models import Batch, build_model, model_class
from recmodels.models.nrms import NRMS
from recmodels.train import TrainConfig, seed_everything, train_model
from tests.helpers import ragged_batch

DIM, HEADS = 16, 4


def _model(data, **hparams) -> NRMS:
    """A model with random (not initial) weights, so every attention is far from uniform."""
    model = NRMS.from_data(data, **{"dim": DIM, "heads": HEADS, "pool_dim": 8, **hparams})
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.4)
    return model.eval()


def _batch(data, lengths=(12, 7, 1, 0, 3)) -> Batch:
    return ragged_batch(data, lengths)


def _reference(model: NRMS, batch: Batch, self_weights=None, pool_weights=None):
    """The reference design, one row and one head at a time, on each history with its padding cut off.

    Returns (scores, per-row list of (H, n, n) self-attention, per-row list of (n,) pooling weights).
    ``self_weights`` / ``pool_weights`` optionally replace the weights: fn(row, head or None, weights) -> weights.
    """
    d_h = model.dim // model.heads
    scores, attentions, poolings = [], [], []
    for row in range(len(batch)):
        items = batch.history[row][batch.history[row] != 0]

        def encode(ids):
            genres = model.item_genres[ids]
            genres = genres / genres.sum(-1, keepdim=True).clamp(min=1)
            return model.item_embedding.weight[ids] + genres @ model.genre_embedding.weight.T

        x = encode(items)                                                       # (n, d)
        heads, maps = [], []
        for h in range(model.heads):
            x_h = x[:, h * d_h:(h + 1) * d_h]
            a = torch.softmax(x_h @ model.query[h] @ x_h.T, dim=-1)
            if self_weights is not None:
                a = self_weights(row, h, a)
            heads.append(a @ x_h @ model.value[h])
            maps.append(a)
        z = torch.cat(heads, -1) if len(items) else torch.zeros(0, model.dim)
        logits = torch.tanh(z @ model.pool_projection.weight.T + model.pool_projection.bias) @ model.pool_query
        alpha = torch.softmax(logits, dim=0)
        if pool_weights is not None:
            alpha = pool_weights(row, None, alpha)
        user = model.user_embedding.weight[batch.users[row]] + (alpha[:, None] * z).sum(0)
        scores.append(user @ encode(batch.items[row]))
        attentions.append(torch.stack(maps) if maps and len(items) else torch.zeros(model.heads, 0, 0))
        poolings.append(alpha)
    return torch.stack(scores), attentions, poolings


def test_registered():
    assert model_class("nrms") is NRMS


def test_forward_equals_the_per_head_loop(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    out = model(batch, output_attentions=True)
    expected, attentions, poolings = _reference(model, batch)
    assert torch.allclose(out.scores, expected, atol=1e-5, rtol=0)
    self_attention, pooling = out.attentions["self_attention"].values, out.attentions["pooling"].values
    for row, length in enumerate((batch.history != 0).sum(1).tolist()):
        assert torch.allclose(self_attention[row, :, :length, :length], attentions[row], atol=1e-6)
        assert torch.allclose(pooling[row, :length], poolings[row], atol=1e-6)
    # the weights are far from uniform, so the comparison means something
    assert self_attention[0].max() > 2 / 12


def test_padding_changes_nothing(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    wider = Batch(batch.users, batch.items, torch.cat([batch.history, torch.zeros(len(batch), 5, dtype=torch.long)], 1))
    assert torch.allclose(model(batch).scores, model(wider).scores, atol=1e-6)


def test_attention_is_a_distribution_over_valid_positions_and_padding_gets_exactly_zero(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    maps = model(batch, output_attentions=True).attentions
    valid = batch.history != 0

    self_attention = maps["self_attention"]
    assert self_attention.axes == ("head", "query_item", "key_item") and self_attention.level == "head"
    assert self_attention.normalised_over == "key_item"
    assert torch.equal(self_attention.axis_items["query_item"], batch.history)
    assert torch.equal(self_attention.axis_items["key_item"], batch.history)
    weights, mask = self_attention.values, self_attention.full_mask()
    sums = weights.sum(-1)                                                      # (B, H, T)
    query_valid = valid[:, None, :].expand_as(sums)
    assert torch.allclose(sums[query_valid], torch.ones(()), atol=1e-6)
    assert torch.all(sums[~query_valid] == 0)                                  # padded query rows are all 0
    assert torch.all(weights[~mask] == 0)                                       # padded keys: exactly 0
    assert torch.equal(mask, (valid[:, None, :, None] & valid[:, None, None, :]).expand_as(weights))

    pooling = maps["pooling"]
    assert pooling.axes == ("history",) and pooling.level == "item" and pooling.normalised_over == "history"
    assert torch.equal(pooling.axis_items["history"], batch.history)
    alpha = pooling.values
    assert torch.all(alpha[~valid] == 0)
    has_history = valid.any(1)
    assert torch.allclose(alpha.sum(1)[has_history], torch.ones(()), atol=1e-6)
    assert torch.all(alpha.sum(1)[~has_history] == 0)


def test_gradients_reach_every_parameter(tiny_data):
    model = _model(tiny_data, dropout=0.1).train()
    batch = _batch(tiny_data)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).scores, torch.ones(len(batch)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_training_encodes_repeated_rows_once_with_the_same_values_and_gradients(tiny_data):
    batch = _batch(tiny_data)
    repeat = torch.tensor([0, 1, 2, 3, 4, 0, 0, 2, 3, 1])
    repeated = Batch(batch.users[repeat], torch.randint(1, 41, (len(repeat),)), batch.history[repeat])
    grads = []
    for mode in ("train", "eval"):
        model = _model(tiny_data, dropout=0.0)
        model.train(mode == "train")
        scores = model(repeated).scores
        (scores * torch.arange(1.0, len(repeat) + 1)).sum().backward()
        grads.append((scores.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    for trained, evaluated in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(trained, evaluated, atol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_empty_and_length_one_histories_are_finite(tiny_data, mode):
    model = _model(tiny_data)
    model.train(mode == "train")
    batch = _batch(tiny_data, lengths=(0, 1, 0, 1))
    out = model(batch, output_attentions=True)
    assert torch.isfinite(out.scores).all()
    assert all(torch.isfinite(m.values).all() for m in out.attentions.values())
    out.scores.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # a length-1 history attends to itself with weight 1 in every head
    assert torch.allclose(out.attentions["self_attention"].values[1, :, 0, 0], torch.ones(HEADS))
    # an empty history leaves the user-id embedding as the user vector
    users = model.user_embedding(batch.users[:1])
    assert torch.allclose(out.scores[0], (users * model.item_vectors(batch.items[:1])).sum(), atol=1e-6)
    assert torch.isfinite(model.score_items(batch.users, batch.history, torch.arange(1, 41))).all()


def test_score_items_equals_forward(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    candidates = torch.arange(1, tiny_data.dataset.n_items + 1)
    ranked = model.score_items(batch.users, batch.history, candidates)
    n, c = len(batch), len(candidates)
    rows = Batch(batch.users.repeat_interleave(c), candidates.repeat(n), batch.history.repeat_interleave(c, 0))
    assert ranked.shape == (n, c)
    assert torch.allclose(ranked, model(rows).scores.view(n, c), atol=1e-5)


def test_overrides_replace_the_weights_in_the_forward_pass(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    seen = {}

    def uniform(weights, mask):
        seen[weights.shape] = mask.shape
        return mask.float() / mask.float().sum(-1, keepdim=True).clamp(min=1)

    same = model(batch, attention_override={"self_attention": lambda w, m: w, "pooling": lambda w, m: w}).scores
    assert torch.equal(same, model(batch).scores)

    out = model(batch, output_attentions=True, attention_override={"self_attention": uniform, "pooling": uniform})
    flat = lambda row, head, w: torch.full_like(w, 1.0 / max(w.shape[-1], 1))  # noqa: E731
    expected, _, _ = _reference(model, batch, self_weights=flat, pool_weights=flat)
    assert torch.allclose(out.scores, expected, atol=1e-5)
    assert not torch.allclose(out.scores, model(batch).scores, atol=1e-3)
    # the override saw the full weights with a mask of the same shape, and the maps show what it returned
    assert seen == {(5, HEADS, 12, 12): (5, HEADS, 12, 12), (5, 12): (5, 12)}
    valid = batch.history[0] != 0
    assert torch.allclose(out.attentions["pooling"].values[0][valid], torch.full((12,), 1 / 12))

    # one override alone: only the pooling, put entirely on the last valid item
    def last_item(weights, mask):
        last = mask.long().cumsum(-1).argmax(-1, keepdim=True)
        return torch.zeros_like(weights).scatter(-1, last, 1.0) * mask.any(-1, keepdim=True)

    one_hot = model(batch, attention_override={"pooling": last_item}).scores
    expected, _, _ = _reference(model, batch, pool_weights=lambda row, head, w: last_item(
        w, torch.ones_like(w, dtype=torch.bool)) if w.numel() else w)
    assert torch.allclose(one_hot, expected, atol=1e-5)


def test_input_taps_are_each_called_once_with_their_units(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data)
    taps = model.input_taps()
    assert set(taps) == {"history_tap", "user_tap", "candidate_tap"}
    assert taps["history_tap"].units == ("history",) and taps["history_tap"].item_axis == "history"
    assert taps["user_tap"].units == ("user_feature",) and taps["user_tap"].labels == ["user id"]
    assert taps["candidate_tap"].units == ("item_feature",)
    calls = {}
    handles = [tap.register_forward_hook(lambda m, i, o, name=name: calls.setdefault(name, []).append(o.shape))
               for name, tap in taps.items()]
    model(batch)
    for handle in handles:
        handle.remove()
    assert calls == {"history_tap": [(5, 12, DIM)], "user_tap": [(5, 1, DIM)],
                     "candidate_tap": [(5, len(taps["candidate_tap"].labels), DIM)]}


def test_head_count_must_divide_the_dimension(tiny_data):
    with pytest.raises(ValueError, match="multiple of heads"):
        build_model("nrms", tiny_data.tables.spec(), dim=10, heads=4)


def test_short_training_learns_and_the_checkpoint_reproduces_it(tiny_data, tmp_path):
    seed_everything(0)
    model = NRMS.from_data(tiny_data, dim=8, heads=2, pool_dim=8)
    config = TrainConfig.for_model(NRMS, epochs=3, batch_size=64, patience=10)
    result = train_model(model, tiny_data, config, device="cpu", progress=False)
    losses = [entry["train_loss"] for entry in result.history[1:]]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    assert set(result.history[1]["attention"]) == {"self_attention", "pooling"}
    save_checkpoint(tmp_path / "ck", result.model, tiny_data)
    loaded, _ = load_checkpoint(tmp_path / "ck", data=tiny_data)
    batch = _batch(tiny_data)
    assert torch.equal(result.model.eval()(batch).scores, loaded(batch).scores)
