"""Shared fixtures (a tiny synthetic dataset for fast unit tests, and the real ml-100k, loaded once), the Hypothesis
profiles, and the tiers.

Tiers: ``make test-fast`` runs ``-m "not slow and not browser"`` under the ``dev`` Hypothesis profile; ``make test``
runs everything under ``ci``. A test is ``slow`` when it trains, renders a page, drives a browser or re-measures a
shipped checkpoint: its module says so, or its own decorator, or (for the shared contract and explanation tests) its
parameter is one of the sequence transformers, whose every call costs a second on two cores.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import settings

from recmodels.data import RecData
from recmodels.data.schema import build_interaction_data

# the profile decides how many examples each property test draws; no test sets its own count
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

LARGE_MODELS = {"sasrec", "bert4rec"}


def pytest_configure(config):
    """Under pytest-xdist each worker takes its share of the cores: torch's default (every core in each of them)
    oversubscribes the machine, and small ops then take many times longer."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Parametrised tests over the sequence transformers are slow; the other models keep the contract fast."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and set(callspec.id.split("-")) & LARGE_MODELS:
            item.add_marker(pytest.mark.slow)


def make_tiny_dataset(n_users: int = 30, n_items: int = 40, per_user: int = 25, seed: int = 0):
    """Random users with timestamps (some tied), ratings 1..5, three user fields and genres."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False)
        times = np.sort(rng.integers(1_000, 1_000 + per_user * 3, size=per_user))  # ties happen
        for item, time in zip(items, times):
            rows.append((str(user), str(item), float(rng.integers(1, 6)), int(time)))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
    users = pd.DataFrame(
        {
            "age": rng.choice(["18-24", "25-34", "35-44"], size=n_users),
            "gender": rng.choice(["F", "M"], size=n_users),
            "occupation": rng.choice(["artist", "engineer", "student", "other"], size=n_users),
        },
        index=[str(u) for u in range(1, n_users + 1)],
    )
    items = pd.DataFrame(
        {
            "title": [f"Film {i}" for i in range(1, n_items + 1)],
            "year": rng.integers(1950, 2000, size=n_items).astype(float),
            "genres": [tuple(rng.choice(genres, size=rng.integers(1, 4), replace=False)) for _ in range(n_items)],
        },
        index=[str(i) for i in range(1, n_items + 1)],
    )
    return build_interaction_data("tiny", interactions, users, items)


@pytest.fixture(scope="session")
def tiny_data() -> RecData:
    return RecData(make_tiny_dataset(), max_history=12)


@pytest.fixture(scope="session")
def ml100k() -> RecData:
    return RecData.load("ml-100k")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _settings_left_as_found():
    """A test that leaves a RECMODELS_* variable changed changes what every later test in its worker opens (the
    app reads its checkpoint roots from the environment): put it back, and fail the test that did it."""
    before = {key: value for key, value in os.environ.items() if key.startswith("RECMODELS_")}
    yield
    after = {key: value for key, value in os.environ.items() if key.startswith("RECMODELS_")}
    if after != before:
        for key in after.keys() - before.keys():
            del os.environ[key]
        os.environ.update(before)
        changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        pytest.fail(f"the test left {', '.join(changed)} changed; restore it (monkeypatch.setenv, mock.patch.dict)")
