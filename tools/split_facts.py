"""What a temporal split does and does not guarantee, measured on a dataset.

    python tools/split_facts.py [--dataset ml-100k] [--data-dir DIR] [--split per_user|global|next_item]

Prints, for the 70/10/20 split (per user by default, or with one global time cut per part):
- the share of all train interactions that happen after a user's first test interaction, averaged over users
  (cross-user leakage: training sees other users' future behaviour and popularity);
- how many users have a train or valid interaction in the same second as their first test interaction (the split
  orders such ties by item id);
- with --split global, how many users have no train interaction (they are not evaluated);
- with --split next_item, how many users have their valid interaction in the same second as their test one (it is
  then not in the test history, which holds only strictly earlier interactions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recmodels.data import TEST, TRAIN, VALID, RecData, SplitConfig


def split_facts(data: RecData) -> dict:
    frame = data.dataset.interactions
    users, times, part = frame["user"].to_numpy(), frame["timestamp"].to_numpy(), data.part
    test = part == TEST
    never = np.iinfo(np.int64).max
    first_test = np.full(data.dataset.n_users + 1, never)
    np.minimum.at(first_test, users[test], times[test])
    train_times = np.sort(times[part == TRAIN])
    tested = first_test[first_test < never]
    # for each user: the share of ALL train interactions later than that user's first test interaction
    later = 1 - np.searchsorted(train_times, tested, side="right") / len(train_times)
    before = (part == TRAIN) | (part == VALID)
    tied = np.unique(users[before & (times == first_test[users])])
    facts = {
        "users with a test part": len(tested),
        "train interactions": len(train_times),
        "share of train interactions after a user's first test interaction (mean over users)": float(later.mean()),
        "users with a train or valid interaction in the same second as their first test one": len(tied),
    }
    if data.split.mode == "global":
        facts["users with no train interaction (not evaluated)"] = data.users_without_train()
    if data.split.mode == "next_item":  # their valid item is not in their test history: it is not strictly earlier
        facts["users whose valid interaction is in the same second as their test one"] = len(
            np.unique(users[(part == VALID) & (times == first_test[users])])
        )
    return facts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir")
    parser.add_argument("--split", choices=["per_user", "global", "next_item"], default="per_user")
    args = parser.parse_args(argv)
    data = RecData.load(args.dataset, args.data_dir, split=SplitConfig(mode=args.split))
    for name, value in split_facts(data).items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
