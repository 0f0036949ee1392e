"""The app on hostile data (AppTest): markdown, Streamlit directives, LaTeX, HTML and URLs in every string a
dataset can hold, 6,000-character and 1 MB titles, control and bidi characters, emoji, and an image folder where
only some items have images (one of them 9000x9000, one corrupt). Nothing may render as markup, fetch
anything, raise, or grow a page past a few MB; the checkpoint box must not tell folders apart.
"""

from __future__ import annotations

import json
import os
import string
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.io import save_checkpoint
from recmodels.data import RecData
from recmodels.models.acf import ACF
from recmodels.models.vecf import VECF
from recmodels.train import TrainConfig, seed_everything, train_model
from recmodels.viz.labels import ELLIPSIS, plain
from recmodels.viz.maps import short
from recmodels_explorer.services import resolve_checkpoint
from recmodels_explorer.text import code, literal

pytestmark = pytest.mark.slow  # AppTest pages on hostile data

REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
CHECKPOINTS = REPO / "checkpoints"
LONG_TITLE = "Long " * 1200  # 6,000 characters
HUGE = "M" * 1_000_000
HOSTILE_TITLES = [
    "![x](http://127.0.0.1:9/x.png)",
    ":red[alarm]",
    "$x^2$",
    "<b>bold</b>",
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    ":material/home: :smile:",
    "[link](http://127.0.0.1:9/l)",
    "www.example.com",
    "# heading",
    "| a | b |",
    "\u202eevil\u202c film",
    "👩‍👩‍👧 family",
    "bell\x07\x1b[31m",
    "   ",
    LONG_TITLE,
    HUGE,
]
HOSTILE_USERS = [
    "**u1**",
    "[a](javascript:alert(1))",
    ":red[user]",
    "$u$",
    "<i>u</i>",
    "\u202eu",
    "👩‍👩‍👧",
    "u" * 10_000,
    "plain",
]
HOSTILE_GENRES = [":red[g]", "<b>g</b>", "$g$", "![g](http://127.0.0.1:9/g.png)"]
HOSTILE_FEATURES = {"age": "![a](http://127.0.0.1:9/a.png)", "gender": ":red[gender]", "occupation": "<b>job</b>"}
N_ITEMS = 30
# raw strings that must never reach a markdown body unescaped (the long ones may not reach it at all)
FORBIDDEN = [
    s
    for s in HOSTILE_TITLES + HOSTILE_USERS + HOSTILE_GENRES + list(HOSTILE_FEATURES.values())
    if s.strip() and len(s) < 100 and any(c in s for c in "[]$<*:#|")
]


def item_ids() -> list[str]:
    return [f"i{n}" for n in range(1, N_ITEMS + 1)]


def write_hostile_dataset(folder: Path) -> Path:
    """A RecBole atomic dataset ``hostile`` with an images/ folder where only some items have an image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = item_ids()
    titles = HOSTILE_TITLES + [f"Film {n}" for n in range(len(HOSTILE_TITLES), N_ITEMS)]
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    big_and_corrupt = [items[1], items[4]]
    others = [item for item in items if item not in big_and_corrupt]
    for u, user in enumerate(HOSTILE_USERS):
        # the 9000x9000 and the corrupt image late in every history, where the explanations look
        history = [*rng.choice(others, size=12, replace=False)]
        history[9:9] = big_and_corrupt
        for t, item in enumerate(history):
            rows.append(f"{user}\t{item}\t{int(rng.integers(1, 6))}\t{1_000_000 + 100 * u + t}")
    (folder / "hostile.inter").write_text("\n".join(rows) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token"]
    for u, user in enumerate(HOSTILE_USERS):
        occupation = HUGE if u == 1 else HOSTILE_FEATURES["occupation"]
        users.append(f"{user}\t{HOSTILE_FEATURES['age']}\t{HOSTILE_FEATURES['gender']}\t{occupation}")
    (folder / "hostile.user").write_text("\n".join(users) + "\n")
    lines = ["item_id:token\ttitle:token\tgenre:token_seq"]
    for n, (item, title) in enumerate(zip(items, titles)):
        lines.append(f"{item}\t{title}\t{HOSTILE_GENRES[n % len(HOSTILE_GENRES)]} Drama")
    (folder / "hostile.item").write_text("\n".join(lines) + "\n")
    write_images(folder / "images", items)
    return folder


def write_images(folder: Path, items: list[str]) -> None:
    """Every third item has an image: small gradients, one 9000x9000 PNG and one corrupt file."""
    folder.mkdir(exist_ok=True)
    ramp = np.linspace(0, 255, 96).astype(np.int64)
    for n, item in enumerate(items[::3]):
        red = np.broadcast_to((ramp[:, None] + 40 * n) % 256, (96, 96))
        picture = np.stack([red, np.tile(ramp, (96, 1)), np.add.outer(ramp, ramp) // 2], axis=-1).astype(np.uint8)
        Image.fromarray(picture).save(folder / f"{item}.png" if n % 2 else folder / f"{item}.jpg")
    # grey, so it decodes in half the time of a colour one; the app reads it as RGB all the same
    big = Image.linear_gradient("L").resize((9000, 9000), Image.Resampling.NEAREST)
    big.save(folder / f"{items[1]}.png", compress_level=1)
    (folder / f"{items[4]}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")


def train_hostile_checkpoints(root: Path) -> None:
    """A one-epoch ACF (attention over the history's image regions) and VECF (over the candidate's) on the hostile
    dataset, saved under ``root`` as acf-hostile and vecf-hostile."""
    data_dir = write_hostile_dataset(root.parent / "hostile-data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corrupt image is warned about; that is tested elsewhere
        data = RecData.load("hostile", data_dir, max_history=12)
        for model_class in (ACF, VECF):
            seed_everything(0)
            model = model_class.from_data(data, dim=8)
            config = TrainConfig.for_model(model_class, epochs=1)
            result = train_model(model, data, config, device="cpu", progress=False)
            save_checkpoint(root / f"{model_class.name}-hostile", result.model, data)


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory):
    """A checkpoint root holding the hostile checkpoints; RECMODELS_CHECKPOINT_ROOTS names the shipped checkpoints
    first, then it (as `recmodels explore --checkpoint-root checkpoints --checkpoint-root ROOT` would)."""
    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECMODELS_CACHE", str(base / "cache"))
        root = base / "root"
        root.mkdir()
        train_hostile_checkpoints(root)
        patch.setenv("RECMODELS_CHECKPOINT_ROOTS", os.pathsep.join([str(CHECKPOINTS), str(root)]))
        yield root


# ---------------------------------------------------------------- reading what a page shows
MARKDOWN_FIELDS = {"body", "label", "help", "caption", "placeholder"}
SPECIALS = set("[]$<>*:#|!`_~()")


def _strings(message):
    """Every string in a markdown-rendered field (body, label, help, ...) of a protobuf message, recursively."""
    for field, value in message.ListFields():
        if field.message_type is not None:
            children = [value] if hasattr(value, "ListFields") else value  # one message, or a repeated field
            for child in children:
                yield from _strings(child)
        elif field.name in MARKDOWN_FIELDS and isinstance(value, str):
            yield value


def markdown_texts(at: AppTest) -> list[str]:
    """The markdown of every element and block on the page (titles, captions, alerts, metrics, tabs, labels)."""
    texts, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        stack.extend(getattr(node, "children", {}).values())
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "ListFields"):
            texts.extend(_strings(proto))
    return texts


def raw_occurrences(text: str, raw: str) -> int:
    """Occurrences of ``raw`` in ``text`` in which some markdown special character is not backslash-escaped."""
    count, start = 0, text.find(raw)
    while start >= 0:
        if any(c in SPECIALS and (start + i == 0 or text[start + i - 1] != "\\") for i, c in enumerate(raw)):
            count += 1
        start = text.find(raw, start + 1)
    return count


def assert_no_markup_from_data(at: AppTest) -> None:
    texts = markdown_texts(at)
    assert texts, "the page shows nothing"
    for text in texts:
        assert len(text) < 2_000, f"a {len(text):,}-character text reached the page: {text[:80]!r}"
        for raw in FORBIDDEN:
            assert not raw_occurrences(text, raw), f"{raw!r} unescaped in {text[:200]!r}"
        assert "\u202e" not in text and "\x07" not in text


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def plotly_specs(node) -> list[str]:
    return [chart.proto.spec for chart in node.get("plotly_chart")]


# ---------------------------------------------------------------- the pages on hostile data
def _app() -> AppTest:
    return AppTest.from_file(ENTRY, default_timeout=120)


def _explorer(root: Path, name: str = "acf-hostile") -> AppTest:
    at = _app().run()
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str((root / name).resolve())).run()
    no_errors(at)
    return at


def test_explorer_shows_hostile_strings_as_text_for_every_user(hostile_root):
    at = _explorer(hostile_root)
    users = at.sidebar.selectbox(key="user").options
    assert len(users) == len(HOSTILE_USERS) and all(len(u) < 200 for u in users), "options are cut"
    for user in HOSTILE_USERS[:2] + HOSTILE_USERS[5:8:2]:  # markdown, a link (1 MB feature), bidi, 10,000 chars
        at.sidebar.selectbox(key="user").set_value(user).run()
        no_errors(at)
        assert_no_markup_from_data(at)
        assert {tab.label for tab in at.tabs} >= {"Items", "Regions", "Attributions"}
    titles = at.selectbox(key="explain_item").options
    assert all(len(t) < 120 for t in titles), "the item picker cuts long titles"
    assert any("Long Long" in t and t.endswith("(i16)") and "…" in t for t in titles)


def test_the_item_search_finds_hostile_titles_and_shows_them_as_text(hostile_root):
    at = _explorer(hostile_root)
    titles = dict(zip(item_ids(), HOSTILE_TITLES + [f"Film {n}" for n in range(len(HOSTILE_TITLES), N_ITEMS)]))
    for typed in [
        ":RED[alarm]",
        "<img src=x",
        "[link](http",
        "\u202eevil",
        "long long long",
        "m" * 300,
        "**no such** :red[thing] $x$",
        "x" * 10_000,
    ]:
        at.text_input(key="explain_item_find").set_value(typed).run()  # past max_chars too, as a client could
        no_errors(at)
        assert_no_markup_from_data(at)
        options = at.selectbox(key="explain_item").options
        assert len(options) <= 51 and all(len(option) < 120 for option in options)
        query = typed.strip()[:200].casefold()
        expected = {item for item, title in titles.items() if query in title.casefold()}
        chosen = at.selectbox(key="explain_item").value
        assert (
            chosen in expected
            if expected
            else [w.value for w in at.warning]
            == [
                "No item in hostile has an id that starts with, or a title that contains, "
                f"{literal(typed.strip(), 60)}; the list shows its first page instead."
            ]
        ), typed


def _regions_tab(at: AppTest) -> list[str]:
    regions = next(tab for tab in at.tabs if tab.label == "Regions")
    return plotly_specs(regions)


def _image_figures(specs: list[str]) -> list[dict]:
    return [json.loads(spec) for spec in specs if '"type":"image"' in spec.replace(" ", "")]


def test_candidate_regions_draw_the_9000px_candidate_and_skip_the_corrupt_one(hostile_root):
    at = _explorer(hostile_root, "vecf-hostile")
    at.session_state["explain_tab"] = "Regions"
    at.sidebar.selectbox(key="user").set_value(HOSTILE_USERS[0]).run()
    for item, drawn in (("i2", True), ("i5", False)):  # the 9000x9000 poster, the corrupt file
        at.selectbox(key="explain_item").set_value(item).run()
        no_errors(at)
        assert_no_markup_from_data(at)
        specs = _regions_tab(at)
        assert bool(_image_figures(specs)) == drawn, item
        regions = next(tab for tab in at.tabs if tab.label == "Regions")
        no_image = [c.value for c in regions.get("caption") if "no image" in c.value]
        assert bool(no_image) != drawn, "an item without a readable image says so instead of a map"
        assert sum(map(len, specs)) < 2_000_000 and max(map(len, specs), default=0) < 200_000


def test_regions_draw_images_where_there_are_images_and_stay_small(hostile_root):
    at = _explorer(hostile_root)
    at.session_state["explain_tab"] = "Regions"  # only the open tab is drawn
    at.sidebar.selectbox(key="user").set_value(HOSTILE_USERS[0]).run()
    no_errors(at)
    specs = _regions_tab(at)
    overlays = _image_figures(specs)
    titles = [figure["layout"]["title"]["text"] for figure in overlays]
    assert ":red[alarm]" in titles, "the 9000x9000 poster is drawn, under its title as plain text"
    assert not any(t.startswith("&lt;img") for t in titles), "the corrupt image is not"
    assert sum(map(len, specs)) < 2_000_000 and max(map(len, specs)) < 200_000
    for figure in overlays:
        image = next(trace for trace in figure["data"] if trace["type"] == "image")
        assert image["source"].startswith("data:image/") and "z" not in image
    history = at.dataframe[0].value
    thumbnails = list(history["image"])
    assert "" in thumbnails, "an item without an image (or with the corrupt one) has an empty cell"
    assert any(t.startswith("data:image/png") for t in thumbnails)
    assert all(len(t) < 20_000 for t in thumbnails)  # thumbnails, not the 9000x9000 image


def test_history_without_images_as_nan_still_renders(hostile_root, monkeypatch):
    """pandas gives NaN for a missing image in some versions: the page treats NaN, None and "" alike."""
    from recmodels.serving.service import RecService

    history = RecService.history

    def with_nan(self, user):
        frame = history(self, user)
        frame["image"] = [p if p else (np.nan if i % 2 else "") for i, p in enumerate(frame["image"])]
        return frame

    monkeypatch.setattr(RecService, "history", with_nan)
    at = _explorer(hostile_root)
    no_errors(at)
    assert at.tabs and any(at.dataframe[0].value["image"])


def test_compare_and_model_card_on_hostile_data(hostile_root):
    at = _explorer(hostile_root)
    at.switch_page("pages/model_card.py").run()
    no_errors(at)
    assert_no_markup_from_data(at)
    at.switch_page("pages/compare.py").run()
    acf, vecf = (str((hostile_root / name).resolve()) for name in ("acf-hostile", "vecf-hostile"))
    at.sidebar.selectbox(key="checkpoint_compare").set_value(acf).run()
    at.selectbox(key="compare_right_compare").set_value(vecf).run()
    no_errors(at)
    at.sidebar.selectbox(key="compare_user").set_value(HOSTILE_USERS[2]).run()
    no_errors(at)
    assert_no_markup_from_data(at)
    assert any(m.label == "Overlap of the two top-k lists" for m in at.metric)


def test_html_report_escapes_every_string(hostile_root):
    from recmodels.serving.service import RecService
    from recmodels_explorer.html_report import explanation_html

    service = RecService.from_checkpoint(hostile_root / "acf-hostile")
    user = HOSTILE_USERS[1]
    item = service.recommend(user, k=1)["item"][0]
    result = service.explain(user, item, n_steps=8)
    report = explanation_html(service, result)
    for raw in ("<img src=x", "<b>bold", "</script><script>", "<i>u</i>", "<b>g</b>"):
        assert raw not in report
    assert len(report) < 12_000_000 and "Long " * 200 not in report.split("<table")[0]
    # a what-if report: the sentences, the two histories and the two rankings carry the same strings
    edited = list(result.history["item"])[:-1] or list(result.history["item"])
    what_if = service.explain(user, item, n_steps=8, history=edited)
    rankings = (service.recommend(user, k=5), service.recommend(user, k=5, history=edited))
    report = explanation_html(service, what_if, original=result, rankings=rankings)
    assert "With the edited history" in report
    for raw in ("<img src=x", "<b>bold", "</script><script>", "<i>u</i>", "<b>g</b>"):
        assert raw not in report


def test_checkpoint_box_gives_one_message_for_everything_outside_the_roots(hostile_root, tmp_path):
    outside = tmp_path / "outside"
    (outside / "real").mkdir(parents=True)
    (outside / "real" / "config.json").write_text("{}")
    (hostile_root / "escape").symlink_to(outside / "real", target_is_directory=True)
    (hostile_root / "empty").mkdir()
    try:
        at = _app().run()
        messages = set()
        for typed in (
            "~",
            "/etc",
            "../..",
            "../../..",
            str(hostile_root / "escape"),
            str(hostile_root / "missing"),
            str(hostile_root / "empty"),
            str(outside / "real"),
            "nowhere",
            "/etc/passwd",
            "a\x00b",
        ):
            at.sidebar.text_input(key="checkpoint_explore_path").input(typed).run()
            assert not at.exception
            messages.add(tuple(e.value for e in at.error))
        assert len(messages) == 1 and len(next(iter(messages))) == 1, messages
        at.sidebar.text_input(key="checkpoint_explore_path").input(str(hostile_root / "acf-hostile")).run()
        no_errors(at)
        assert at.title[0].value.startswith("ACF on hostile")
        shipped = next(p for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())
        assert resolve_checkpoint(shipped.name) == str(shipped.resolve()), "relative names start at checkpoints/"
        assert resolve_checkpoint(f"../{CHECKPOINTS.name}/{shipped.name}") == str(shipped.resolve())
    finally:
        (hostile_root / "escape").unlink()
        (hostile_root / "empty").rmdir()


# ---------------------------------------------------------------- the text helpers themselves
@settings(deadline=None, derandomize=True)
@given(st.text(max_size=200), st.integers(min_value=1, max_value=120))
@example("\x00\x07\u202e\u2066 \n\r\t", 10)
@example("\ud800 lone surrogate", 40)
@example("x" * 1_000_000, 80)
@example("   ", 5)
def test_literal_gives_one_escaped_printable_line(text, width):
    out = literal(text, width)
    out.encode("utf-8")  # what the browser is sent must encode
    assert all(unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp") for c in out)
    assert not set(out) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    visible, chars = [], iter(out)
    for char in chars:  # every ASCII punctuation character comes escaped; nothing else is
        if char == "\\":
            escaped = next(chars)
            assert escaped in string.punctuation
            visible.append(escaped)
        else:
            assert char not in string.punctuation, (char, out)
            visible.append(char)
    shown = "".join(visible).replace("\u2060", "")
    assert shown == plain(text, width) and len(shown) <= max(width, len("(blank)"))
    assert shown.endswith(ELLIPSIS) or shown in (plain(text, len(text) + 1), "(blank)")


@settings(deadline=None, derandomize=True)
@given(st.text(max_size=200))
def test_figure_labels_carry_no_markup(text):
    label = short(text, 32)
    assert "<" not in label and ">" not in label
    assert label.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0


def test_code_spans_hold_any_text():
    assert code(":red[x] $y$") == "`:red[x] $y$`"
    assert code("a``b") == "```a``b```" and code("`x`") == "`` `x` ``"
    assert code("x" * 500, 20).count("x") == 19
