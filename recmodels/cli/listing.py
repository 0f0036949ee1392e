"""``python -m recmodels list [ROOT]``: the checkpoints in a folder, with their model, dataset and test NDCG@10."""

from __future__ import annotations

import argparse
from pathlib import Path

from recmodels.errors import RecModelsError

HELP = "list the checkpoints in a folder"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("root", nargs="?", default="checkpoints")
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.io import read_config

    folders = (
        sorted(p for p in Path(args.root).iterdir() if (p / "config.json").is_file())
        if Path(args.root).is_dir()
        else []
    )
    if not folders:
        print(f"no checkpoints under {args.root}; train one with `python -m recmodels train --model bpr`")
        return 0
    for folder in folders:
        try:
            config = read_config(folder)
        except RecModelsError as err:
            print(f"{folder}: unreadable ({err})")
            continue
        test = config.part_metrics("test")
        print(
            f"{folder}: {config.model} on {config.dataset.name}, test NDCG@10 {test.get('ndcg@10', float('nan')):.4f}"
        )
    return 0
