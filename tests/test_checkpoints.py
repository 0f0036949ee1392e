"""The shipped checkpoints load on their data and reproduce the test metrics recorded when they were trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from recmodels.checkpoint.folders import model_checkpoint_folders, pipeline_folders
from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import TEST
from recmodels.eval import evaluate
from recmodels.serving.service import load_data_cached

pytestmark = pytest.mark.slow  # every shipped checkpoint re-measured

REPO = Path(__file__).resolve().parents[1]
SHIPPED = model_checkpoint_folders(REPO / "checkpoints")
PIPELINES = pipeline_folders(REPO / "checkpoints")
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


def test_the_two_tower_din_pipeline_ships_with_its_shortlist_sweep():
    from recmodels.checkpoint.pipeline import read_pipeline
    from recmodels.eval.shortlist import PIPELINE_METRICS

    (pipeline,) = [read_pipeline(p) for p in PIPELINES if p.name == "two_tower-din-ml100k"]
    assert (pipeline.retriever_config.model, pipeline.ranker_config.model) == ("two_tower", "din")
    assert {100, 200, 500, 1000} <= set(pipeline.metrics) and pipeline.shortlist in pipeline.metrics
    for size in pipeline.metrics:
        for part in ("valid", "test"):
            assert set(pipeline.part_metrics(part, size)) == set(PIPELINE_METRICS)
    # chosen on valid: the recorded N has the best valid NDCG@10 of the sizes measured
    best = max(pipeline.metrics, key=lambda size: pipeline.part_metrics("valid", size)["ndcg@10"])
    assert pipeline.shortlist == best


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_pipeline_reproduces_its_recorded_test_metrics_at_every_shortlist_size(path):
    from recmodels.eval.shortlist import evaluate_pipeline
    from recmodels.serving.pipeline import PipelineService

    service = PipelineService.open(path)
    recorded = service.pipeline.metrics
    measured = evaluate_pipeline(service.retriever.model, service.model, service.data, sorted(recorded), TEST)
    for size, parts in recorded.items():
        for name, value in parts["test"].items():
            assert measured[size][name] == pytest.approx(value, abs=TOLERANCE), (size, name)
