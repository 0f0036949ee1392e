"""The what-if, a new user and presentation mode in a real browser (Playwright + Debian's chromium): an edit moves the
recommendations and the maps, the diff shows, the URL reopens the same what-if in a new browser, and a new user
built from five items gets recommendations, an explanation and the sentence on what stands in for them."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from recmodels.serving.service import RecService
from tests.helpers import a_user_with_history
from tools.app_browser import (
    add_to_history,
    browser_page,
    chart_data,
    click,
    downloaded,
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
EDITED = ["din-ml100k", "nrms-ml100k", "sasrec-ml100k", "vecf-fashion"]  # the four


@pytest.fixture(scope="module")
def app_url():
    with serve_app() as url:
        yield url


def recommended(page) -> list[str]:
    """The recommendations' item ids, top first, from the table's own CSV download."""
    return pd.read_csv(io.BytesIO(downloaded(page, "recs_csv")), dtype=str)["item"].tolist()


def link_params(page) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlparse(page.url).query).items()}


def top(service, user, history) -> list[str]:
    return service.recommend(user, k=10, history=history)["item"].astype(str).tolist()


@pytest.mark.parametrize("name", EDITED)
def test_edit_a_history_share_the_link_and_build_a_new_user(app_url, name):
    service = RecService.from_checkpoint(REPO / "checkpoints" / name)
    user = a_user_with_history(service)
    window = [str(i) for i in service.history(user)["item"]][-service.data.max_history :]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser_page(height=2400) as page:
        page.goto(f"{app_url}/?checkpoint={name}&user={user}")
        wait_for_charts(page)
        real, maps = recommended(page), chart_data(page)
        assert real == top(service, user, None)

        select_rows(page, "history_rows", [0, 1])  # the two newest items
        click(page, "what_if_remove")
        wait_for_charts(page)
        kept = window[:-2]
        assert link_params(page) == {"checkpoint": name, "user": user, "drop": ",".join(window[-2:])}
        assert recommended(page) == top(service, user, kept) != real, "the recommendations moved"
        assert chart_data(page) != maps, "the maps were drawn again for the edited history"
        text = page_text(page)
        for said in ("Recommendations for the edited history", "Score against the real history",
                     "Attention per history item: the edit against the real history"):  # fmt: skip
            assert said in text, said
        assert "Against the real history" in text or "The same top 10 as with the real history" in text
        page.locator(".st-key-fig_attention_change .js-plotly-plot").wait_for(timeout=30_000)

        added = next(i for i in map(str, service.data.dataset.item_ids[1:]) if i not in window)
        add_to_history(page, added)
        wait_for_charts(page)
        edited = [*kept, added]
        assert link_params(page)["add"] == added
        assert recommended(page) == top(service, user, edited)
        assert not visible_errors(page)
        page.screenshot(path=str(SHOTS / f"what-if-{name}.png"), full_page=True)
        link = page.url

    with browser_page(height=2400) as fresh:  # a new browser: nothing but the link
        fresh.goto(link)
        wait_for_charts(fresh)
        assert f"User {user}: what if" in page_text(fresh)
        assert recommended(fresh) == top(service, user, edited)

        click(fresh, "new_user")
        wait_idle(fresh)
        assert "A new user starts with no history" in page_text(fresh)
        five = top(service, user, None)[:5]
        for item in five:
            add_to_history(fresh, item)
            wait_idle(fresh)
        wait_for_charts(fresh)
        assert link_params(fresh) == {"checkpoint": name, "new": ",".join(five)}
        assert recommended(fresh) == top(service, None, five)
        text = page_text(fresh)
        assert "A new user\n" in text and f"A new user: {service.model.new_user}" in text
        assert f"{service.model.title} ranks" in text and "for a new user" in text
        assert not visible_errors(fresh)
        fresh.screenshot(path=str(SHOTS / f"new-user-{name}.png"), full_page=True)


def test_presentation_mode_hides_the_controls_and_keeps_the_sentences(app_url):
    with browser_page() as page:
        page.goto(f"{app_url}/?checkpoint=nrms-ml100k&user=13")
        wait_for_charts(page)
        page.locator('[data-testid="stSidebar"] label').filter(has_text="Presentation mode").click()
        wait_for_charts(page)
        assert link_params(page) == {"checkpoint": "nrms-ml100k", "user": "13", "present": "1"}
        text = page_text(page)
        assert "NRMS ranks" in text and "Why " in text
        for hidden in ("Exclude seen", "Remove selected", "Score (logit)", "IG steps", "Convergence delta"):
            assert hidden not in text, hidden
        assert page.locator(".js-plotly-plot").count() == 1
        page.screenshot(path=str(SHOTS / "presentation-nrms.png"), full_page=True)
