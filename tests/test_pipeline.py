"""Retrieve, then rank (issue 24): a pipeline checkpoint names a retriever (the shipped two-tower) and a ranker (the
shipped DIN) on ml-100k and the shortlist size N. Everything the pipeline answers is checked against the two stages
run on their own: its recommendations are the two-tower's top N ordered by DIN's scores, with N the whole catalogue
they are DIN's own, and the explanation, the missed-by-retrieval list and the shortlist recall agree with both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recmodels.checkpoint.pipeline import is_pipeline, read_pipeline, write_pipeline
from recmodels.cli.parser import main
from recmodels.serving.pipeline import PipelineService
from recmodels.serving.service import RecService

REPO = Path(__file__).resolve().parents[1]
RETRIEVER = REPO / "checkpoints" / "two_tower-ml100k"
RANKER = REPO / "checkpoints" / "din-ml100k"
N = 200
USERS = ["13", "1", "405", "700"]


@pytest.fixture(scope="module")
def din() -> RecService:
    return RecService.from_checkpoint(RANKER, device="cpu")


@pytest.fixture(scope="module")
def two_tower(din) -> RecService:
    return RecService.from_checkpoint(RETRIEVER, device="cpu")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> PipelineService:
    folder = tmp_path_factory.mktemp("pipelines") / "two_tower-din"
    write_pipeline(folder, RETRIEVER, RANKER, N)
    return RecService.from_checkpoint(folder, device="cpu")


def din_order(din: RecService, user, exclude_seen=True, history=None) -> pd.DataFrame:
    """DIN's own ranking of every candidate (ties: lower item index first, the library's rule)."""
    n_items = din.data.dataset.n_items
    return din.recommend(user, k=n_items, exclude_seen=exclude_seen, history=history)


def expected(din, two_tower, user, k, n, exclude_seen=True, history=None) -> pd.DataFrame:
    """The two-tower's top n ranked by DIN's own full-catalogue scores, computed from the two services alone."""
    shortlist = two_tower.recommend(user, k=n, exclude_seen=exclude_seen, history=history)
    ranked = din_order(din, user, exclude_seen, history)
    return ranked[ranked["item"].isin(set(shortlist["item"]))].head(k).reset_index(drop=True)


def test_a_pipeline_folder_opens_as_a_pipeline_service_over_the_rankers_data(pipeline, din):
    assert isinstance(pipeline, PipelineService) and isinstance(pipeline, RecService)
    assert pipeline.shortlist == N
    assert pipeline.model_name == pipeline.title == "Two-tower (MHA) → DIN (top 200)"
    assert pipeline.config.model == "din" and pipeline.model is pipeline.ranker.model
    assert pipeline.retriever.model.name == "two_tower"
    assert pipeline.retriever.data is pipeline.data is pipeline.ranker.data  # the data is loaded once
    assert pipeline.data.fingerprint == din.data.fingerprint
    assert is_pipeline(pipeline.path) and not is_pipeline(RANKER)


@pytest.mark.parametrize("user", USERS)
def test_recommend_is_the_retrievers_top_n_ranked_by_dins_own_scores(pipeline, din, two_tower, user):
    got = pipeline.recommend(user, k=N)
    want = expected(din, two_tower, user, N, N)
    assert list(got["item"]) == list(want["item"])
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5, atol=1e-5)
    assert list(got["rank"]) == list(range(1, N + 1))
    assert list(got.columns[: len(want.columns)]) == list(want.columns)  # the base columns, then the retrieval ones
    assert not set(got["item"]) & set(din.history(user)["item"])  # seen items never take a slot


def test_seen_items_take_slots_only_when_not_excluded(pipeline, din, two_tower):
    got = pipeline.recommend("13", k=30, exclude_seen=False)
    want = expected(din, two_tower, "13", 30, N, exclude_seen=False)
    assert list(got["item"]) == list(want["item"])


def test_a_written_history_is_retrieved_and_ranked_with_that_history(pipeline, din, two_tower):
    history = list(din.history("13")["item"][:12])
    got = pipeline.recommend("13", k=20, history=history)
    assert list(got["item"]) == list(expected(din, two_tower, "13", 20, N, history=history)["item"])


def test_with_n_the_whole_catalogue_the_pipeline_is_dins_own_recommend(pipeline, din):
    whole = PipelineService(pipeline.ranker, pipeline.retriever, din.data.dataset.n_items)
    for user in USERS:
        got, want = whole.recommend(user, k=50), din.recommend(user, k=50)
        assert list(got["item"]) == list(want["item"])
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("user", USERS[:2])
def test_retriever_rank_and_score_are_the_two_towers_own(pipeline, two_tower, user):
    got = pipeline.recommend(user, k=N)
    alone = two_tower.recommend(user, k=N).set_index("item")
    assert list(got["retriever_rank"]) == [alone.loc[item, "rank"] for item in got["item"]]
    np.testing.assert_allclose(got["retriever_score"], [alone.loc[i, "score"] for i in got["item"]], rtol=1e-6)
    assert got["retriever_rank"].max() <= N and sorted(got["retriever_rank"]) == list(range(1, N + 1))


def test_explain_gives_both_stages_and_the_retrieval_facts(pipeline, din, two_tower):
    top = pipeline.recommend("13", k=5)
    item = top["item"].iloc[2]
    explanation = pipeline.explain("13", item, attributions=False, head_importance=False)
    facts = explanation.retrieval
    assert explanation.rank == 3 and facts["final_rank"] == 3 and facts["in_shortlist"]
    assert facts["shortlist"] == N and facts["retriever_rank"] == top["retriever_rank"].iloc[2]
    assert facts["retriever_score"] == pytest.approx(top["retriever_score"].iloc[2], rel=1e-6)
    assert facts["ranker_score"] == pytest.approx(top["score"].iloc[2], rel=1e-5)
    assert set(explanation.stages) == {"retriever", "ranker"}
    ranker, retriever = explanation.stages["ranker"], explanation.stages["retriever"]
    din_rank = int(din_order(din, "13").set_index("item").loc[item, "rank"])
    assert ranker.rank == din_rank == din.explain("13", item, attributions=False, head_importance=False).rank
    assert retriever.rank == facts["retriever_rank"]
    assert retriever.score == pytest.approx(facts["retriever_score"], rel=1e-5)
    assert set(ranker.maps) == set(explanation.maps) and ranker.score == explanation.score
    assert not ranker.stages and ranker.retrieval is None  # no cycle: the ranker's view holds no stages
    first = explanation.sentences[0].text
    assert "Two-tower (MHA)" in first and "inside its shortlist of 200" in first and "3rd" in first
    assert "of 200" in explanation.sentences[1].text and f"{din_rank:,}" in ranker.sentences[0].text


def test_an_item_outside_the_shortlist_is_explained_as_never_shown(pipeline, din):
    missed = pipeline.missed_by_retrieval("13", k=50)
    assert len(missed), "user 13 has ranker favourites the two-tower does not retrieve"
    item = missed["item"].iloc[0]
    explanation = pipeline.explain("13", item, attributions=False, head_importance=False)
    facts = explanation.retrieval
    assert not facts["in_shortlist"] and facts["final_rank"] is None
    assert facts["retriever_rank"] == missed["retriever_rank"].iloc[0] > N
    assert item not in set(pipeline.recommend("13", k=N)["item"])
    # the rank it would have had: one more than the shortlisted items DIN scores above it
    shortlisted = pipeline.recommend("13", k=N)["score"].to_numpy()
    assert facts["rank_if_shortlisted"] == explanation.rank == int((shortlisted > facts["ranker_score"]).sum()) + 1
    assert facts["ranker_score"] == pytest.approx(missed["ranker_score"].iloc[0], rel=1e-5)
    assert "outside its shortlist of 200" in explanation.sentences[0].text
    assert explanation.stages["ranker"].rank == missed["ranker_rank"].iloc[0]


@pytest.mark.parametrize("k", [1, 10, 50])
def test_missed_by_retrieval_and_shortlist_recall_agree_with_the_stages_alone(pipeline, din, two_tower, k):
    for user in USERS:
        missed = pipeline.missed_by_retrieval(user, k=k)
        ranker_top = din.recommend(user, k=k)
        shortlist = set(two_tower.recommend(user, k=N)["item"])
        want = ranker_top[~ranker_top["item"].isin(shortlist)]
        assert list(missed["item"]) == list(want["item"])
        assert list(missed["ranker_rank"]) == list(want["rank"])
        np.testing.assert_allclose(missed["ranker_score"], want["score"], rtol=1e-6)
        assert (missed["retriever_rank"] > N).all()
        assert pipeline.shortlist_recall(user, k=k) == pytest.approx(1 - len(missed) / k)
        # an item of the ranker's top k that was not missed was retrieved, then placed by the ranker
        kept = set(ranker_top["item"]) - set(missed["item"])
        assert kept <= set(pipeline.recommend(user, k=N)["item"])


def test_the_cli_writes_a_portable_pipeline_that_from_checkpoint_opens(tmp_path, capsys):
    stages = tmp_path / "ck"
    stages.mkdir()
    for source in (RETRIEVER, RANKER):  # links: the stages move with the pipeline folder
        (stages / source.name).symlink_to(source, target_is_directory=True)
    out = stages / "pipe"
    argv = ["pipeline", "--retriever", str(stages / RETRIEVER.name), "--ranker", str(stages / RANKER.name)]
    assert main([*argv, "--shortlist", "100", "--no-evaluate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "100 of 1,682" in printed
    stored = json.loads((out / "config.json").read_text())
    assert stored == {
        "format": "recmodels-pipeline",
        "version": 1,
        "retriever": "../two_tower-ml100k",
        "ranker": "../din-ml100k",
        "shortlist": 100,
    }
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    moved = tmp_path / "moved"
    shutil.move(stages, moved)
    service = RecService.from_checkpoint(moved / "pipe", device="cpu")
    assert isinstance(service, PipelineService) and service.shortlist == 100
    assert len(service.recommend("13", k=5)) == 5
    # an existing pipeline is rewritten; the absolute paths it is given are stored relative to it
    assert main(["pipeline", "--retriever", str(RETRIEVER), "--ranker", str(RANKER), "--shortlist", "7",
                 "--no-evaluate", "--out", str(moved / "pipe")]) == 0  # fmt: skip
    assert read_pipeline(moved / "pipe").shortlist == 7
    assert read_pipeline(moved / "pipe").ranker.resolve() == RANKER.resolve()


def test_the_cli_refuses_an_out_that_is_a_file_or_a_folder_of_other_files(tmp_path, capsys):
    argv = ["pipeline", "--retriever", str(RETRIEVER), "--ranker", str(RANKER), "--shortlist", "10", "--out"]
    afile = tmp_path / "a-file"
    afile.write_text("x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for out in (afile, busy):
        assert main([*argv, str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out") and err.count("\n") == 1
    assert (busy / "notes.txt").read_text() == "mine" and not (busy / "config.json").exists()
    assert afile.read_text() == "x"


def test_a_recommendation_and_its_explanation_score_the_shortlist_once(pipeline, monkeypatch):
    calls = []
    score_items = pipeline.model.score_items

    def counted(users, history, items, *args, **kwargs):
        calls.append(len(items) if items.dim() == 1 else items.shape[-1])
        return score_items(users, history, items, *args, **kwargs)

    monkeypatch.setattr(pipeline.model, "score_items", counted)
    top = pipeline.recommend("77", k=3)["item"].iloc[0]
    pipeline.explain("77", top, attributions=False, perturbations=False, head_importance=False)
    assert calls.count(N) == 1, calls  # the explanation found the shortlist's scores kept
