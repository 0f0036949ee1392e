"""RecBole atomic files: ``<name>.inter`` with optional ``<name>.user`` and ``<name>.item``.

Each file is tab separated with a header of ``field:type`` names (``user_id:token``, ``rating:float``,
``class:token_seq``). This covers ml-100k inside the recbole wheel and what users bring (ml-20m, Amazon,
Yelp converted by RecBole's scripts).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from recmodels.errors import DataFormatError
from recmodels.data.schema import InteractionData, age_bucket, build_interaction_data
from recmodels.data.tables import header_names, rating_column, read_delimited, read_plain_bytes, read_plain_tsv, read_text, require_rows, required_text_column, shown, timestamp_column

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
    names, types = atomic_fields(path, list(table.columns))
    table.columns = names
    return table, types


def atomic_fields(path: Path, columns: list[str]) -> tuple[list[str], dict[str, str]]:
    """The plain names of a header's ``name:type`` fields, and the declared type of each."""
    names, types = [], {}
    for column in columns:
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
    return names, types


def _pick(names, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


def inter_files(folder: Path) -> list[Path]:
    """The ``.inter`` files of a folder, sorted (folders and broken links named ``*.inter`` are not files)."""
    try:
        return sorted(path for path in Path(folder).glob("*.inter") if path.is_file())
    except OSError as err:
        raise DataFormatError(folder, f"could not be listed ({err.strerror or type(err).__name__}); check that "
                                      "it is a readable folder") from None


CARD_FILE = "dataset.json"  # optional, beside the atomic files: what the files cannot say about themselves
CARD_FIELDS = {"simulated": bool, "citation": str}
MAX_CARD_BYTES = 65_536
MAX_CITATION = 2_000


def read_card(folder: Path) -> dict:
    """The folder's dataset card, checked: ``simulated`` (true for generated data) and ``citation``; {} without one."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_CARD_BYTES:
        raise DataFormatError(path, f"is over {MAX_CARD_BYTES:,} bytes; a dataset card holds two short fields")
    try:
        card = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DataFormatError(path, "is not valid JSON; write an object such as {\"simulated\": true}") from None
    if not isinstance(card, dict):
        raise DataFormatError(path, "is not a JSON object; write an object such as {\"simulated\": true}")
    for key, value in card.items():
        kind = CARD_FIELDS.get(key)
        if kind is None:
            raise DataFormatError(path, f"has the field {shown(key)}; a dataset card takes only "
                                        f"{', '.join(CARD_FIELDS)}")
        if not isinstance(value, kind) or (kind is str and len(value) > MAX_CITATION):
            what = "true or false" if kind is bool else f"text of at most {MAX_CITATION:,} characters"
            raise DataFormatError(path, f"field {shown(key)} must be {what}")
    return card


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
    return load_atomic_files(name, inter_path, folder / f"{name}.user", folder / f"{name}.item",
                             **{**read_card(folder), **meta})


def load_atomic_files(name: str, inter_path: Path, user_path: Path | None, item_path: Path | None,
                      **meta) -> InteractionData:
    interactions = _plain_interactions(inter_path)
    if interactions is None:
        interactions = _interactions(inter_path)
    users = _user_side(user_path) if user_path is not None and Path(user_path).is_file() else None
    items = _item_side(item_path) if item_path is not None and Path(item_path).is_file() else None
    return build_interaction_data(name, interactions, users, items, **meta)


def _interaction_fields(path: Path, names: list[str]) -> tuple[str, str, str | None, str]:
    user_col, item_col = _pick(names, USER_FIELDS), _pick(names, ITEM_FIELDS)
    if user_col is None or item_col is None:
        raise DataFormatError(path, f"needs a user field ({', '.join(USER_FIELDS)}) and an item field "
                                    f"({', '.join(ITEM_FIELDS)}) in its header", 1)
    time_col = _pick(names, TIME_FIELDS)
    if time_col is None:
        raise DataFormatError(path, "has no timestamp field; the temporal split needs one of "
                                    f"{', '.join(TIME_FIELDS)}", 1)
    return user_col, item_col, _pick(names, RATING_FIELDS), time_col


def _interactions(path: Path) -> pd.DataFrame:
    """The careful reader: any file, every problem named with its line."""
    table, _ = read_atomic_table(path)
    require_rows(table, path, "interactions", "add one line per interaction below its header line")
    user_col, item_col, rating_col, time_col = _interaction_fields(path, list(table.columns))
    return pd.DataFrame({
        "user_id": required_text_column(table, user_col, path, "user id"),
        "item_id": required_text_column(table, item_col, path, "item id"),
        "rating": (rating_column(table, rating_col, path) if rating_col
                   else np.ones(len(table))),  # implicit feedback: every interaction counts as liked
        "timestamp": timestamp_column(table, time_col, path),
    })


def _plain_interactions(path: Path) -> pd.DataFrame | None:
    """The same table as :func:`_interactions` for a plain file (see ``tables.read_plain_tsv``), about ten times
    faster; None for any other file, or any doubt, which the careful reader then reads or refuses."""
    raw = read_plain_bytes(path)
    if raw is None:
        return None
    header = raw[:raw.find(b"\n")].decode("ascii").rstrip("\r")  # find, not partition: no copy of the rest
    try:
        names, _ = atomic_fields(path, header_names(path, [header], "\t"))
        user_col, item_col, rating_col, time_col = _interaction_fields(path, names)
    except DataFormatError:
        return None
    kinds = {names.index(user_col): "token", names.index(item_col): "token", names.index(time_col): "whole"}
    if rating_col:
        kinds[names.index(rating_col)] = "number"
    columns = read_plain_tsv(raw, len(names), kinds)
    if columns is None:
        return None
    ratings = columns[names.index(rating_col)] if rating_col else None
    if ratings is not None and (np.abs(ratings) > np.finfo(np.float32).max).any():
        return None  # the careful reader names the line
    return pd.DataFrame({
        "user_id": columns[names.index(user_col)],
        "item_id": columns[names.index(item_col)],
        "rating": ratings if ratings is not None else np.ones(len(columns[names.index(user_col)])),
        "timestamp": columns[names.index(time_col)],
    }, copy=False)


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
    id_col = _pick(list(table.columns), ITEM_FIELDS)
    if id_col is None:
        raise DataFormatError(path, f"needs an item field ({', '.join(ITEM_FIELDS)}) in its header", 1)
    out = pd.DataFrame(index=table[id_col].str.strip())
    fields = list(table.columns)
    title_col, year_col = _pick(fields, TITLE_FIELDS), _pick(fields, YEAR_FIELDS)
    genre_col = _pick(fields, GENRE_FIELDS)
    if title_col:
        out["title"] = table[title_col].str.strip().to_numpy()
    if year_col:
        out["year"] = pd.to_numeric(table[year_col].str.strip(), errors="coerce").to_numpy()  # schema cleans
    if genre_col:
        out["genres"] = [tuple(value.split()) for value in table[genre_col]]
    return out
