"""Per-user and per-item feature tables, indexed like the ids (row 0 is padding).

Models keep these as buffers and look features up from ids, so a batch is only (users, items, history).
Aggregates (mean ratings, popularity) are computed from the train part only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recmodels.data.schema import InteractionData
from recmodels.data.split import TRAIN

# user columns that identify rather than describe a person: embedding them would only memorise, so they stay
# in the profile table (shown in the app) but never become model fields
IDENTIFYING_USER_FIELDS = {"zip_code", "zip", "postcode", "name", "email"}
MAX_CATEGORIES = 1000


@dataclass
class FeatureTables:
    n_users: int
    n_items: int
    user_field_names: list[str]
    user_field_vocabs: list[list[str]]       # index 0 of each is "<unknown>"
    user_fields: np.ndarray                  # (n_users + 1, n_user_fields) int64
    genre_names: list[str]
    item_genres: np.ndarray                  # (n_items + 1, n_genres) float32 multi-hot
    year_vocab: list[str]                    # decades; index 0 is "<unknown>"
    item_year: np.ndarray                    # (n_items + 1,) int64
    user_mean_rating: np.ndarray             # (n_users + 1,) float32, train only, scaled to [0, 1]
    item_mean_rating: np.ndarray             # (n_items + 1,) float32, train only, scaled to [0, 1]
    item_popularity: np.ndarray              # (n_items + 1,) float32, log1p(train count) / max
    extras: dict = field(default_factory=dict)

    def spec(self) -> dict:
        """Sizes and names a model needs to be built; JSON-able and stored in checkpoints."""
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "user_field_names": list(self.user_field_names),
            "user_field_sizes": [len(v) for v in self.user_field_vocabs],
            "genre_names": list(self.genre_names),
            "n_years": len(self.year_vocab),
        }

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            "user_fields": self.user_fields,
            "item_genres": self.item_genres,
            "item_year": self.item_year,
            "user_mean_rating": self.user_mean_rating,
            "item_mean_rating": self.item_mean_rating,
            "item_popularity": self.item_popularity,
        }


def build_feature_tables(data: InteractionData, part: np.ndarray) -> FeatureTables:
    n_users, n_items = data.n_users, data.n_items

    names, vocabs, columns = [], [], []
    for column in data.user_features.columns:
        values = data.user_features[column].fillna("").astype(str).to_numpy()
        vocab = ["<unknown>"] + sorted({v for v in values if v})
        if column in IDENTIFYING_USER_FIELDS or len(vocab) > MAX_CATEGORIES:
            continue
        lookup = {v: i for i, v in enumerate(vocab)}
        names.append(column)
        vocabs.append(vocab)
        columns.append(np.r_[0, [lookup.get(v, 0) for v in values]])
    user_fields = (np.stack(columns, axis=1) if columns else np.zeros((n_users + 1, 0))).astype(np.int64)

    genre_lookup = {g: i for i, g in enumerate(data.genre_names)}
    item_genres = np.zeros((n_items + 1, len(data.genre_names)), dtype=np.float32)
    for row, genres in enumerate(data.item_features["genres"], start=1):
        item_genres[row, [genre_lookup[g] for g in genres]] = 1.0

    years = data.item_features["year"].to_numpy(dtype=float, na_value=np.nan)
    decades = np.where(np.isfinite(years), (np.nan_to_num(years) // 10) * 10, np.nan)
    year_vocab = ["<unknown>"] + [f"{int(d)}s" for d in sorted(set(decades[np.isfinite(decades)]))]
    decade_index = {f"{int(d)}s": i for i, d in enumerate(sorted(set(decades[np.isfinite(decades)])), start=1)}
    item_year = np.r_[0, [decade_index[f"{int(d)}s"] if np.isfinite(d) else 0 for d in decades]].astype(np.int64)

    train = data.interactions[part == TRAIN]
    rating_span = max(float(train["rating"].max()) if len(train) else 1.0, 1.0)
    global_mean = float(train["rating"].mean()) if len(train) else 0.0
    user_mean = _mean_by(train["user"].to_numpy(), train["rating"].to_numpy(), n_users + 1, global_mean)
    item_mean = _mean_by(train["item"].to_numpy(), train["rating"].to_numpy(), n_items + 1, global_mean)
    counts = np.bincount(train["item"].to_numpy(), minlength=n_items + 1).astype(np.float32)
    popularity = np.log1p(counts)
    popularity /= max(float(popularity.max()), 1.0)

    return FeatureTables(
        n_users=n_users, n_items=n_items,
        user_field_names=names, user_field_vocabs=vocabs, user_fields=user_fields,
        genre_names=list(data.genre_names), item_genres=item_genres,
        year_vocab=year_vocab, item_year=item_year,
        user_mean_rating=(user_mean / rating_span).astype(np.float32),
        item_mean_rating=(item_mean / rating_span).astype(np.float32),
        item_popularity=popularity.astype(np.float32),
    )


def _mean_by(keys: np.ndarray, values: np.ndarray, size: int, default: float) -> np.ndarray:
    sums = np.bincount(keys, weights=values, minlength=size)
    counts = np.bincount(keys, minlength=size)
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)
