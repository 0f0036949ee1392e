"""Drive the running app in a real browser (Playwright + Debian's chromium): screenshots and timings.

    python tools/app_browser.py timings [--runs 3] [--repeats 5] [--write-docs docs/benchmarks.md]
                                              # first render, user switch, explanation open, what-if, new user
    python tools/app_browser.py scale [--preset ml-20m] [--write-docs docs/benchmarks.md]   # the app at scale
    python tools/app_browser.py screenshots --out artifacts/screenshots
    python tools/app_browser.py screenshots --explorer docs/assets/explorer.png   # the README's screenshot

The browser test in tests/test_browser.py uses the same helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from recmodels import settings

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = settings.text(settings.CHROMIUM) or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ERROR_MARKERS = ("Traceback", "Exception:", "Error:", "StreamlitAPIException")


def stop(process: subprocess.Popen) -> None:
    """Ask a server to stop, and make sure it has."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(
    port: int | None = None,
    timeout: float = 120.0,
    args: tuple[str, ...] = (),
    command: tuple[str, ...] = (sys.executable, "-m", "recmodels"),
    cwd: Path = REPO,
    env: dict | None = None,
):
    """Run the explorer as `make app` does (`python -m recmodels explore`) on a free localhost port; yields the URL.

    ``args`` go to the command after the port (e.g. ``("--checkpoint-root", folder)``); ``command`` is how the CLI is
    started (an installed wheel's ``recmodels`` script, say), ``cwd`` and ``env`` where and with what."""
    port = port or free_port()
    env = env if env is not None else {**os.environ, "PYTHONPATH": str(REPO)}
    # not a pipe: a server that logs a lot would block on a full one; closed in the finally below
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    process = subprocess.Popen(
        [*command, "explore", "--port", str(port), "--address", "127.0.0.1", *args],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                output = log.read()
                raise RuntimeError(f"streamlit did not start on port {port}: {output[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1200):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium`.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


# Runs in the page, every 100 ms of the page's own timer: the app is quiet when Streamlit's "running" widget is gone
# and nothing is stale, for three checks in a row. Polling from Python instead costs two DevTools round trips per
# check, CPU that a 2-core machine takes from the browser being measured.
_QUIET_CHECK = """(needChart) => {
    const chart = [...document.querySelectorAll('.js-plotly-plot .main-svg')].some((e) => e.checkVisibility());
    const busy = document.querySelector('[data-testid="stStatusWidget"], [data-stale="true"]') !== null
        || (needChart && !chart);
    const state = window.__recmodelsQuiet || (window.__recmodelsQuiet = {count: 0, since: null});
    if (busy) { state.count = 0; state.since = null; return false; }
    state.count += 1;
    state.since = state.since ?? performance.now();
    return state.count >= 3;
}"""


def wait_idle(page, timeout: float = 120.0, chart: bool = False) -> float:
    """Until Streamlit has finished the current run (its 'running' widget is gone and nothing is stale) and, with
    ``chart``, a chart is visible (figures in hidden tabs exist too).

    Returns the ``time.perf_counter()`` at which the app went quiet, so that the checks that confirm it are not
    counted in timings.
    """
    page.wait_for_timeout(150)  # a rerun can start a moment after the click
    page.evaluate("() => { window.__recmodelsQuiet = {count: 0, since: null}; }")
    try:
        page.wait_for_function(_QUIET_CHECK, arg=chart, polling=100, timeout=timeout * 1000)
    except Exception as err:  # playwright's TimeoutError
        raise TimeoutError("the app did not finish rendering in time") from err
    quiet_for_ms = page.evaluate("() => performance.now() - window.__recmodelsQuiet.since")
    return time.perf_counter() - quiet_for_ms / 1000


def wait_for_charts(page, timeout: float = 120.0) -> float:
    """As :func:`wait_idle`, and a chart is visible; returns when both first held."""
    return wait_idle(page, timeout, chart=True)


def choose(page, label: str, text: str, sidebar: bool = False) -> float:
    """Pick an option of a Streamlit selectbox by typing into it; returns the ``time.perf_counter()`` of the click
    on the option, where the app's work starts (typing filters the list in the browser alone)."""
    scope = page.locator('[data-testid="stSidebar"]') if sidebar else page
    box = scope.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.keyboard.type(text)
    option = page.get_by_role("option").filter(has_text=text).first
    option.wait_for(timeout=30_000)
    clicked = time.perf_counter()
    option.click()
    return clicked


def find_item(page, text: str, picker: str = "explain_item") -> float:
    """Type into the "Find an item" box of the item picker with ``key=picker`` (the Explorer's "Explain the score
    of" by default; the what-if's "Add an item" has one too): the app lists a page of matches and picks the
    first. Returns the ``time.perf_counter()`` of the Enter that sends the search."""
    box = page.locator(f".st-key-{picker}_find input").first
    box.fill(text)
    pressed = time.perf_counter()
    box.press("Enter")
    return pressed


def select_rows(page, table_key: str, rows: list[int]) -> None:
    """Tick rows of the dataframe with ``key=table_key`` (0 = the top row shown): the grid is a canvas, so click
    where each row's checkbox is drawn."""
    box = page.locator(f".st-key-{table_key} [data-testid='stDataFrame']").first.bounding_box()
    for row in rows:
        page.mouse.click(box["x"] + 18, box["y"] + ROW_PX + row * ROW_PX + ROW_PX / 2)
        wait_idle(page)


ROW_PX = 35  # a Streamlit dataframe's header and row height
EDITED_ROWS = "what_if_rows"  # the Explorer's history table's key once it shows an edit


def click(page, key: str) -> float:
    """Click the button with ``key=key``; returns the ``time.perf_counter()`` of the click."""
    button = page.locator(f".st-key-{key} button").first
    button.wait_for(timeout=30_000)
    clicked = time.perf_counter()
    button.click()
    return clicked


def add_to_history(page, text: str) -> float:
    """The what-if's "Add an item": search ``text`` (an id or part of a title; the first match is picked), then
    click Add. Returns the ``time.perf_counter()`` of the click on Add."""
    find_item(page, text, picker="what_if_add")
    wait_idle(page)
    return click(page, "what_if_add_button")


def downloaded(page, key: str, tries: int = 3) -> bytes:
    """What the download button with ``key=key`` gives. A rerun that redraws the button between the quiet check
    and the click replaces the file it points at, and the click downloads nothing: wait for quiet and click again."""
    for attempt in range(tries):
        wait_idle(page)
        try:
            with page.expect_download(timeout=20_000) as download:
                page.locator(f".st-key-{key} button").first.click()
            return Path(download.value.path()).read_bytes()
        except Exception:  # playwright's TimeoutError
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def chart_data(page) -> str:
    """Every visible chart's traces, as one string: what the maps show, to tell whether they changed."""
    return page.evaluate(
        "() => JSON.stringify([...document.querySelectorAll('.js-plotly-plot')].filter((p) => p.checkVisibility())"
        ".map((p) => p.data))"
    )


def page_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text() + page.locator('[data-testid="stSidebar"]').inner_text()


def visible_errors(page) -> list[str]:
    errors = [
        e.inner_text() for e in page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').all()
    ]
    text = page_text(page)
    return errors + [marker for marker in ("Traceback",) if marker in text]


MARKERS = ("<!-- app-timings:start -->", "<!-- app-timings:end -->")
# (figure, its target as words, whether the median or the worst round is held to it)
TARGETS = {
    "first render s": ("<= 5 s", 5.0, None),
    "switch user s": ("median <= 0.8 s, every round <= 1.0 s", 1.0, 0.8),
    "open explanation with IG s": ("<= 2 s", 2.0, None),
    # the floor: the whole page run again with nothing changed (the figure download format toggled)
    "same-content rerun s": ("no target: the floor", math.inf, None),
    # a what-if recomputes the edited history's ranking and explanation, and the real history's beside them
    "remove one history item s": ("median <= 1 s", math.inf, 1.0),
    "add one item s": ("median <= 1 s", math.inf, 1.0),
    "new user, the 5th item s": ("median <= 1 s", math.inf, 1.0),
}
ADDED = "Mirage"  # in none of the timed users' histories
NEW_USER_ITEMS = ("Star Wars", "Fargo", "Titanic", "Babe", "Scream")


def timings(repeats: int = 3) -> list[dict]:
    """``repeats`` rounds on one fresh server, each in a new session: the page's first render, a switch of user,
    a search for an item and its explanation, the same page again; then a what-if (the newest history item
    removed, one item added) and a new user built from five items; seconds from the action to quiet (see
    :func:`wait_idle`)."""
    rows = []
    with serve_app() as url, browser_page() as page:
        for attempt in range(repeats):
            start = time.perf_counter()
            page.goto(url)
            first = wait_for_charts(page) - start
            start = choose(page, "User", f"user {10 + attempt} ·", sidebar=True)
            switch = wait_for_charts(page) - start
            start = find_item(page, "Fargo")  # the item list is a page of the catalogue: search it
            explain = wait_for_charts(page) - start
            toggle = page.locator('[data-testid="stSidebar"] label').filter(has_text="svg").first
            start = time.perf_counter()
            toggle.click()
            rerun = wait_for_charts(page) - start
            select_rows(page, "history_rows", [0])  # the newest item
            start = click(page, "what_if_remove")
            remove = wait_for_charts(page) - start
            start = add_to_history(page, ADDED)
            add = wait_for_charts(page) - start
            click(page, "new_user")
            wait_idle(page)
            for text in NEW_USER_ITEMS[:-1]:
                add_to_history(page, text)
                wait_for_charts(page)
            start = add_to_history(page, NEW_USER_ITEMS[-1])
            new_user = wait_for_charts(page) - start
            rows.append(
                {
                    "first render s": first,
                    "switch user s": switch,
                    "open explanation with IG s": explain,
                    "same-content rerun s": rerun,
                    "remove one history item s": remove,
                    "add one item s": add,
                    "new user, the 5th item s": new_user,
                }
            )
    return rows


def screenshots(out: Path, checkpoints: list[str], user: str = "13") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    # Streamlit scrolls inside its own container, so full_page cannot reach below the viewport: make it tall
    with serve_app() as url, browser_page(height=3200) as page:
        page.goto(url)
        wait_for_charts(page)
        for checkpoint in checkpoints:
            choose(page, "Checkpoint", checkpoint, sidebar=True)
            wait_for_charts(page)
            choose(page, "User", f"user {user} ·", sidebar=True)
            wait_for_charts(page)
            slug = "".join(c if c.isalnum() else "-" for c in checkpoint.lower()).strip("-")
            for tab in page.get_by_role("tab").all():
                name = tab.inner_text().strip()
                tab.click()
                wait_idle(page)
                page.wait_for_timeout(400)
                path = out / f"{slug}-{name.lower()}.png"
                page.screenshot(path=str(path), full_page=True)
                saved.append(path)
        for title in ("Collapse", "Compare", "Model card"):
            page.get_by_role("link", name=title).click()
            wait_for_charts(page)
            page.wait_for_timeout(400)
            path = out / f"page-{title.lower().replace(' ', '-')}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
    return saved


SCALE_MARKERS = ("<!-- app-scale:start -->", "<!-- app-scale:end -->")
# (figure, its target as words, the worst round's limit, the median's limit)
SCALE_TARGETS = {
    "open the checkpoint in a running app s": ("<= 5 s", 5.0, None),
    "first render, the checkpoint loaded at start s": ("<= 5 s", 5.0, None),
    "switch user s": ("median <= 0.8 s, every round <= 1.0 s", 1.0, 0.8),
    "remove one history item s": ("median <= 1 s", math.inf, 1.0),
    "Collapse page s": ("<= 5 s", 5.0, None),
}


def scale_checkpoint(folder: Path, preset: str) -> Path:
    """A DIN (untrained: the app's work does not depend on the weights) on a synthetic dataset of ``preset``'s
    shape, in ``folder``/root; returns the root."""
    from recmodels.checkpoint.io import save_checkpoint
    from recmodels.data.prepared import RecData
    from recmodels.data.synth import PRESETS, generate
    from recmodels.models.din import DIN

    data_dir = generate(folder / "data", PRESETS[preset], seed=0, progress=True)
    data = RecData.load("synth", data_dir=data_dir, max_history=50)
    save_checkpoint(folder / "root" / f"din-{preset}", DIN.from_data(data), data)
    return folder / "root"


def scale_timings(root: Path, switches: int = 5) -> dict[str, list[float]]:
    """The app on a large checkpoint: picked in an app already running on the shipped ones (its data loads then),
    the first render of an app started on it, switching user, removing a history item and the Collapse page."""
    figures: dict[str, list[float]] = {}
    with serve_app(args=("--checkpoint-root", str(REPO / "checkpoints"), "--checkpoint-root", str(root)),
                   timeout=600) as url, browser_page() as page:  # fmt: skip
        page.goto(url)
        wait_for_charts(page)
        start = choose(page, "Checkpoint", "synth", sidebar=True)
        figures["open the checkpoint in a running app s"] = [wait_for_charts(page, timeout=600) - start]
    with serve_app(args=("--checkpoint-root", str(root)), timeout=600) as url, browser_page() as page:
        start = time.perf_counter()
        page.goto(url)
        figures["first render, the checkpoint loaded at start s"] = [wait_for_charts(page, timeout=600) - start]
        figures["switch user s"] = []
        for attempt in range(switches):
            start = choose(page, "User", f"user {10 + attempt} ·", sidebar=True)
            figures["switch user s"].append(wait_for_charts(page) - start)
        figures["remove one history item s"] = []
        for attempt in range(switches):
            select_rows(page, "history_rows" if attempt == 0 else EDITED_ROWS, [0])
            start = click(page, "what_if_remove")
            figures["remove one history item s"].append(wait_for_charts(page) - start)
        start = time.perf_counter()
        page.get_by_role("link", name="Collapse").click()
        figures["Collapse page s"] = [wait_for_charts(page, timeout=600) - start]
    return figures


def scale_table(figures: dict[str, list[float]]) -> str:
    lines = ["| figure (target) | rounds | seconds |", "|---|---|---|"]
    for figure, (words, limit, median_limit) in SCALE_TARGETS.items():
        values = figures[figure]
        middle = statistics.median(values)
        worst, mid = f"{max(values):.2f}", f"{middle:.2f}"
        worst = f"**{worst}**" if max(values) > limit else worst
        mid = f"**{mid}**" if median_limit is not None and middle > median_limit else mid
        shown = worst if len(values) == 1 else f"{min(values):.2f}-{worst}, median {mid}"
        lines.append(f"| {figure[:-2]} ({words}) | {len(values)} | {shown} |")
    return "\n".join(lines)


def explorer_screenshot(path: Path, checkpoint: str = "NRMS", user: str = "13") -> Path:
    """One PNG of the Explorer, the README's and the docs' screenshot: ``checkpoint`` and ``user`` chosen, and the
    explanation of their top recommendation on its first tab, cut below the first figures. Reduced to a 256-colour
    palette so that it stays small."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with serve_app() as url, browser_page(width=1440, height=2000) as page:
        page.goto(url)
        wait_for_charts(page)
        choose(page, "Checkpoint", checkpoint, sidebar=True)
        wait_for_charts(page)
        choose(page, "User", f"user {user} ·", sidebar=True)
        wait_for_charts(page)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring
        page.wait_for_timeout(400)
        shot = Path(tempfile.mkdtemp()) / "explorer.png"
        page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1440, "height": 1915})
    with Image.open(shot) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    shot.unlink()
    return path


def timings_table(runs: list[list[dict]]) -> str:
    """Markdown: each figure's rounds per run (range and median), then over every round, against its target; a
    figure over its target is bold."""

    def spread(values: list[float], limit: float, median_limit: float | None) -> str:
        middle = statistics.median(values)
        worst, mid = f"{max(values):.2f}", f"{middle:.2f}"
        if max(values) > limit:
            worst = f"**{worst}**"
        if median_limit is not None and middle > median_limit:
            mid = f"**{mid}**"
        return f"{min(values):.2f}-{worst} s, median {mid}"

    header = ["figure (target)", *[f"run {n}" for n in range(1, len(runs) + 1)], f"all {sum(map(len, runs))} rounds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for figure, (words, limit, median_limit) in TARGETS.items():
        cells = [spread([row[figure] for row in run], limit, median_limit) for run in runs]
        cells.append(spread([row[figure] for run in runs for row in run], limit, median_limit))
        lines.append("| " + " | ".join([f"{figure[:-2]} ({words})", *cells]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("timings")
    timing.add_argument("--repeats", type=int, default=3, help="rounds per run, each in a new session")
    timing.add_argument("--runs", type=int, default=1, help="runs, each on a fresh server and browser")
    timing.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="write the table between the app-timings markers of PAGE (docs/benchmarks.md)",
    )
    scale = sub.add_parser("scale", help="the app on a synthetic dataset of a preset's size (default ml-20m)")
    scale.add_argument("--preset", default="ml-20m")
    scale.add_argument("--switches", type=int, default=5, help="user switches and history removals timed")
    scale.add_argument("--write-docs", metavar="PAGE", help="write the table between the app-scale markers of PAGE")
    shots = sub.add_parser("screenshots")
    shots.add_argument("--out", default=str(REPO / "artifacts" / "screenshots"))
    shots.add_argument("--explorer", metavar="PNG", help="write only the README's screenshot of the Explorer to PNG")
    shots.add_argument(
        "--checkpoints",
        nargs="*",
        default=["DIN · ml-100k", "NRMS", "Two-tower", "IntTower", "ACF · ml-100k", "ACF · fashion"],
    )
    args = parser.parse_args()
    if args.command == "timings":
        if args.repeats < 1 or args.runs < 1:
            parser.error("--runs and --repeats must be at least 1")
        runs = []
        for _ in range(args.runs):
            runs.append(timings(args.repeats))
            for row in runs[-1]:
                print("  ".join(f"{k} {v:6.2f}" for k, v in row.items()), flush=True)
        table = timings_table(runs)
        print(table)
        if args.write_docs:
            from recmodels.formatting import write_between_markers

            note = (
                f"`python tools/app_browser.py timings --runs {args.runs} --repeats {args.repeats}` in Chromium "
                f"({CHROMIUM}), {os.cpu_count()} CPU cores; seconds, a figure over its target in bold."
            )
            write_between_markers(Path(args.write_docs), *MARKERS, f"{table}\n\n{note}")
    elif args.command == "scale":
        with tempfile.TemporaryDirectory(prefix="recmodels-scale-") as folder:
            started = time.perf_counter()
            root = scale_checkpoint(Path(folder), args.preset)
            print(f"data and checkpoint: {time.perf_counter() - started:.0f} s", flush=True)
            figures = scale_timings(root, args.switches)
        table = scale_table(figures)
        print(table)
        if args.write_docs:
            from recmodels.formatting import write_between_markers

            note = (
                f"`python tools/app_browser.py scale --preset {args.preset} --switches {args.switches}` in Chromium "
                f"({CHROMIUM}), {os.cpu_count()} CPU cores: an untrained DIN on `synth --preset {args.preset}` data; "
                "seconds, a figure over its target in bold."
            )
            write_between_markers(Path(args.write_docs), *SCALE_MARKERS, f"{table}\n\n{note}")
    elif args.explorer:
        print(explorer_screenshot(Path(args.explorer)))
    else:
        for path in screenshots(Path(args.out), args.checkpoints):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
