"""``python -m recmodels list [ROOT]``: the checkpoints in a folder, with their model, dataset and test NDCG@10."""

from __future__ import annotations

import argparse

from recmodels.errors import RecModelsError

HELP = "list the checkpoints in a folder"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("root", nargs="?", default="checkpoints")
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.folders import checkpoint_folders
    from recmodels.checkpoint.io import read_config
    from recmodels.checkpoint.pipeline import is_pipeline, read_pipeline

    folders = checkpoint_folders(args.root)
    if not folders:
        print(f"no checkpoints under {args.root}; train one with `python -m recmodels train --model bpr`")
        return 0
    for folder in folders:
        try:
            if is_pipeline(folder):
                pipeline = read_pipeline(folder)
                config = pipeline.ranker_config
                test = pipeline.part_metrics("test")
                print(
                    f"{folder}: pipeline, {pipeline.retriever_config.model} top {pipeline.shortlist:,} ranked by "
                    f"{config.model} on {config.dataset.name}, test NDCG@10 {test.get('ndcg@10', float('nan')):.4f}"
                )
                continue
            config = read_config(folder)
        except RecModelsError as err:
            print(f"{folder}: unreadable ({err})")
            continue
        test = config.part_metrics("test")
        print(
            f"{folder}: {config.model} on {config.dataset.name}, test NDCG@10 {test.get('ndcg@10', float('nan')):.4f}"
        )
    return 0
