"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page and the main interactions."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit import config
from streamlit.config_option import ConfigOption
from streamlit.testing.v1 import AppTest

from app.safety import REFUSAL
from app.serve import split_arguments, with_safe_flags
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


def test_invalid_checkpoint_path_shows_an_error_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(tmp_path))
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


# ---------------------------------------------------------------- safe however it is started
@contextlib.contextmanager
def _server_address(value, where: str):
    """server.address as if Streamlit had been started with it (or without it) for the length of the block."""
    config.get_config_options()
    before = config.get_option("server.address"), config.get_where_defined("server.address")
    config._set_option("server.address", value, where)
    try:
        yield
    finally:
        config._set_option("server.address", *before)


def test_explorer_refuses_to_render_when_no_address_was_chosen():
    with _server_address(None, ConfigOption.DEFAULT_DEFINITION):
        at = _app().run()
        assert [e.value for e in at.error] == [REFUSAL]
        assert not at.title and not at.sidebar.selectbox and not at.exception


def test_explorer_renders_when_exposed_on_purpose_and_forces_the_safe_client_options():
    config.set_option("client.showErrorDetails", "full")
    with _server_address("0.0.0.0", "command-line argument or environment variable"):
        at = _app().run()
    _no_errors(at)
    assert at.title
    assert config.get_option("client.showErrorDetails") == "none"
    assert config.get_option("browser.gatherUsageStats") is False
    assert config.get_option("client.toolbarMode") == "viewer"


def test_serve_passes_the_safe_flags_and_takes_checkpoint_roots_out():
    roots, flags = split_arguments(["--checkpoint-root", "/a", "--server.port", "9", "--checkpoint-root=/b"])
    assert roots == ["/a", "/b"] and flags == ["--server.port", "9"]
    safe = with_safe_flags(flags)
    assert safe[safe.index("--server.address") + 1] == "127.0.0.1"
    assert safe[safe.index("--browser.gatherUsageStats") + 1] == "false"
    assert safe[safe.index("--client.showErrorDetails") + 1] == "none"
    exposed = with_safe_flags(["--server.address=0.0.0.0"])
    assert "--server.address" not in exposed and "--server.address=0.0.0.0" in exposed


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # kernel byte order
                    found.add(socket.inet_ntop(family, words))
    return found


def test_plain_streamlit_run_from_another_folder_listens_on_loopback_only(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "streamlit.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", ENTRY, "--server.port", str(port),
                                   "--server.headless", "true"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                                      timeout=2):
                break
            time.sleep(0.3)
        assert server.poll() is None, log.read_text()[-2000:]
        listening = _listening_addresses(port)
        assert listening and listening <= {"127.0.0.1", "::1"}, (listening, log.read_text()[-2000:])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_two_config_files_hold_the_same_safe_settings():
    in_repo, next_to_entry = REPO / ".streamlit" / "config.toml", REPO / "app" / ".streamlit" / "config.toml"
    assert in_repo.read_text() == next_to_entry.read_text()
