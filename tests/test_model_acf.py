"""ACF: the vectorised model and its overrides against a loop-per-item reference of the paper's formulas, the
genre components and the profile.

The checks every model shares (gradients, padding, taps, maps, ranking, round trip) are in
tests/test_model_contract.py."""

from __future__ import annotations

import math

import pytest
import torch

from recmodels.models import Batch, build_model
from recmodels.models.acf import ACF
from recmodels.train import TrainConfig, train_model

DIM = 8


def randomise(model: ACF, std: float = 0.4) -> ACF:
    """Random weights everywhere (biases included), padding rows kept at zero."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, std)
        for embedding in (model.user_embedding, model.item_embedding, model.aux_embedding):
            embedding.weight[0].zero_()
    return model


@pytest.fixture
def model(tiny_data) -> ACF:
    return randomise(ACF.from_data(tiny_data, dim=DIM, attention_dim=6)).eval()


def make_batch(tiny_data, lengths, width: int = 12, seed: int = 1) -> Batch:
    """One row per length: a chronological, right-padded history of that many distinct items."""
    generator = torch.Generator().manual_seed(seed)
    n_items = tiny_data.dataset.n_items
    history = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        history[row, :length] = torch.randperm(n_items, generator=generator)[:length] + 1
    users = torch.randint(1, tiny_data.dataset.n_users + 1, (len(lengths),), generator=generator)
    items = torch.randint(1, n_items + 1, (len(lengths),), generator=generator)
    return Batch(users, items, history)


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def reference(model: ACF, batch: Batch, c1: float = 0.7, c2: float = -1.3, alpha_fn=None, beta_fn=None):
    """The paper's formulas one profile item and one component at a time.

    c1 and c2 are the constants of a(i,l) and b(i,l,m); the model leaves them out because a softmax is
    blind to them, which this reference checks by adding arbitrary values. ``alpha_fn``/``beta_fn`` replace
    the weights (the reference of an attention override). Returns scores and per-row alpha and beta lists.
    """
    m = model
    relu = torch.relu
    scores, alphas, betas = [], [], []
    for row in range(len(batch)):
        user = m.user_embedding.weight[batch.users[row]]
        history = [int(i) for i in batch.history[row] if int(i) != 0]
        profile = history[-m.profile_size :] if history else []
        a_values, xbars, row_betas = [], [], []
        for item in profile:
            genres = [g for g in range(m.item_genres.shape[1]) if m.item_genres[item, g] > 0]
            xs = [m.component_reduction.weight[:, g] + m.component_reduction.bias for g in genres]  # R onehot + r
            b_values = [
                float(
                    m.component_out.weight[0]
                    @ relu(m.component_user.weight @ user + m.component_user.bias + m.component_feature.weight @ x)
                )
                + c2
                for x in xs
            ]
            beta = softmax(b_values) if b_values else []
            if beta_fn is not None and beta:
                beta = beta_fn(beta)
            row_betas.append(beta)
            xbar = sum((w * x for w, x in zip(beta, xs)), torch.zeros(m.dim))
            xbars.append(xbar)
            v, p = m.item_embedding.weight[item], m.aux_embedding.weight[item]
            w1v, w1p = m.profile_item.weight[:, : m.dim], m.profile_item.weight[:, m.dim :]
            hidden = relu(
                m.profile_user.weight @ user
                + m.profile_user.bias
                + w1v @ v
                + w1p @ p
                + m.profile_component.weight @ xbar
            )
            a_values.append(float(m.profile_out.weight[0] @ hidden) + c1)
        alpha = softmax(a_values) if a_values else []
        if alpha_fn is not None and alpha:
            alpha = alpha_fn(alpha)
        representation = user.clone()
        for weight, item in zip(alpha, profile):
            representation = representation + weight * m.aux_embedding.weight[item]
        scores.append(float(representation @ m.item_embedding.weight[batch.items[row]]))
        alphas.append(alpha)
        betas.append(row_betas)
    return torch.tensor(scores), alphas, betas


LENGTHS = [0, 1, 2, 5, 9, 10, 12]


@torch.no_grad()
def test_forward_matches_loop_reference(tiny_data, model):
    batch = make_batch(tiny_data, LENGTHS)
    out = model(batch, output_attentions=True)
    expected, alphas, betas = reference(model, batch)
    torch.testing.assert_close(out.scores, expected, atol=1e-5, rtol=1e-5)
    profile_map, component_map = out.attentions["profile"], out.attentions["components"]
    for row, (alpha, row_betas) in enumerate(zip(alphas, betas)):
        n = len(alpha)
        torch.testing.assert_close(profile_map.values[row, :n], torch.tensor(alpha), atol=1e-5, rtol=1e-5)
        for position, beta in enumerate(row_betas):
            k = len(beta)
            torch.testing.assert_close(
                component_map.values[row, position, :k], torch.tensor(beta), atol=1e-5, rtol=1e-5
            )


@torch.no_grad()
def test_attention_rows_sum_to_one_and_padding_is_zero(tiny_data, model):
    batch = make_batch(tiny_data, LENGTHS)
    maps = model(batch, output_attentions=True).attentions
    profile_map, component_map = maps["profile"], maps["components"]

    mask = profile_map.full_mask()
    assert mask.sum(1).tolist() == [min(n, model.profile_size) for n in LENGTHS]
    assert torch.all(profile_map.values[~mask] == 0)
    sums = profile_map.values.sum(1)
    torch.testing.assert_close(sums[mask.any(1)], torch.ones(int(mask.any(1).sum())))
    assert torch.all(sums[~mask.any(1)] == 0)  # empty history: no weight at all

    cmask = component_map.full_mask()
    assert torch.all(component_map.values[~cmask] == 0)
    real = cmask.any(-1)
    assert torch.equal(real, mask)  # every real profile item has at least one genre, padding has none
    torch.testing.assert_close(component_map.values.sum(-1)[real], torch.ones(int(real.sum())))
    assert torch.all(component_map.values.sum(-1)[~real] == 0)
    # each component is one of the item's genres, each genre at most once
    ids = component_map.meta["component_ids"]
    profile = profile_map.axis_items["profile"]
    for row, position in real.nonzero().tolist():
        genres = model.item_genres[profile[row, position]].nonzero().flatten().tolist()
        assert ids[row, position][cmask[row, position]].tolist() == genres
        assert torch.all(ids[row, position][~cmask[row, position]] == -1)


def test_maps_describe_themselves(tiny_data, model):
    batch = make_batch(tiny_data, [3, 12])
    maps = model(batch, output_attentions=True).attentions
    assert set(maps) == {"profile", "components"}
    profile_map, component_map = maps["profile"], maps["components"]
    assert (profile_map.axes, profile_map.level, profile_map.normalised_over) == (("profile",), "item", "profile")
    assert (component_map.axes, component_map.level, component_map.normalised_over) == (
        ("profile", "component"),
        "component",
        "component",
    )
    assert profile_map.meta["components"] == component_map.meta["components"] == "genres"
    assert component_map.meta["component_names"] == tiny_data.tables.genre_names
    assert len(component_map.labels["component"]) == component_map.values.shape[2]
    assert torch.equal(profile_map.axis_items["profile"], model.profile(batch.history))
    assert torch.equal(component_map.axis_items["profile"], model.profile(batch.history))


def test_components_are_one_hot_genres_with_largest_genre_count(tiny_data, model):
    largest = int((tiny_data.tables.item_genres > 0).sum(1).max())
    assert model.n_components == model.hparams["max_components"] == largest
    items = torch.arange(0, tiny_data.dataset.n_items + 1).view(1, -1)
    x, mask = model.components(items)
    n_genres = len(tiny_data.tables.genre_names)
    assert x.shape == (1, items.shape[1], largest, n_genres) and mask.shape == x.shape[:-1]
    assert torch.equal(x.sum(-1), mask.float())  # one-hot on real slots, zero on padding
    assert torch.equal(x.sum(2), model.item_genres[items])  # the slots hold exactly the item's genres
    assert not mask[0, 0].any()  # the padding item has no components


def test_profile_gathers_the_most_recent_valid_items(tiny_data):
    model = ACF.from_data(tiny_data, dim=DIM)
    history = torch.tensor(
        [
            list(range(1, 13)),  # 12 items: the last 9
            [7, 8, 9] + [0] * 9,  # 3 items: all, in order
            list(range(21, 30)) + [0] * 3,  # exactly 9
            [0] * 12,  # empty
            [5] + [0] * 11,  # one item
        ]
    )
    expected = torch.tensor(
        [
            list(range(4, 13)),
            [7, 8, 9] + [0] * 6,
            list(range(21, 30)),
            [0] * 9,
            [5] + [0] * 8,
        ]
    )
    assert torch.equal(model.profile(history), expected)
    small = ACF.from_data(tiny_data, dim=DIM, profile_size=3)
    assert torch.equal(
        small.profile(history), torch.tensor([[10, 11, 12], [7, 8, 9], [27, 28, 29], [0, 0, 0], [5, 0, 0]])
    )
    assert torch.equal(
        model.profile(history[:, :4]),
        torch.tensor([[1, 2, 3, 4], [7, 8, 9, 0], [21, 22, 23, 24], [0, 0, 0, 0], [5, 0, 0, 0]]),
    )


@torch.no_grad()
def test_empty_and_single_item_histories(tiny_data, model):
    batch = make_batch(tiny_data, [0, 1])
    out = model(batch, output_attentions=True)
    assert torch.isfinite(out.scores).all()
    user = model.user_embedding(batch.users)
    item = model.item_embedding(batch.items)
    only = model.aux_embedding(batch.history[1, :1])
    torch.testing.assert_close(out.scores[0], user[0] @ item[0])  # u_i alone
    torch.testing.assert_close(out.scores[1], (user[1] + only[0]) @ item[1])  # alpha = 1 on the one item
    assert out.attentions["profile"].values[1, 0] == 1
    # no history columns at all
    empty = Batch(batch.users, batch.items, torch.zeros(2, 0, dtype=torch.long))
    torch.testing.assert_close(model(empty).scores, (user * item).sum(-1))


@torch.no_grad()
def test_attention_override_at_both_levels(tiny_data, model):
    batch = make_batch(tiny_data, LENGTHS)

    def uniform(weights, mask):
        mask = mask.float()
        return mask / mask.sum(-1, keepdim=True).clamp(min=1)

    out = model(batch, output_attentions=True, attention_override={"profile": uniform})
    expected, _, _ = reference(model, batch, alpha_fn=lambda a: [1 / len(a)] * len(a))
    torch.testing.assert_close(out.scores, expected, atol=1e-5, rtol=1e-5)
    profile_mask = out.attentions["profile"].full_mask()
    torch.testing.assert_close(out.attentions["profile"].values, uniform(None, profile_mask))
    # closed form: the user vector is u plus the mean auxiliary vector of the profile
    profile = model.profile(batch.history)
    mean_aux = model.aux_embedding(profile).sum(1) / profile_mask.sum(1, keepdim=True).clamp(min=1)
    manual = ((model.user_embedding(batch.users) + mean_aux) * model.item_embedding(batch.items)).sum(-1)
    torch.testing.assert_close(out.scores, manual, atol=1e-5, rtol=1e-5)

    def first_only(weights, mask):
        return torch.zeros_like(weights).scatter(
            -1, torch.zeros_like(weights[..., :1], dtype=torch.long), 1.0
        ) * mask.any(-1, keepdim=True)

    out = model(batch, output_attentions=True, attention_override={"components": first_only})
    expected, _, _ = reference(model, batch, beta_fn=lambda b: [1.0] + [0.0] * (len(b) - 1))
    torch.testing.assert_close(out.scores, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out.scores, model(batch).scores)
    torch.testing.assert_close(
        out.attentions["components"].values.sum(-1), out.attentions["profile"].full_mask().float()
    )


def test_built_by_name_and_refuses_unknown_component_sources(tiny_data):
    model = build_model("acf", tiny_data.tables.spec(), dim=4)
    assert isinstance(model, ACF) and "backbone" not in model.hparams  # genre components store no region settings
    with pytest.raises(ValueError, match="components"):
        ACF(tiny_data.tables.spec(), components="pixels")


@pytest.mark.slow
@pytest.mark.parametrize("loss,negatives", [("bpr", 1), ("warp", 4)])
def test_trains_with_bpr_and_warp_and_logs_attention(tiny_data, loss, negatives):
    model = ACF.from_data(tiny_data, dim=DIM)
    config = TrainConfig.for_model(ACF, epochs=2, loss=loss, negatives=negatives, batch_size=128, attention_sample=64)
    assert config.weight_decay == 1e-5
    result = train_model(model, tiny_data, config, device="cpu", progress=False)
    assert len(result.history) == 3
    for entry in result.history:
        assert set(entry["attention"]) == {"profile", "components"}
        for stats in entry["attention"].values():
            assert 0 <= stats["normalised_entropy"] <= 1 and 0 < stats["max_weight"] <= 1
    assert all(math.isfinite(entry["train_loss"]) for entry in result.history[1:])
