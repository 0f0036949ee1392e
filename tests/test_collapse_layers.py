"""Collapse per layer and head, and rank collapse: the training-time records (epoch_summary, rank_summary), the
dataset-level statistics and findings, the history readers, a short real SASRec training, and the Collapse page
on an old checkpoint and on a new-style one."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.io import read_config, save_checkpoint
from recmodels.explain.collapse import (
    CollapseThresholds,
    effective_rank,
    epoch_summary,
    head_divergence,
    rank_summary,
)
from recmodels.explain.diagnostics import (
    DiagnosticsReport,
    collapse_findings,
    layer_head_history,
    layer_head_statistics,
    pair_layer_heads,
    rank_history,
    summarise,
)
from recmodels.explain.views import ItemNames, map_view
from recmodels.models import AttentionMap
from recmodels.models.sasrec import SASRec
from recmodels.serving.service import RecService
from recmodels.train import TrainConfig, seed_everything, train_model

REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
OLD_CHECKPOINT = REPO / "checkpoints" / "acf-collapsed-ml100k"


def _layer_head_map(batch: int = 3, length: int = 4) -> AttentionMap:
    """(layer, head, query, key) with a known distribution in every (layer, head), the same for every query."""
    values = torch.zeros(batch, 2, 2, length, length)
    values[:, 0, 0] = 1 / length  # uniform: entropy 1, max 1/4
    values[:, 0, 1, :, 0] = 1.0  # one-hot: entropy 0, max 1
    values[:, 1, 0, :, :2] = 0.5  # half over 2 of 4: entropy log 2 / log 4 = 0.5
    values[:, 1, 1] = torch.tensor([0.7, 0.1, 0.1, 0.1])
    mask = torch.ones(batch, 1, 1, length, length, dtype=torch.bool)
    return AttentionMap(
        values=values,
        axes=("layer", "head", "query_position", "key_position"),
        level="head",
        mask=mask,
        normalised_over="key_position",
    )


P = np.array([0.7, 0.1, 0.1, 0.1])
SKEWED_ENTROPY = float(-(P * np.log(P)).sum() / np.log(4))
EXPECTED_ENTROPY = {(1, 1): 1.0, (1, 2): 0.0, (2, 1): 0.5, (2, 2): SKEWED_ENTROPY}
EXPECTED_MAX = {(1, 1): 0.25, (1, 2): 1.0, (2, 1): 0.5, (2, 2): 0.7}


# ---------------------------------------------------------------- training-time records
def test_epoch_summary_per_layer_and_head_on_known_distributions():
    summary = epoch_summary({"self_attention": _layer_head_map()})["self_attention"]
    # the per-map means stay as old histories have them: the mean over every (layer, head, query) row
    assert summary["normalised_entropy"] == pytest.approx(np.mean(list(EXPECTED_ENTROPY.values())), abs=1e-6)
    assert summary["max_weight"] == pytest.approx(np.mean(list(EXPECTED_MAX.values())), abs=1e-6)
    for (layer, head), entropy in EXPECTED_ENTROPY.items():
        assert summary[f"normalised_entropy/layer {layer}/head {head}"] == pytest.approx(entropy, abs=1e-6)
        assert summary[f"max_weight/layer {layer}/head {head}"] == pytest.approx(EXPECTED_MAX[layer, head], abs=1e-6)
    # flagged shares per (layer, head) and per map: (1, 1) is uniform, (1, 2) one-hot, the others neither
    for (layer, head), entropy in EXPECTED_ENTROPY.items():
        assert summary[f"share_near_uniform/layer {layer}/head {head}"] == float(entropy >= 0.98)
        assert summary[f"share_near_one_hot/layer {layer}/head {head}"] == float(EXPECTED_MAX[layer, head] >= 0.9)
    assert summary["share_near_uniform"] == summary["share_near_one_hot"] == pytest.approx(0.25)
    # the divergence between a layer's two heads, by hand, in nats
    uniform, one_hot, half, skewed = [0.25] * 4, [1, 0, 0, 0], [0.5, 0.5, 0, 0], list(P)
    expected = {1: js(uniform, one_hot), 2: js(half, skewed)}
    for layer, value in expected.items():
        assert summary[f"head_similarity/layer {layer}"] == pytest.approx(value, abs=1e-6)
    assert summary["head_similarity"] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
    assert len(summary) == 4 + 4 * 4 + 3


def js(p, q) -> float:
    p, q = np.asarray(p, float), np.asarray(q, float)
    m = (p + q) / 2

    def kl(a, b):
        return float(sum(x * np.log(x / y) for x, y in zip(a, b) if x > 0))

    return (kl(p, m) + kl(q, m)) / 2


def test_epoch_summary_heads_without_layers_padding_and_maps_without_heads():
    values = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])  # (1, head, history)
    mask = torch.tensor([[[True, True, False]]])  # the third position is padding
    heads = AttentionMap(values=values, axes=("head", "history"), level="head", mask=mask, normalised_over="history")
    items = AttentionMap(
        values=values[:, 0], axes=("history",), level="item", mask=mask[:, 0], normalised_over="history"
    )
    summary = epoch_summary({"heads": heads, "items": items})
    assert summary["heads"]["normalised_entropy/head 1"] == pytest.approx(1.0)
    assert summary["heads"]["normalised_entropy/head 2"] == pytest.approx(0.0)
    assert summary["heads"]["max_weight/head 2"] == pytest.approx(1.0)
    assert set(summary["items"]) == {"normalised_entropy", "max_weight", "share_near_uniform", "share_near_one_hot"}, (
        "no per-head keys without a head axis"
    )
    assert summary["heads"]["share_near_uniform/head 1"] == 1.0 and summary["heads"]["share_near_one_hot/head 2"] == 1.0
    assert summary["heads"]["head_similarity"] == pytest.approx(js([0.5, 0.5], [1.0, 0.0]), abs=1e-6)


def test_effective_rank_of_constructed_hidden_states():
    direction = torch.randn(8)
    rank_one = torch.randn(1, 5, 1) * direction  # every position along one direction
    orthogonal = torch.eye(8)[:5].unsqueeze(0) * 3.0  # 5 orthogonal, equally long
    padded = torch.cat([orthogonal, torch.full((1, 2, 8), 7.0)], 1)  # two padded positions to ignore
    mask = torch.tensor([[True] * 5 + [False] * 2])
    assert effective_rank(rank_one, torch.ones(1, 5, dtype=torch.bool)).item() == pytest.approx(1.0, abs=1e-5)
    assert effective_rank(orthogonal, torch.ones(1, 5, dtype=torch.bool)).item() == pytest.approx(5.0, abs=1e-5)
    assert effective_rank(padded, mask).item() == pytest.approx(5.0, abs=1e-5)

    output = SimpleNamespace(hidden_states=(orthogonal, rank_one), hidden_mask=torch.ones(1, 5, dtype=torch.bool))
    summary = rank_summary(output)
    assert list(summary) == ["embeddings", "layer 1"]
    assert summary["embeddings"]["mean"] == pytest.approx(5.0, abs=1e-5)
    assert summary["layer 1"]["median"] == pytest.approx(1.0, abs=1e-5)
    assert set(summary["layer 1"]) == {"mean", "q10", "median", "q90"}
    assert rank_summary(SimpleNamespace(scores=torch.zeros(1))) == {}, "models without hidden states record nothing"


# ---------------------------------------------------------------- dataset-level statistics and findings
def test_layer_head_statistics_js_per_layer_and_findings():
    attention = _layer_head_map()
    stats = layer_head_statistics(attention)
    assert stats["normalised_entropy"].shape == (3, 2, 2)
    for (layer, head), entropy in EXPECTED_ENTROPY.items():
        assert stats["normalised_entropy"][:, layer - 1, head - 1] == pytest.approx(entropy, abs=1e-6)
    js = head_divergence(attention)
    assert set(js) == {"layer 1", "layer 2"}
    assert js["layer 1"][0][0, 1] / js["layer 1"][1] > 0.1, "uniform and one-hot heads differ"

    rows = pd.DataFrame(
        [
            {
                "case": c,
                "map": "self_attention",
                "layer": layer - 1,
                "head": head - 1,
                "normalised_entropy": e,
                "max_weight": EXPECTED_MAX[layer, head],
                "effective_number": 1.0,
                "gini": 0.0,
                "near_uniform": e >= 0.98,
                "near_one_hot": EXPECTED_MAX[layer, head] >= 0.9,
            }
            for c in range(3)
            for (layer, head), e in EXPECTED_ENTROPY.items()
        ]
    )
    ranks = pd.DataFrame(
        {
            "case": [0, 0, 0, 1, 1, 1],
            "layer": ["embeddings", "layer 1", "layer 2"] * 2,
            "effective_rank": [9.0, 4.0, 1.2, 8.0, 3.0, 1.1],
        }
    )
    report = DiagnosticsReport(rows, summarise(rows), effective_rank=ranks)
    found = collapse_findings(report)
    assert found == {
        "near_one_hot": ["self_attention · layer 1 · head 2"],
        "near_uniform": ["self_attention · layer 1 · head 1"],
        "rank_collapse": ["layer 2"],
    }
    # thresholds are the report's: a stricter rank line flags layer 1 as well
    report.thresholds = CollapseThresholds(rank_collapse=5.0)
    assert collapse_findings(report)["rank_collapse"] == ["layer 1", "layer 2"]
    # inputs that never had rank cannot lose it
    report.effective_rank = ranks.assign(effective_rank=1.0)
    assert collapse_findings(report)["rank_collapse"] == []


def test_explained_pair_flags_per_layer_and_head():
    attention = _layer_head_map(batch=1)
    attention.values[0, 0, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # one row of the uniform head goes one-hot
    names = ItemNames(np.array(["", "a"]), np.array(["", "A"]), np.array(["", ""]))
    view = map_view("self_attention", attention, names)
    assert view.flags["near_one_hot"].shape == (2, 2, 4), "the view's flags are per (layer, head, query row)"
    table = pair_layer_heads(view).set_index("unit")
    assert list(table.index) == ["layer 1 · head 1", "layer 1 · head 2", "layer 2 · head 1", "layer 2 · head 2"]
    assert table.loc["layer 1 · head 1", ["near_uniform", "near_one_hot", "rows"]].tolist() == [3, 1, 4]
    assert table.loc["layer 1 · head 2", ["near_uniform", "near_one_hot"]].tolist() == [0, 4]
    assert table.loc["layer 2 · head 2", "normalised_entropy"] == pytest.approx(SKEWED_ENTROPY, abs=1e-6)
    assert table.loc["layer 1 · head 1", "max_weight"] == pytest.approx((3 * 0.25 + 1.0) / 4, abs=1e-6)
    item_level = AttentionMap(
        values=torch.full((1, 3), 1 / 3), axes=("history",), level="item", normalised_over="history"
    )
    assert pair_layer_heads(map_view("items", item_level, names)) is None


def test_history_readers_old_new_and_hostile_histories():
    old = read_config(OLD_CHECKPOINT).history
    assert layer_head_history(old).empty and rank_history(old).empty
    history = [
        {
            "epoch": 0,
            "attention": {
                "self_attention": {
                    "normalised_entropy": 0.9,
                    "max_weight": 0.2,
                    "normalised_entropy/layer 1/head 2": 0.8,
                    "max_weight/layer 1/head 2": None,
                }
            },
            "effective_rank": {
                "embeddings": {"mean": 10, "q10": 8.0, "median": 10.0, "q90": 12.0},
                "layer 1": {"mean": "many", "median": 10**400},
                "layer x": {"mean": 1.0},
                "layer 2": [1, 2],
            },
        },
        {"epoch": True, "attention": {"m": {"normalised_entropy/head 1": 0.5}}},  # not an epoch
        {"epoch": 1, "attention": ["not", "an", "object"], "effective_rank": None},
        "garbage",
    ]
    units = layer_head_history(history)
    assert units[["epoch", "map", "layer", "head"]].values.tolist() == [[0, "self_attention", 0, 1]]
    assert units["normalised_entropy"].iloc[0] == pytest.approx(0.8) and math.isnan(units["max_weight"].iloc[0])
    ranks = rank_history(history)
    assert ranks["layer"].tolist() == ["embeddings", "layer 1"]
    assert ranks["mean"].iloc[0] == 10 and ranks[["mean", "median"]].iloc[1].isna().all()
    assert layer_head_history("nonsense").empty and rank_history({"a": 1}).empty


# ---------------------------------------------------------------- a short real training
@pytest.fixture(scope="module")
def sasrec_checkpoint(tmp_path_factory, ml100k) -> Path:
    """A tiny SASRec trained for one epoch (the paper's windows, a few steps) on ml-100k, saved as a checkpoint."""
    seed_everything(0)
    model = SASRec.from_data(ml100k, dim=16, heads=2, layers=2, inner=32, max_length=20, positions="all")
    config = TrainConfig.for_model(SASRec, epochs=1, batch_size=256, valid_users=100, attention_sample=64)
    result = train_model(model, ml100k, config, device="cpu", progress=False)
    folder = tmp_path_factory.mktemp("roots") / "sasrec-tiny"
    return save_checkpoint(
        folder,
        result.model,
        ml100k,
        training={**config.to_dict(), "best_epoch": result.best_epoch},
        metrics={"valid": result.best_valid},
        history=result.history,
    )


@pytest.mark.slow
def test_training_records_layer_head_entropy_and_effective_rank(sasrec_checkpoint):
    history = read_config(sasrec_checkpoint).history  # the checkpoint schema accepts the new keys
    assert [entry["epoch"] for entry in history] == [0, 1]
    for entry in history:
        attention = entry["attention"]["self_attention"]
        keys = {
            f"{stat}/layer {layer}/head {h}"
            for stat in ("normalised_entropy", "max_weight")
            for layer in (1, 2)
            for h in (1, 2)
        }
        assert keys <= set(attention) and all(0 <= attention[k] <= 1 for k in keys)
        assert {"normalised_entropy", "max_weight"} <= set(entry["attention"]["rollout"])
        assert list(entry["effective_rank"]) == ["embeddings", "layer 1", "layer 2"]
        for stats in entry["effective_rank"].values():
            assert 1 <= stats["q10"] <= stats["median"] <= stats["q90"] <= 20, "at most the window's length"
    assert len(layer_head_history(history)) == 2 * 4
    assert rank_history(history)["depth"].tolist() == [0, 0, 1, 1, 2, 2]

    service = RecService.from_checkpoint(sasrec_checkpoint)
    report = service.diagnostics(users=[str(u) for u in range(1, 41)])
    heads = report.summary[report.summary["map"] == "self_attention"]
    assert heads[["layer", "head"]].values.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert set(report.head_similarity) == {"self_attention, layer 1", "self_attention, layer 2"}
    assert report.effective_rank.groupby("layer").size().to_dict() == {"embeddings": 40, "layer 1": 40, "layer 2": 40}


# ---------------------------------------------------------------- the Collapse page
def _collapse_page(monkeypatch, root: Path | None = None) -> AppTest:
    if root is not None:
        monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(root))
    at = AppTest.from_file(ENTRY, default_timeout=180).run()
    at.switch_page("pages/collapse.py").run()
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _text(elements) -> str:
    """The elements' text without the backslashes app.text.literal escapes punctuation with."""
    return " ".join(e.value for e in elements).replace("\\", "")


@pytest.mark.slow
def test_collapse_page_renders_old_checkpoints_and_flags_the_collapsed_one(monkeypatch):
    at = _collapse_page(monkeypatch)
    at.sidebar.selectbox(key="checkpoint_collapse").set_value(str(REPO / "checkpoints" / "nrms-ml100k")).run()
    at.selectbox(key="collapse_right_collapse").set_value(str(OLD_CHECKPOINT)).run()
    _no_errors(at)
    assert not at.error, [e.value for e in at.error]
    left, right = at.columns[0], at.columns[1]
    assert "one-hot" in _text(right.warning) and "profile" in _text(right.warning), (
        "flagged by its statistics, not only by its config"
    )
    assert not left.warning, [e.value for e in left.warning]
    # NRMS has heads but its history predates the per-head keys; ACF has neither layers nor heads
    assert "only the per-map means" in _text(left.caption) and "only the per-map means" not in _text(right.caption)
    assert "self_attention · head 1" in left.dataframe[0].value["map / layer / head"].tolist()
    assert at.get("plotly_chart")


@pytest.mark.slow
def test_collapse_page_shows_layer_head_epochs_and_rank_and_flags_a_collapsed_sasrec(monkeypatch, sasrec_checkpoint):
    # the same SASRec with its last layer saturated (one-hot attention) and its states squeezed onto one direction
    model = RecService.from_checkpoint(sasrec_checkpoint).model
    collapsed = SASRec(model.spec, **{**model.hparams, "layer_norm": False})
    collapsed.load_state_dict(model.state_dict(), strict=False)
    last = collapsed.encoder.layers[-1]
    with torch.no_grad():  # q = k = 1000 x: each position's largest dot product takes all the weight
        last.attention.query.weight.copy_(torch.eye(16) * 1e3)
        last.attention.key.weight.copy_(torch.eye(16) * 1e3)
        last.feed_forward.outer.weight.zero_()
        last.feed_forward.outer.bias.fill_(1e4)  # every position becomes (almost) the same vector
    data = RecService.from_checkpoint(sasrec_checkpoint).data
    config = read_config(sasrec_checkpoint)
    save_checkpoint(
        sasrec_checkpoint.parent / "sasrec-collapsed",
        collapsed,
        data,
        training=config.training,
        history=config.history,
        extra={"collapse_example": "hand-saturated last layer"},
    )

    at = _collapse_page(monkeypatch, sasrec_checkpoint.parent)
    at.sidebar.selectbox(key="checkpoint_collapse").set_value(str(sasrec_checkpoint)).run()
    at.selectbox(key="collapse_right_collapse").set_value(str(sasrec_checkpoint.parent / "sasrec-collapsed")).run()
    _no_errors(at)
    assert not at.error, [e.value for e in at.error]
    left, right = at.columns[0], at.columns[1]
    assert not left.warning, [e.value for e in left.warning]
    assert "Near uniform" in _text(left.info), "a barely trained SASRec's heads are near uniform"
    flagged = _text(right.warning)
    assert "one-hot" in flagged and "layer 2" in flagged and "Rank collapse after layer 2" in flagged
    charts = at.get("plotly_chart")
    # per column: 2 boxes, rank box, 2 JS, 2 per-map epochs, per-(layer, head) entropy, rank over epochs
    assert len(charts) >= 2 * 9
    assert "only the per-map means" not in _text(at.caption)
