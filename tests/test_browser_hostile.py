"""The explorer on hostile data in a real browser (Playwright + Debian's chromium): markdown, HTML and URLs in
titles, ids and features stay text, the browser fetches nothing but the app's own server, no traceback shows,
and a 9000x9000 poster does not make the page heavy."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_fuzz_app import HOSTILE_TITLES, train_hostile_checkpoints

from tools.app_browser import browser_page, choose, page_text, serve_app, visible_errors, wait_for_charts, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOT = Path("/tmp/hostile.png")
MAX_APP_BYTES = 5_000_000  # what the server sends over the websocket: tables, figures, thumbnails


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-browser")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECMODELS_CACHE", str(base / "cache"))  # the server reuses the training run's features
        root = base / "root"
        root.mkdir()
        train_hostile_checkpoints(root)
        yield root


def test_hostile_strings_stay_text_and_nothing_is_fetched_from_outside(hostile_root):
    with serve_app(args=("--checkpoint-root", str(hostile_root))) as url, browser_page(height=2400) as page:
        requests, received = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("websocket", lambda socket: socket.on("framereceived", lambda payload: received.append(len(payload))))
        page.goto(url)
        wait_for_charts(page)
        received.clear()  # from here on: what the hostile checkpoint costs
        choose(page, "Checkpoint", "ACF · hostile", sidebar=True)
        wait_for_charts(page)
        choose(page, "User", "user **u1** ·", sidebar=True)
        wait_for_charts(page)
        choose(page, "Explain the score of", ":red[alarm] (i2)")  # the item with the 9000x9000 poster
        wait_for_charts(page)
        text = page_text(page)
        assert "User **u1**\n" in text and "Why :red[alarm] for user **u1**" in text, text[:2000]
        # an item the user has not seen: the explanation looks at the whole history, 9000x9000 poster included
        choose(page, "Explain the score of", unseen_item(hostile_root, "**u1**"))
        wait_for_charts(page)
        page.get_by_role("tab", name="Regions").click()
        wait_idle(page)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        text = page_text(page)
        assert ":red[alarm]" in text  # the poster's title above its overlay, as text
        assert "Long " * 100 not in text  # the 6,000-character title is cut wherever it shows
        assert not visible_errors(page) and "Traceback" not in page.content()
        main = page.locator('[data-testid="stMain"], [data-testid="stSidebar"]')
        assert main.locator("img[src^='http'], a[href^='javascript'], b, .katex").count() == 0
        links = [a.get_attribute("href") or "" for a in page.locator('[data-testid="stMain"] a').all()]
        assert all(not href.startswith(("http", "javascript")) or href.startswith(url) for href in links), links
        regions = page.get_by_role("tabpanel").filter(has=page.locator(".main-svg")).first
        assert regions.locator("image").count() > 0, "the overlays show their images"
    outside = [u for u in requests if not u.startswith((url, "data:", "blob:", "ws://127.0.0.1"))]
    assert not outside, outside
    assert sum(received) < MAX_APP_BYTES, f"{sum(received):,} bytes over the websocket"
    assert SCREENSHOT.stat().st_size > 10_000


def unseen_item(root: Path, user: str) -> str:
    """The item picker's label of a plainly titled item that ``user`` has not interacted with."""
    lines = (root.parent / "hostile-data" / "hostile.inter").read_text().splitlines()[1:]
    seen = {line.split("\t")[1] for line in lines if line.split("\t")[0] == user}
    n = next(n for n in range(len(HOSTILE_TITLES), 30) if f"i{n + 1}" not in seen)
    return f"Film {n} (i{n + 1})"
