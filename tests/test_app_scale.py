"""The app with many users: the user picker searches on the server and sends the browser a short list, never
every user (the index over ml-20m's 138,493 ids, and the app on the synthetic `tiny` preset's 1,000 users)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.io import save_checkpoint
from recmodels.data import RecData
from recmodels.data.synth import PRESETS, generate
from recmodels.models.din import DIN
from recmodels_explorer.search import MAX_SHOWN, UserIndex
from recmodels_explorer.text import literal

pytestmark = pytest.mark.slow  # AppTest pages at scale

REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
ML_20M_USERS = PRESETS["ml-20m"].users


def _index(ids) -> UserIndex:
    ids = list(ids)
    return UserIndex(pd.DataFrame({"user": ids, "interactions": np.arange(len(ids)) + 20}))


def test_prefix_search_over_ml_20m_users_is_bounded_and_in_natural_order():
    users = _index(str(n) for n in range(1, ML_20M_USERS + 1))  # natural order, as the loader indexes them
    first, matches = users.find("")
    assert list(first["user"]) == [str(n) for n in range(1, MAX_SHOWN + 1)] and matches == ML_20M_USERS
    found, matches = users.find("1")  # 1, 10-19, 100-199, ... 100000-138493
    assert matches == 1 + 10 + 100 + 1_000 + 10_000 + 38_494
    assert list(found["user"]) == ["1", *map(str, range(10, 20)), *map(str, range(100, 139))]
    found, matches = users.find("1384")  # the exact id first, then the longer ids in natural order
    assert list(found["user"]) == ["1384", *map(str, range(13840, 13850)), *map(str, range(138400, 138439))]
    assert matches == 1 + 10 + 94
    assert users.find("138493")[1] == 1 and users.find("138494")[1] == 0 and users.find("0")[1] == 0
    assert users.find("1", limit=3)[0]["user"].tolist() == ["1", "10", "11"]
    assert users.row("77")["interactions"] == 96 and users.row("077") is None and users.row(77) is None
    rng = np.random.default_rng(0)
    assert {users.random(rng) for _ in range(20)} <= set(map(str, range(1, ML_20M_USERS + 1)))


@pytest.mark.parametrize("prefix", ["", "u", "**", "<", "é", "👩", "\U0010ffff", "a\U0010ffff", "z" * 5_000])
def test_prefix_search_matches_a_plain_scan_on_hostile_ids(prefix):
    ids = [
        "u1",
        "u10",
        "u2",
        "**u**",
        "<b>x</b>",
        "<i>",
        "é",
        "éa",
        "e",
        "👩‍👩‍👧",
        "👩",
        "\U0010ffff",
        "\U0010ffffx",
        "a\U0010ffff",
        "a\U0010ffffb",
        "b",
        "z" * 5_000,
        "z" * 5_001,
        "[a](x)",
    ]
    users = _index(ids)
    found, matches = users.find(prefix, limit=len(ids))
    expected = [i for i in ids if i.startswith(prefix)]
    assert matches == len(expected)
    exact = [prefix] if prefix in ids else []
    assert list(found["user"]) == exact + [i for i in expected if i != prefix]  # natural order = the frame's


# ---------------------------------------------------------------- the app on 1,000 synthetic users
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """A checkpoint root with two untrained DINs on the synthetic `tiny` preset (1,000 users, 1,000 items)."""
    folder = tmp_path_factory.mktemp("scale")
    data = RecData.load(
        "synth", data_dir=generate(folder / "data", PRESETS["tiny"], seed=0, progress=False), max_history=20
    )
    save_checkpoint(folder / "root" / "din-tiny", DIN.from_data(data, dim=8), data)
    save_checkpoint(folder / "root" / "din-tiny-wide", DIN.from_data(data, dim=16), data)  # for Compare
    return folder / "root"


@pytest.fixture()
def explorer(tiny_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(tiny_root))
    at = AppTest.from_file(ENTRY, default_timeout=180).run()
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str((tiny_root / "din-tiny").resolve())).run()
    _no_errors(at)
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _user_options(at: AppTest, key: str = "user") -> list[str]:
    options = at.sidebar.selectbox(key=key).options
    assert len(options) <= MAX_SHOWN + 1, "the list is bounded, whatever the number of users"
    return [option.split(" · ")[0] for option in options]


def _find(at: AppTest, text: str, key: str = "user") -> AppTest:
    at.sidebar.text_input(key=f"{key}_find").set_value(text).run()  # past max_chars too, as a client could
    _no_errors(at)
    return at


def test_the_picker_lists_a_bounded_page_of_users_and_finds_any_of_them(explorer):
    at = explorer
    assert _user_options(at) == [f"user {n}" for n in range(1, MAX_SHOWN + 1)]
    assert at.subheader[0].value == "User 1"
    _find(at, "1")  # 112 users start with 1: the exact id is picked and the first 50 listed
    assert _user_options(at)[:3] == ["user 1", "user 10", "user 11"]
    assert any("The first 50 of 112 users" in c.value for c in at.sidebar.caption)
    _find(at, "999")
    assert at.subheader[0].value == "User 999" and _user_options(at) == ["user 999"]
    _find(at, "87")  # 87 and 870-879
    assert at.subheader[0].value == "User 87" and len(_user_options(at)) == 11
    at.sidebar.selectbox(key="user").set_value("873").run()
    _no_errors(at)
    assert at.subheader[0].value == "User 873"
    at.sidebar.button(key="user_random").click().run()  # another user, the search box cleared
    _no_errors(at)
    assert at.sidebar.text_input(key="user_find").value == ""
    chosen = at.subheader[0].value.removeprefix("User ")
    assert 1 <= int(chosen) <= 1_000 and at.sidebar.selectbox(key="user").value == chosen
    # the chosen user is always listed: in its place on the first page, or else first (a random user is not seeded,
    # so both cases occur)
    options = _user_options(at)
    assert options.index(f"user {chosen}") == (int(chosen) - 1 if int(chosen) <= MAX_SHOWN else 0)


@pytest.mark.parametrize(
    "typed",
    [
        "1001",
        "0",
        "**bold** <b>x</b>",
        ":red[alarm] $x$",
        "[l](http://127.0.0.1:9)",
        "\u202eevil",
        "👩‍👩‍👧",
        "x" * 10_000,
    ],
)
def test_an_id_that_does_not_exist_is_one_sentence_and_keeps_the_user(explorer, typed):
    at = explorer
    at.sidebar.selectbox(key="user").set_value("42").run()
    _find(at, typed)
    assert at.subheader[0].value == "User 42"
    warnings = [w.value for w in at.sidebar.warning]
    assert warnings == [
        f"No user id in synth starts with {literal(typed, 60)}; the list shows the first users instead."
    ]
    assert len(warnings[0]) < 300 and "user 42" in _user_options(at)
    assert [c.value for c in at.sidebar.caption if c.value.startswith("The first")] == [
        "The first 50 of 1,000 users; type an id, or its first characters, above to find the others."
    ]


def test_a_link_opens_its_user_and_a_bad_link_says_so(tiny_root, monkeypatch):
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(tiny_root))
    path = str((tiny_root / "din-tiny").resolve())
    for linked, heading in (("777", "User 777"), ("<b>nobody</b>", "User 1")):
        at = AppTest.from_file(ENTRY, default_timeout=180)
        at.session_state["_checkpoint"] = path  # the sidebar starts from the carried checkpoint
        at.query_params["user"] = linked
        at.run()
        assert not at.exception and at.subheader[0].value == heading
        warnings = [w.value for w in at.sidebar.warning]
        assert warnings == (
            []
            if linked == "777"
            else [f"User {literal(linked, 60)} from the link is not in synth; showing the first user."]
        )
        assert at.query_params["user"] == heading.removeprefix("User "), "the URL follows the choice"


def test_compare_starts_from_the_explorers_user_and_lists_a_bounded_page(explorer, tiny_root):
    at = _find(explorer, "873")
    at.switch_page("pages/compare.py").run()
    _no_errors(at)
    wide = str((tiny_root / "din-tiny-wide").resolve())
    assert at.selectbox(key="compare_right_compare").value == wide, "the other checkpoint on the same data"
    assert _user_options(at, "compare_user")[:3] == ["user 873", "user 1", "user 2"]
    _find(at, "5", "compare_user")
    assert _user_options(at, "compare_user")[:3] == ["user 5", "user 50", "user 51"]
