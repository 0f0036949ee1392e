"""``python -m recmodels results``: the results tables, one per dataset and split, from the shipped checkpoints'
recorded test metrics; ``--dataset`` and ``--split`` pick some of them, and ``--write-docs FILE`` writes them between
the results markers of a page:

    python -m recmodels results --dataset ml-100k --split per_user --write-docs README.md   # the README's table
    python -m recmodels results --write-docs docs/results.md                                # every table
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the results tables, from the shipped checkpoints"
RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
SPLIT_MODES = ("per_user", "global", "next_item")  # the order of the tables
# the next-item protocol has one positive per user: its papers (SASRec, BERT4Rec) and RecBole report these
NEXT_ITEM_COLUMNS = ["model", "checkpoint", "hr@10", "ndcg@10", "mrr@10"]
COLUMNS = ["model", "checkpoint", "ndcg@10", "recall@20", "hr@10", "auc", "gauc", "logloss"]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", default="checkpoints")
    parser.add_argument(
        "--dataset", action="append", metavar="NAME", help="only this dataset's tables (repeatable; default: all)"
    )
    parser.add_argument("--split", choices=SPLIT_MODES, help="only this split's tables (default: all)")
    parser.add_argument(
        "--write-docs",
        metavar="FILE",
        help="replace the tables between the results markers in FILE (README.md or docs/results.md)",
    )
    return parser


def results_markdown(root: Path, datasets: list[str] | None = None, split: str | None = None) -> str:
    """One table per dataset and split mode (per-user, global, then next item) from the shipped checkpoints' recorded
    test metrics (measured when trained; tests/test_checkpoints.py re-measures them). ``datasets`` and ``split``
    keep only those tables; naming a dataset or split that no checkpoint has raises SystemExit."""
    from recmodels.checkpoint.folders import model_checkpoint_folders, pipeline_folders
    from recmodels.checkpoint.io import read_config
    from recmodels.eval.shortlist import SHORTLIST_RECALL
    from recmodels.formatting import markdown_table
    from recmodels.models import model_info

    by_dataset: dict[tuple[str, str], list[dict]] = {}  # (dataset, split mode): rows
    for folder in pipeline_folders(root):
        for key, row in pipeline_rows(folder):
            by_dataset.setdefault(key, []).append(row)
    for folder in model_checkpoint_folders(root):
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
    order = list(dict.fromkeys(dataset for dataset, _ in by_dataset))
    for dataset in datasets or []:
        if dataset not in order:
            raise SystemExit(f"no checkpoint under {root} is on dataset {dataset!r}; the datasets: {', '.join(order)}")
    chosen = {
        key: rows
        for key, rows in by_dataset.items()
        if (not datasets or key[0] in datasets) and (split is None or key[1] == split)
    }
    if not chosen:
        raise SystemExit(f"no checkpoint under {root} matches --dataset {datasets} --split {split}")
    blocks = []
    for (dataset, mode), rows in sorted(
        chosen.items(), key=lambda kv: (order.index(kv[0][0]), SPLIT_MODES.index(kv[0][1]))
    ):
        rows.sort(key=lambda r: r["order"])
        where = {
            "per_user": "test part",
            "next_item": "next item: each user's last interaction, ranked against every unseen item",
        }.get(mode, f"test part, {mode} time split")
        columns = list(NEXT_ITEM_COLUMNS if mode == "next_item" else COLUMNS)
        if any(SHORTLIST_RECALL in row for row in rows):  # a pipeline: what its shortlist cost
            columns.append(SHORTLIST_RECALL)
        blocks.append(f"**{dataset}** ({where})\n\n" + markdown_table(rows, columns))
    return "\n\n".join(blocks)


def pipeline_rows(folder: Path) -> list[tuple[tuple[str, str], dict]]:
    """One row per shortlist size a pipeline recorded, after every model; CTR metrics are not measured for a
    pipeline (its order is not a score of the rated rows)."""
    from recmodels.checkpoint.pipeline import read_pipeline
    from recmodels.models import model_info

    pipeline = read_pipeline(folder)
    ranker = pipeline.ranker_config
    stages = f"{model_info(pipeline.retriever_config.model).title} → {model_info(ranker.model).title}"
    key = (ranker.dataset.name, ranker.dataset.split_mode)
    return [
        (
            key,
            {
                "model": f"{stages} (top {size:,})",
                "checkpoint": f"`{folder.name}`" + ("" if size == pipeline.shortlist else " (N swept)"),
                **pipeline.part_metrics("test", size),
                "order": (10_000, size),
            },
        )
        for size in sorted(pipeline.metrics)
    ]


def run(args: argparse.Namespace) -> int:
    table = results_markdown(Path(args.root), args.dataset, args.split)
    if not args.write_docs:
        print(table)
        return 0
    from recmodels.formatting import write_between_markers

    write_between_markers(Path(args.write_docs), RESULTS_START, RESULTS_END, table)
    print(f"wrote the results tables into {args.write_docs}")
    return 0
