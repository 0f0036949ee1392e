"""End to end in a real browser: `streamlit run` on a free port, driven by Playwright through Debian's chromium."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools.app_browser import browser_page, choose, page_text, serve_app, visible_errors, wait_for_charts

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_pick_user_open_explanation_and_see_heatmaps():
    shots = REPO / "artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with serve_app() as url, browser_page() as page:
        page.goto(url)
        wait_for_charts(page)
        assert not visible_errors(page)
        choose(page, "User", "user 42 ·", sidebar=True)
        wait_for_charts(page)
        assert "User 42\n" in page_text(page)
        choose(page, "Explain the score of", "Fargo (100)")
        wait_for_charts(page)
        text = page_text(page)
        assert "Fargo" in text and "Score (logit)" in text
        tabs = [tab.inner_text().strip() for tab in page.get_by_role("tab").all()]
        assert "Attributions" in tabs
        for name in tabs:
            page.get_by_role("tab", name=name).click()
            page.wait_for_timeout(300)
            # plotly draws its heatmaps and bars as SVG inside the visible tab panel
            panel = page.get_by_role("tabpanel").filter(has=page.locator(".main-svg")).first
            assert panel.locator(".main-svg").count() > 0, f"no plotly figure in tab {name}"
        assert not visible_errors(page)
        assert "Traceback" not in page.content()
        page.screenshot(path=str(shots / "browser-test.png"), full_page=True)
    assert (shots / "browser-test.png").stat().st_size > 10_000
