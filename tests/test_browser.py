"""End to end in a real browser: `streamlit run` on a free port, driven by Playwright through Debian's chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.app_browser import (
    browser_page,
    choose,
    find_item,
    page_text,
    select_rows,
    serve_app,
    visible_errors,
    wait_for_charts,
    wait_idle,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = REPO / "artifacts" / "screenshots"
# what each checkpoint's tabs must show: (checkpoint label, {tab: text that only that tab shows})
TABS = [
    ("DIN · ml-100k", {"Items": "history", "Attributions": "Perturbations"}),
    ("NRMS", {"Heads": "Head importance", "Items": "history", "Attributions": "Convergence delta"}),
    ("IntTower", {"Heads": "Head importance", "Fields": "field", "Attributions": "Convergence delta"}),
    ("ACF · fashion", {"Items": "profile", "Regions": "region", "Attributions": "Convergence delta"}),
]


@pytest.fixture(scope="module")
def app_url():
    with serve_app() as url:
        yield url


@pytest.fixture()
def page(app_url):
    with browser_page() as page:
        page.console_complaints = []  # what the page logged as a warning, an error or a stack trace
        page.on(
            "console",
            lambda message: (
                page.console_complaints.append(f"{message.type}: {message.text[:200]}")
                if message.type in ("warning", "error", "trace", "assert")
                else None
            ),
        )
        page.goto(app_url)
        wait_for_charts(page)
        yield page


def open_tab(page, name: str):
    """Click a tab and wait for its figures; returns the visible tab panel."""
    page.get_by_role("tab", name=name).click()
    wait_idle(page)
    panel = page.get_by_role("tabpanel")  # hidden panels are not in the accessibility tree
    panel.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    return panel


def test_pick_user_open_explanation_and_see_heatmaps(page):
    choose(page, "User", "user 42 ·", sidebar=True)
    wait_for_charts(page)
    assert "User 42\n" in page_text(page)
    find_item(page, "fargo")  # a title, in any case: the first match is explained
    wait_for_charts(page)
    text = page_text(page)
    assert "Why Fargo for user 42" in text and "Score (logit)" in text
    choose(page, "Explain the score of", "Fargo (100)")  # the found item is on the picker's list
    wait_idle(page)
    assert [tab.inner_text().strip() for tab in page.get_by_role("tab").all()] == ["Items", "Attributions"]
    for name in ("Attributions", "Items"):
        panel = open_tab(page, name)
        assert panel.locator(".main-svg").count() > 0, f"no plotly figure in tab {name}"
    assert not visible_errors(page)
    assert "Traceback" not in page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "browser-test.png"), full_page=True)
    assert (SHOTS / "browser-test.png").stat().st_size > 10_000


@pytest.mark.parametrize("checkpoint, tabs", TABS, ids=[c for c, _ in TABS])
def test_only_the_open_tab_is_drawn_and_every_tab_draws_its_figures(page, checkpoint, tabs):
    if checkpoint != TABS[0][0]:
        choose(page, "Checkpoint", checkpoint, sidebar=True)
        wait_for_charts(page)
    assert [tab.inner_text().strip() for tab in page.get_by_role("tab").all()] == list(tabs)
    for name, marker in [*tabs.items(), *list(tabs.items())[:1]]:  # every tab, then back to the first
        panel = open_tab(page, name)
        drawn = page.locator('[data-testid="stMain"] .js-plotly-plot').count()
        assert drawn == panel.locator(".js-plotly-plot").count() > 0, f"{name}: figures outside the open tab"
        assert marker.lower() in panel.inner_text().lower(), f"{name} lacks {marker!r}"
        assert panel.locator('[data-testid="stDownloadButton"]').count() > 0, f"{name}: no CSV button"
    assert not visible_errors(page)
    # plotly.js 3 logged a stack trace per bar per draw when handed numbers to colour, which slowed every rerun
    assert not page.console_complaints, page.console_complaints[:5]


def test_search_box_random_user_link_and_the_report(page, app_url):
    box = page.locator('[data-testid="stSidebar"] input[aria-label="Find a user"]')
    box.fill("42")
    box.press("Enter")
    wait_for_charts(page)
    assert "User 42\n" in page_text(page)
    page.get_by_text("Exclude seen").click()  # another run of the page: the user stays
    wait_for_charts(page)
    assert "User 42\n" in page_text(page)
    box.fill("**9**<b>x</b>")
    box.press("Enter")
    wait_idle(page)
    assert "No user id in ml-100k starts with **9**<b>x</b>; the list shows the first users instead." in page_text(page)
    warning = page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentWarning"]')
    assert warning.count() == 1 and warning.locator("b, strong").count() == 0, "the typed markup stays text"
    for _ in range(3):  # a random user is 42 again once in 943 draws
        page.get_by_role("button", name="Random user").click()
        wait_for_charts(page)
        if "User 42\n" not in page_text(page):
            break
    assert box.input_value() == "" and "User 42\n" not in page_text(page)
    with page.expect_download() as download:  # the report computes the perturbation tests on the click
        page.get_by_role("button", name="Download this explanation as a self-contained HTML report").click()
    assert "<h2>Perturbations</h2>" in Path(download.value.path()).read_text()
    page.goto(f"{app_url}/?user=77")
    wait_for_charts(page)
    assert "User 77\n" in page_text(page) and page.url.endswith("user=77")
    page.goto(f"{app_url}/?user=nobody")
    wait_for_charts(page)
    assert "User nobody from the link is not in ml-100k; showing the first user." in page_text(page)
    assert "User 1\n" in page_text(page) and not visible_errors(page)


def test_a_pipeline_shows_both_ranks_both_stages_and_what_retrieval_missed(page, app_url):
    page.goto(f"{app_url}/?checkpoint=two_tower-din-ml100k&user=13")
    wait_for_charts(page)
    text = page_text(page)
    assert "Two-tower (MHA) → DIN (top 100) on ml-100k" in text
    headers = page.locator(".st-key-recommendations [role=columnheader]")  # the grid's accessible headers
    assert [headers.nth(i).inner_text() for i in range(2)] == ["final rank", "retriever rank"]
    assert "Missed by retrieval" in text and "were never retrieved" in text
    # both stages, retriever first, each with its own tabs and figures
    assert text.index("Stage 1 · retrieval: Two-tower (MHA)") < text.index("Stage 2 · ranking: DIN")
    assert [tab.inner_text().strip() for tab in page.get_by_role("tab").all()] == [
        "Heads", "Attributions", "Items", "Attributions",
    ]  # fmt: skip
    assert page.locator('[data-testid="stMain"] .js-plotly-plot').count() >= 2
    assert "Final rank" in text and "Retriever rank" in text and "inside its shortlist of 100" in text
    # open the ranker's favourite that the shortlist dropped: never shown, and what the ranker would have done
    select_rows(page, "missed_rows", [0])
    wait_for_charts(page)
    text = page_text(page)
    assert "outside its shortlist of 100, so the pipeline never shows it" in text
    assert "Final rank\n\nnot shown" in text or "not shown" in text.split("Final rank", 1)[1][:40]
    assert text.index("Stage 1 · retrieval") < text.index("Stage 2 · ranking")
    assert not visible_errors(page) and "Traceback" not in page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "browser-pipeline.png"), full_page=True)
    # Compare: the pipeline beside its ranker, on the same users
    page.get_by_role("link", name="Compare").click()
    wait_idle(page)
    text = page_text(page)
    assert "Overlap of the two top-k lists" in text and not visible_errors(page)
