"""The item search behind the app's item pickers (issue 13): ids by prefix, titles by case-insensitive substring,
at most MAX_SHOWN items in the order a person wants them, over a catalogue the size of ml-20m's (26,744 items)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recmodels.data.synth import PRESETS
from recmodels_explorer.search import MAX_QUERY, MAX_SHOWN, ItemIndex, PrefixIndex

ML_20M_ITEMS = PRESETS["ml-20m"].items
HOSTILE_TITLES = [
    "**bold** <b>x</b>",
    ":red[alarm] $x$",
    "[l](http://127.0.0.1:9)",
    "\u202eevil",
    "👩‍👩‍👧",
    "x" * 1_000_000,
    None,
    float("nan"),
    "",
    "Straße",
    "ΣΊΣΥΦΟΣ",
]


def _catalogue(titles) -> ItemIndex:
    titles = list(titles)
    return ItemIndex(
        pd.DataFrame({"item": [str(n) for n in range(1, len(titles) + 1)], "title": pd.Series(titles, dtype=object)})
    )


@pytest.fixture(scope="module")
def ml_20m() -> ItemIndex:
    """26,744 items: "Film <n> (<year>)", every 100th a "Star ..." title, and some hostile ones."""
    titles = [f"{'Star ' if n % 100 == 0 else ''}Film {n} ({1900 + n % 120})" for n in range(1, ML_20M_ITEMS + 1)]
    titles[-len(HOSTILE_TITLES) :] = HOSTILE_TITLES
    return _catalogue(titles)


def _scan(index: ItemIndex, query: str) -> list[str]:
    """What the search must find, by a plain loop over the catalogue."""
    folded = query.strip().casefold()
    return [
        item
        for item, title in zip(index.ids, index.titles)
        if item.startswith(query.strip()) or (isinstance(title, str) and folded in title.casefold())
    ]


def test_no_query_lists_the_preferred_items_then_the_catalogue_and_counts_every_item(ml_20m):
    found, matches = ml_20m.find("")
    assert matches == ML_20M_ITEMS and found == [str(n) for n in range(1, MAX_SHOWN + 1)], "bounded, not 26,744"
    preferred = ["26744", "7", "not an item", "7", 7, "120"]  # recommendations then history, with repeats
    found, matches = ml_20m.find("", preferred)
    assert found[:3] == ["26744", "7", "120"] and len(found) == MAX_SHOWN == len(set(found))
    assert found[3:] == [str(n) for n in range(1, MAX_SHOWN + 3) if n not in (7, 120)][: MAX_SHOWN - 3]
    many = [str(n) for n in range(20_000, 21_000)]  # a long history is cut too
    assert ml_20m.find("", many)[0] == many[:MAX_SHOWN]


@pytest.mark.parametrize(
    "query",
    [
        "star",
        "STAR ",
        "Film 99",
        "(2019)",
        "1",
        "2674",
        "26744",
        "straße",
        "STRASSE",
        "σίσυφος",
        "**",
        "<b>",
        ":red[",
        "👩",
        "x" * 300,
        "no such film",
    ],
)
def test_search_matches_a_plain_scan_and_is_bounded(ml_20m, query):
    expected = _scan(ml_20m, query[:MAX_QUERY])
    preferred = expected[-3:][::-1] + ["1"]  # some matches are preferred; "1" is preferred only where it matches
    found, matches = ml_20m.find(query, preferred)
    assert matches == len(expected) and len(found) == min(len(expected), MAX_SHOWN)
    assert set(found) <= set(expected) and len(set(found)) == len(found)
    exact = [query.strip()] if query.strip() in set(ml_20m.ids) else []
    head = exact + [i for i in preferred if i in set(expected) and i not in exact]
    assert found == (head + [i for i in expected if i not in head])[:MAX_SHOWN], "exact, preferred, then the rest"


def test_titles_are_searched_in_any_case_and_ids_by_prefix(ml_20m):
    found, matches = ml_20m.find("sTaR fIlM 1")  # Star Film 100, 1000-1900, 10000-19900
    assert matches == 1 + 10 + 100 and found[:3] == ["100", "1000", "1100"]
    assert all(ml_20m.titles[int(item) - 1].startswith("Star Film 1") for item in found)
    found, matches = ml_20m.find("2674")  # the id 2674 (first), the ids 26740-26743, the titles "Film 2674x"
    assert found[0] == "2674" and set(found) == set(_scan(ml_20m, "2674")) and matches == len(found)
    assert ml_20m.find("1", limit=3) == (["1", "2", "3"], len(_scan(ml_20m, "1"))), "Film 2 (1902) holds a 1"


def test_hostile_titles_are_searchable_and_labelled_as_cut_plain_text(ml_20m):
    first = ML_20M_ITEMS - len(HOSTILE_TITLES) + 1
    ids = {title if isinstance(title, str) else repr(title): str(first + n) for n, title in enumerate(HOSTILE_TITLES)}
    assert ml_20m.find("x" * 100)[0] == [ids["x" * 1_000_000]]
    assert ml_20m.find(":red[alarm]")[0] == [ids[":red[alarm] $x$"]]
    label = ml_20m.label(ids["x" * 1_000_000])
    assert len(label) < 120 and label.endswith(f"({ids['x' * 1_000_000]})") and "…" in label
    assert ml_20m.label(ids["None"]) == f"(blank) ({ids['None']})" == ml_20m.label(ids["None"])
    assert ml_20m.label(ids["nan"]).startswith("(blank)") and ml_20m.label(ids[""]).startswith("(blank)")
    assert "\u202e" not in ml_20m.label(ids["\u202eevil"]), "bidi controls are dropped"
    assert ml_20m.label("no such id") == "(blank) (no such id)"
    assert ml_20m.has("1") and not ml_20m.has("0") and not ml_20m.has(1) and not ml_20m.has(None)


@pytest.mark.parametrize("query", [None, 42, "   ", ""])
def test_a_query_that_is_not_text_or_is_blank_lists_the_first_items(ml_20m, query):
    assert ml_20m.find(query) == ([str(n) for n in range(1, MAX_SHOWN + 1)], ML_20M_ITEMS)


def test_a_small_catalogue_is_listed_whole_and_an_empty_one_finds_nothing():
    small = _catalogue(["Fargo (1996)", "Star Wars (1977)", "Return of the Jedi (1983)"])
    assert small.find("") == (["1", "2", "3"], 3)
    assert small.find("", ["3"]) == (["3", "1", "2"], 3)
    assert small.find("the")[0] == ["3"] and small.find("S")[0] == ["2"]
    empty = ItemIndex(pd.DataFrame({"item": pd.Series([], dtype=object), "title": pd.Series([], dtype=object)}))
    assert len(empty) == 0 and empty.find("") == ([], 0) and empty.find("a", ["a"]) == ([], 0)


def test_prefix_index_positions_keep_the_given_order_and_drop_unknown_ids():
    index = PrefixIndex(np.array(["b", "a", "c", "ab"], dtype=object))
    assert index.positions(["c", "zz", "a", None, "a"]).tolist() == [2, 1, 1]
    assert sorted(index.starting_with("a").tolist()) == [1, 3] and index.position("ab") == 3
    assert PrefixIndex(np.array([], dtype=object)).positions(["a"]).tolist() == []
