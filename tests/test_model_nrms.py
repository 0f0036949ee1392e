"""NRMS: the vectorised forward and its overrides against the per-head loop of the reference design.

The checks every model shares (gradients, padding, taps, maps, ranking, round trip) are in
tests/test_model_contract.py."""

from __future__ import annotations

import pytest
import torch

from recmodels.models import Batch, build_model
from recmodels.models.nrms import NRMS
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

        x = encode(items)  # (n, d)
        heads, maps = [], []
        for h in range(model.heads):
            x_h = x[:, h * d_h : (h + 1) * d_h]
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
    expected, _, _ = _reference(
        model,
        batch,
        pool_weights=lambda row, head, w: last_item(w, torch.ones_like(w, dtype=torch.bool)) if w.numel() else w,
    )
    assert torch.allclose(one_hot, expected, atol=1e-5)


def test_head_count_must_divide_the_dimension(tiny_data):
    with pytest.raises(ValueError, match="multiple of heads"):
        build_model("nrms", tiny_data.tables.spec(), dim=10, heads=4)


def test_an_empty_history_leaves_the_user_id_embedding_as_the_user_vector(tiny_data):
    model, batch = _model(tiny_data), _batch(tiny_data, lengths=(0, 1))
    with torch.no_grad():
        out = model(batch, output_attentions=True)
        users = model.user_embedding(batch.users[:1])
        assert torch.allclose(out.scores[0], (users * model.item_vectors(batch.items[:1])).sum(), atol=1e-6)
    # a length-1 history attends to itself with weight 1 in every head
    assert torch.allclose(out.attentions["self_attention"].values[1, :, 0, 0], torch.ones(HEADS))
