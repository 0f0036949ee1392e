"""Attributions (IG completeness, leave-one-out), collapse statistics on known distributions, faithfulness
helpers, the service's answers and error types, and thread safety."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from recmodels.checkpoint.config import CheckpointConfig
from recmodels.errors import EmptyHistoryError, InvalidArgumentError, RecModelsError, UnknownItemError, UnknownUserError
from recmodels.explain.attributions import (
    _padding_baseline,
    _scores_with_tap_outputs,
    _tap_outputs,
    integrated_gradients,
    leave_one_out,
    remove_positions,
)
from recmodels.explain.collapse import js_divergence, pairwise_head_js, row_statistics
from recmodels.explain.explainers import Explainer, IntegratedGradients, LeaveOneOut, PerturbationTests
from recmodels.explain.faithfulness import (
    catalogue_scores,
    kendall_tau,
    permute_override,
    perturbation_tests,
    topk_overlap,
    uniform_override,
)
from recmodels.explain.pipeline import primary_item_map
from recmodels.explain.region_recovery import region_map_name
from recmodels.explain.views import axis_label, cell_labels
from recmodels.models import AttentionMap, Batch, available_models, model_class
from recmodels.serving.service import RecService, import_model_module
from recmodels.train import seed_everything

ATTRIBUTED_MODELS = [name for name in available_models() if name != "mostpop"]


def _model(name, data):
    seed_everything(0)
    model = model_class(name).from_data(data).eval()
    with torch.no_grad():  # random, non-degenerate weights everywhere (fresh heads often start at zero)
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _rows(data, n=6):
    rows = data.ctr_rows(2).take(slice(0, n))
    return Batch.from_numpy(rows.users, rows.items, rows.history)


# ---------------------------------------------------------------- collapse statistics
def test_statistics_of_uniform_and_one_hot():
    mask = torch.tensor([[True, True, True, True, False]])
    uniform = torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0]])
    one_hot = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    u, o = row_statistics(uniform, mask), row_statistics(one_hot, mask)
    assert u["normalised_entropy"].item() == pytest.approx(1.0)
    assert o["normalised_entropy"].item() == pytest.approx(0.0)
    assert u["max_weight"].item() == pytest.approx(0.25) and o["max_weight"].item() == pytest.approx(1.0)
    assert u["effective_number"].item() == pytest.approx(4.0) and o["effective_number"].item() == pytest.approx(1.0)
    assert u["gini"].item() == pytest.approx(0.0) and o["gini"].item() == pytest.approx(3 / 4)


def test_statistics_renormalise_unnormalised_weights_and_ignore_padding():
    mask = torch.tensor([[True, True, False]])
    raw = torch.tensor([[2.0, 2.0, 9.0]])  # DIN-style raw weights; the padded 9 must not count
    stats = row_statistics(raw, mask)
    assert stats["normalised_entropy"].item() == pytest.approx(1.0)
    assert stats["max_weight"].item() == pytest.approx(0.5)
    single = row_statistics(torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]]))
    assert math.isnan(single["normalised_entropy"].item())  # one valid position says nothing about collapse


def test_js_divergence_of_identical_and_disjoint_heads():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])
    q = torch.tensor([0.0, 0.0, 0.5, 0.5])
    assert js_divergence(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert js_divergence(p, q).item() == pytest.approx(math.log(2))
    heads = torch.stack([p, p, q]).unsqueeze(0)  # (B=1, H=3, n)
    matrix = pairwise_head_js(heads, torch.ones_like(heads, dtype=torch.bool), head_dim=1)
    assert matrix[0, 1].item() == pytest.approx(0.0, abs=1e-7)
    assert matrix[0, 2].item() == pytest.approx(math.log(2))
    assert torch.allclose(matrix, matrix.T)


# ---------------------------------------------------------------- faithfulness helpers
def test_kendall_tau_and_overlap_by_hand():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # pairs: (1,2) concordant, (1,3) concordant, (2,3) discordant -> (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert topk_overlap([0.9, 0.5, 0.1, 0.0], [0.1, 0.8, 0.7, 0.0], k=2) == pytest.approx(0.5)


def test_overrides_keep_padding_at_zero():
    weights = torch.tensor([[0.7, 0.2, 0.1, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert torch.allclose(uniform_override(weights, mask), torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]))
    permuted = permute_override(seed=1)(weights, mask)
    assert permuted[0, 3] == 0
    assert sorted(permuted[0, :3].tolist()) == pytest.approx(sorted(weights[0, :3].tolist()))


def test_remove_positions_shifts_left():
    history = torch.tensor([5, 6, 7, 0])
    out = remove_positions(history, torch.tensor([0, 2]))
    assert out.tolist() == [[6, 7, 0, 0], [5, 6, 0, 0]]


# ---------------------------------------------------------------- attributions on every model
@pytest.mark.parametrize("name", ATTRIBUTED_MODELS)
def test_integrated_gradients_are_complete(name, tiny_data):
    model = _model(name, tiny_data)
    batch = _rows(tiny_data)
    result = integrated_gradients(model, batch, n_steps=64)
    assert torch.allclose(result.scores, model(batch).scores, atol=1e-5)
    change = result.scores - result.baseline_scores
    # completeness: the attributions add up to score - baseline score, up to the reported delta
    assert torch.allclose(result.total(), change + result.delta, atol=1e-5)
    assert torch.all(result.delta.abs() <= 0.01 * change.abs().clamp(min=1e-2)), (result.delta, change)
    for attribution in result.attributions.values():
        assert attribution.values.shape[0] == len(batch)
        assert torch.isfinite(attribution.values).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTRIBUTED_MODELS)
def test_integrated_gradients_to_one_tap_hold_the_others_and_stay_complete(name, tiny_data):
    model = _model(name, tiny_data)
    batch = _rows(tiny_data)
    with torch.no_grad():  # the docs' target: |delta| within 1% of the range of the user's catalogue scores
        catalogue = model.score_items(batch.users, batch.history, torch.arange(1, tiny_data.dataset.n_items + 1))
    score_range = catalogue.max(1).values - catalogue.min(1).values
    for tap in model.input_taps():
        result = integrated_gradients(model, batch, n_steps=64, taps=[tap])
        assert list(result.attributions) == [tap]
        # the baseline moves this tap alone: the others keep their real outputs
        held = {other: out for other, out in _tap_outputs(model, model.input_taps(), batch).items() if other != tap}
        alone = _tap_outputs(model, {tap: model.input_taps()[tap]}, Batch(*_padding_baseline(batch)))
        expected = _scores_with_tap_outputs(model, model.input_taps(), batch, {**held, **alone})
        assert torch.allclose(result.baseline_scores, expected, atol=1e-5), tap
        change = result.scores - result.baseline_scores
        assert torch.allclose(result.total(), change + result.delta, atol=1e-5)
        assert torch.all(result.delta.abs() <= 0.01 * score_range), (tap, result.delta, score_range)
    with pytest.raises(InvalidArgumentError, match="has no input tap 'nope'; its taps are"):
        integrated_gradients(model, batch, taps=["nope"])
    with pytest.raises(InvalidArgumentError, match="non-empty list of tap names"):
        integrated_gradients(model, batch, taps="history_tap")


@pytest.mark.parametrize("name", ATTRIBUTED_MODELS)
def test_leave_one_out_matches_recomputed_scores(name, tiny_data):
    model = _model(name, tiny_data)
    batch = _rows(tiny_data, 1)
    history = batch.history[0]
    occlusion = leave_one_out(model, int(batch.users[0]), int(batch.items[0]), history)
    valid = torch.nonzero(history != 0).squeeze(1)
    assert torch.isnan(occlusion[history == 0]).all()
    full = model(batch).scores[0]
    for position in valid[:4]:
        kept = torch.cat([history[:position], history[position + 1 :], torch.zeros(1, dtype=torch.long)])
        removed = model(Batch(batch.users, batch.items, kept.unsqueeze(0))).scores[0]
        assert occlusion[position].item() == pytest.approx((full - removed).item(), abs=1e-5)


@pytest.mark.parametrize("name", [n for n in ATTRIBUTED_MODELS if n not in ("bpr", "ease")])  # no attention
def test_catalogue_scores_under_an_override_match_forward_row_by_row(name, tiny_data):
    # perturbation tests rank the catalogue through score_items; it must apply overrides exactly as forward does
    model = _model(name, tiny_data)
    batch = _rows(tiny_data, 1)
    maps = model(batch, output_attentions=True).attentions
    distributions = [n for n, m in maps.items() if m.normalised_over is not None]
    assert distributions, f"{name} exposes no distribution to override"
    items = torch.arange(1, tiny_data.dataset.n_items + 1)
    user, history = int(batch.users[0]), batch.history[0]
    uniform = {n: uniform_override for n in distributions}
    ranked = catalogue_scores(model, user, history, items, uniform)
    with torch.no_grad():
        rows = model(
            Batch(batch.users.expand(len(items)), items, history.expand(len(items), -1)), attention_override=uniform
        ).scores
    assert torch.allclose(ranked, rows, atol=1e-5)
    assert not torch.allclose(ranked, catalogue_scores(model, user, history, items))
    # one permutation for the user, the same for every candidate: as forward on that one row
    permuted = {n: permute_override(3) for n in distributions}
    ranked = catalogue_scores(model, user, history, items, permuted)
    with torch.no_grad():
        for item in items[:5]:
            row = model(Batch(batch.users, item.view(1), batch.history), attention_override=permuted).scores[0]
            assert ranked[item - 1].item() == pytest.approx(row.item(), abs=1e-5)


def test_attribution_leaves_no_hook_on_the_shared_model(tiny_data):
    model = _model(ATTRIBUTED_MODELS[0], tiny_data)
    integrated_gradients(model, _rows(tiny_data), n_steps=8)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------- the service
def _service(name, data) -> RecService:
    model = _model(name, data)
    config = CheckpointConfig.describe(
        model,
        data,
        history=[
            {"epoch": 0, "train_loss": None, "valid": {}, "attention": {}},
            {"epoch": 1, "train_loss": 0.5, "valid": {"ndcg@10": 0.1}, "attention": {}},
        ],
    )
    return RecService(model, data, config, device="cpu")


@pytest.fixture(scope="module")
def services(tiny_data):
    return {name: _service(name, tiny_data) for name in ATTRIBUTED_MODELS}


def test_service_names_users_and_items_by_their_own_ids(services, tiny_data):
    service = next(iter(services.values()))
    users = service.users()
    assert list(users["user"][:3]) == ["1", "2", "3"] and "age" in users.columns
    history = service.history("4")
    assert list(history.columns) == ["item", "title", "genres", "rating", "time", "part", "image"]
    assert history["time"].is_monotonic_increasing
    recs = service.recommend("4", k=5)
    assert list(recs["rank"]) == [1, 2, 3, 4, 5]
    assert not set(recs["item"]) & set(history["item"])  # exclude_seen
    assert recs["score"].is_monotonic_decreasing
    everything = service.recommend("4", k=tiny_data.dataset.n_items, exclude_seen=False)
    assert len(everything) == tiny_data.dataset.n_items


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTRIBUTED_MODELS)
def test_explanations_carry_labelled_maps_and_attributions(name, services):
    service = services[name]
    item = service.recommend("5", k=1)["item"][0]
    explanation = service.explain("5", item, n_steps=50)
    assert explanation.rank == 1
    for view in explanation.maps.values():
        assert set(view.labels) == set(view.axes)
        assert all(len(view.labels[a]) == n for a, n in zip(view.axes, view.values.shape))
        if view.normalised_over is not None:
            sums = np.where(view.mask, view.values, 0).sum(axis=view.axes.index(view.normalised_over))
            valid_rows = view.mask.any(axis=view.axes.index(view.normalised_over))
            assert np.allclose(sums[valid_rows], 1.0, atol=1e-5) or view.meta.get("unnormalised")
        assert len(view.to_frame()) == view.values.size
    assert explanation.attributions
    scores = service.recommend("5", k=len(service.data.dataset.item_ids) - 1, exclude_seen=False)["score"]
    assert abs(explanation.delta) <= 0.01 * (scores.max() - scores.min())  # the target: 1% of the range
    assert explanation.perturbations is not None and explanation.perturbations["perturbation"][0] == "none"
    assert set(explanation.per_item["item"]) == set(explanation.history["item"])
    if name != "bpr":  # every model that reads the history attributes to its items (ACF: to its profile items)
        assert explanation.per_item["integrated_gradients"].notna().any()
        assert np.allclose(explanation.per_item["leave_one_out"].notna(), True)
    if explanation.agreement_map is not None:
        assert explanation.per_item["attention"].notna().any()
        assert all(-1 <= v <= 1 for v in explanation.agreement.values() if not np.isnan(v))


def test_explaining_an_item_from_the_history_uses_only_earlier_interactions(services):
    service = next(iter(services.values()))
    history = service.history("3")
    item = history["item"].iloc[10]
    explanation = service.explain("3", item, attributions=False)
    earlier = history[history["time"] < history["time"].iloc[10]]["item"]
    assert set(explanation.history["item"]) <= set(earlier)
    assert item not in set(explanation.history["item"])


def test_errors_are_typed_with_one_sentence(services):
    service = next(iter(services.values()))
    with pytest.raises(UnknownUserError, match="User 'nobody' is not in tiny"):
        service.recommend("nobody")
    with pytest.raises(UnknownItemError, match="Item '9999' is not in the tiny catalogue"):
        service.explain("1", "9999")
    first_item = service.history("1")["item"].iloc[0]
    with pytest.raises(EmptyHistoryError, match="no interactions before"):
        service.explain("1", first_item)
    with pytest.raises(ValueError, match="k must be a whole number from 1"):
        service.recommend("1", k=0)
    for error in (UnknownUserError("x y."), UnknownItemError("x y.")):
        assert str(error) == "x y."


@pytest.mark.slow
def test_diagnostics_and_training_history(services):
    for service in services.values():
        report = service.diagnostics(batch_size=7)
        if service.model(
            Batch(*[torch.ones(1, dtype=torch.long)] * 2, torch.ones(1, 3, dtype=torch.long)), output_attentions=True
        ).attentions:
            assert not report.rows.empty
            assert report.rows["normalised_entropy"].between(0, 1 + 1e-6).all()
            assert set(report.summary["map"]) <= set(report.rows["map"])
        for matrix in report.head_similarity.values():
            assert np.allclose(np.diag(matrix), 0, atol=1e-6)
        assert list(service.training_history()["epoch"]) == [0, 1]


@pytest.mark.slow
def test_sixteen_threads_get_the_serial_answers(services):
    service = services[ATTRIBUTED_MODELS[-1]]
    users = [str(u) for u in range(1, 17)]

    def work(user):
        recs = service.recommend(user, k=5)
        explanation = service.explain(user, recs["item"][0], n_steps=8)
        maps = {k: v.values.copy() for k, v in explanation.maps.items()}
        attributions = {k: v.values.copy() for k, v in explanation.attributions.items()}
        return recs, maps, attributions, explanation.perturbations

    serial = [work(u) for u in users]
    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = list(pool.map(work, users))
    for (r1, m1, a1, p1), (r2, m2, a2, p2) in zip(serial, threaded):
        pd.testing.assert_frame_equal(r1, r2)
        assert m1.keys() == m2.keys() and all(np.array_equal(m1[k], m2[k]) for k in m1)
        assert a1.keys() == a2.keys() and all(np.array_equal(a1[k], a2[k]) for k in a1)
        pd.testing.assert_frame_equal(p1, p2)
    assert all(not m._forward_hooks for m in service.model.modules())


# ---------------------------------------------------------------- the pipeline against the math it runs
def test_every_explainer_has_the_one_interface(tiny_data):
    model = _model("din", tiny_data)
    batch = _rows(tiny_data, 3)
    for explainer in (IntegratedGradients(n_steps=8), LeaveOneOut(), PerturbationTests()):
        assert isinstance(explainer, Explainer) and explainer.name
    per_row = [leave_one_out(model, int(u), int(i), h) for u, i, h in zip(batch.users, batch.items, batch.history)]
    assert torch.equal(LeaveOneOut().attribute(model, batch).isnan(), torch.stack(per_row).isnan())
    assert torch.allclose(LeaveOneOut().attribute(model, batch).nan_to_num(), torch.stack(per_row).nan_to_num())
    with pytest.raises(ValueError, match="one \\(user, item\\) row"):
        PerturbationTests().attribute(
            model,
            batch,
            item_attention=torch.zeros(12),
            distribution_maps=[],
            excluded=torch.zeros(tiny_data.dataset.n_items, dtype=torch.bool),
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["din", "nrms", "acf"])
def test_explanation_gives_the_numbers_of_the_functions_it_runs(name, services, tiny_data):
    service, model = services[name], services[name].model
    item = service.recommend("5", k=3)["item"][2]
    explanation = service.explain("5", item, n_steps=20)
    user_index, item_index = tiny_data.dataset.user_index("5"), tiny_data.dataset.item_index(item)
    history = torch.as_tensor(tiny_data.full_history(np.array([user_index]))[0])  # an unseen item: full history
    batch = Batch(torch.tensor([user_index]), torch.tensor([item_index]), history.unsqueeze(0))
    with torch.no_grad():
        out = model(batch, output_attentions=True)
    assert explanation.score == float(out.scores[0])
    for map_name, attention in out.attentions.items():
        assert np.array_equal(explanation.maps[map_name].values, attention.values[0].numpy())
    reference = integrated_gradients(model, batch, n_steps=20)
    assert explanation.delta == float(reference.delta[0]) and explanation.n_steps == 20
    for tap, attribution in reference.attributions.items():
        assert np.array_equal(explanation.attributions[tap].values, attribution.values[0].numpy())
    occlusion = leave_one_out(model, user_index, item_index, history).numpy()
    assert np.array_equal(explanation.per_item["leave_one_out"], occlusion[explanation.per_item["position"]])
    seen = torch.zeros(tiny_data.dataset.n_items, dtype=torch.bool)
    seen[[tiny_data.dataset.item_index(i) - 1 for i in service.history("5")["item"]]] = True
    _, attention = primary_item_map(out.attentions, history.numpy())
    rows = perturbation_tests(
        model,
        user_index,
        item_index,
        history,
        torch.as_tensor(attention),
        [n for n, m in out.attentions.items() if m.normalised_over is not None],
        seen,
    )
    expected = pd.DataFrame(rows)
    assert np.array_equal(explanation.perturbations["score"], expected["score"])
    assert np.array_equal(explanation.perturbations["rank"], expected["rank"])
    assert explanation.rank == expected["rank"][0]  # the pair's rank among the user's unseen items


def test_labels_follow_generic_rules():
    assert axis_label("user_head", 0) == "user head 1" and axis_label("head", 3) == "head 4"
    meta = {"colour_ids": np.array([[2, -1], [0, 1]]), "colour_names": ["red", "green", "blue"], "grid": (7, 7)}
    assert cell_labels(meta)["colour_labels"] == [["blue", ""], ["red", "green"]]
    assert set(cell_labels({"grid": (7, 7), "shape_ids": np.zeros(2)})) == {"grid", "shape_ids"}  # no names


def test_recovery_reads_the_map_with_a_grid_whatever_its_name():
    plain = AttentionMap(torch.ones(1, 3) / 3, ("history",), "item", normalised_over="history")
    regions = AttentionMap(torch.ones(1, 2, 4) / 4, ("profile", "region"), "component", meta={"grid": (2, 2)})
    assert region_map_name({"alpha": plain, "cells": regions}, None, "m") == "cells"
    with pytest.raises(InvalidArgumentError, match="m has no region-level map 'alpha'"):
        region_map_name({"alpha": plain, "cells": regions}, "alpha", "m")
    with pytest.raises(InvalidArgumentError, match="whose meta gives a grid"):
        region_map_name({"alpha": plain}, None, "m")


def test_service_reads_dataset_facts(services, tiny_data):
    service = next(iter(services.values()))
    assert service.split_fractions == pytest.approx({"train": 0.7, "valid": 0.1, "test": 0.2})
    assert service.split_description == "70/10/20 per user"
    assert service.identifying_user_fields == []  # the tiny users have age, gender and occupation only
    hidden = RecService(service.model, tiny_data, service.config, device="cpu")
    tiny_data.dataset.user_features["zip_code"] = "00000"
    try:
        assert hidden.identifying_user_fields == ["zip_code"]
    finally:
        del tiny_data.dataset.user_features["zip_code"]
    with pytest.raises(InvalidArgumentError, match="tiny has no planted regions"):
        service.planted_region_recovery()
    with pytest.raises(RecModelsError):
        import_model_module("no_such_package.no_such_model")
