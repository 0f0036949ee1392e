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
from .tables import numeric_column, read_delimited, read_text, required_text_column

USER_FIELDS = ("user_id",)
ITEM_FIELDS = ("item_id", "business_id", "movie_id", "book_id")
RATING_FIELDS = ("rating", "stars", "score")
TIME_FIELDS = ("timestamp", "date", "time")
TITLE_FIELDS = ("movie_title", "title", "name", "item_name")
YEAR_FIELDS = ("release_year", "year")
GENRE_FIELDS = ("class", "genre", "genres", "categories", "category")


def read_atomic_table(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return the table with plain field names, and the declared type of each field."""
    table = read_delimited(path, read_text(path), "\t", names=None, header_lines=1)
    names, types = [], {}
    for column in table.columns:
        name, sep, kind = column.partition(":")
        if not sep or kind not in {"token", "token_seq", "float", "float_seq"}:
            raise DataFormatError(path, f"header field {column!r} is not of the form name:token|token_seq|float|"
                                        "float_seq", 1)
        names.append(name)
        types[name] = kind
    table.columns = names
    return table, types


def _pick(table: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in table.columns), None)


def load_atomic(folder: Path, name: str | None = None, **meta) -> InteractionData:
    folder = Path(folder)
    inter_files = sorted(folder.glob("*.inter"))
    if not inter_files:
        raise DataFormatError(folder, "holds no .inter file; a RecBole atomic dataset needs <name>.inter")
    if name is None:
        name = inter_files[0].stem
    inter_path = folder / f"{name}.inter"
    if not inter_path.is_file():
        inter_path = inter_files[0]
        name = inter_path.stem
    return load_atomic_files(name, inter_path, folder / f"{name}.user", folder / f"{name}.item", **meta)


def load_atomic_files(name: str, inter_path: Path, user_path: Path | None, item_path: Path | None,
                      **meta) -> InteractionData:
    table, _ = read_atomic_table(inter_path)
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
        "rating": (numeric_column(table, rating_col, inter_path, "rating") if rating_col
                   else np.ones(len(table))),  # implicit feedback: every interaction counts as liked
        "timestamp": numeric_column(table, time_col, inter_path, "timestamp"),
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
        if column == "age" and all(v.isdigit() for v in values if v):
            values = np.array([age_bucket(int(v)) if v else "" for v in values], dtype=object)
        out[column] = values
    return out


def _item_side(path: Path) -> pd.DataFrame:
    table, _ = read_atomic_table(path)
    id_col = _pick(table, ITEM_FIELDS)
    if id_col is None:
        raise DataFormatError(path, f"needs an item field ({', '.join(ITEM_FIELDS)}) in its header", 1)
    out = pd.DataFrame(index=table[id_col].str.strip())
    title_col, year_col, genre_col = _pick(table, TITLE_FIELDS), _pick(table, YEAR_FIELDS), _pick(table, GENRE_FIELDS)
    if title_col:
        out["title"] = table[title_col].str.strip().to_numpy()
    if year_col:
        out["year"] = pd.to_numeric(table[year_col].str.strip(), errors="coerce").to_numpy()  # "unkonwn" -> NA
    if genre_col:
        out["genres"] = [tuple(value.split()) for value in table[genre_col]]
    return out
