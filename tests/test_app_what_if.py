"""The Explorer's what-if, presentation mode and the one app state, through ``streamlit.testing.v1.AppTest``: an
edit changes what the service computes for the edited history, the URL carries it and reopens it, a new user gets
recommendations with the sentence on what stands in for them, and every page follows the chosen checkpoint."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import read_config
from recmodels.models import model_info
from recmodels.serving.service import RecService
from recmodels_explorer.state import WHAT_IF
from recmodels_explorer.text import literal
from tests.helpers import a_user_with_history

pytestmark = pytest.mark.slow  # AppTest pages over the shipped checkpoints

REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
SHIPPED = model_checkpoint_folders(REPO / "checkpoints")  # the pipelines: tests/test_app_pipeline.py
EDITED = ["din-ml100k", "nrms-ml100k", "sasrec-ml100k", "vecf-fashion"]  # the four


def open_link(**params: str) -> AppTest:
    """The app as a new browser opens a link with these query parameters."""
    at = AppTest.from_file(ENTRY, default_timeout=300)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def shown_items(at: AppTest) -> list[str]:
    """The recommendations table's item ids, top first."""
    table = next(d for d in at.dataframe if "rank" in d.value and "score" in d.value)
    return [str(i) for i in table.value["item"]]


def chart(at: AppTest, key_part: str) -> dict:
    """The plotly figure whose element id holds ``key_part``."""
    for element in at.get("plotly_chart"):
        if key_part in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart {key_part}: {[e.proto.id for e in at.get('plotly_chart')]}")


def numbers(values) -> np.ndarray:
    """A trace's values, as plotly sends them: a list, or typed-array bytes."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).astype(float)
    return np.asarray(values, dtype=float)


def sentences(at: AppTest, title: str) -> str:
    return " ".join(m.value for m in at.markdown if f"{title} ranks" in m.value.replace("\\", ""))


@pytest.fixture(scope="module")
def services() -> dict[str, RecService]:
    return {name: RecService.from_checkpoint(REPO / "checkpoints" / name) for name in EDITED}


@pytest.mark.parametrize("name", EDITED)
def test_removing_and_adding_items_moves_the_results_and_the_url_reopens_the_what_if(name, services):
    service = services[name]
    user = a_user_with_history(service)
    window = [str(i) for i in service.history(user)["item"]][-service.data.max_history :]
    at = open_link(checkpoint=name, user=user)
    no_errors(at)
    real = shown_items(at)
    assert real == list(service.recommend(user, k=10)["item"].astype(str))

    # remove the two newest history items (the table lists the newest first), as selecting them and clicking does
    at.session_state["history_rows"] = {"selection": {"rows": [0, 1], "columns": []}}
    at.button(key="what_if_remove").click().run()
    no_errors(at)
    kept = window[:-2]
    assert at.session_state[WHAT_IF].items == tuple(kept)
    assert at.query_params["drop"] == ",".join(window[-2:])
    assert shown_items(at) == list(service.recommend(user, k=10, history=kept)["item"].astype(str))
    assert shown_items(at) != real, "removing the two newest items moves the recommendations"
    table = next(d.value for d in at.dataframe if "was" in d.value)
    before = {item: rank for rank, item in enumerate(real, 1)}
    assert table["was"].tolist() == [str(before[i]) if i in before else "new" for i in shown_items(at)], "the diff"
    assert any(m.value.startswith(("Against the real history", "The same top")) for m in at.markdown)
    labels = {m.label for m in at.metric}
    assert {"Score against the real history", "Rank against the real history"} <= labels
    change = chart(at, "fig_attention_change")["data"][0]
    moved = numbers(change["x"] if change.get("orientation") == "h" else change["y"])
    assert len(moved) == len(window) and np.nanmax(np.abs(moved)) > 0, "the attention per history item moved"

    # add an item the picker offers that is not in the history
    picker = at.selectbox(key="what_if_add")
    listed = set(picker.options)  # labels; the value is the item id
    added = next(
        i for i in map(str, service.data.dataset.item_ids[1:]) if i not in window and picker.format_func(i) in listed
    )
    picker.set_value(added).run()
    at.button(key="what_if_add_button").click().run()
    no_errors(at)
    edited = [*kept, added]
    assert at.session_state[WHAT_IF].items == tuple(edited)
    assert at.query_params["add"] == added
    expected = list(service.recommend(user, k=10, history=edited)["item"].astype(str))
    assert shown_items(at) == expected
    link = dict(at.query_params)
    assert link == {"checkpoint": name, "user": user, "drop": ",".join(window[-2:]), "add": added}

    # the link, opened in a new browser, is the same what-if
    again = open_link(**link)
    no_errors(again)
    assert again.session_state[WHAT_IF].items == tuple(edited) and shown_items(again) == expected
    assert again.subheader[0].value.replace("\\", "") == f"User {user}: what if"

    # reset: the real history, and a URL without the edit
    again.button(key="what_if_reset").click().run()
    no_errors(again)
    assert again.session_state[WHAT_IF] is None and shown_items(again) == real
    assert "drop" not in again.query_params and "add" not in again.query_params


@pytest.mark.parametrize("name", EDITED)
def test_a_new_user_from_five_items_gets_recommendations_an_explanation_and_the_stand_in_sentence(name, services):
    service = services[name]
    popular = service.recommend(a_user_with_history(service), k=5, exclude_seen=False)["item"].astype(str).tolist()
    at = open_link(checkpoint=name, new=",".join(popular))
    no_errors(at)
    assert at.session_state[WHAT_IF].user is None and at.session_state[WHAT_IF].items == tuple(popular)
    assert at.subheader[0].value == "A new user"
    assert shown_items(at) == list(service.recommend(None, k=10, history=popular)["item"].astype(str))
    stand_in = service.model.new_user
    assert any(literal(stand_in, 400) in i.value for i in at.info), [i.value for i in at.info]
    why = next(s.value for s in at.subheader if s.value.startswith("Why"))
    assert why.endswith("for a new user")
    assert f"{service.model.title} ranks" in sentences(at, service.model.title).replace("\\", "")
    assert "for a new user" in sentences(at, service.model.title)
    assert {tab.label for tab in at.tabs}, "the explanation's maps"
    assert at.query_params["new"] == ",".join(popular) and "user" not in at.query_params


def test_a_new_user_on_a_model_that_cannot_take_one_is_one_sentence():
    name = next(p.name for p in SHIPPED if read_config(p).model == "bpr")
    at = open_link(checkpoint=name, new="1,2,3")
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value.replace("\\", "") for e in at.error] == [
        "BPR-MF cannot take a new user: it learned a vector for each user of the data and names nothing to stand in "
        "for one it never saw; pick a user of the dataset."
    ]


def test_a_link_with_unknown_items_says_so_in_one_sentence():
    at = open_link(checkpoint="din-ml100k", user="13", add="no-such-item")
    assert not at.exception, [e.value for e in at.exception]
    no_errors(at)
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert warnings == ["The link's what-if names 1 item that ml-100k does not have (no-such-item); they are left out."]
    # user 13 reads the most recent 50 of their interactions: a link adding one more keeps the newest 50
    service = RecService.from_checkpoint(REPO / "checkpoints" / "din-ml100k")
    window = [str(i) for i in service.history("13")["item"]][-50:]
    added = next(i for i in map(str, service.data.dataset.item_ids[1:]) if i not in window)
    at = open_link(checkpoint="din-ml100k", user="13", add=added)
    no_errors(at)
    assert at.session_state[WHAT_IF].items == (*window[1:], added)
    assert "the 50 most recent are kept" in " ".join(w.value for w in at.warning)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_presentation_mode_shows_the_sentences_and_one_figure_for_every_shipped_checkpoint(path):
    at = open_link(checkpoint=path.name, present="1")
    no_errors(at)
    title = model_info(read_config(path).model).title
    said = sentences(at, title)
    assert said, [m.value for m in at.markdown]
    assert not at.metric and not at.tabs, "no diagnostics in presentation mode"
    assert len(at.get("plotly_chart")) <= 1
    assert at.sidebar.toggle(key="present_toggle").value and at.query_params["present"] == "1"


def test_a_new_user_starts_empty_and_is_asked_for_items():
    at = open_link(checkpoint="sasrec-ml100k", user="13")
    at.sidebar.button(key="new_user").click().run()
    no_errors(at)
    assert at.subheader[0].value == "A new user" and "new" in at.query_params
    assert any("add a few items" in i.value for i in at.info), [i.value for i in at.info]
    picker = at.selectbox(key="what_if_add")
    first = picker.value
    at.button(key="what_if_add_button").click().run()
    no_errors(at)
    assert at.session_state[WHAT_IF].items == (str(first),) and at.query_params["new"] == str(first)
    assert shown_items(at), "one item is enough for SASRec to rank the catalogue"


def test_the_report_opens_with_the_sentences_and_a_what_if_report_sets_both_side_by_side(services):
    from recmodels_explorer.html_report import explanation_html

    service = services["din-ml100k"]
    window = [str(i) for i in service.history("13")["item"]][-50:]
    edited = window[:-2]
    ranked = service.recommend("13", k=10, history=edited)
    item = ranked["item"][0]
    original, result = service.explain("13", item, n_steps=8), service.explain("13", item, n_steps=8, history=edited)
    plain = explanation_html(service, original)
    body = plain.split("<body>")[1]
    assert body.index("<p class='said'>DIN ranks <em>") < body.index("<h2>"), "the sentences come first"
    assert "What if" not in plain
    report = explanation_html(service, result, original=original, rankings=(service.recommend("13", k=10), ranked))
    real, edit = report.index("<h3>With the real history"), report.index("<h3>With the edited history")
    assert real < edit < report.index("How the top items moved") < report.index("edited minus real")
    assert "for user <em>13</em> with the history given" in report[edit:]
    assert f"rank {original.rank} among" in report[real:edit] and f"rank {result.rank} among" in report[edit:]


def test_compare_and_collapse_follow_the_chosen_checkpoint():
    at = open_link(checkpoint="nrms-ml100k", user="13")
    no_errors(at)
    at.switch_page("pages/compare.py").run()
    no_errors(at)
    nrms = read_config(REPO / "checkpoints" / "nrms-ml100k")
    right = read_config(at.selectbox(key="compare_right_compare").value)
    assert right.dataset.fingerprint == nrms.dataset.fingerprint and right.model != "nrms"
    assert at.query_params["checkpoint"] == "nrms-ml100k", "the link keeps the checkpoint on every page"
    at.switch_page("pages/collapse.py").run()
    no_errors(at)
    assert "NRMS" in at.columns[0].subheader[0].value
    assert read_config(at.selectbox(key="collapse_right_collapse").value).collapse_example
    at.sidebar.selectbox(key="checkpoint_collapse").set_value(str(REPO / "checkpoints" / "acf-collapsed-ml100k")).run()
    beside = read_config(at.selectbox(key="collapse_right_collapse").value)
    assert (beside.model, beside.collapse_example) == ("acf", None), "a collapse example's healthy twin beside it"


def test_compare_says_when_no_other_checkpoint_has_the_same_data(tmp_path, monkeypatch):
    shutil.copytree(REPO / "checkpoints" / "mostpop-fashion", tmp_path / "only")
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(tmp_path))
    at = open_link()
    at.switch_page("pages/compare.py").run()
    no_errors(at)
    assert any("No other checkpoint in the checkpoint roots was trained on this data" in i.value for i in at.info)
