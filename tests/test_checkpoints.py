"""The shipped checkpoints load on their data and reproduce the test metrics recorded when they were trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import TEST
from recmodels.eval import evaluate
from recmodels.serving.service import load_data_cached

pytestmark = pytest.mark.slow  # every shipped checkpoint re-measured

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (REPO / "checkpoints").iterdir() if (p / "config.json").is_file())
EXPECTED_MODELS = {"mostpop", "bpr", "din", "nrms", "two_tower", "inttower", "acf", "ease", "sasrec", "bert4rec"}
CLOSED_FORM = {"mostpop", "ease"}  # nothing trained by epochs, so no per-epoch history
TOLERANCE = 2e-3  # float summation order differs between thread counts and machines


def test_every_model_ships_a_checkpoint_with_history():
    configs = [read_config(p) for p in SHIPPED]
    assert {c.model for c in configs} >= EXPECTED_MODELS
    assert any(c.collapse_example for c in configs), "the collapsed ACF example"
    assert any(c.dataset.name == "fashion" and c.model == "acf" for c in configs), "ACF on image regions"
    for config in configs:
        if config.model in EXPECTED_MODELS - CLOSED_FORM:
            assert len(config.history) >= 2 and config.history[1]["valid"]
        if config.model in {"bpr", "ease"}:  # tuned baselines: a grid on valid, recorded with the winner
            selection = config.selection
            assert selection["part"] == "valid" and len(selection["grid"]) > 1
            chosen = {**config.hparams, **config.training}
            assert all(chosen[key] == value for key, value in selection["chosen"].items())
        if config.model in {"din", "nrms", "two_tower", "inttower", "acf", "sasrec", "bert4rec"}:
            assert config.history[-1]["attention"], f"{config.model} logs attention entropy per epoch"
        if config.model in {"sasrec", "bert4rec"}:  # per layer and head, and the rank of the hidden states
            assert "normalised_entropy/layer 2/head 2" in config.history[-1]["attention"]["self_attention"]
            assert set(config.history[-1]["effective_rank"]) == {"embeddings", "layer 1", "layer 2"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_checkpoint_reproduces_its_recorded_test_metrics(path):
    config = read_config(path)
    dataset = config.dataset
    data = load_data_cached(dataset.name, *dataset_location(config, path), dataset.split, dataset.max_history)
    model, _ = load_checkpoint(path, data=data)
    measured = evaluate(model, data, TEST)
    recorded = config.metrics["test"]
    for name, value in recorded.items():
        # nan_ok: under the next-item split each user has one test row, so GAUC (per-user AUC) is undefined
        assert measured[name] == pytest.approx(value, abs=TOLERANCE, nan_ok=True), name
