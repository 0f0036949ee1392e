"""The global time split (--split global): one cut for valid and one for test over all users' interactions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_dataset
from test_train_and_checkpoint import write_atomic

from recmodels.checkpoint.io import read_config
from recmodels.cli.results import results_markdown
from recmodels.data import TEST, TRAIN, VALID, RecData, SplitConfig
from recmodels.data.schema import build_interaction_data
from recmodels.errors import CheckpointError
from tools.split_facts import split_facts

REPO = Path(__file__).resolve().parents[1]
GLOBAL = SplitConfig(0.1, 0.2, "global")


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture(scope="module")
def ml100k_global() -> RecData:
    return RecData.load("ml-100k", split={"valid_fraction": 0.1, "test_fraction": 0.2, "mode": "global"})


@pytest.mark.slow
def test_the_cut_is_global_and_keeps_ties_together(ml100k_global):
    tiny = RecData(make_tiny_dataset(), GLOBAL, max_history=12)  # many ties: 30 users over 75 seconds
    for data in (ml100k_global, tiny):
        times = data.dataset.interactions["timestamp"].to_numpy()
        train, valid, test = (times[data.part == p] for p in (TRAIN, VALID, TEST))
        assert train.max() < valid.min() and valid.max() < test.min()
        for moment in np.unique(times):  # every second falls on one side of each cut
            assert len(np.unique(data.part[times == moment])) == 1


def test_fractions_are_honoured_within_rounding(ml100k_global):
    # 101 distinct seconds: round(101 * 0.2) = 20 in test, round(101 * 0.3) - 20 = 10 in valid
    rows = [(str(i % 7), str(i), 5.0, 1000 + i) for i in range(101)]
    data = RecData(build_interaction_data("hand", _frame(rows), None, None), GLOBAL)
    assert np.bincount(data.part, minlength=3).tolist() == [71, 10, 20]
    # ml-100k has ties at the cuts: each part stays within a few interactions of its fraction
    shares = np.bincount(ml100k_global.part, minlength=3) / len(ml100k_global.part)
    assert shares == pytest.approx([0.7, 0.1, 0.2], abs=1e-3)
    assert not np.any(
        RecData(build_interaction_data("hand", _frame(rows), None, None), SplitConfig(0.0, 0.0, "global")).part
    )  # no fractions: everything is train


def test_users_without_train_are_counted_and_skipped():
    # a and b act early and late; c joins after the valid cut, d after the test cut: neither can be ranked
    rows = [(user, str(t), 5.0, t) for user in ("a", "b") for t in range(1, 15)]
    rows += [("c", "100", 5.0, 12), ("c", "101", 4.0, 14), ("d", "102", 5.0, 14), ("d", "103", 1.0, 14)]
    data = RecData(build_interaction_data("hand", _frame(rows), None, None), GLOBAL)
    ids = list(data.dataset.user_ids)
    without = {ids.index("c"), ids.index("d")}
    assert data.users_without_train() == 2 and data.summary()["users_without_train"] == 2
    for part in (VALID, TEST):
        assert not set(data.topk_cases(part).users) & without
        assert not set(data.ctr_rows(part).users) & without
    assert len(data.topk_cases(TEST)) == 2
    # leakage: the train part (and so every train history and the feature tables) holds nothing from test time
    items = list(data.dataset.item_ids)
    assert data.tables.item_popularity[[items.index(i) for i in ("100", "101", "102", "103")]].tolist() == [0] * 4
    times = data.dataset.interactions["timestamp"].to_numpy()
    assert times[data.part == TRAIN].max() < times[data.part == TEST].min()
    cases = data.topk_cases(TEST)
    first_test = times[data.part == TEST].min()
    allowed = set(data.dataset.interactions["item"][times < first_test])
    assert set(cases.history[cases.history > 0].tolist()) <= allowed


def test_the_per_user_default_is_unchanged(ml100k, ml100k_global):
    assert SplitConfig().to_dict() == {"valid_fraction": 0.1, "test_fraction": 0.2}
    assert GLOBAL.to_dict() == {"valid_fraction": 0.1, "test_fraction": 0.2, "mode": "global"}
    shipped = read_config(REPO / "checkpoints" / "bpr-ml100k").dataset
    assert shipped.split == SplitConfig().to_dict()
    assert ml100k.fingerprint == shipped.fingerprint
    assert "users_without_train" not in ml100k.summary()
    assert ml100k_global.fingerprint != ml100k.fingerprint
    with pytest.raises(ValueError, match="split mode"):
        SplitConfig(mode="random")


def test_split_facts_cross_user_share_is_zero_on_the_global_split(ml100k_global):
    facts = split_facts(ml100k_global)
    assert facts["share of train interactions after a user's first test interaction (mean over users)"] == 0.0
    assert facts["users with no train interaction (not evaluated)"] == ml100k_global.users_without_train() > 0
    tool = subprocess.run(
        [sys.executable, str(REPO / "tools" / "split_facts.py"), "--split", "global"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tool.returncode == 0 and "interaction (mean over users): 0.000" in tool.stdout


@pytest.mark.slow
def test_cli_trains_on_the_global_split_and_evaluate_reproduces_it(tmp_path):
    folder = write_atomic(make_tiny_dataset(), tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "checkpoints" / "bpr-tiny-global"
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "recmodels",
            "train",
            "--model",
            "bpr",
            "--dataset",
            "tiny",
            "--data-dir",
            str(folder),
            "--epochs",
            "2",
            "--out",
            str(out),
            "--quiet",
            "--max-history",
            "12",
            "--set",
            "dim=8",
            "--split",
            "global",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    assert "'users_without_train': 0" in train.stdout
    config = read_config(out)
    assert config.dataset.split == {"valid_fraction": 0.1, "test_fraction": 0.2, "mode": "global"}
    evaluate = subprocess.run(
        [sys.executable, "-m", "recmodels", "evaluate", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    assert "0 users have no train interaction before the global cut" in evaluate.stdout
    measured = next(line for line in evaluate.stdout.splitlines() if line.startswith("measured"))
    recorded = next(line for line in evaluate.stdout.splitlines() if line.startswith("recorded"))
    assert measured.split()[1:] == recorded.split()[1:]
    # the results command puts it in a second table for the dataset, after the per-user one
    per_user = tmp_path / "checkpoints" / "bpr-tiny"
    per_user.mkdir()
    (per_user / "config.json").write_text(
        json.dumps(
            {
                **config.to_json(),
                "dataset": {**config.dataset.to_json(), "split": {"valid_fraction": 0.1, "test_fraction": 0.2}},
            }
        )
    )
    (per_user / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    table = results_markdown(tmp_path / "checkpoints")
    assert table.index("**tiny** (test part)") < table.index("**tiny** (test part, global time split)")
    assert table.count("BPR-MF") == 2
    # a split mode the library does not know is refused in one sentence
    bad = json.loads((out / "config.json").read_text())
    bad["dataset"]["split"]["mode"] = "random"
    (out / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="dataset.split.mode"):
        read_config(out)


def test_readme_global_split_figures_on_ml100k(ml100k_global):
    from recmodels.data import TEST

    assert ml100k_global.users_without_train() == 269
    tested = np.unique(ml100k_global.dataset.interactions["user"].to_numpy()[ml100k_global.part == TEST])
    assert len(tested) == 301
    assert len(ml100k_global.topk_cases(TEST)) == 87


def test_readme_global_split_figures_on_fashion():
    from recmodels.data import TEST, SplitConfig

    data = RecData.load("fashion", split=SplitConfig(0.1, 0.2, mode="global"))
    tested = np.unique(data.dataset.interactions["user"].to_numpy()[data.part == TEST])
    assert (len(tested), len(data.topk_cases(TEST))) == (161, 67)


def test_readme_acf_epochs_on_each_split():
    # docs/results.md: ACF stopped after 8 epochs on the global split's small valid part, against 24 per user
    epochs = {
        name: read_config(REPO / "checkpoints" / name).history[-1]["epoch"]
        for name in ("acf-ml100k", "acf-ml100k-global")
    }
    assert epochs == {"acf-ml100k": 24, "acf-ml100k-global": 8}
