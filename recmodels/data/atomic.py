"""RecBole atomic files: ``<name>.inter`` with optional ``<name>.user`` and ``<name>.item``.

Each file is tab separated with a header of ``field:type`` names (``user_id:token``, ``rating:float``,
``class:token_seq``). This covers ml-100k inside the recbole wheel and what users bring (ml-20m, Amazon,
Yelp converted by RecBole's scripts).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError
from .schema import InteractionData, age_bucket, build_interaction_data
from .tables import (rating_column, read_delimited, read_text, require_rows, required_text_column, shown,
                     timestamp_column)

USER_FIELDS = ("user_id",)
ITEM_FIELDS = ("item_id", "business_id", "movie_id", "book_id")
RATING_FIELDS = ("rating", "stars", "score")
TIME_FIELDS = ("timestamp", "date", "time")
TITLE_FIELDS = ("movie_title", "title", "name", "item_name")
YEAR_FIELDS = ("release_year", "year")
GENRE_FIELDS = ("class", "genre", "genres", "categories", "category")
FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
MAX_LISTED = 5  # .inter files named in a message


def read_atomic_table(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return the table with plain field names, and the declared type of each field."""
    table = read_delimited(path, read_text(path), "\t", names=None, header_lines=1)
    names, types = [], {}
    for column in table.columns:
        name, sep, kind = column.partition(":")
        if not sep or not name.strip() or kind.strip() not in FIELD_TYPES:
            raise DataFormatError(path, f"header field {shown(column)} is not of the form name:token|token_seq|"
                                        "float|float_seq", 1)
        name = name.strip()
        if name in types:
            raise DataFormatError(path, f"the header names the field {shown(name)} twice; each field needs its own "
                                        "name", 1)
        names.append(name)
        types[name] = kind.strip()
    table.columns = names
    return table, types


def _pick(table: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in table.columns), None)


def inter_files(folder: Path) -> list[Path]:
    """The ``.inter`` files of a folder, sorted (folders and broken links named ``*.inter`` are not files)."""
    try:
        return sorted(path for path in Path(folder).glob("*.inter") if path.is_file())
    except OSError as err:
        raise DataFormatError(folder, f"could not be listed ({err.strerror or type(err).__name__}); check that "
                                      "it is a readable folder") from None


def load_atomic(folder: Path, name: str | None = None, **meta) -> InteractionData:
    """Load ``<name>.inter`` (with ``<name>.user`` / ``<name>.item`` when present) from ``folder``.

    When ``name`` names none of the folder's ``.inter`` files, the folder's only one is read; a folder with
    several is refused rather than guessed at.
    """
    folder = Path(folder)
    found = inter_files(folder)
    if not found:
        raise DataFormatError(folder, "holds no .inter file; a RecBole atomic dataset needs <name>.inter")
    chosen = next((path for path in found if path.stem == name), None)
    if chosen is None and len(found) > 1:
        listed = ", ".join(shown(path.name) for path in found[:MAX_LISTED]) + (", ..." if len(found) > MAX_LISTED
                                                                               else "")
        raise DataFormatError(folder, f"holds {len(found)} .inter files ({listed}); pass --dataset with the name "
                                      "of the one to read")
    inter_path = chosen or found[0]
    name = inter_path.stem
    return load_atomic_files(name, inter_path, folder / f"{name}.user", folder / f"{name}.item", **meta)


def load_atomic_files(name: str, inter_path: Path, user_path: Path | None, item_path: Path | None,
                      **meta) -> InteractionData:
    table, _ = read_atomic_table(inter_path)
    require_rows(table, inter_path, "interactions", "add one line per interaction below its header line")
    user_col, item_col = _pick(table, USER_FIELDS), _pick(table, ITEM_FIELDS)
    if user_col is None or item_col is None:
        raise DataFormatError(inter_path, f"needs a user field ({', '.join(USER_FIELDS)}) and an item field "
                                          f"({', '.join(ITEM_FIELDS)}) in its header", 1)
    time_col = _pick(table, TIME_FIELDS)
    if time_col is None:
        raise DataFormatError(inter_path, "has no timestamp field; the temporal split needs one of "
                                          f"{', '.join(TIME_FIELDS)}", 1)
    rating_col = _pick(table, RATING_FIELDS)
    interactions = pd.DataFrame({
        "user_id": required_text_column(table, user_col, inter_path, "user id"),
        "item_id": required_text_column(table, item_col, inter_path, "item id"),
        "rating": (rating_column(table, rating_col, inter_path) if rating_col
                   else np.ones(len(table))),  # implicit feedback: every interaction counts as liked
        "timestamp": timestamp_column(table, time_col, inter_path),
    })
    users = _user_side(user_path) if user_path is not None and Path(user_path).is_file() else None
    items = _item_side(item_path) if item_path is not None and Path(item_path).is_file() else None
    return build_interaction_data(name, interactions, users, items, **meta)


def _user_side(path: Path) -> pd.DataFrame:
    table, types = read_atomic_table(path)
    if "user_id" not in table.columns:
        raise DataFormatError(path, "needs a user_id field in its header", 1)
    out = pd.DataFrame(index=table["user_id"].str.strip())
    for column in table.columns:
        if column == "user_id" or types[column] != "token":
            continue
        values = table[column].str.strip().to_numpy()
        if column == "age" and all(v.isascii() and v.isdigit() for v in values if v):
            values = np.array([_age_label(v) if v else "" for v in values], dtype=object)
        out[column] = values
    return out


def _age_label(digits: str) -> str:
    significant = digits.lstrip("0") or "0"
    return age_bucket(int(significant) if len(significant) <= 4 else 10_000)  # int() refuses 4,300+ digits


def _item_side(path: Path) -> pd.DataFrame:
    """Item features. A year that is not a whole number from 0 to 9999 (RecBole's ``unkonwn``, ``1.5``,
    ``1e30``) counts as unknown, as a missing one does (see ``schema.clean_years``): one odd year should not
    stop a whole catalogue."""
    table, _ = read_atomic_table(path)
    id_col = _pick(table, ITEM_FIELDS)
    if id_col is None:
        raise DataFormatError(path, f"needs an item field ({', '.join(ITEM_FIELDS)}) in its header", 1)
    out = pd.DataFrame(index=table[id_col].str.strip())
    title_col, year_col, genre_col = _pick(table, TITLE_FIELDS), _pick(table, YEAR_FIELDS), _pick(table, GENRE_FIELDS)
    if title_col:
        out["title"] = table[title_col].str.strip().to_numpy()
    if year_col:
        out["year"] = pd.to_numeric(table[year_col].str.strip(), errors="coerce").to_numpy()  # schema cleans
    if genre_col:
        out["genres"] = [tuple(value.split()) for value in table[genre_col]]
    return out
