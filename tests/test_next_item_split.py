"""The next-item protocol (--protocol next-item): leave one out, each user's last interaction is test and the one
before it valid, every interaction a positive whatever its rating, ranked against every unseen item."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_dataset
from hypothesis import given
from hypothesis import strategies as st
from test_train_and_checkpoint import write_atomic

from recmodels.checkpoint.io import read_config
from recmodels.checkpoint.schema import check_dataset
from recmodels.cli.parser import main as cli_main
from recmodels.cli.results import results_markdown
from recmodels.data import PAD, TEST, TRAIN, VALID, RecData, SplitConfig
from recmodels.data.schema import build_interaction_data
from recmodels.errors import DataFormatError, InvalidArgumentError

NEXT = SplitConfig(mode="next_item")
REPO = Path(__file__).resolve().parents[1]


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _hand_data() -> RecData:
    # u1: five interactions, the last two in one second; u2: three; u3: two; u4: one (the last two stay in train)
    rows = [("u1", f"i{k}", float(1 + k % 5), 100 + min(k, 3)) for k in range(5)]
    rows += [("u2", "i7", 1.0, 50), ("u2", "i8", 2.0, 60), ("u2", "i9", 1.0, 70)]
    rows += [("u3", "i1", 5.0, 10), ("u3", "i2", 5.0, 20), ("u4", "i3", 5.0, 5)]
    return RecData(build_interaction_data("hand", _frame(rows), None, None), NEXT, max_history=8)


def test_each_users_last_interaction_is_test_and_the_one_before_it_valid():
    data = _hand_data()
    frame = data.dataset.interactions
    by_user = {
        data.dataset.user_ids[u]: data.part[frame["user"].to_numpy() == u].tolist() for u in np.unique(frame["user"])
    }
    assert by_user == {
        "u1": [TRAIN, TRAIN, TRAIN, VALID, TEST],
        "u2": [TRAIN, VALID, TEST],
        "u3": [TRAIN, TRAIN],  # fewer than 3 interactions: trained on, never evaluated
        "u4": [TRAIN],
    }
    ml = RecData(make_tiny_dataset(), NEXT, max_history=12)
    assert np.bincount(ml.part, minlength=3).tolist()[1:] == [30, 30]  # one valid and one test per user


def test_the_target_is_the_next_item_whatever_its_rating_and_its_history_is_everything_strictly_before_it():
    data = _hand_data()
    item = {name: index for index, name in enumerate(data.dataset.item_ids)}
    for part in (VALID, TEST):
        cases = data.topk_cases(part)
        names = [data.dataset.user_ids[u] for u in cases.users]
        assert names == ["u1", "u2"]  # u3 and u4 have no valid or test interaction
        assert np.diff(cases.positive_indptr).tolist() == [1, 1]  # one target each, ratings 1 and 2 included
    test = data.topk_cases(TEST)
    assert test.positive_items.tolist() == [item["i4"], item["i9"]]
    # u1's valid i3 shares its second with the test i4: strictly earlier leaves it out of the history, and the
    # seen set (train and valid) keeps it out of the ranking
    histories = [[i for i in row if i != PAD] for row in test.history]
    assert histories == [[item["i0"], item["i1"], item["i2"]], [item["i7"], item["i8"]]]
    assert sorted(test.seen_items[test.seen_indptr[0] : test.seen_indptr[1]].tolist()) == sorted(
        item[f"i{k}"] for k in range(4)
    )
    valid = data.topk_cases(VALID)
    # the valid targets i3 and i8: u1's i3 has the same past as its test item, u2's i8 only i7
    assert [[i for i in row if i != PAD] for row in valid.history] == [histories[0], [item["i7"]]]


@pytest.mark.slow
def test_on_ml100k_no_history_reaches_its_target_or_later(ml100k_next):
    data = ml100k_next
    frame = data.dataset.interactions
    times = frame["timestamp"].to_numpy()
    users = frame["user"].to_numpy()
    cases = data.topk_cases(TEST)
    assert len(cases) == data.dataset.n_users  # every ml-100k user has at least 20 ratings
    test_rows = np.flatnonzero(data.part == TEST)
    assert np.array_equal(users[test_rows], cases.users)
    for user, row, history in zip(cases.users[:200], test_rows[:200], cases.history[:200]):
        mine = np.flatnonzero(users == user)
        before = frame["item"].to_numpy()[mine[times[mine] < times[row]]][-data.max_history :]
        assert [i for i in history if i != PAD] == before.tolist()


@pytest.fixture(scope="module")
def ml100k_next() -> RecData:
    return RecData.load("ml-100k", split={"mode": "next_item"})


def test_the_split_is_recorded_without_fractions_and_per_user_fingerprints_stay():
    assert NEXT.to_dict() == {"mode": "next_item"}
    assert SplitConfig(**NEXT.to_dict()) == NEXT
    assert SplitConfig().to_dict() == {"valid_fraction": 0.1, "test_fraction": 0.2}  # shipped fingerprints hash it
    assert "last interaction is test" in NEXT.describe()
    tiny = make_tiny_dataset()
    assert RecData(tiny, NEXT).fingerprint != RecData(tiny).fingerprint
    check_dataset({"name": "x", "split": {"mode": "next_item"}, "max_history": 50, "fingerprint": "f"})
    with pytest.raises(Exception, match="dataset.split"):
        check_dataset({"name": "x", "split": {"mode": "next"}, "max_history": 50, "fingerprint": "f"})


def test_data_where_no_user_has_three_interactions_is_refused_in_one_sentence():
    rows = [(f"u{u}", f"i{k}", 5.0, 10 * u + k) for u in range(4) for k in range(2)]
    data = RecData(build_interaction_data("two", _frame(rows), None, None), NEXT)
    with pytest.raises(DataFormatError, match="give users at least 3 interactions"):
        data.check_parts()


# ----------------------------------------------------------------------------------------- the train flag
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_atomic(make_tiny_dataset(n_users=12, n_items=20, per_user=16), tmp_path_factory.mktemp("tiny"))


def test_train_records_the_protocol_and_results_gives_it_its_own_table(folder, tmp_path, capsys):
    out = tmp_path / "ckpt"
    argv = ["train", "--model", "mostpop", "--dataset", "tiny", "--data-dir", str(folder), "--quiet"]
    assert cli_main([*argv, "--protocol", "next-item", "--out", str(out)]) == 0
    config = read_config(out)
    assert config.dataset.split == {"mode": "next_item"} and config.dataset.split_mode == "next_item"
    assert json.loads((out / "config.json").read_text())["metrics"]["test"]["hr@10"] >= 0
    assert cli_main([*argv, "--out", str(tmp_path / "temporal" / "mostpop")]) == 0
    (tmp_path / "temporal" / "next").symlink_to(out)
    table = results_markdown(tmp_path / "temporal")
    per_user, next_item = table.split("\n\n**")
    assert "Recall@20" in per_user and "MRR@10" not in per_user
    assert next_item.startswith("tiny** (next item") and "| HR@10 | NDCG@10 | MRR@10 |" in next_item


@given(
    protocol=st.sampled_from(["next-item", "temporal", "next_item", "NEXT-ITEM", "", "leave-one-out", "-1"]),
    split=st.sampled_from([None, "per_user", "global", "next_item"]),
    valid=st.sampled_from([None, "0.1", "0", "-1", "nan", "x"]),
)
def test_any_protocol_flag_trains_or_is_refused_in_one_sentence_before_the_data_loads(protocol, split, valid, folder):
    argv = ["train", "--model", "mostpop", "--dataset", "tiny", "--data-dir", str(folder), "--quiet"]
    argv += ["--protocol", protocol, "--out", str(folder.parent / "never-written")]
    argv += [] if split is None else ["--split", split]
    argv += [] if valid is None else ["--valid-fraction", valid]
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
        patch.setattr(RecData, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
        try:
            code = cli_main(argv)
        except SystemExit as exit_:  # argparse: an unknown choice or a value that is not a number
            code = exit_.code
        except AssertionError:  # the flags were accepted: the data would load next
            code = 0
    err = stderr.getvalue()
    accepted = protocol in ("next-item", "temporal") and split in (None, "per_user", "global")
    accepted &= (
        valid in (None, "0.1", "0") if protocol == "temporal" else (valid is None and split in (None, "per_user"))
    )
    if accepted:
        assert code == 0, err
        return
    assert code == 2 and not (folder.parent / "never-written").exists()
    lines = [line for line in err.splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(lines) == 1, err
    if protocol == "next-item" and split in (None, "per_user", "global") and valid in ("0.1", "0", "-1", "nan"):
        assert "--protocol next-item takes one interaction per user" in lines[0]


def test_the_next_item_protocol_names_every_flag_it_does_not_take():
    from recmodels.cli.parser import build_parser
    from recmodels.cli.train import split_config

    parse = build_parser().parse_args
    base = ["train", "--model", "bpr", "--protocol", "next-item"]
    assert split_config(parse(base)) == NEXT
    with pytest.raises(InvalidArgumentError) as caught:
        split_config(parse([*base, "--valid-fraction", "0.1", "--test-fraction", "0.2", "--split", "global"]))
    assert str(caught.value) == (
        "--protocol next-item takes one interaction per user for valid and for test, so it takes no --valid-fraction "
        "or --test-fraction or --split global; leave them out, or use --protocol temporal."
    )
    assert split_config(parse(["train", "--model", "bpr"])) == SplitConfig()


# ----------------------------------------------------------------------------------------- the tools
def test_recbole_benchmark_files_hold_one_target_per_user_with_the_evaluators_history(tmp_path):
    import sys

    sys.path.insert(0, str(REPO))
    from tools.recbole_compare import PROTOCOLS, RECBOLE_DATASET, markdown, write_benchmark

    data = RecData.load("ml-100k", split=PROTOCOLS["next-item"].split)
    counts = write_benchmark(tmp_path, data, 50)
    assert counts["valid"] == counts["test"] == 943
    assert counts["train"] == int((data.part == TRAIN).sum()) - 943  # every train interaction after a user's first
    lines = (tmp_path / f"{RECBOLE_DATASET}.test.inter").read_text().splitlines()[1:]
    cases = data.topk_cases(TEST)
    user, item, history = lines[0].split("\t")
    assert (user, item) == (
        data.dataset.user_ids[cases.users[0]],
        data.dataset.item_ids[cases.positive_items[0]],
    )
    assert history.split() == [data.dataset.item_ids[i] for i in cases.history[0] if i != PAD]
    table = markdown({"runs": {}}, REPO / "checkpoints", "next-item")
    assert "`checkpoints/sasrec-ml100k-next`" in table and "next-item split" in table


@pytest.mark.slow
def test_docs_next_item_breakdown_reproduces():
    import re
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    from next_item_breakdown import END, START, breakdown

    page = (REPO / "docs" / "sequential.md").read_text()
    block = page.split(START, 1)[1].split(END, 1)[0]
    recorded = {
        m.group(1): [float(x) for x in m.group(2).split(" | ")]
        for m in re.finditer(r"\| `([^`]+)` \| ([0-9.]+(?: \| [0-9.]+)+) \|", block)
    }
    assert {"sasrec-ml100k-next", "bert4rec-ml100k-next", "ease-ml100k-next"} <= set(recorded)
    rows, _ = breakdown([REPO / "checkpoints" / name for name in recorded])
    keys = ["all", "length0", "length1", "length2", "length3", "kept", "changed", "tied", "apart"]
    for row in rows:
        assert [row[k] for k in keys] == pytest.approx(recorded[row["checkpoint"]], abs=2e-3)
    intervals = {
        m.group(1): [float(x) for x in m.groups()[1:]]
        for m in re.finditer(r"\| `([^`]+)` \|.* \| ([-+][0-9.]+) \[([-+][0-9.]+), ([-+][0-9.]+)\] \|", block)
    }
    assert set(intervals) == set(recorded)
    for row in rows:
        assert list(row["minus"]) == pytest.approx(intervals[row["checkpoint"]], abs=2e-3)
