"""``python -m recmodels pipeline --retriever DIR --ranker DIR --shortlist N --out DIR``: write a pipeline checkpoint,
a folder with only ``config.json`` naming a retriever checkpoint, a ranker checkpoint and the shortlist size (see
:mod:`recmodels.checkpoint.pipeline`); ``RecService.from_checkpoint`` and the app open it like any checkpoint."""

from __future__ import annotations

import argparse

HELP = "write a retrieve-then-rank pipeline: a retriever's top N, ordered by a ranker (no training)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--retriever", required=True, metavar="DIR", help="the checkpoint that shortlists")
    parser.add_argument("--ranker", required=True, metavar="DIR", help="the checkpoint that orders the shortlist")
    parser.add_argument(
        "--shortlist", required=True, type=int, metavar="N", help="how many items the retriever passes on"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="a new or empty folder (or an existing pipeline, rewritten)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.pipeline import is_pipeline, write_pipeline
    from recmodels.cli.output import check_output_folder
    from recmodels.errors import InvalidArgumentError, quote

    folder = check_output_folder(args.out, "--out")
    if folder.is_dir() and any(folder.iterdir()) and not is_pipeline(folder):
        raise InvalidArgumentError(
            f"--out {quote(str(folder), 200)} is a folder that holds other files and is not a pipeline; pass a new "
            "or empty folder, so that nothing in it is overwritten."
        )
    pipeline = write_pipeline(folder, args.retriever, args.ranker, args.shortlist)
    print(
        f"wrote {folder / 'config.json'}: {pipeline.retriever_config.model} ({pipeline.retriever}) shortlists "
        f"{pipeline.shortlist:,} of {pipeline.n_items:,} items, {pipeline.ranker_config.model} ({pipeline.ranker}) "
        f"ranks them; open it like a checkpoint, e.g. RecService.from_checkpoint({str(folder)!r})"
    )
    return 0
