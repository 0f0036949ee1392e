"""A synthetic RecBole atomic dataset with the shape of MovieLens (``python -m recmodels synth``).

MovieLens may not be redistributed, so scale is measured on data anyone can generate: by default the shape of
ml-20m (138,493 users, 26,744 items, 20,000,000 interactions). The data has what models and benchmarks need:

- power-law item popularity (Zipf with an offset head) and user activity (lognormal, at least 20 per user as in
  MovieLens, at most 40% of the catalogue);
- timestamps in sessions, strictly increasing per user; every user and every item has an interaction;
- genres per item (its primary genre first), titles and release years; age, gender and occupation per user, which
  shift the user's taste;
- planted sequential structure: each user's taste drifts from one genre mix to another over their timeline and
  consecutive interactions tend to stay in a genre (``STAY``), so the next item is predictable from recent ones.

Users are generated and files written in chunks (behind a progress bar); the same shape and seed give byte-identical
files. ``<name>.inter`` lists each user's rows by item id, as GroupLens' do, so a loader has to sort by time.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from recmodels.errors import InvalidArgumentError, RecModelsError, quote
from recmodels.data.atomic import CARD_FILE

GENRES = ("Drama", "Comedy", "Thriller", "Action", "Romance", "Adventure", "Crime", "Horror", "Sci-Fi",
          "Children's", "Fantasy", "War", "Mystery", "Musical", "Animation", "Documentary", "Western", "Film-Noir")
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
               "retired", "salesman", "scientist", "student", "technician", "writer")
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens' age groups: taste depends on the group

STAY = 0.65                   # chance that an interaction keeps the previous one's genre
TASTE_CONCENTRATION = 3.0     # Dirichlet total: a user's taste sits on a few genres
POPULARITY_EXPONENT = 1.0     # item weight (rank + offset) ** -exponent
POPULARITY_OFFSET = 10
ACTIVITY_SIGMA = 1.2          # lognormal activity: mean / median about 2, as in ml-20m
MIN_PER_USER = 20
MAX_USER_SHARE = 0.4
SESSION_BREAK = 0.05          # chance that an interaction opens a new session
SESSION_GAP_S = 14 * 86_400   # mean pause between sessions
CLICK_GAP_S = 45              # mean pause within a session
FIRST_TIME = 789_652_009      # 1995-01-09, ml-20m's first rating
TIME_SPAN_S = 17 * 365 * 86_400
CHUNK_CELLS = 1 << 26         # users x items of one generation chunk (its seen-bitmap)
CHUNK_ROWS = 1 << 20
REDRAW_ROUNDS = 12            # rounds of redrawing repeated (user, item) pairs before the exact fallback
MAX_COUNT = 2 ** 31 - 1
# what generating takes in memory (tests/test_synth.py checks it against a run's VmHWM): the interpreter, numpy and
# one generation chunk (its seen-bitmap is at most CHUNK_CELLS); the user, item, time and rating columns and the sort
# while writing; tastes and features (per user, more per item). Measured peaks since genre-kept redraws: 329 MiB at 2
# million interactions, 400 MiB at 6 million, 714 MiB at ml-20m's 20 million (estimates 581, 709 and 1,169 MiB)
BYTES_FIXED = 512 * 2**20
BYTES_PER_INTERACTION = 32
BYTES_PER_USER = 256
BYTES_PER_ITEM = 512
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Shape:
    users: int
    items: int
    interactions: int


PRESETS = {"tiny": Shape(1_000, 1_000, 50_000), "ml-1m": Shape(6_040, 3_706, 1_000_209),
           "ml-20m": Shape(138_493, 26_744, 20_000_000)}
DEFAULT_PRESET = "ml-20m"


def shape_of(preset: str | None = None, users=None, items=None, interactions=None) -> Shape:
    """The preset's shape (ml-20m by default) with any count given replacing the preset's."""
    if preset is not None and preset not in PRESETS:
        raise InvalidArgumentError(f"Unknown preset {quote(preset)}; use one of {', '.join(PRESETS)}.")
    base = PRESETS[preset or DEFAULT_PRESET]
    return Shape(*(base_value if value is None else value for base_value, value in
                   zip((base.users, base.items, base.interactions), (users, items, interactions))))


def check_shape(shape: Shape) -> None:
    for what, value in (("users", shape.users), ("items", shape.items), ("interactions", shape.interactions)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidArgumentError(f"The number of {what} must be a whole number, got {quote(value)}.")
        if not 1 <= value <= MAX_COUNT:
            raise InvalidArgumentError(f"The number of {what} must be from 1 to {MAX_COUNT:,}, got {value:,}.")
    users, items, interactions = int(shape.users), int(shape.items), int(shape.interactions)
    if interactions > users * items:
        raise InvalidArgumentError(f"{interactions:,} interactions do not fit {users:,} users x {items:,} items, "
                                   f"since each (user, item) pair occurs once; ask for at most {users * items:,}.")
    if interactions < max(users, items):
        raise InvalidArgumentError(f"{interactions:,} interactions cannot give each of {users:,} users and "
                                   f"{items:,} items one; ask for at least {max(users, items):,}.")


def memory_needed(shape: Shape) -> int:
    """Bytes that generating ``shape`` takes at its peak, about (see BYTES_FIXED)."""
    return (BYTES_FIXED + BYTES_PER_INTERACTION * int(shape.interactions) + BYTES_PER_USER * int(shape.users)
            + BYTES_PER_ITEM * int(shape.items))


def available_memory() -> int | None:
    """Bytes this process can still take: the kernel's MemAvailable, or less under a cgroup's limit; None where
    neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as handle:
            found += [int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_memory(shape: Shape, available: int | None = None) -> None:
    """Refuse a shape that cannot be held in memory, before minutes of work end in a MemoryError."""
    available = available_memory() if available is None else available
    needed = memory_needed(shape)
    if available is not None and needed > available:
        raise InvalidArgumentError(
            f"{shape.users:,} users, {shape.items:,} items and {shape.interactions:,} interactions need about "
            f"{needed / 2**30:,.1f} GiB of memory to generate ({BYTES_PER_INTERACTION} bytes per interaction, "
            f"{BYTES_PER_USER} per user, {BYTES_PER_ITEM} per item and {BYTES_FIXED // 2**20} MB besides), but "
            f"{available / 2**30:,.1f} GiB is available; ask for fewer.")


def _check_target(out, name: str, seed, force: bool) -> Path:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(f"The dataset name {quote(name)} must be letters, digits, '.', '_' or '-', "
                                   "starting with a letter or digit, since it names the files.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise InvalidArgumentError(f"The seed must be a whole number from 0 to 2**63 - 1, got {quote(seed)}.")
    if out is None or not str(out).strip():
        raise InvalidArgumentError("The output folder is an empty name; pass --out with a new or empty folder.")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"{folder} exists and is not a folder; pass --out with a new or empty folder.")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise InvalidArgumentError(f"{folder} exists and is not empty; pass another --out, or --force to overwrite "
                                   f"its {name}.inter, {name}.item and {name}.user.")
    return folder


def generate(out, shape: Shape = PRESETS[DEFAULT_PRESET], seed: int = 0, name: str = "synth", force: bool = False,
             progress: bool = True) -> Path:
    """Write ``<name>.inter``, ``.item``, ``.user`` and a card (simulated: not observed) into ``out``; return it."""
    check_shape(shape)
    shape = Shape(int(shape.users), int(shape.items), int(shape.interactions))
    folder = _check_target(out, name, seed, force)
    check_memory(shape)
    try:
        catalogue = _catalogue(shape, np.random.default_rng([seed, 0]))
        users, items, times, ratings, starts = _interactions(shape, catalogue, seed, progress)
        _cover_every_item(items, shape.items, np.random.default_rng([seed, 2]))
    except MemoryError:  # the estimate was short, or others took the memory meanwhile
        raise InvalidArgumentError(
            f"Generating {shape.interactions:,} interactions ran out of memory (about "
            f"{memory_needed(shape) / 2**30:,.1f} GiB was expected to be enough); ask for fewer.") from None
    # so that every page that shows this data says it was generated, not observed
    card = {
        "simulated": True,
        "citation": "Synthetic interactions written by python -m recmodels synth "
        f"({shape.users:,} users, {shape.items:,} items, seed {seed}).",
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_text(folder / f"{name}.item", _item_lines(catalogue))
        _write_text(folder / f"{name}.user", _user_lines(catalogue))
        _write_inter(folder / f"{name}.inter", users, items, times, ratings, starts, progress)
        _write_text(folder / CARD_FILE, [json.dumps(card)])
    except OSError as err:
        raise InvalidArgumentError(f"{folder} could not be written ({err.strerror or err}); pass --out with a "
                                   "folder you can write to, on a disk with room.") from None
    return folder


# ------------------------------------------------------------------ the catalogue and the users
def _catalogue(shape: Shape, rng: np.random.Generator) -> dict:
    n_genres = len(GENRES)
    genre_share = (np.arange(n_genres) + 1.0) ** -0.8
    genre_share /= genre_share.sum()
    primary = rng.choice(n_genres, size=shape.items, p=genre_share)
    keys = rng.random((shape.items, n_genres))
    keys[np.arange(shape.items), primary] = 2.0  # the primary genre is never drawn again as an extra
    extras = np.argsort(keys, axis=1)[:, :2]
    n_extra = rng.choice(3, size=shape.items, p=[0.45, 0.35, 0.2])
    rank = rng.permutation(shape.items)  # popularity rank, independent of the item id
    weight = (rank + POPULARITY_OFFSET) ** -POPULARITY_EXPONENT
    years = np.clip(2015 - np.floor(rng.exponential(14.0, shape.items)), 1915, 2015).astype(np.int64)
    quality = rng.normal(0.0, 0.35, shape.items)

    ages = np.clip(np.rint(rng.normal(31.0, 11.0, shape.users)), 13, 73).astype(np.int64)
    female = rng.random(shape.users) < 0.28
    occupation = rng.integers(0, len(OCCUPATIONS), shape.users)
    # taste: a Dirichlet around the genre shares, shifted by age group and gender; one mix at the start of the
    # timeline, another at its end
    present = np.bincount(primary, minlength=n_genres) > 0
    age_effect = rng.normal(0.0, 0.6, (len(AGE_EDGES) + 1, n_genres))
    gender_effect = rng.normal(0.0, 0.6, (2, n_genres))
    logits = (np.log(genre_share)[None, :] + age_effect[np.searchsorted(AGE_EDGES, ages, side="right")]
              + gender_effect[female.astype(np.int64)])
    prior = np.exp(logits) * present
    prior *= TASTE_CONCENTRATION / prior.sum(axis=1, keepdims=True)
    tastes = []
    for _ in range(2):
        draw = rng.gamma(np.maximum(prior, 1e-300)) * present
        draw += present * 1e-12  # a user whose draw underflowed everywhere still has a taste
        tastes.append(draw / draw.sum(axis=1, keepdims=True))
    activity = _allocate(shape, rng.lognormal(0.0, ACTIVITY_SIGMA, shape.users))
    return {
        "primary": primary, "extras": extras, "n_extra": n_extra, "weight": weight, "years": years,
        "quality": quality, "ages": ages, "female": female, "occupation": occupation,
        "taste_start": tastes[0], "taste_end": tastes[1], "activity": activity,
        "first_time": FIRST_TIME + rng.integers(0, TIME_SPAN_S, shape.users),
        "user_bias": rng.normal(0.0, 0.4, shape.users),
        "sampler": _GenreSampler(primary, weight, n_genres),
    }


def _allocate(shape: Shape, weights: np.ndarray) -> np.ndarray:
    """Interactions per user: proportional to ``weights``, from MIN_PER_USER (or fewer, if the total is small) to
    a cap, summing exactly to the total."""
    total = shape.interactions
    low = min(MIN_PER_USER, total // shape.users)
    cap = min(shape.items, max(int(np.ceil(MAX_USER_SHARE * shape.items)), -(-total // shape.users)))
    counts = np.full(shape.users, low, dtype=np.int64)
    remaining = total - int(counts.sum())
    while remaining > 0:
        free = counts < cap
        share = np.where(free, weights, 0.0)
        share *= remaining / share.sum()
        add = np.minimum(np.floor(share).astype(np.int64), cap - counts)
        if not add.any():  # fewer left than would give anyone a whole one: the largest shares get one each
            add[np.argsort(-share, kind="stable")[:remaining]] = 1
            add[~free] = 0
        counts += add
        remaining -= int(add.sum())
    return counts


class _GenreSampler:
    """Draws items within a genre, by popularity or uniformly, from uniform numbers."""

    def __init__(self, primary: np.ndarray, weight: np.ndarray, n_genres: int):
        self.primary = primary
        self.order = np.lexsort((-weight, primary))  # grouped by primary genre
        grouped = primary[self.order]
        self.start = np.searchsorted(grouped, np.arange(n_genres))
        self.end = np.searchsorted(grouped, np.arange(n_genres), side="right")
        ordered = weight[self.order]
        self.within = np.empty(len(ordered))
        for genre in range(n_genres):  # per-genre cumulative shares, offset by the genre: one searchsorted draws
            block = slice(self.start[genre], self.end[genre])
            cumulative = np.cumsum(ordered[block])
            self.within[block] = genre + cumulative / cumulative[-1] if len(cumulative) else []

    def in_genre(self, genres: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.within, genres + uniform, side="right")
        return self.order[np.clip(index, self.start[genres], self.end[genres] - 1)]

    def in_genre_uniformly(self, genres: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        size = self.end[genres] - self.start[genres]
        return self.order[self.start[genres] + np.minimum((uniform * size).astype(np.int64), size - 1)]


# ------------------------------------------------------------------ interactions, one chunk of users at a time
def _interactions(shape: Shape, cat: dict, seed: int, progress: bool):
    counts = cat["activity"]
    per_chunk = max(1, min(CHUNK_CELLS // shape.items, CHUNK_ROWS * shape.users // shape.interactions))
    starts = np.arange(0, shape.users, per_chunk)
    offsets = np.r_[0, np.cumsum(counts)]
    users = np.repeat(np.arange(shape.users, dtype=np.int32), counts)
    items = np.empty(shape.interactions, dtype=np.int32)
    times = np.empty(shape.interactions, dtype=np.int64)
    ratings = np.empty(shape.interactions, dtype=np.int8)
    with tqdm(total=shape.interactions, desc="generate", unit=" rows", unit_scale=True, disable=not progress) as bar:
        for chunk, first in enumerate(starts):
            last = min(first + per_chunk, shape.users)
            rows = slice(offsets[first], offsets[last])
            items[rows], times[rows], ratings[rows] = _chunk(first, last, shape, cat,
                                                             np.random.default_rng([seed, 1, chunk]))
            bar.update(rows.stop - rows.start)
    return users, items, times, ratings, offsets[np.r_[starts, shape.users]]


def _chunk(first: int, last: int, shape: Shape, cat: dict, rng: np.random.Generator):
    counts = cat["activity"][first:last]
    n = int(counts.sum())
    user = np.repeat(np.arange(first, last), counts)
    begins = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(n) - np.repeat(begins, counts)
    progress = position / np.repeat(np.maximum(counts - 1, 1), counts)  # 0 at a user's first row, 1 at the last

    # the genre of each row: kept from the previous row with probability STAY, otherwise another genre drawn from
    # the start or the end taste (the end one more often later on)
    late = rng.random(n) < progress
    switch = rng.random(n) >= STAY
    switch[begins] = True
    genre = _genre_runs(user, switch, late, cat, rng)
    sampler = cat["sampler"]
    item = sampler.in_genre(genre, rng.random(n))
    item = _distinct_per_user(user - first, item, genre, shape.items, sampler, rng)

    gaps = np.where(rng.random(n) < SESSION_BREAK, 1 + rng.exponential(SESSION_GAP_S, n),
                    rng.geometric(1.0 / CLICK_GAP_S, n)).astype(np.int64)
    gaps[begins] = 0
    elapsed = np.cumsum(gaps)
    times = cat["first_time"][user] + elapsed - np.repeat(elapsed[begins], counts)

    fit = np.where(late, cat["taste_end"][user, cat["primary"][item]], cat["taste_start"][user, cat["primary"][item]])
    score = 3.2 + cat["user_bias"][user] + cat["quality"][item] + 1.2 * fit + rng.normal(0.0, 0.85, n)
    return item, times, np.clip(np.rint(score), 1, 5).astype(np.int8)


def _genre_runs(user, switch, late, cat, rng) -> np.ndarray:
    """The genre of each row, in runs that open where ``switch`` is set: a user's first run draws from their taste,
    each later one from their taste without the previous run's genre, so consecutive rows share a genre with
    probability STAY, not STAY plus the chance that a fresh draw repeats it. A genre whose unseen items the run
    would outnumber is skipped too (an active user moves on from a genre they have seen all of); otherwise its
    items would run out and the redraws would scatter the run over other genres. A run depends on the ones before,
    so runs are drawn rank by rank (every user's first, then every second, ...), vectorised over users."""
    heads = np.flatnonzero(switch)
    head_user = user[heads]
    local = head_user - head_user[0]
    length = np.diff(np.r_[heads, len(user)])
    rank = np.arange(heads.size) - np.searchsorted(head_user, head_user)  # rows come sorted by user
    weights = np.where(late[heads, None], cat["taste_end"][head_user], cat["taste_start"][head_user])
    uniform = 1.0 - rng.random(heads.size)  # in (0, 1]: a genre of zero weight is never picked
    room = np.tile(np.bincount(cat["primary"], minlength=len(GENRES)), (int(local[-1]) + 1, 1))
    order = np.argsort(rank, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(rank))]
    run_genre = np.empty(heads.size, dtype=np.int64)
    for r in range(len(bounds) - 1):
        runs = order[bounds[r]:bounds[r + 1]]
        w = np.where(room[local[runs]] >= length[runs, None], weights[runs], 0.0)
        if r:  # runs[i] - 1 is the same user's previous run
            w[np.arange(runs.size), run_genre[runs - 1]] = 0.0
        cumulative = w.cumsum(axis=1)
        picked = np.minimum((cumulative < uniform[runs, None] * cumulative[:, -1:]).sum(axis=1), len(GENRES) - 1)
        # nowhere left to go (one genre in the catalogue, or no genre with room for the run): the most room
        picked = np.where(cumulative[:, -1] > 0, picked, room[local[runs]].argmax(axis=1))
        run_genre[runs] = picked
        room[local[runs], picked] -= length[runs]
    return run_genre[np.cumsum(switch) - 1]


def _distinct_per_user(local_user, item, genre, n_items, sampler, rng) -> np.ndarray:
    """Redraw the later copies of a repeated (user, item) pair in the row's genre, by popularity, then uniformly, so
    that redrawing does not break the runs of a genre; a few rounds leave the rows of users who have (nearly) seen
    the genre's every item: these take a uniform pick of the user's unseen items of that genre, and only when there
    are none, of the genre with the most unseen items."""
    item = item.copy()
    seen = np.zeros((int(local_user.max()) + 1) * n_items, dtype=bool)
    keys = local_user * n_items + item
    _, first = np.unique(keys, return_index=True)
    repeated = np.ones(len(item), dtype=bool)
    repeated[first] = False
    seen[keys[first]] = True
    for attempt in range(REDRAW_ROUNDS):
        rows = np.flatnonzero(repeated)
        if not rows.size:
            return item
        uniform = rng.random(rows.size)
        candidate = (sampler.in_genre(genre[rows], uniform) if attempt < REDRAW_ROUNDS // 2 else
                     sampler.in_genre_uniformly(genre[rows], uniform))
        keys = local_user[rows] * n_items + candidate
        new = ~seen[keys]
        _, first = np.unique(keys[new], return_index=True)
        taken = rows[new][first]
        item[taken] = candidate[new][first]
        seen[keys[new][first]] = True
        repeated[taken] = False
    rows = np.flatnonzero(repeated)  # sorted by user: split into each user's rows
    users, begins = np.unique(local_user[rows], return_index=True)
    for user, own in zip(users, np.split(rows, begins[1:])):
        unseen = ~seen[user * n_items:(user + 1) * n_items]
        for wanted in np.unique(genre[own]):
            targets = own[genre[own] == wanted]  # in time order: a used-up genre runs out at the user's latest rows
            left = np.bincount(sampler.primary[unseen], minlength=len(GENRES))
            # the genre first, then (once it is used up) the genre with the most unseen items, and so on, so that
            # a run of the used-up genre becomes a run of one other genre rather than scattered ones
            order = np.r_[wanted, [g for g in np.argsort(-left, kind="stable") if g != wanted]]
            picked = np.concatenate([rng.permutation(np.flatnonzero(unseen & (sampler.primary == g)))
                                     for g in order[np.cumsum(left[order]) - left[order] < targets.size]])
            item[targets] = picked[:targets.size]
            unseen[item[targets]] = False
    return item


def _cover_every_item(items: np.ndarray, n_items: int, rng: np.random.Generator) -> None:
    """Give each item nobody drew one row, taken from items drawn more than once (nobody has it, so no user
    gets it twice)."""
    counts = np.bincount(items, minlength=n_items)
    missing = np.flatnonzero(counts == 0)
    if not missing.size:
        return
    order = np.argsort(items, kind="stable")
    spare = order[np.arange(len(items)) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts) > 0]
    items[spare[rng.choice(spare.size, size=missing.size, replace=False)]] = rng.permutation(missing)


# ------------------------------------------------------------------ the files
def _item_lines(cat: dict) -> list[str]:
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq"]
    for index, (primary, extras, n_extra, year) in enumerate(zip(cat["primary"], cat["extras"], cat["n_extra"],
                                                                 cat["years"]), start=1):
        genres = " ".join(GENRES[g] for g in (primary, *extras[:n_extra]))
        lines.append(f"{index}\tSynthetic {GENRES[primary]} {index}\t{year}\t{genres}")
    return lines


def _user_lines(cat: dict) -> list[str]:
    lines = ["user_id:token\tage:token\tgender:token\toccupation:token"]
    lines += [f"{index}\t{age}\t{'F' if female else 'M'}\t{OCCUPATIONS[job]}" for index, (age, female, job) in
              enumerate(zip(cat["ages"], cat["female"], cat["occupation"]), start=1)]
    return lines


def _write_text(path: Path, lines: list[str]) -> None:
    path.with_name(path.name + ".partial").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.with_name(path.name + ".partial").replace(path)


def _write_inter(path: Path, users, items, times, ratings, starts, progress: bool) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle, tqdm(total=len(users), desc="write", unit=" rows", unit_scale=True,
                                             disable=not progress) as bar:
        handle.write(INTER_HEADER.encode())
        for begin, end in zip(starts[:-1], starts[1:]):
            rows = slice(begin, end)
            order = np.lexsort((items[rows], users[rows]))  # GroupLens' order: by user, then item
            handle.write(_tab_lines(users[rows][order] + 1, items[rows][order] + 1, ratings[rows][order],
                                    times[rows][order]))
            bar.update(end - begin)
    partial.replace(path)


def _tab_lines(*columns: np.ndarray) -> bytes:
    """Tab-separated lines of whole numbers (pyarrow's writer is five times faster than pandas', same bytes)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        import pandas as pd
        frame = pd.DataFrame({str(i): column for i, column in enumerate(columns)})
        return frame.to_csv(sep="\t", header=False, index=False, lineterminator="\n").encode()
    sink = pa.BufferOutputStream()
    table = pa.table({str(i): column for i, column in enumerate(columns)})
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    return sink.getvalue().to_pybytes()
