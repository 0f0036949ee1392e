"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page and the main interactions."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint import read_config

REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
SHIPPED = sorted(p for p in (REPO / "checkpoints").iterdir() if (p / "config.json").is_file())


def _app() -> AppTest:
    return AppTest.from_file(ENTRY, default_timeout=180)


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _pick_checkpoint(at: AppTest, path: Path) -> None:
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str(path)).run()


def _expected_tabs(path: Path) -> set[str]:
    model = read_config(path)["model"]
    return {"din": {"Items", "Attributions"}, "nrms": {"Heads", "Items", "Attributions"},
            "two_tower": {"Heads", "Attributions"}, "inttower": {"Fields", "Attributions"},
            "acf": {"Items", "Regions", "Attributions"}, "bpr": {"Attributions"}, "mostpop": set()}[model]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_explorer_renders_every_shipped_checkpoint(path):
    at = _app().run()
    _pick_checkpoint(at, path)
    _no_errors(at)
    tabs = {tab.label for tab in at.tabs}
    assert _expected_tabs(path) <= tabs
    labels = [m.label for m in at.metric]
    assert "Score (logit)" in labels and "Rank among unseen items" in labels
    caption_text = " ".join(c.value for c in at.sidebar.caption) + " ".join(i.value for i in at.sidebar.info)
    assert "Harper" in caption_text or "Simulated shoppers" in caption_text
    assert "Device:" in caption_text


def test_pick_user_random_user_and_explain_another_item():
    at = _app().run()
    first_heading = at.subheader[0].value
    at.sidebar.selectbox(key="user").set_value("42").run()
    _no_errors(at)
    assert at.subheader[0].value == "User 42" != first_heading
    at.sidebar.button(key="user_random").click().run()
    _no_errors(at)
    assert at.subheader[0].value.startswith("User ")
    before = at.metric[0].value
    at.selectbox(key="explain_item").set_value("100").run()  # any catalogue item: Fargo
    _no_errors(at)
    assert at.selectbox(key="explain_item").value == "100"
    assert at.metric[0].value != before


def test_tabs_show_maps_with_collapse_notes_and_downloads():
    nrms = next((p for p in SHIPPED if read_config(p)["model"] == "nrms"), None)
    if nrms is None:
        pytest.skip("no NRMS checkpoint shipped")
    at = _app().run()
    _pick_checkpoint(at, nrms)
    _no_errors(at)
    heads = next(tab for tab in at.tabs if tab.label == "Heads")
    assert heads.get("segmented_control")  # head selector with the mean over heads
    control = heads.get("segmented_control")[0]
    assert "mean over heads" in control.options
    control.set_value("mean over heads").run()
    _no_errors(at)
    assert len(at.get("download_button")) >= 4  # CSV per map and table, and the HTML report


def test_toggles_exclude_seen_and_attributions_off():
    at = _app().run()
    at.toggle(key="exclude_seen").set_value(False).run()
    _no_errors(at)
    at.toggle(key="with_ig").set_value(False).run()
    _no_errors(at)
    assert "Attributions" not in {tab.label for tab in at.tabs}


def test_invalid_checkpoint_path_shows_an_error_not_a_traceback(tmp_path):
    at = _app().run()
    at.sidebar.text_input(key="checkpoint_explore_path").input(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert any("is not a checkpoint folder" in e.value for e in at.sidebar.error)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    at.sidebar.text_input(key="checkpoint_explore_path").input(str(broken)).run()
    assert not at.exception
    assert any("not valid JSON" in e.value for e in at.error)


@pytest.mark.parametrize("page", ["pages/collapse.py", "pages/compare.py", "pages/model_card.py"])
def test_other_pages_render(page):
    at = _app().run()
    at.switch_page(page).run()
    _no_errors(at)
    assert at.title, "every page has a title"
    if page.endswith("compare.py"):
        assert any(m.label == "Overlap of the two top-k lists" for m in at.metric)
    if page.endswith("model_card.py"):
        assert at.dataframe, "the metrics table"
    if page.endswith("collapse.py"):
        assert at.get("plotly_chart"), "the diagnostics figures"
