"""``python -m recmodels pipeline --retriever DIR --ranker DIR --shortlist N --out DIR``: write a pipeline checkpoint,
a folder with only ``config.json`` naming a retriever checkpoint, a ranker checkpoint and the shortlist size (see
:mod:`recmodels.checkpoint.pipeline`); ``RecService.from_checkpoint`` and the app open it like any checkpoint.

Unless ``--no-evaluate``, the pipeline is then measured on valid and test
(:func:`recmodels.eval.shortlist.evaluate_pipeline`: full ranking over unseen items, and the share of the ranker's own
top 10 the shortlist kept) at its N and at each ``--sweep`` size, and the figures are recorded in its ``config.json``
(``results`` and ``evaluate`` read them)."""

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
        "--sweep",
        metavar="N,N,...",
        default="",
        help="also measure these shortlist sizes (e.g. 100,200,500,1000) and record them beside N",
    )
    parser.add_argument("--no-evaluate", action="store_true", help="write the file without measuring the pipeline")
    parser.add_argument("--device", default="auto", help="where to measure it: auto, cpu or cuda")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="a new or empty folder (or an existing pipeline, rewritten)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.io import read_config
    from recmodels.checkpoint.pipeline import is_pipeline, write_pipeline
    from recmodels.cli.output import check_output_folder
    from recmodels.errors import InvalidArgumentError, quote

    folder = check_output_folder(args.out, "--out")
    if folder.is_dir() and any(folder.iterdir()) and not is_pipeline(folder):
        raise InvalidArgumentError(
            f"--out {quote(str(folder), 200)} is a folder that holds other files and is not a pipeline; pass a new "
            "or empty folder, so that nothing in it is overwritten."
        )
    if args.sweep.strip():  # refused before anything is written
        sweep_sizes(args.sweep, 1, int(read_config(args.ranker).spec["n_items"]))
    pipeline = write_pipeline(folder, args.retriever, args.ranker, args.shortlist)  # every stage checked first
    sizes = sweep_sizes(args.sweep, pipeline.shortlist, pipeline.n_items)
    if not args.no_evaluate:
        metrics = measure(folder, sizes, args.device)
        pipeline = write_pipeline(folder, args.retriever, args.ranker, args.shortlist, metrics)
        print(sweep_table(pipeline))
    print(
        f"wrote {folder / 'config.json'}: {pipeline.retriever_config.model} ({pipeline.retriever}) shortlists "
        f"{pipeline.shortlist:,} of {pipeline.n_items:,} items, {pipeline.ranker_config.model} ({pipeline.ranker}) "
        f"ranks them; open it like a checkpoint, e.g. RecService.from_checkpoint({str(folder)!r})"
    )
    return 0


def sweep_sizes(text: str, shortlist: int, n_items: int) -> list[int]:
    """The pipeline's own N and the ``--sweep`` sizes, each a whole number from 1 to the catalogue."""
    from recmodels.cli.arguments import whole_numbers

    return sorted({shortlist, *whole_numbers(text, "--sweep", n_items, "shortlist sizes (the catalogue's at most)")})


def measure(folder, sizes: list[int], device: str) -> dict[int, dict]:
    """{N: {"valid": metrics, "test": metrics}} of the pipeline in ``folder`` (both stages on its data)."""
    from recmodels.data import PART_NAMES
    from recmodels.eval.shortlist import evaluate_pipeline
    from recmodels.serving.pipeline import PipelineService

    service = PipelineService.open(folder, device=device)
    metrics: dict[int, dict] = {size: {} for size in sizes}
    for part in ("valid", "test"):
        print(f"measuring the pipeline on {part} at N = {', '.join(map(str, sizes))}", flush=True)
        measured = evaluate_pipeline(service.retriever.model, service.model, service.data, sizes, PART_NAMES[part],
                                     progress=True)  # fmt: skip
        for size, values in measured.items():
            metrics[size][part] = values
    return metrics


def sweep_table(pipeline) -> str:
    """The recorded test metrics per shortlist size, as a text table."""
    from recmodels.eval.shortlist import SHORTLIST_RECALL
    from recmodels.formatting import text_table

    rows = [{"N": size, **pipeline.part_metrics("test", size)} for size in sorted(pipeline.metrics)]
    columns = ["N", "ndcg@10", "recall@20", "hr@10", "mrr@10", SHORTLIST_RECALL]
    return text_table(rows, columns)
