"""The figures of docs/data.md on what the per-user split guarantees, re-measured (tools/split_facts.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from recmodels.data import TRAIN, RecData, SplitConfig
from recmodels.data.schema import build_interaction_data
from tools.split_facts import split_facts


def test_readme_split_figures_on_ml100k(ml100k):
    facts = split_facts(ml100k)
    assert facts["users with a test part"] == 943
    assert facts[
        "share of train interactions after a user's first test interaction (mean over users)"
    ] == pytest.approx(0.447, abs=5e-4)
    assert facts["users with a train or valid interaction in the same second as their first test one"] == 500


def test_split_facts_by_hand():
    # user a acts at t=1..10, user b at t=101..110: with 0/20% valid/test, a's test part starts at t=9 and b's at
    # t=109; all 8 of b's train interactions come after t=9, none of a's after t=109; b's t=108 is not tied
    rows = [("a", str(i), 5.0, i) for i in range(1, 11)] + [("b", str(i), 5.0, 100 + i) for i in range(1, 11)]
    rows.append(("a", "99", 5.0, 9))  # a train/valid rating in the same second as a's first test one
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    data = RecData(build_interaction_data("hand", frame, None, None), SplitConfig(0.0, 0.2))
    facts = split_facts(data)
    train = int((data.part == TRAIN).sum())
    assert facts["train interactions"] == train
    later = facts["share of train interactions after a user's first test interaction (mean over users)"]
    assert later == pytest.approx((8 / train + 0 / train) / 2)
    assert facts["users with a train or valid interaction in the same second as their first test one"] == 1


def test_readme_cross_user_share_on_fashion():
    facts = split_facts(RecData.load("fashion"))
    assert facts[
        "share of train interactions after a user's first test interaction (mean over users)"
    ] == pytest.approx(0.401, abs=5e-4)


def test_next_item_split_figures_on_ml100k():
    facts = split_facts(RecData.load("ml-100k", split=SplitConfig(mode="next_item")))
    assert facts["users with a test part"] == 943
    assert facts["users whose valid interaction is in the same second as their test one"] == 415
    assert facts[
        "share of train interactions after a user's first test interaction (mean over users)"
    ] == pytest.approx(0.413, abs=5e-4)
