"""``python -m recmodels evaluate CHECKPOINT``: re-measure a checkpoint's metrics on its own data, beside the
recorded ones."""

from __future__ import annotations

import argparse

from recmodels.cli.arguments import add_model_module, import_model_modules

HELP = "print the metrics table of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("checkpoint")
    parser.add_argument("--part", choices=["test", "valid"], default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    add_model_module(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.pipeline import is_pipeline

    if is_pipeline(args.checkpoint):
        return run_pipeline(args)
    return run_model(args)


def run_pipeline(args: argparse.Namespace) -> int:
    """A pipeline: the pipeline's metrics at each recorded shortlist size (its own N at least), beside the recorded
    ones, with the share of the ranker's own top 10 that the shortlist kept."""
    from recmodels.data import PART_NAMES
    from recmodels.eval.shortlist import PIPELINE_METRICS, evaluate_pipeline
    from recmodels.formatting import text_table
    from recmodels.serving.pipeline import PipelineService

    import_model_modules(args)
    service = PipelineService.open(args.checkpoint, args.device, args.data_dir, args.image_dir)
    pipeline = service.pipeline
    sizes = sorted({pipeline.shortlist, *pipeline.metrics})
    part = PART_NAMES[args.part]
    measured = evaluate_pipeline(service.retriever.model, service.model, service.data, sizes, part,
                                 progress=not args.quiet)  # fmt: skip
    print(
        f"{service.title} on {service.dataset_name} ({args.part}, {len(service.data.topk_cases(part))} ranked users, "
        "full ranking over unseen items: the shortlist by the ranker, then the rest by the retriever)"
    )
    rows = []
    for size in sizes:
        rows.append({"N": size, "": "measured", **measured[size]})
        recorded = pipeline.part_metrics(args.part, size)
        if recorded:
            rows.append({"N": size, "": "recorded", **recorded})
    print(text_table(rows, ["N", "", *PIPELINE_METRICS]))
    return 0


def run_model(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
    from recmodels.data import PART_NAMES, RecData
    from recmodels.device import resolve_device
    from recmodels.eval import evaluate
    from recmodels.formatting import text_table

    import_model_modules(args)
    config = read_config(args.checkpoint)
    dataset = config.dataset
    data_dir, image_dir = dataset_location(config, args.checkpoint)
    data = RecData.load(
        dataset.name,
        args.data_dir or data_dir,
        image_dir=args.image_dir or image_dir,
        split=dataset.split,
        max_history=dataset.max_history,
    )
    model, _ = load_checkpoint(args.checkpoint, device=resolve_device(args.device), data=data)
    part = PART_NAMES[args.part]
    metrics = evaluate(model, data, part, progress=not args.quiet)
    print(
        f"{config.model} on {dataset.name} ({args.part}, {len(data.topk_cases(part))} ranked users, "
        f"full ranking over unseen items)"
    )
    if data.split.mode == "global":
        print(
            f"{data.users_without_train()} users have no train interaction before the {data.split.mode} cut and "
            "are not evaluated"
        )
    if data.dataset.citation:
        print(f"data: {data.dataset.citation}")
    recorded = config.part_metrics(args.part)
    columns = ["ndcg@10", "ndcg@20", "recall@10", "recall@20", "hr@10", "mrr@10", "auc", "gauc", "logloss"]
    rows = [{"": "measured", **metrics}]
    if recorded:
        rows.append({"": "recorded", **recorded})
    print(text_table(rows, [""] + columns))
    return 0
