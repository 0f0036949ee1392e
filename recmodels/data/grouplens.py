"""MovieLens folders in GroupLens' own formats: ml-100k (``u.data`` ...) and ml-1m (``ratings.dat`` ...)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recmodels.errors import DataFormatError
from recmodels.data.schema import AGE_BUCKETS, GROUPLENS_CITATION, InteractionData, age_bucket, build_interaction_data
from recmodels.data.tables import line_of, numeric_column, rating_column, read_delimited, read_text, require_rows, required_text_column, shown, timestamp_column

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]
ML1M_OCCUPATIONS = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
LICENCE_NOTE = ("MovieLens data may not be redistributed; it is read from your own copy and never shipped here.")


def _read(path: Path, sep: str, names: list[str]) -> pd.DataFrame:
    return read_delimited(path, read_text(path, "latin-1"), sep, names=names)


def _ratings(path: Path, sep: str) -> pd.DataFrame:
    table = _read(path, sep, ["user_id", "item_id", "rating", "timestamp"])
    require_rows(table, path, "interactions", "it needs one line per rating: user id, item id, rating, timestamp")
    return pd.DataFrame({
        "user_id": required_text_column(table, "user_id", path, "user id"),
        "item_id": required_text_column(table, "item_id", path, "item id"),
        "rating": rating_column(table, "rating", path),
        "timestamp": timestamp_column(table, "timestamp", path),
    })


def _year_from_title(title: str) -> float:
    match = _YEAR_IN_TITLE.search(title)
    return float(match.group(1)) if match else np.nan


def load_ml100k_folder(folder: Path, name: str = "ml-100k", **meta) -> InteractionData:
    folder = Path(folder)
    interactions = _ratings(folder / "u.data", "\t")

    users = None
    if (folder / "u.user").is_file():
        path = folder / "u.user"
        table = _read(path, "|", ["user_id", "age", "gender", "occupation", "zip_code"])
        ages = numeric_column(table, "age", path, "age")
        users = pd.DataFrame({"age": [age_bucket(int(a)) for a in ages], "gender": table["gender"].to_numpy(),
                              "occupation": table["occupation"].to_numpy(), "zip_code": table["zip_code"].to_numpy()},
                             index=table["user_id"].str.strip())

    items = None
    if (folder / "u.item").is_file():
        path = folder / "u.item"
        genres = _ml100k_genres(folder / "u.genre")
        names = ["item_id", "title", "release_date", "video_release_date", "url"] + [f"g{i}" for i in range(len(genres))]
        table = _read(path, "|", names)
        flags = np.stack([numeric_column(table, f"g{i}", path, f"genre flag {shown(genre)}")
                          for i, genre in enumerate(genres)], axis=1) > 0
        years = pd.to_datetime(table["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
        items = pd.DataFrame({
            "title": table["title"].to_numpy(),
            "year": years.to_numpy(dtype=float),
            "genres": [tuple(g for g, on in zip(genres, row) if on and g) for row in flags],
        }, index=table["item_id"].str.strip())
    meta.setdefault("citation", GROUPLENS_CITATION)
    meta.setdefault("licence_note", LICENCE_NOTE)
    return build_interaction_data(name, interactions, users, items, **meta)


def _ml100k_genres(path: Path) -> list[str]:
    """Genre names in flag order: from ``u.genre`` when the folder has one (names stripped)."""
    if not path.is_file():
        return ML100K_GENRES
    table = _read(path, "|", ["genre", "index"])
    require_rows(table, path, "genres", "it needs one line per genre: name|index, in the order of u.item's flags")
    return table["genre"].str.strip().tolist()


def load_ml1m_folder(folder: Path, name: str = "ml-1m", **meta) -> InteractionData:
    folder = Path(folder)
    interactions = _ratings(folder / "ratings.dat", "::")

    users = None
    if (folder / "users.dat").is_file():
        path = folder / "users.dat"
        table = _read(path, "::", ["user_id", "gender", "age", "occupation", "zip_code"])
        age_names = dict(AGE_BUCKETS)
        ages = numeric_column(table, "age", path, "age code")
        occupations = numeric_column(table, "occupation", path, "occupation code")
        bad = np.flatnonzero([a not in age_names for a in ages])
        if bad.size:
            raise DataFormatError(path, f"age code {shown(table['age'].iloc[bad[0]].strip())} is not one of "
                                        f"{sorted(age_names)}", line_of(table, bad[0]))
        users = pd.DataFrame({
            "age": [age_names[int(a)] for a in ages],
            "gender": table["gender"].to_numpy(),
            # an unknown occupation code is read as "other", as GroupLens' own code 0 is
            "occupation": [ML1M_OCCUPATIONS[int(o)] if o in range(len(ML1M_OCCUPATIONS)) else "other"
                           for o in occupations],
            "zip_code": table["zip_code"].to_numpy(),
        }, index=table["user_id"].str.strip())

    items = None
    if (folder / "movies.dat").is_file():
        path = folder / "movies.dat"
        table = _read(path, "::", ["item_id", "title", "genres"])
        items = pd.DataFrame({
            "title": table["title"].to_numpy(),
            "year": [_year_from_title(t) for t in table["title"]],
            "genres": [tuple(g.strip() for g in value.split("|") if g.strip()) for value in table["genres"]],
        }, index=table["item_id"].str.strip())
    meta.setdefault("citation", GROUPLENS_CITATION)
    meta.setdefault("licence_note", LICENCE_NOTE)
    return build_interaction_data(name, interactions, users, items, **meta)
