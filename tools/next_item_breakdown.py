"""Next-item NDCG@10 of shipped checkpoints, split by history length, by whether the target keeps a genre of the
item just before it, and by whether the valid item shares the test item's second.

    python tools/next_item_breakdown.py checkpoints/*-ml100k-next --write-docs docs/sequential.md

Every checkpoint must be on the next-item split (``--protocol next-item``), so that each evaluated user has one
target and one history. Two splits of the users: by how many train interactions they have (the buckets of
``LENGTHS``), and by whether the test target shares at least one genre with the last item of its history (the one
a sequence model attends to most, when the order matters). A model that reads the order should gain most where the
genre is kept; a model of the whole profile (EASE, BPR-MF) should gain with history length. A third split: users
whose valid item is in the same second as their test item, so that the history (strictly earlier interactions only)
misses the item just before the target. The last column is each model's NDCG@10 minus the reference's (``--against``,
EASE by default) on the same users, with a 95% paired bootstrap interval over users. Prints a markdown table;
``--write-docs PAGE`` puts it between that page's next-item-breakdown markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import PAD, TEST, TRAIN, VALID, RecData
from recmodels.data.cache import load_data_cached
from recmodels.eval.evaluate import topk_per_user
from recmodels.formatting import write_between_markers
from recmodels.models import model_info

START, END = "<!-- next-item-breakdown:start -->", "<!-- next-item-breakdown:end -->"
LENGTHS = (0, 50, 100, 200)  # bucket lower bounds, in train interactions
RESAMPLES = 2000  # bootstrap resamples of the users, seeded: the interval is the same on every run


def user_facts(data: RecData, users: np.ndarray) -> dict[str, np.ndarray]:
    """Per evaluated user: train interactions, whether the test target shares a genre with the history's last item
    (False where the history is empty), and whether the valid item is in the test item's second."""
    frame = data.dataset.interactions
    train_counts = np.bincount(frame["user"].to_numpy()[data.part == TRAIN], minlength=data.dataset.n_users + 1)
    cases = data.topk_cases(TEST)
    assert np.array_equal(cases.users, users), "the evaluated users are the test cases' users"
    targets = cases.positive_items[cases.positive_indptr[:-1]]  # one target per user under next-item
    filled = cases.history != PAD
    last = np.where(filled.any(1), cases.history[np.arange(len(users)), filled.sum(1) - 1], PAD)
    genres = data.dataset.item_features["genres"]
    kept = np.array(
        [bool(p != PAD and set(genres.loc[int(t)]) & set(genres.loc[int(p)])) for t, p in zip(targets, last)]
    )
    users_all, times = frame["user"].to_numpy(), frame["timestamp"].to_numpy()
    valid_time = np.zeros(data.dataset.n_users + 1, dtype=times.dtype)
    test_time = np.ones(data.dataset.n_users + 1, dtype=times.dtype)
    valid_time[users_all[data.part == VALID]] = times[data.part == VALID]
    test_time[users_all[data.part == TEST]] = times[data.part == TEST]
    return {"train": train_counts[users], "kept": kept, "tied": valid_time[users] == test_time[users]}


def breakdown(paths: list[Path], against: str = "ease-ml100k-next") -> tuple[list[dict], dict]:
    rows, groups, per_user = [], {}, {}
    for path in paths:
        config = read_config(path)
        dataset = config.dataset
        if dataset.split_mode != "next_item":
            raise SystemExit(f"{path} is on the {dataset.split_mode} split; this table is for next-item checkpoints")
        data = load_data_cached(dataset.name, *dataset_location(config, path), dataset.split, dataset.max_history)
        model, _ = load_checkpoint(path, data=data)
        users, values = topk_per_user(model, data, TEST)
        facts = user_facts(data, users)
        ndcg = values["ndcg@10"]
        per_user[path.name] = (users, ndcg)
        bucket = np.searchsorted(LENGTHS, facts["train"], side="right") - 1
        groups = {
            **{f"length{b}": bucket == b for b in range(len(LENGTHS))},
            "kept": facts["kept"],
            "changed": ~facts["kept"],
            "tied": facts["tied"],
            "apart": ~facts["tied"],
        }
        rows.append(
            {
                "model": model_info(config.model).title,
                "checkpoint": path.name,
                "all": float(ndcg.mean()),
                **{name: float(ndcg[mask].mean()) if mask.any() else float("nan") for name, mask in groups.items()},
            }
        )
    if against in per_user:
        ref_users, ref = per_user[against]
        picks = np.random.default_rng(0).integers(0, len(ref), size=(RESAMPLES, len(ref)))
        for row in rows:
            users, ndcg = per_user[row["checkpoint"]]
            if np.array_equal(users, ref_users):  # the same users, so the difference is paired
                means = (ndcg - ref)[picks].mean(1)
                row["minus"] = (float((ndcg - ref).mean()), *np.percentile(means, [2.5, 97.5]).tolist())
    return rows, {name: int(mask.sum()) for name, mask in groups.items()} | {"against": against}


def markdown(rows: list[dict], sizes: dict) -> str:
    bounds = [*LENGTHS[1:], None]
    length_heads = [
        f"{lo}-{hi - 1} train ({sizes[f'length{b}']} users)" if hi else f"{lo}+ train ({sizes[f'length{b}']} users)"
        for b, (lo, hi) in enumerate(zip(LENGTHS, bounds))
    ]
    heads = [
        "model",
        "checkpoint",
        "all",
        *length_heads,
        f"genre kept ({sizes['kept']} users)",
        f"genre changed ({sizes['changed']} users)",
        f"valid in the test's second ({sizes['tied']} users)",
        f"valid earlier ({sizes['apart']} users)",
    ]
    keys = ["all", *(f"length{b}" for b in range(len(LENGTHS))), "kept", "changed", "tied", "apart"]
    heads.append(f"all, minus `{sizes['against']}` [95% interval]")
    lines = ["| " + " | ".join(heads) + " |", "|---|---|" + "---:|" * (len(keys) + 1)]
    for r in rows:
        minus = "{:+.4f} [{:+.4f}, {:+.4f}]".format(*r["minus"]) if "minus" in r else ""
        cells = [f"{r[k]:.4f}" for k in keys] + [minus]
        lines.append(f"| {r['model']} | `{r['checkpoint']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="replace the text between the next-item-breakdown markers of PAGE (docs/sequential.md)",
    )
    parser.add_argument("--against", default="ease-ml100k-next", help="the checkpoint folder name to subtract")
    args = parser.parse_args(argv)
    rows, sizes = breakdown([Path(p) for p in args.checkpoints], args.against)
    rows.sort(key=lambda r: -r["all"])
    table = markdown(rows, sizes)
    print(table)
    if args.write_docs:
        write_between_markers(Path(args.write_docs), START, END, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
