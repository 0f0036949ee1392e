"""NDCG@10 of shipped checkpoints split by how many train interactions each evaluated user has.

    python tools/history_length_breakdown.py checkpoints/nrms-ml100k checkpoints/sasrec-ml100k [--part test]

The models see at most ``max_history`` (50) of a user's latest interactions, while a learned user embedding has
seen every train interaction; splitting users at that window shows where a sequence model's ranking falls behind.
Prints a markdown table; ``--write-docs docs/sequential.md`` puts it between that page's history-breakdown markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import TEST, TRAIN, VALID
from recmodels.data.cache import load_data_cached
from recmodels.eval.evaluate import topk_per_user
from recmodels.formatting import write_between_markers
from recmodels.models import model_info

START, END = "<!-- history-breakdown:start -->", "<!-- history-breakdown:end -->"


def breakdown(paths: list[Path], part: int = TEST) -> list[dict]:
    rows = []
    for path in paths:
        config = read_config(path)
        dataset = config.dataset
        data = load_data_cached(dataset.name, *dataset_location(config, path), dataset.split, dataset.max_history)
        model, _ = load_checkpoint(path, data=data)
        users, values = topk_per_user(model, data, part)
        train_counts = np.bincount(
            data.dataset.interactions["user"].to_numpy()[data.part == TRAIN], minlength=data.dataset.n_users + 1
        )[users]
        long = train_counts > data.max_history
        ndcg = values["ndcg@10"]
        rows.append(
            {
                "model": model_info(config.model).title,
                "checkpoint": path.name,
                "all": ndcg.mean(),
                "short": ndcg[~long].mean(),
                "long": ndcg[long].mean(),
                "n_short": int((~long).sum()),
                "n_long": int(long.sum()),
                "window": data.max_history,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    window, n_short, n_long = rows[0]["window"], rows[0]["n_short"], rows[0]["n_long"]
    lines = [
        f"| model | checkpoint | NDCG@10, all users | <= {window} train interactions ({n_short} users) | "
        f"> {window} ({n_long} users) |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | `{r['checkpoint']}` | {r['all']:.4f} | {r['short']:.4f} | {r['long']:.4f} |" for r in rows
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--part", choices=["test", "valid"], default="test")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="replace the text between the history-breakdown markers of PAGE (docs/sequential.md)",
    )
    args = parser.parse_args(argv)
    table = markdown(breakdown([Path(p) for p in args.checkpoints], TEST if args.part == "test" else VALID))
    print(table)
    if args.write_docs:
        write_between_markers(Path(args.write_docs), START, END, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
