"""``python -m recmodels results``: the results tables, one per dataset and split, from the shipped checkpoints'
recorded test metrics; ``--write-readme FILE`` writes them between the results markers of a docs page."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the results tables, from the shipped checkpoints"
RESULTS_START = "<!-- results:start (python -m recmodels results --write-readme README.md) -->"
RESULTS_END = "<!-- results:end -->"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", default="checkpoints")
    parser.add_argument("--write-readme", metavar="FILE", help="replace the tables between the results markers in FILE")
    return parser


def results_markdown(root: Path) -> str:
    """One table per dataset and split mode (per-user first, then global) from the shipped checkpoints' recorded
    test metrics (measured when trained; tests/test_checkpoints.py re-measures them)."""
    from recmodels.checkpoint.io import read_config
    from recmodels.formatting import markdown_table
    from recmodels.models import model_info

    by_dataset: dict[tuple[str, str], list[dict]] = {}  # (dataset, split mode): rows
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        config = read_config(folder)  # checks that the model is registered
        info = model_info(config.model)
        test = config.part_metrics("test")
        if not info.predicts_probability:
            test["logloss"] = None  # scores that are not probabilities have no meaningful LogLoss
        name = info.title + (" (collapse example)" if config.collapse_example else "")
        mode = config.dataset.split_mode
        by_dataset.setdefault((config.dataset.name, mode), []).append(
            {
                "model": name,
                "checkpoint": f"`{folder.name}`",
                **test,
                "order": (info.order, bool(config.collapse_example)),
            }
        )
    blocks = []
    datasets = list(dict.fromkeys(dataset for dataset, _ in by_dataset))
    for (dataset, mode), rows in sorted(
        by_dataset.items(), key=lambda kv: (datasets.index(kv[0][0]), kv[0][1] != "per_user")
    ):
        rows.sort(key=lambda r: r["order"])
        where = "test part" if mode == "per_user" else f"test part, {mode} time split"
        blocks.append(
            f"**{dataset}** ({where})\n\n"
            + markdown_table(rows, ["model", "checkpoint", "ndcg@10", "recall@20", "hr@10", "auc", "gauc", "logloss"])
        )
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    table = results_markdown(Path(args.root))
    if not args.write_readme:
        print(table)
        return 0
    from recmodels.formatting import write_between_markers

    write_between_markers(Path(args.write_readme), RESULTS_START, RESULTS_END, table)
    print(f"wrote the results table into {args.write_readme}")
    return 0
