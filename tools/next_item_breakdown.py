"""Next-item NDCG@10 of shipped checkpoints, split by history length and by whether the target keeps a genre of the
item just before it.

    python tools/next_item_breakdown.py checkpoints/*-ml100k-next --write-docs docs/sequential.md

Every checkpoint must be on the next-item split (``--protocol next-item``), so that each evaluated user has one
target and one history. Two splits of the users: by how many train interactions they have (the buckets of
``LENGTHS``), and by whether the test target shares at least one genre with the last item of its history (the one
a sequence model attends to most, when the order matters). A model that reads the order should gain most where the
genre is kept; a model of the whole profile (EASE, BPR-MF) should gain with history length. Prints a markdown table;
``--write-docs PAGE`` puts it between that page's next-item-breakdown markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import PAD, TEST, TRAIN, RecData
from recmodels.eval.evaluate import topk_per_user
from recmodels.formatting import write_between_markers
from recmodels.models import model_info

START, END = "<!-- next-item-breakdown:start -->", "<!-- next-item-breakdown:end -->"
LENGTHS = (0, 50, 100, 200)  # bucket lower bounds, in train interactions


def user_facts(data: RecData, users: np.ndarray) -> dict[str, np.ndarray]:
    """Per evaluated user: train interactions, and whether the test target shares a genre with the history's last
    item (False where the history is empty)."""
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
    return {"train": train_counts[users], "kept": kept}


def breakdown(paths: list[Path]) -> tuple[list[dict], dict]:
    rows, cache, groups = [], {}, {}
    for path in paths:
        config = read_config(path)
        dataset = config.dataset
        if dataset.split_mode != "next_item":
            raise SystemExit(f"{path} is on the {dataset.split_mode} split; this table is for next-item checkpoints")
        key = (dataset.name, str(dataset_location(config, path)), dataset.max_history)
        if key not in cache:
            data_dir, image_dir = dataset_location(config, path)
            cache[key] = RecData.load(
                dataset.name, data_dir, image_dir=image_dir, split=dataset.split, max_history=dataset.max_history
            )
        data = cache[key]
        model, _ = load_checkpoint(path, data=data)
        users, values = topk_per_user(model, data, TEST)
        facts = user_facts(data, users)
        ndcg = values["ndcg@10"]
        bucket = np.searchsorted(LENGTHS, facts["train"], side="right") - 1
        groups = {
            **{f"length{b}": bucket == b for b in range(len(LENGTHS))},
            "kept": facts["kept"],
            "changed": ~facts["kept"],
        }
        rows.append(
            {
                "model": model_info(config.model).title,
                "checkpoint": path.name,
                "all": float(ndcg.mean()),
                **{name: float(ndcg[mask].mean()) if mask.any() else float("nan") for name, mask in groups.items()},
            }
        )
    return rows, {name: int(mask.sum()) for name, mask in groups.items()}


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
    ]
    keys = ["all", *(f"length{b}" for b in range(len(LENGTHS))), "kept", "changed"]
    lines = ["| " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(keys)]
    for r in rows:
        lines.append(f"| {r['model']} | `{r['checkpoint']}` | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="replace the text between the next-item-breakdown markers of PAGE (docs/sequential.md)",
    )
    args = parser.parse_args(argv)
    rows, sizes = breakdown([Path(p) for p in args.checkpoints])
    rows.sort(key=lambda r: -r["all"])
    table = markdown(rows, sizes)
    print(table)
    if args.write_docs:
        write_between_markers(Path(args.write_docs), START, END, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
