"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page and the main interactions."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from streamlit import config
from streamlit.config_option import ConfigOption
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import read_config
from recmodels_explorer.safety import REFUSAL
from recmodels_explorer.serve import split_arguments, with_safe_flags
from recmodels_explorer.text import literal
from tools.app_browser import stop

pytestmark = pytest.mark.slow  # AppTest pages over the shipped checkpoints

REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
SHIPPED = model_checkpoint_folders(REPO / "checkpoints")  # the pipelines: tests/test_app_pipeline.py


def _app() -> AppTest:
    return AppTest.from_file(ENTRY, default_timeout=180)


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _shipped(model: str) -> Path:
    """The first shipped checkpoint of ``model`` (skips the test when none ships)."""
    path = next((p for p in SHIPPED if read_config(p).model == model), None)
    if path is None:
        pytest.skip(f"no {model} checkpoint shipped")
    return path


def _pick_checkpoint(at: AppTest, path: Path) -> None:
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str(path)).run()


def _expected_tabs(path: Path) -> set[str]:
    """The tabs each paper's maps must reach; a model not named here need only render without errors."""
    model = read_config(path).model
    return {
        "din": {"Items", "Attributions"},
        "nrms": {"Heads", "Items", "Attributions"},
        "two_tower": {"Heads", "Attributions"},
        "inttower": {"Heads", "Fields", "Attributions"},
        "acf": {"Items", "Regions", "Attributions"},
        "bpr": {"Attributions"},
    }.get(model, set())


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
    dataset = read_config(path).dataset
    assert literal(dataset.citation, 400) in caption_text, "the dataset's own citation, from the service"
    assert ("Simulated interactions" in caption_text) == dataset.simulated
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
    # the random user's default item may itself be Fargo (100): then pick Star Wars (50)
    other = "100" if at.selectbox(key="explain_item").value != "100" else "50"
    at.text_input(key="explain_item_find").input(other).run()  # the list is a page: search, and the id is picked
    _no_errors(at)
    assert at.selectbox(key="explain_item").value == other
    assert at.metric[0].value != before


def test_the_user_search_lists_a_bounded_page_and_picks_the_typed_user():
    at = _app().run()
    assert len(at.sidebar.selectbox(key="user").options) == 50, "a page of users, not all 943"
    at.sidebar.text_input(key="user_find").input("9").run()  # 9, 90-99 and 900-943
    options = [o.split(" · ")[0] for o in at.sidebar.selectbox(key="user").options]
    assert at.subheader[0].value == "User 9" and options[:3] == ["user 9", "user 90", "user 91"]
    assert any("The first 50 of 55 users" in c.value for c in at.sidebar.caption)
    at.sidebar.text_input(key="user_find").input("944").run()
    _no_errors(at)
    assert at.subheader[0].value == "User 9" and [w.value for w in at.sidebar.warning] == [
        "No user id in ml\\-100k starts with 944; the list shows the first users instead."
    ]


def _item_ids(at: AppTest) -> list[str]:
    """The item picker's options as item ids (each option is "title (id)")."""
    options = at.selectbox(key="explain_item").options
    assert len(options) <= 51, "a page of items (and the explained one), never the catalogue"
    return [option.rsplit("(", 1)[1].rstrip(")") for option in options]


def test_the_item_search_lists_a_bounded_page_and_keeps_the_explained_item():
    at = _app().run()  # user 1
    recommended = list(next(f.value for f in at.dataframe if "rank" in f.value)["item"])
    history = at.dataframe[0].value
    assert len(_item_ids(at)) == 50, "a page of items, not all 1,682"
    assert _item_ids(at)[:10] == recommended and at.selectbox(key="explain_item").value == recommended[0]
    newest = list(history.sort_values("time", ascending=False, kind="stable")["item"])
    assert _item_ids(at)[10:] == newest[:40], "the recommendations, then the history, newest first"
    assert any(c.value.startswith("50 of 1,682 items; type an id") for c in at.caption)
    at.text_input(key="explain_item_find").input("fargo").run()  # a title, in any case: its item is explained
    _no_errors(at)
    assert _item_ids(at) == ["100"] and at.selectbox(key="explain_item").value == "100"
    assert at.subheader[-1].value == "Why Fargo for user 1"
    at.text_input(key="explain_item_find").input("The ").run()  # many titles: a page, the first match picked
    _no_errors(at)
    options = at.selectbox(key="explain_item").options
    assert len(options) == 50 and all("the" in o.lower() for o in options)
    assert any("items whose id starts with, or whose title contains, The" in c.value for c in at.caption)
    chosen = _item_ids(at)[7]
    at.selectbox(key="explain_item").set_value(chosen).run()
    _no_errors(at)
    at.text_input(key="explain_item_find").input("no such film **x**").run()  # no match: the item stays
    _no_errors(at)
    assert at.selectbox(key="explain_item").value == chosen and chosen in _item_ids(at)
    assert [w.value for w in at.warning] == [
        "No item in ml\\-100k has an id that starts with, or a title that "
        "contains, no such film \\*\\*x\\*\\*; the list shows its first page "
        "instead."
    ]
    outside = next(str(n) for n in range(1682, 0, -1) if str(n) not in _item_ids(at))
    at.text_input(key="explain_item_find").input(outside).run()  # an exact id...
    at.text_input(key="explain_item_find").input("").run()  # ...stays explained, first on the default list
    _no_errors(at)
    assert at.selectbox(key="explain_item").value == outside and _item_ids(at)[0] == outside
    at.sidebar.selectbox(key="user").set_value("42").run()  # another user: their top item, the search cleared
    _no_errors(at)
    assert at.text_input(key="explain_item_find").value == ""
    assert at.selectbox(key="explain_item").value == _item_ids(at)[0] != outside


def test_only_the_open_tab_is_drawn_and_each_tab_can_be_opened():
    at = _app().run()  # DIN: Items, then Attributions
    items, attributions = at.tabs
    assert items.get("plotly_chart") and not attributions.get("plotly_chart") and not attributions.get("metric")
    at.session_state["explain_tab"] = "Attributions"  # what clicking the tab does
    at.run()
    _no_errors(at)
    items, attributions = at.tabs
    assert not items.get("plotly_chart") and len(attributions.get("plotly_chart")) >= 2  # agreement, IG per input
    assert any("Perturbations" in m.value for m in attributions.markdown), "computed when the tab opens"
    assert {"Convergence delta", "Baseline score"} <= {m.label for m in attributions.metric}
    at.sidebar.selectbox(key="user").set_value("42").run()  # the open tab stays open for the next user
    _no_errors(at)
    assert at.subheader[0].value == "User 42" and at.tabs[1].get("plotly_chart") and not at.tabs[0].get("plotly_chart")


def test_tabs_show_maps_with_collapse_notes_and_downloads():
    nrms = _shipped("nrms")
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


def test_compare_lists_both_top_k_first_and_finds_any_item():
    at = _app().run()
    at.switch_page("pages/compare.py").run()
    _no_errors(at)
    left, right = (list(frame.value["title"]) for frame in at.dataframe[:2])
    picker = at.selectbox(key="compare_item")
    assert len(picker.options) == 50, "a page of items, not all 1,682"
    shared = [title for title in left if title in right]
    listed = [option.rsplit(" (", 1)[0] for option in picker.options]
    assert listed[: len(shared)] == shared and set(left) | set(right) <= set(listed), "both lists, shared first"
    at.text_input(key="compare_item_find").input("FARGO").run()
    _no_errors(at)
    assert at.selectbox(key="compare_item").value == "100"
    assert sum(c.value.startswith("score ") for c in at.caption) == 2, "both sides explain the found item"


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
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # kernel byte order
                    found.add(socket.inet_ntop(family, words))
    return found


def test_plain_streamlit_run_from_another_folder_listens_on_loopback_only(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "streamlit.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", ENTRY, "--server.port", str(port), "--server.headless", "true"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2),
            ):
                break
            time.sleep(0.3)
        assert server.poll() is None, log.read_text()[-2000:]
        listening = _listening_addresses(port)
        assert listening and listening <= {"127.0.0.1", "::1"}, (listening, log.read_text()[-2000:])
    finally:
        stop(server)


def test_the_two_config_files_hold_the_same_safe_settings():
    in_repo, next_to_entry = REPO / ".streamlit" / "config.toml", REPO / "app" / ".streamlit" / "config.toml"
    assert in_repo.read_text() == next_to_entry.read_text()


# ---------------------------------------------------------------- the map-to-figure registry
def _view(axes, level, normalised_over=None, items=(), meta=None, values=None, name="m"):
    """A labelled map with softmax rows (or ``values``), without any model."""
    from recmodels.serving.service import MapView

    shape = tuple({"head": 2, "grid_cell": 4}.get(a, 3) for a in axes)
    if values is None:
        raw = np.random.default_rng(0).random(shape)
        values = raw / raw.sum(-1, keepdims=True) if normalised_over else raw - 0.5
    labels = {a: [f"{a} {i}" for i in range(n)] for a, n in zip(axes, shape)}
    item_ids = {a: [f"i{i}" for i in range(shape[axes.index(a)])] for a in items}
    return MapView(
        name,
        level,
        tuple(axes),
        values,
        np.ones(shape, bool),
        normalised_over,
        labels,
        item_ids,
        "what it means",
        meta or {},
    )


@pytest.mark.parametrize(
    "axes, level, normalised, items, meta, entry, tab",
    [
        (("head", "query_item", "key_item"), "head", "key_item", ("query_item", "key_item"), {}, "heads", "Heads"),
        (("head", "history"), "head", "history", ("history",), {}, "heads", "Heads"),
        (("history",), "item", "history", ("history",), {}, "item bars", "Items"),
        (("history",), "item", None, ("history",), {}, "item bars", "Items"),  # un-normalised, as DIN's
        (("field",), "field", "field", (), {}, "bars", "Fields"),
        (("layer", "user_head", "item_head"), "head", None, (), {"argmax_axis": "item_head"}, "signed grids", "Heads"),
        (
            ("profile", "grid_cell"),
            "component",
            "grid_cell",
            ("profile",),
            {"grid": (2, 2)},
            "image regions",
            "Regions",
        ),
        (("profile", "grid_cell"), "component", "grid_cell", ("profile",), {"grid": (3, 3)}, "matrix", "Regions"),
        (
            ("profile", "component"),
            "component",
            "component",
            ("profile",),
            {"component_labels": [["a", "b", ""]] * 3},
            "labelled cells",
            "Regions",
        ),
        (
            ("profile", "component"),
            "component",
            "component",
            ("profile",),
            {"component_labels": [["a"], ["b", "c"], []], "grid": "7x7"},
            "matrix",
            "Regions",
        ),  # ragged, no grid
        (("query", "key"), "item", "key", (), {}, "matrix", "Items"),
        (("a", "b", "c", "d"), "field", "d", (), {}, "reduced", "Fields"),  # more axes than a figure shows
    ],
)
def test_registry_picks_the_drawing_from_the_map_alone(axes, level, normalised, items, meta, entry, tab):
    from recmodels.viz.registry import entry_for, figures_for, tab_of

    for name in ("din", "a plugin's map"):  # the name never matters
        view = _view(axes, level, normalised, items, meta, name=name)
        assert entry_for(view).name == entry and tab_of(view) == tab
        drawn = figures_for(view)
        assert drawn and drawn[0].figure is not None and not drawn[0].derived
        json.loads(drawn[0].figure.to_json())  # a complete plotly figure


def test_registry_draws_heads_their_mean_one_head_and_their_similarity():
    from recmodels.viz.registry import MEAN_OVER_HEADS, choices_for, figures_for

    view = _view(("head", "query_item", "key_item"), "head", "key_item", ("query_item", "key_item"))
    view.head_similarity = np.array([[0.0, 0.3], [0.3, 0.0]])
    assert choices_for(view)[:2] == ["all heads", MEAN_OVER_HEADS] and "head 1" in choices_for(view)
    for choice in (None, MEAN_OVER_HEADS, "head 1"):
        drawn = figures_for(view, choice=choice)
        assert [d.derived for d in drawn] == [False, True], "the map, then the similarity of its heads"
    mean = figures_for(view, choice=MEAN_OVER_HEADS)[0].figure
    assert mean.data[0].z.shape == (3, 3), "the mean over heads is one matrix"
    assert choices_for(_view(("history",), "item", "history", ("history",))) == []


def test_registry_draws_the_candidates_regions_with_ig_and_says_if_they_hit_the_planted_cells():
    from PIL import Image

    from recmodels.serving.service import AttributionView
    from recmodels.viz.registry import FigureContext, entry_for, figures_for, tab_of

    weights = np.array([0.7, 0.1, 0.1, 0.1])  # most of the attention on cell 0
    view = _view(("grid_cell",), "component", "grid_cell", (), {"grid": (2, 2)}, values=weights)
    assert entry_for(view).name == "candidate regions" and tab_of(view) == "Regions"
    image = Image.new("RGB", (28, 28), "white")
    ig = AttributionView("region_tap", ("grid_cell",), np.array([0.5, -0.2, 0.0, 0.1]), {}, "regions")
    context = FigureContext(
        item_image=lambda raw: image if raw == "42" else None,
        planted=[0],
        candidate="42",
        attributions={"region_tap": ig},
    )
    note, attention, attributed = figures_for(view, context)
    assert note.figure is None and "attention lands on their 1 planted cells: 0.70" in note.caption
    assert "uniform attention (x2.8)" in note.caption
    assert attention.tile and len(attention.figure.layout.shapes) == 1, "the planted cell outlined"
    heat = attributed.figure.data[1]
    assert heat.zmid == 0 and heat.zmin == -0.5 and heat.zmax == 0.5, "signed IG on the diverging scale"
    elsewhere = FigureContext(item_image=context.item_image, planted=[3], candidate="42")
    note, _, missing = figures_for(view, elsewhere)
    assert "does not land on" in note.caption and missing.figure is None and "attributions are on" in missing.caption
    no_image = figures_for(view, FigureContext(candidate="7"))
    assert len(no_image) == 1 and "no image" in no_image[0].caption


def test_registry_regions_take_images_and_planted_cells_from_the_context():
    from PIL import Image

    from recmodels.viz.registry import FigureContext, figures_for

    view = _view(("profile", "grid_cell"), "component", "grid_cell", ("profile",), {"grid": (2, 2)})
    images = {"i0": Image.new("RGB", (28, 28), "white"), "i2": Image.new("RGB", (4000, 3000), "grey")}
    asked = []
    context = FigureContext(item_image=lambda raw: asked.append(raw) or images.get(raw), planted=[0, 3])
    key, *tiles = figures_for(view, context)
    assert asked == ["i0", "i1", "i2"] and not key.tile and "2 regions" in key.caption
    assert [t.tile for t in tiles] == [True] * 3
    assert tiles[1].figure is None and tiles[1].caption.endswith("no image")
    overlay = tiles[2].figure
    assert len(overlay.layout.shapes) == 2, "the planted cells outlined"
    assert len(overlay.to_json()) < 200_000, "the 4000x3000 image goes in at display size"
    without = figures_for(view)  # Compare and the report without images: captions, no figures
    assert all(t.figure is None for t in without[1:])


def test_signed_maps_that_are_not_distributions_get_the_diverging_scale():
    from recmodels.viz.registry import figures_for

    bars = figures_for(_view(("field",), "field", None))[0].figure
    assert bars.layout.coloraxis.cmid == 0.0
    weights = figures_for(_view(("field",), "field", "field"))[0].figure
    assert (weights.layout.coloraxis.cmin, weights.layout.coloraxis.cmax) == (0, 1)
    signed = figures_for(_view(("query", "key"), "item", None))[0].figure
    assert signed.layout.coloraxis.cmin == -signed.layout.coloraxis.cmax < 0


def test_a_new_kind_of_map_is_one_entry_and_the_explorer_gives_it_its_tab(monkeypatch):
    from recmodels.viz import registry as figures

    def draw(view, context, choice):
        return [figures.Drawn("drawn by the new entry", figures.maps.field_figure(view))]

    entry = figures.Entry("new", lambda view: view.axes == ("history",), draw, tab="Timeline")
    monkeypatch.setattr(figures, "ENTRIES", [entry, *figures.ENTRIES])
    din = _shipped("din")
    at = _app().run()
    _pick_checkpoint(at, din)
    _no_errors(at)
    assert [tab.label for tab in at.tabs] == ["Timeline", "Attributions"]
    timeline = at.tabs[0]
    assert any("drawn by the new entry" in m.value for m in timeline.markdown) and timeline.get("plotly_chart")


def test_model_titles_and_order_come_from_the_registry():
    from recmodels.models import model_info, registered_models
    from recmodels_explorer.services import model_title, shipped_checkpoints

    for name in registered_models():
        assert model_title(name) == model_info(name).title
    assert model_title("not_a_model") == "not_a_model" and model_title(None) == "(blank)"
    entries = shipped_checkpoints()
    if entries:
        first = [
            e
            for e in entries
            if not e.simulated
            and not e.collapsed
            and e.attention
            and not e.global_split
            and not e.next_item
            and not e.pipeline
        ]
        order = [model_info(e.model).order for e in first if e.dataset == first[0].dataset]
        assert entries[0] == first[0] and order == sorted(order), "models with attention first, in registry order"
        labels = [e.label for e in entries]
        assert len(set(labels)) == len(labels), "every checkpoint has its own label"
        assert all(e.label.endswith("· global split") == e.global_split for e in entries if not e.collapsed)
        assert all(e.label.endswith("· next-item split") == e.next_item for e in entries if not e.collapsed)
