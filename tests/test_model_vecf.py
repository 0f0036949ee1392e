"""VECF: the vectorised model against a loop-per-region reference of the paper's formulas, its maps, its ranking
path, integrated gradients over the candidate's regions, and the region features read from a dataset's images.

The checks every model shares (gradients, padding, taps, maps, ranking, round trip) are in
tests/test_model_contract.py (on genres, the tiny data having no images); this file builds region models."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from captum.attr import LayerIntegratedGradients
from conftest import make_tiny_dataset

from recmodels.checkpoint.io import load_checkpoint, save_checkpoint
from recmodels.data import RecData
from recmodels.data.fashion import FASHION_DIR
from recmodels.errors import CheckpointError
from recmodels.explain.attributions import integrated_gradients
from recmodels.explain.faithfulness import uniform_override
from recmodels.explain.region_report import region_tap_name
from recmodels.models import Batch
from recmodels.models.vecf import VECF
from recmodels.vision import region_features
from recmodels.vision.store import RegionFeatures
from tests.helpers import ragged_batch

GRID, FEATURES, DIM = (3, 4), 6, 8
NO_IMAGE = 5  # an item whose image is missing: every region masked


def region_model(tiny_data, **hparams) -> VECF:
    """A region VECF on a made-up 3 x 4 grid of 6-channel features, random weights everywhere."""
    torch.manual_seed(3)
    model = VECF(
        tiny_data.tables.spec(),
        dim=DIM,
        attention_dim=5,
        components="regions",
        backbone="made-up",
        component_dim=FEATURES,
        grid=list(GRID),
        **hparams,
    ).load_feature_tables(tiny_data.tables)
    generator = torch.Generator().manual_seed(4)
    features = torch.rand(tiny_data.dataset.n_items + 1, GRID[0] * GRID[1], FEATURES, generator=generator)
    mask = torch.ones(len(features), dtype=torch.bool)
    mask[[0, NO_IMAGE]] = False
    features[~mask] = 0  # as the store gives padding and items without an image
    model._use_regions(
        RegionFeatures(
            features=features, mask=mask, grid=GRID, backbone={"name": "made-up"}, fingerprint="", item_ids=[]
        ),
        "tiny",
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        for embedding in (model.user_embedding, model.item_embedding, model.item_bias):
            embedding.weight[0].zero_()
    return model.eval()


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def genre_mean(model: VECF, genre: int) -> torch.Tensor:
    """m of one genre: the mean region features of its items with an image, (R, D)."""
    items = [i for i in range(1, model.n_items + 1) if model.item_genres[i, genre] > 0 and model.has_image[i]]
    return torch.stack([model.region_table[i].float() for i in items]).mean(0)


def mean_of_genres(model: VECF, item: int) -> torch.Tensor:
    """m of an item: the mean over its genres of their m."""
    genres = [g for g in range(model.item_genres.shape[1]) if model.item_genres[item, g] > 0]
    return torch.stack([genre_mean(model, g) for g in genres]).mean(0)


def reference(model: VECF, batch: Batch, beta_fn=None):
    """The formulas of the module docstring, one history item and one region at a time. Returns the scores and
    per row beta (over the regions, [] without an image) and a (over the history, [] for "user")."""
    m, relu, config = model, torch.relu, model.config
    w_f, w_v = m.region_projection.weight[: m.key_dim], m.region_projection.weight[m.key_dim :]
    scores, betas, alphas = [], [], []
    for row in range(len(batch)):
        q = m.user_embedding.weight[batch.users[row]].clone()
        history = [int(i) for i in batch.history[row] if int(i) != 0]
        alpha = []
        if m.query == "history":
            logits = [
                float(
                    m.pool_query
                    @ torch.tanh(m.pool_projection.weight @ m.item_embedding.weight[h] + m.pool_projection.bias)
                )
                for h in history
            ]
            alpha = softmax(logits) if logits else []
            for weight, h in zip(alpha, history):
                q = q + weight * m.item_embedding.weight[h]
        profile = torch.zeros(m.n_units, config.profile_dim)
        for h in history if config.profile_dim else []:  # mean over the history of W_s (f - m); no image: 0
            if m.has_image[h]:
                for r in range(m.n_units):
                    profile[r] += m.profile_projection.weight @ (m.region_table[h, r].float() - mean_of_genres(m, h)[r])
        profile = profile / max(len(history), 1)
        item = int(batch.items[row])
        shift = mean_of_genres(m, item) if config.contrast and m.has_image[item] else torch.zeros(m.n_units, FEATURES)
        regions = [m.region_table[item, r].float() - shift[r] for r in range(m.n_units)] if m.has_image[item] else []
        logits = []
        for r, f in enumerate(regions):
            hidden = m.attention_user.weight @ q + m.attention_user.bias
            if config.content:
                hidden = hidden + w_f @ f
            if config.profile_dim:
                hidden = hidden + m.profile_attention.weight @ profile[r]
            if config.position:
                hidden = hidden + m.position[r]
            logits.append(float(m.attention_out.weight[0] @ relu(hidden)))
        beta = softmax(logits) if logits else []
        if beta_fn is not None and beta:
            beta = beta_fn(beta)
        attended = sum((b * (w_v @ f) for b, f in zip(beta, regions)), torch.zeros(m.dim))
        scores.append(float(q @ (m.item_embedding.weight[item] + attended) + m.item_bias.weight[item, 0]))
        betas.append(beta)
        alphas.append(alpha)
    return torch.tensor(scores), betas, alphas


def some_rows(tiny_data) -> Batch:
    """Ragged histories (one empty) and one candidate without an image."""
    batch = ragged_batch(tiny_data, lengths=(12, 7, 1, 0, 3, 5))
    batch.items[1] = NO_IMAGE
    return batch


PAPER = {"content": True, "profile_dim": 0, "position": False, "contrast": False}
SETTINGS = [
    {},
    PAPER,
    {"query": "history", "content": True, "profile_dim": 3, "contrast": True},
    {"query": "history", **PAPER},
]
SETTING_IDS = ["default", "paper", "history-content-profile-contrast", "history-paper"]


@pytest.mark.slow
@pytest.mark.parametrize("hparams", SETTINGS, ids=SETTING_IDS)
@torch.no_grad()
def test_forward_matches_loop_reference(tiny_data, hparams):
    model, batch = region_model(tiny_data, **hparams), some_rows(tiny_data)
    out = model(batch, output_attentions=True)
    expected, betas, alphas = reference(model, batch)
    torch.testing.assert_close(out.scores, expected, atol=1e-5, rtol=1e-5)
    regions = out.attentions["candidate_regions"].values
    for row, (beta, alpha) in enumerate(zip(betas, alphas)):
        torch.testing.assert_close(regions[row], torch.tensor(beta or [0.0] * model.n_units), atol=1e-6, rtol=1e-5)
        if model.query == "history":
            values = out.attentions["history"].values[row]
            torch.testing.assert_close(values[: len(alpha)], torch.tensor(alpha), atol=1e-6, rtol=1e-5)
            assert torch.all(values[len(alpha) :] == 0)


@torch.no_grad()
def test_maps_declare_axes_masks_and_the_grid(tiny_data):
    model, batch = region_model(tiny_data, query="history"), some_rows(tiny_data)
    maps = model(batch, output_attentions=True).attentions
    assert set(maps) == {"candidate_regions", "history"}
    regions, history = maps["candidate_regions"], maps["history"]
    assert (regions.axes, regions.level, regions.normalised_over) == (("region",), "component", "region")
    assert regions.meta["grid"] == GRID and regions.meta["components"] == "image regions"
    assert regions.meta["image_of"] == "candidate" and regions.meta["backbone"] == "made-up"
    assert regions.labels["region"][:5] == ["region 1,1", "region 1,2", "region 1,3", "region 1,4", "region 2,1"]
    mask = regions.full_mask()
    assert torch.equal(mask.all(1), batch.items != NO_IMAGE) and not mask[1].any()
    assert torch.all(regions.values[1] == 0)  # no image: no weight anywhere
    torch.testing.assert_close(regions.values.sum(1)[mask.any(1)], torch.ones(int(mask.any(1).sum())))
    assert (history.axes, history.level, history.normalised_over) == (("history",), "item", "history")
    assert torch.equal(history.axis_items["history"], batch.history)
    assert torch.equal(history.full_mask(), batch.history != 0)
    assert torch.all(history.values[3] == 0)  # empty history: no weight
    assert set(region_model(tiny_data)(batch, output_attentions=True).attentions) == {"candidate_regions"}
    genres = VECF.from_data(tiny_data, dim=DIM).eval()(batch, output_attentions=True).attentions
    assert genres["candidate_genres"].axes == ("genre",) and "grid" not in genres["candidate_genres"].meta


@torch.no_grad()
def test_empty_history_and_missing_image_have_closed_forms(tiny_data):
    model, batch = region_model(tiny_data, query="history"), some_rows(tiny_data)
    scores = model(batch).scores
    assert torch.isfinite(scores).all()
    user, item = model.user_embedding(batch.users), model.item_embedding(batch.items)
    # no image: the score is q^T e_j, with q the user's pooled query
    query, hidden, _ = model.user_queries(batch.users, batch.history)
    torch.testing.assert_close(scores[1], query[1] @ item[1] + model.item_bias.weight[NO_IMAGE, 0])
    # empty history: q = u and the profile is 0, so the user's part of the hidden layer is W_u u + b + p_r
    torch.testing.assert_close(query[3], user[3])
    torch.testing.assert_close(hidden[3], model.attention_user(user[3]) + model.position)
    no_columns = Batch(batch.users, batch.items, batch.history[:, :0])
    torch.testing.assert_close(model.user_queries(no_columns.users, no_columns.history)[0], user)


@pytest.mark.parametrize("hparams", SETTINGS[:3], ids=SETTING_IDS[:3])
@torch.no_grad()
def test_score_items_equals_forward_on_the_same_pairs(tiny_data, hparams):
    model, batch = region_model(tiny_data, **hparams), some_rows(tiny_data)
    items = torch.arange(1, tiny_data.dataset.n_items + 1)
    n, c = len(batch), len(items)
    rows = Batch(batch.users.repeat_interleave(c), items.repeat(n), batch.history.repeat_interleave(c, 0))
    expected = model(rows).scores.view(n, c)
    for chunk_rows in (65536, 100, 1):  # one chunk, several, one item at a time
        torch.testing.assert_close(
            model.score_items(batch.users, batch.history, items, chunk_rows=chunk_rows), expected, atol=1e-5, rtol=1e-5
        )
    override = {"candidate_regions": uniform_override}
    torch.testing.assert_close(
        model.score_items(batch.users, batch.history, items, attention_override=override),
        model(rows, attention_override=override).scores.view(n, c),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.slow
@torch.no_grad()
def test_uniform_override_gives_the_mean_region(tiny_data):
    model, batch = region_model(tiny_data), some_rows(tiny_data)
    out = model(batch, output_attentions=True, attention_override={"candidate_regions": uniform_override})
    expected, _, _ = reference(model, batch, beta_fn=lambda b: [1 / len(b)] * len(b))
    torch.testing.assert_close(out.scores, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out.scores, model(batch).scores)


def test_integrated_gradients_attribute_the_score_to_each_region(tiny_data):
    model, batch = region_model(tiny_data, query="history"), some_rows(tiny_data)
    result = integrated_gradients(model, batch, n_steps=64)
    change = result.scores - result.baseline_scores
    torch.testing.assert_close(result.total(), change + result.delta, atol=1e-5, rtol=1e-5)
    assert torch.all(result.delta.abs() <= 0.01 * change.abs().max())  # 1% of the largest change in the batch
    regions = result.attributions["region_tap"]
    assert regions.units == ("region",) and regions.values.shape == (len(batch), GRID[0] * GRID[1])
    assert torch.all(regions.values[1] == 0)  # a candidate without an image has nothing to attribute
    assert regions.values[0].abs().sum() > 0
    profile = result.attributions["profile_tap"]  # which history items, at which regions, shaped where it looks
    assert profile.units == ("history", "history_region") and profile.item_axis == "history"
    assert profile.values.shape == (len(batch), batch.history.shape[1], GRID[0] * GRID[1])
    assert torch.all(profile.values[batch.history == 0] == 0)
    assert region_tap_name(model, ("region",)) == "region_tap"  # the tap the region report deletes regions at
    assert profile.values[0].abs().sum() > 0

    # the tap holds [W_f f, W_v f]: moving it alone from its padding baseline (0) attributes to each region what
    # integrated gradients on the raw features f do (midpoint rule on both sides)
    def scores(users, items, history):
        return model(Batch(users, items, history)).scores

    inputs = (batch.users, batch.items, batch.history)
    on_tap = (
        LayerIntegratedGradients(scores, model.region_tap)
        .attribute(
            inputs,
            baselines=(batch.users, torch.zeros_like(batch.items), batch.history),
            n_steps=16,
            method="riemann_middle",
        )
        .sum(-1)
    )
    raw = model.region_table[batch.items].float()
    on_features = torch.zeros_like(raw)
    for step in range(16):
        features = ((step + 0.5) / 16 * raw).requires_grad_()
        handle = model.region_tap.register_forward_hook(
            lambda module, args, out, features=features: model.region_projection(features)
        )
        try:
            (gradient,) = torch.autograd.grad(scores(*inputs).sum(), features)
        finally:
            handle.remove()
        on_features += gradient * raw / 16
    torch.testing.assert_close(on_tap, on_features.sum(-1), atol=1e-5, rtol=1e-4)


@pytest.fixture
def image_data(tmp_path, monkeypatch):
    """The tiny data with real Fashion-MNIST pictures for its first 8 items (the rest have none)."""
    monkeypatch.setenv("RECMODELS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "images"
    folder.mkdir()
    dataset = make_tiny_dataset()
    for index, item_id in enumerate(dataset.item_ids[1:9]):
        shutil.copy(FASHION_DIR / "images" / f"{index + 1}.png", folder / f"{item_id}.png")
    dataset.image_dir = folder
    return RecData(dataset, max_history=12), folder


@pytest.mark.slow
def test_from_data_reads_the_region_store_and_checkpoints_refuse_other_images(image_data, tmp_path):
    data, folder = image_data
    model = VECF.from_data(data, dim=DIM, backbone="fashion-cnn").eval()
    regions = region_features(data, "fashion-cnn", progress=False)
    assert model.hparams["components"] == "regions" and model.hparams["grid"] == [7, 7]
    assert model.hparams["component_dim"] == 128 and model.hparams["region_fingerprint"] == regions.fingerprint
    torch.testing.assert_close(model.region_table.float(), regions.features, atol=1e-2, rtol=1e-2)
    assert int(model.has_image.sum()) == 8
    batch = ragged_batch(data)
    with torch.no_grad():
        before = model(batch, output_attentions=True)
    assert before.attentions["candidate_regions"].values.shape == (len(batch), 49)

    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "vecf", model, data), data=data)
    with torch.no_grad():
        assert torch.equal(loaded(batch).scores, before.scores)
    shutil.copy(FASHION_DIR / "images" / "100.png", next(folder.glob("*.png")))  # another picture
    with pytest.raises(CheckpointError, match="images or the backbone .* changed since this VECF was trained"):
        load_checkpoint(tmp_path / "vecf", data=data)


# ---------------------------------------------------------------------------------------------- issue 25, part 3
def test_image_from_zero_starts_as_the_cf_part(tiny_data):
    """W_v = 0: the attended image vector adds nothing, so the score is q^T e_j + b_j (BPR-MF's with query=user)."""
    torch.manual_seed(0)
    model = VECF(
        tiny_data.tables.spec(),
        dim=DIM,
        components="regions",
        backbone="made-up",
        component_dim=FEATURES,
        grid=list(GRID),
        content=True,
        image_from_zero=True,
    )
    w_f, w_v = model.region_projection.weight[: model.key_dim], model.region_projection.weight[model.key_dim :]
    assert torch.count_nonzero(w_v) == 0 and torch.count_nonzero(w_f) > 0  # W_f keeps its random start
    model = region_model(tiny_data, image_from_zero=True)  # random weights, then W_v zeroed by hand as at start
    with torch.no_grad():
        model.region_projection.weight[model.key_dim :].zero_()
        batch = some_rows(tiny_data)
        out = model(batch)
    cf = (model.user_embedding(batch.users) * model.item_embedding(batch.items)).sum(-1)
    torch.testing.assert_close(out.scores, cf + model.item_bias(batch.items).squeeze(-1))
    assert torch.count_nonzero(out.image_term) == 0


def test_the_image_aux_loss_ranks_by_the_image_term_alone(tiny_data):
    from recmodels.models.losses import bpr
    from recmodels.train import TrainConfig

    model = region_model(tiny_data).train()
    batch = some_rows(tiny_data)  # six rows: three positives, each with one negative
    batch.labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    batch.negatives = 1
    out = model(batch)
    plain = TrainConfig.for_model(VECF, loss="bpr")
    with_aux = TrainConfig.for_model(VECF, loss="bpr", aux_loss="image", aux_weight=0.5)
    image = bpr(out.image_term[:3], out.image_term[3:].view(3, 1))
    torch.testing.assert_close(model.loss(out, batch, with_aux), model.loss(out, batch, plain) + 0.5 * image)
    image.backward()
    assert model.region_projection.weight.grad is not None  # the aux term trains the image pathway


def test_the_image_pathway_trains_with_its_own_lr_and_weight_decay(tiny_data):
    from recmodels.errors import InvalidArgumentError
    from recmodels.models.baselines import BPRMF
    from recmodels.train import TrainConfig

    model = region_model(tiny_data, query="history")
    config = TrainConfig.for_model(VECF, lr=1e-3, weight_decay=0.0, image_lr=1e-4, image_weight_decay=1e-2)
    rest, image = config.parameter_groups(model)
    names = {id(p): name for name, p in model.named_parameters()}
    assert {names[id(p)].split(".")[0] for p in image["params"]} == {
        "attention_user", "region_projection", "profile_projection", "profile_attention", "position", "attention_out"
    }  # fmt: skip
    assert {names[id(p)].split(".")[0] for p in rest["params"]} == {
        "user_embedding", "item_embedding", "item_bias", "pool_projection", "pool_query"
    }  # fmt: skip
    assert image["lr"] == 1e-4 and image["weight_decay"] == 1e-2 and "lr" not in rest
    assert len(TrainConfig.for_model(VECF).parameter_groups(model)) == 1  # unset: one group, as before
    with pytest.raises(InvalidArgumentError, match="image_lr sets the image pathway apart, but model 'bpr' has none"):
        TrainConfig.for_model(BPRMF, image_lr=1e-4)
