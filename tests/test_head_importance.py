"""Head importance (Michel et al., 2019): masking a head through the override against the same head removed by
hand, dead heads at exactly 0, one batched forward against one pair at a time, the service's per-pair and
dataset-level answers, and how the app draws (layer, head, query, key) maps and the importance grid."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from recmodels.errors import InvalidArgumentError
from recmodels.explain.heads import find_heads, head_changes, pair_head_importance
from recmodels.models import Batch, model_class
from recmodels.serving.service import RecService
from tests.helpers import ragged_batch

SMALL = {
    "sasrec": {"dim": 16, "heads": 2, "layers": 2, "inner": 32, "max_length": 20},
    "bert4rec": {"dim": 16, "heads": 2, "layers": 2, "inner": 32, "max_length": 21},
    "nrms": {"dim": 16, "heads": 4, "pool_dim": 8},
    "two_tower": {"dim": 16, "heads": 4, "hidden": (16, 8)},
    "inttower": {"dim": 8, "hidden": (16, 8), "user_heads": 3, "item_heads": 2, "head_dim": 4},
}
GRIDS = {
    "sasrec": ("self_attention", 2, 2),
    "bert4rec": ("self_attention", 2, 2),
    "nrms": ("self_attention", 1, 4),
    "two_tower": ("user_attention", 1, 4),
    "inttower": ("head_similarity", 3, 3),
}  # 2 user layers + item heads


def _model(name, data):
    """A small model with random, non-degenerate weights (fresh heads start near uniform or at zero)."""
    torch.manual_seed(0)
    model = model_class(name).from_data(data, **SMALL[name]).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def _batch(data) -> Batch:
    return ragged_batch(data, lengths=(12, 7, 2, 5), width=12)


def _scores(model, batch, override=None) -> torch.Tensor:
    with torch.no_grad():
        return model(batch, attention_override=override).scores


@contextlib.contextmanager
def _without_head(name, model, layer, head):
    """``model`` with head (layer, head) adding nothing, by editing weights in place (restored after): the columns
    of the output projection that read the head (transformers), its value map (NRMS, the two-tower) or the user
    head's projection (IntTower)."""
    if name in ("sasrec", "bert4rec"):
        attention = model.encoder.layers[layer].attention
        columns = slice(head * attention.head_dim, (head + 1) * attention.head_dim)
        cut = [(attention.output.weight, (slice(None), columns))]
    elif name == "nrms":
        cut = [(model.value, (head,))]
    else:
        linear = model.attention_value if name == "two_tower" else model.user_head_projections[layer]
        rows = (slice(head * model.head_dim, (head + 1) * model.head_dim),)
        cut = [(linear.weight, rows), (linear.bias, rows)]
    saved = [tensor.detach().clone() for tensor, _ in cut]
    with torch.no_grad():
        for tensor, index in cut:
            tensor[index] = 0
    try:
        yield model
    finally:
        with torch.no_grad():
            for (tensor, _), original in zip(cut, saved):
                tensor.copy_(original)


# ---------------------------------------------------------------- the masking itself
@pytest.mark.parametrize("name", list(SMALL))
def test_masking_a_head_equals_removing_it_by_hand(name, ml100k):
    model, batch = _model(name, ml100k), _batch(ml100k)
    full, grids = head_changes(model, batch)
    map_name, rows, columns = GRIDS[name]
    assert list(grids) == [map_name] and grids[map_name].shape == (len(batch), rows, columns)
    torch.testing.assert_close(full, _scores(model, batch), atol=1e-4, rtol=1e-5)
    user_layers = rows - 1 if name == "inttower" else rows
    for layer in range(user_layers):
        for head in range(columns):
            with _without_head(name, model, layer, head):
                removed = _scores(model, batch)
            torch.testing.assert_close(grids[map_name][:, layer, head], removed - full, atol=1e-4, rtol=1e-4)
    if name in ("nrms", "two_tower"):  # a plain override that zeroes one head's weights says the same
        for head in range(columns):

            def zero_head(weights, mask, head=head):
                keep = torch.ones(weights.shape[1], dtype=weights.dtype)
                keep[head] = 0
                return weights * keep.view(1, -1, *[1] * (weights.dim() - 2))

            removed = _scores(model, batch, {map_name: zero_head})
            torch.testing.assert_close(grids[map_name][:, 0, head], removed - full, atol=1e-4, rtol=1e-4)


def test_an_intower_item_head_is_left_out_of_the_max(ml100k):
    model, batch = _model("inttower", ml100k), _batch(ml100k)
    full, grids = head_changes(model, batch)
    with torch.no_grad():
        out = model(batch, output_attentions=True)
    similarity = out.attentions["head_similarity"].values  # (B, L, H_u, H_i)
    assert torch.isnan(grids["head_similarity"][:, 2, 2]).all(), "two item heads: the third column is empty"
    for head in range(2):
        others = torch.cat([similarity[..., :head], similarity[..., head + 1 :]], -1)
        by_hand = others.amax(-1).sum((1, 2)) + model.bias
        torch.testing.assert_close(grids["head_similarity"][:, 2, head], by_hand - full, atol=1e-4, rtol=1e-4)
    heads = find_heads(out.attentions)[0]
    assert heads.rows == ("user heads · layer 1", "user heads · layer 2", "item heads")
    assert heads.columns == ("head 1", "head 2", "head 3")


@pytest.mark.parametrize("name", list(SMALL))
def test_a_head_zeroed_in_its_weights_has_importance_exactly_zero(name, ml100k):
    model, batch = _model(name, ml100k), _batch(ml100k)
    with torch.no_grad():  # the value slice of one head (IntTower: a user head's projection)
        if name in ("sasrec", "bert4rec"):
            value = model.encoder.layers[1].attention.value
            value.weight[8:16], value.bias[8:16] = 0, 0  # layer 2, head 2
            cell = (1, 1)
        elif name == "nrms":
            model.value[2] = 0
            cell = (0, 2)
        elif name == "two_tower":
            model.attention_value.weight[4:8], model.attention_value.bias[4:8] = 0, 0
            cell = (0, 1)
        else:
            projection = model.user_head_projections[0]
            projection.weight[4:8], projection.bias[4:8] = 0, 0
            cell = (0, 1)
    _, grids = head_changes(model, batch)
    grid = next(iter(grids.values()))
    assert (grid[:, cell[0], cell[1]] == 0).all(), grid[:, cell[0], cell[1]]
    others = torch.ones_like(grid, dtype=torch.bool)
    others[:, cell[0], cell[1]] = False
    assert (grid[others & ~torch.isnan(grid)].abs() > 0).any(), "the live heads do matter"


@pytest.mark.parametrize("name", list(SMALL))
def test_one_batched_forward_equals_one_pair_at_a_time(name, ml100k):
    model, batch = _model(name, ml100k), _batch(ml100k)
    full, grids = head_changes(model, batch)
    for row in range(len(batch)):
        single = Batch(batch.users[row : row + 1], batch.items[row : row + 1], batch.history[row : row + 1])
        one_full, one = head_changes(model, single)
        torch.testing.assert_close(one_full[0], full[row], atol=1e-4, rtol=1e-5)
        for map_name, grid in grids.items():
            torch.testing.assert_close(one[map_name][0], grid[row], atol=1e-4, rtol=1e-4, equal_nan=True)
    views = pair_head_importance(model, batch)  # the first row, labelled
    np.testing.assert_allclose(views[GRIDS[name][0]].change, grids[GRIDS[name][0]][0].numpy(), atol=1e-4, rtol=1e-4)


def test_the_forward_runs_once_with_every_head_masked_on_its_own_row(ml100k):
    model, batch = _model("sasrec", ml100k), _batch(ml100k)
    seen = []
    original = model.forward

    def spy(rows, output_attentions=False, attention_override=None):
        seen.append((len(rows), output_attentions))
        return original(rows, output_attentions, attention_override)

    model.forward = spy
    head_changes(model, batch)
    assert seen == [(1, True), (len(batch) * 5, False)], "one row for the layout, then 1 + 4 rows per pair"


def test_models_without_heads_return_nothing(ml100k):
    model = model_class("din").from_data(ml100k).eval()
    batch = _batch(ml100k)
    full, grids = head_changes(model, batch)
    assert grids == {} and full.shape == (len(batch),)
    assert pair_head_importance(model, batch) == {}


# ---------------------------------------------------------------- the service
@pytest.fixture(scope="module")
def sasrec_service(ml100k):
    model = _model("sasrec", ml100k)
    with torch.no_grad():  # a dead head: layer 2, head 1 reads nothing
        value = model.encoder.layers[1].attention.value
        value.weight[:8], value.bias[:8] = 0, 0
    return RecService(model, ml100k, device="cpu")


def test_the_explanation_carries_a_labelled_layer_by_head_table(sasrec_service):
    item = sasrec_service.recommend("13", k=1)["item"][0]
    explanation = sasrec_service.explain("13", item, attributions=False)
    importance = explanation.head_importance["self_attention"]
    assert importance.score == pytest.approx(explanation.score, abs=1e-4)
    table = importance.table()
    assert list(table.index) == ["layer 1", "layer 2"] and list(table.columns) == ["head 1", "head 2"]
    assert table.loc["layer 2", "head 1"] == 0.0
    frame = importance.to_frame()
    assert list(frame.columns) == ["layer", "head", "score_change", "masked_score"] and len(frame) == 4
    assert "head_importance" in explanation.timings
    assert sasrec_service.explain("13", item, attributions=False, head_importance=False).head_importance == {}
    with pytest.raises(InvalidArgumentError, match="head_importance must be True or False"):
        sasrec_service.explain("13", item, head_importance="yes")


@pytest.mark.slow
def test_diagnostics_give_the_distribution_of_each_head_over_a_seeded_sample(sasrec_service, ml100k):
    users = [str(u) for u in range(1, 31)]
    report = sasrec_service.diagnostics(users=users, head_users=10, seed=3)
    heads = report.head_importance
    assert heads.pairs_from == "top1" and heads.tiny == 1e-3
    summary = heads.summary
    assert list(summary[["layer", "head"]].itertuples(index=False, name=None)) == [
        ("layer 1", "head 1"),
        ("layer 1", "head 2"),
        ("layer 2", "head 1"),
        ("layer 2", "head 2"),
    ]
    assert (summary["map"] == "self_attention").all() and (summary["pairs"] == 10).all()
    assert (summary["q10"] <= summary["median"]).all() and (summary["median"] <= summary["q90"]).all()
    dead = summary[(summary["layer"] == "layer 2") & (summary["head"] == "head 1")].iloc[0]
    assert dead["share_tiny"] == 1.0 and dead["mean_abs_change"] == 0.0, "the dead head stands out"
    assert (summary.drop(dead.name)["share_tiny"] < 1).all()
    grid = heads.grid("self_attention", "share_tiny")
    assert grid.shape == (2, 2) and grid.loc["layer 2", "head 1"] == 1.0
    cases = set(heads.rows["case"])
    assert len(cases) == 10 and cases <= set(users) and len(heads.rows) == 40
    # each case is read with the user's top-1 recommendation: the same pair the service explains
    first = heads.rows[heads.rows["case"] == sorted(cases)[0]]
    top = sasrec_service.recommend(sorted(cases)[0], k=1)
    assert first["score"].iloc[0] == pytest.approx(top["score"][0], abs=1e-4)
    again = sasrec_service.diagnostics(users=users, head_users=10, seed=3)
    assert set(again.head_importance.rows["case"]) == cases, "seeded"
    tested = sasrec_service.diagnostics(users=["1", "2", "3"], head_pairs="test").head_importance
    assert tested.pairs_from == "test" and set(tested.rows["case"]) == {"1", "2", "3"}


def test_diagnostics_arguments_are_checked_with_one_sentence(sasrec_service):
    for kwargs, message in (
        ({"head_pairs": "last"}, "head_pairs must be one of top1, test"),
        ({"tiny": -1.0}, "tiny must be a number from 0 upwards"),
        ({"tiny": "small"}, "tiny must be a number from 0 upwards"),
        ({"tiny": float("nan")}, "tiny must be a number from 0 upwards"),
        ({"head_users": -1}, "head_users must be a whole number"),
        ({"head_users": True}, "head_users must be a whole number"),
        ({"seed": 1.5}, "seed must be a whole number"),
    ):
        with pytest.raises(InvalidArgumentError, match=message):
            sasrec_service.diagnostics(users=["1"], **kwargs)
    assert sasrec_service.diagnostics(users=["1"], head_users=0).head_importance is None


@pytest.mark.slow
def test_a_model_without_heads_has_no_head_importance_in_the_service(ml100k):
    model = model_class("din").from_data(ml100k).eval()
    service = RecService(model, ml100k, device="cpu")
    assert service.diagnostics(users=["1", "2"]).head_importance is None
    item = service.recommend("1", k=1)["item"][0]
    assert service.explain("1", item, attributions=False).head_importance == {}


# ---------------------------------------------------------------- the app
def _layer_head_view(labels=None):
    from recmodels.explain.views import MapView

    rng = np.random.default_rng(0)
    values = rng.random((2, 3, 4, 4))
    values /= values.sum(-1, keepdims=True)
    mask = np.ones(values.shape, bool)
    mask[..., 0, :] = mask[..., :, 0] = False  # a padded position
    titles = labels or [f"film {i}" for i in range(4)]
    axes = ("layer", "head", "query_position", "key_position")
    return MapView(
        "self_attention",
        "head",
        axes,
        values,
        mask,
        "key_position",
        {
            "layer": ["layer 1", "layer 2"],
            "head": ["head 1", "head 2", "head 3"],
            "query_position": titles,
            "key_position": titles,
        },
        {"query_position": list("abcd"), "key_position": list("abcd")},
        "",
        {},
        head_similarity=np.zeros((3, 3)),
    )


@pytest.mark.slow
def test_the_registry_draws_layer_by_head_maps_with_their_choices():
    from recmodels.viz.registry import ALL_LAYERS, MEAN_OVER_LAYERS, choices_for, entry_for, figures_for, tab_of

    view = _layer_head_view()
    assert entry_for(view).name == "layers and heads" and tab_of(view) == "Heads"
    choices = choices_for(view)
    assert choices[:4] == [ALL_LAYERS, MEAN_OVER_LAYERS, "layer 1", "layer 2"] and "layer 2 · head 3" in choices
    grid = figures_for(view)[0].figure
    assert len(grid.data) == 6, "one heatmap per (layer, head)"
    reading_order = sorted(grid.layout.annotations, key=lambda a: (-a.y, a.x))  # top row first
    assert [a.text for a in reading_order] == [f"layer {layer} · head {h}" for layer in (1, 2) for h in (1, 2, 3)]
    assert grid.data[0].z.shape == (3, 3), "the padded position is not drawn"
    one_layer = figures_for(view, choice="layer 2")[0].figure
    assert len(one_layer.data) == 3 and one_layer.data[0].z.shape == (3, 3)
    one_head = figures_for(view, choice="layer 2 · head 3")[0].figure
    np.testing.assert_allclose(one_head.data[0].z, view.values[1, 2][1:, 1:])
    mean = figures_for(view, choice=MEAN_OVER_LAYERS)[0].figure
    np.testing.assert_allclose(mean.data[0].z, view.values.mean((0, 1))[1:, 1:])
    for choice in choices:
        drawn = figures_for(view, choice=choice)
        assert [d.derived for d in drawn] == [False, True], "the map, then the similarity of its heads"
        json.loads(drawn[0].figure.to_json())
    shifted = _layer_head_view()
    shifted.normalised_over = None  # not a distribution: not this entry
    assert entry_for(shifted).name != "layers and heads"


def test_titles_in_the_layer_by_head_grid_are_literal():
    from recmodels.viz.registry import figures_for

    view = _layer_head_view(labels=["<b>bold</b>", "a & b", "<script>x</script>", "plain"])
    text = figures_for(view)[0].figure.to_json()
    assert "<b>" not in text and "<script>" not in text and "&lt;script&gt;" in text


def test_the_importance_grid_is_diverging_centred_on_zero_and_blank_where_no_head():
    import pandas as pd

    from recmodels.viz import maps as plots

    table = pd.DataFrame(
        [[-0.5, 0.25], [0.1, np.nan]], index=["user heads · layer 1", "item heads"], columns=["head 1", "<i>head 2</i>"]
    )
    fig = plots.head_grid_figure(table)
    heatmap = fig.data[0]
    assert heatmap.zmid == 0 and heatmap.zmin == -0.5 and heatmap.zmax == 0.5
    assert heatmap.text[1][1] == "" and heatmap.text[0][0] == "-0.5"
    assert "<i>" not in fig.to_json()
    empty = plots.head_grid_figure(pd.DataFrame([[0.0]], index=["layer 1"], columns=["head 1"]))
    assert empty.data[0].zmax == 1.0, "all zeros still get a scale"


@pytest.mark.slow
def test_the_explorer_shows_head_importance_beside_the_heads():
    from streamlit.testing.v1 import AppTest

    from tests.test_app import ENTRY, _pick_checkpoint, _shipped

    at = AppTest.from_file(ENTRY, default_timeout=180).run()
    _pick_checkpoint(at, _shipped("nrms"))
    assert not at.exception and not at.error
    heads = next(tab for tab in at.tabs if tab.label == "Heads")
    assert any("Head importance" in m.value for m in heads.markdown)
    assert any("Red: masking the head lowers this score" in c.value for c in heads.caption)
    assert len(heads.get("plotly_chart")) >= 3, "the heads, their importance and their similarity"
