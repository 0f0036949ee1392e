"""The shipped pipeline (two-tower -> DIN, top 100) on every page of the app, through Streamlit's AppTest: the
Explorer's two ranks, the missed-by-retrieval list, both stages' explanations (retriever first), presentation mode, a
what-if, the model card's pipeline metrics and Compare against either stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.pipeline import read_pipeline
from recmodels.serving.service import RecService

pytestmark = pytest.mark.slow  # AppTest pages over a shipped pipeline

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app"
PIPELINE = REPO / "checkpoints" / "two_tower-din-ml100k"
LABEL = "Two-tower (MHA) → DIN (top 100) · ml-100k"


def run_page(page: str = "explorer.py", **params: str) -> AppTest:
    at = AppTest.from_file(str(APP / page), default_timeout=300)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture(scope="module")
def service():
    return RecService.from_checkpoint(PIPELINE, device="cpu")


def subheaders(at: AppTest) -> list[str]:
    return [s.value.replace("\\", "") for s in at.subheader]


def test_the_explorer_shows_both_ranks_the_missed_list_and_both_stages(service):
    at = run_page(checkpoint=PIPELINE.name, user="13")
    assert LABEL in at.sidebar.selectbox(key="checkpoint_explore").options
    ranked, missed = at.dataframe(key="recommendations").value, at.dataframe(key="missed_rows").value
    assert {"rank", "retriever_rank"} <= set(ranked.columns)
    expected = service.recommend("13", k=10)
    assert list(ranked["item"]) == list(expected["item"])
    assert list(ranked["retriever_rank"]) == list(expected["retriever_rank"])
    assert (ranked["retriever_rank"] <= 100).all()
    assert list(missed["item"]) == list(service.missed_by_retrieval("13", k=10)["item"])
    assert (missed["retriever_rank"] > 100).all() and len(missed) > 0
    labels = {m.label: m.value for m in at.metric}
    assert labels["Final rank"] == "1" and int(labels["Retriever rank"]) <= 100
    said = subheaders(at)
    assert said.index("Stage 1 · retrieval: Two-tower (MHA)") < said.index("Stage 2 · ranking: DIN")
    assert [t.label for t in at.tabs] == ["Heads", "Attributions", "Items", "Attributions"]


def test_an_item_the_retriever_missed_is_explained_as_never_shown(service):
    at = run_page(checkpoint=PIPELINE.name, user="13")
    missed = service.missed_by_retrieval("13", k=10)
    item = str(missed["item"].iloc[0])
    at.text_input(key="explain_item_find").input(item).run()
    assert not at.exception and not at.error
    labels = {m.label: m.value for m in at.metric}
    assert labels["Final rank"] == "not shown"
    assert labels["Retriever rank"] == f"{int(missed['retriever_rank'].iloc[0]):,}"
    first = " ".join(m.value for m in at.markdown if "retrieves" in m.value)
    assert "outside its shortlist of 100, so the pipeline never shows it" in first


def test_presentation_mode_and_a_what_if_work_on_a_pipeline(service):
    at = run_page(checkpoint=PIPELINE.name, user="13", present="1")
    assert not at.metric and not at.tabs and len(at.get("plotly_chart")) <= 1
    assert any("inside its shortlist of 100" in m.value for m in at.markdown)
    window = [str(i) for i in service.history("13")["item"]][-50:]
    at = run_page(checkpoint=PIPELINE.name, user="13", drop=window[-1])
    edited = at.dataframe(key="recommendations").value
    assert list(edited["item"]) == list(service.recommend("13", k=10, history=window[:-1])["item"])


def test_the_model_card_shows_the_pipelines_metrics_per_shortlist_size():
    at = run_page("pages/model_card.py", checkpoint=PIPELINE.name)
    assert subheaders(at)[:2] == ["Pipeline", "The ranker's metrics"]
    table = at.dataframe[0].value
    pipeline = read_pipeline(PIPELINE)
    assert sorted(set(table["N"])) == sorted(pipeline.metrics)
    test_100 = table[(table["N"] == 100) & (table["part"] == "test")].iloc[0]
    assert test_100["NDCG@10"] == pytest.approx(pipeline.part_metrics("test", 100)["ndcg@10"])
    assert "Ranker's top 10 kept" in table.columns


@pytest.mark.parametrize("other", ["DIN · ml-100k", "Two-tower (MHA) · ml-100k"])
def test_compare_sets_the_pipeline_beside_either_stage(other, service):
    at = AppTest.from_file(str(APP / "pages" / "compare.py"), default_timeout=300)
    at.query_params["checkpoint"] = PIPELINE.name
    at.query_params["user"] = "13"
    at.run()
    stage = PIPELINE.parent / ("din-ml100k" if other.startswith("DIN") else "two_tower-ml100k")
    at.selectbox(key="compare_right_compare").set_value(str(stage)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = subheaders(at)
    assert titles[0] == "Two-tower (MHA) → DIN (top 100)" and titles[1] == other.split(" · ")[0]
    left = at.dataframe[0].value
    assert list(left["title"]) == list(service.recommend("13", k=10)["title"])
    assert any(m.label == "Overlap of the two top-k lists" for m in at.metric)


def test_the_report_of_a_pipeline_pair_has_both_stages_retriever_first(service):
    from recmodels_explorer.html_report import explanation_html

    item = str(service.missed_by_retrieval("13", k=10)["item"].iloc[0])
    report = explanation_html(service, service.explain("13", item, n_steps=8))
    body = report.split("<body>")[1]
    assert "outside its shortlist of 100, so the pipeline never shows it" in body.split("<h2>")[0]
    retrieval = body.index("<h2>Stage 1 · retrieval: Two-tower (MHA)</h2>")
    ranking = body.index("<h2>Stage 2 · ranking: DIN</h2>")
    assert retrieval < ranking
    assert "<h3>" in body[retrieval:ranking] and "<h3>" in body[ranking:], "each stage's figures under it"
