"""``python -m recmodels bench``: latency per model, operation, scale and device as a table
(:mod:`recmodels.bench.latency`), or with ``--concurrency`` concurrent clients of one service
(:mod:`recmodels.bench.concurrency`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from recmodels.cli.arguments import add_model_module, float_argument, import_model_modules, int_argument
from recmodels.errors import InvalidArgumentError

HELP = "print latency tables per model, scale and device"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoints", nargs="*", help="checkpoint folders (default: the ml-100k ones)")
    parser.add_argument("--device", default="all", help="all (CPU, and CUDA when present), cpu or cuda")
    parser.add_argument(
        "--repeats", type=int_argument(1, 10_000), default=20, help="timed calls per figure (1 to 10000)"
    )
    parser.add_argument(
        "--pipelines",
        nargs="*",
        metavar="DIR",
        help="pipeline folders to time (default: the ml-100k ones, unless --checkpoints names checkpoints)",
    )
    parser.add_argument(
        "--shortlist",
        metavar="N,N,...",
        default=None,
        help="time every pipeline at these shortlist sizes instead of its own N (each at most the catalogue)",
    )
    parser.add_argument(
        "--write-docs",
        metavar="FILE",
        help="also write the pipeline table between the bench-pipelines markers of FILE (docs/benchmarks.md)",
    )
    parser.add_argument("--scales", default="ml-100k,ml-1m")
    parser.add_argument("--no-naive", action="store_true", help="skip the one-candidate-at-a-time loop")
    parser.add_argument("--concurrency", metavar="N,N,...", help="instead: N concurrent clients of one service each")
    parser.add_argument(
        "--seconds",
        type=float_argument(0.1, 3600, "a number of seconds"),
        default=10.0,
        help="with --concurrency: seconds per client count (0.1 to 3600)",
    )
    parser.add_argument(
        "--workers", type=int_argument(1, 256), default=None, help="with --concurrency: requests computing at once"
    )
    parser.add_argument(
        "--torch-threads", type=int_argument(1, 1024), default=None, help="with --concurrency: intra-op threads"
    )
    add_model_module(parser, "the module (or .py file) of a plugin model a checkpoint names")
    return parser


def default_checkpoints() -> list[Path]:
    """The ml-100k checkpoints under ./checkpoints, the folder a clone ships."""
    from recmodels.checkpoint.io import read_config

    folder = Path("checkpoints")
    if not folder.is_dir():
        raise InvalidArgumentError(
            f"there is no checkpoints folder in {Path.cwd()} to benchmark; run from the repository's folder or "
            "pass --checkpoints FOLDER ..."
        )
    from recmodels.checkpoint.folders import model_checkpoint_folders

    return [p for p in model_checkpoint_folders(folder) if read_config(p).dataset.name == "ml-100k"]


def default_pipelines() -> list[Path]:
    """The ml-100k pipelines under ./checkpoints."""
    from recmodels.checkpoint.folders import pipeline_folders
    from recmodels.checkpoint.pipeline import read_pipeline

    folder = Path("checkpoints")
    return [p for p in pipeline_folders(folder) if read_pipeline(p).ranker_config.dataset.name == "ml-100k"]


def run(args: argparse.Namespace) -> int:
    """The latency table, or with ``--concurrency`` the concurrent-clients one."""
    import torch

    from recmodels.bench.latency import parse_scales, run_bench
    from recmodels.device import resolve_device
    from recmodels.formatting import text_table

    import_model_modules(args)

    scales = parse_scales(args.scales)  # before any checkpoint loads: a typo costs nothing
    sizes = shortlist_sizes(args.shortlist)
    # "all" is the CPU and, when present, CUDA; anything else must name a device this machine has
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" else [args.device]
    devices = [str(resolve_device(device)) for device in devices]
    counts = None
    if args.concurrency is not None:  # "" is a bad list of client counts, not "no --concurrency"
        from recmodels.bench.concurrency import client_counts

        counts = client_counts(args.concurrency)
    paths = [Path(p) for p in args.checkpoints] if args.checkpoints is not None else default_checkpoints()
    pipelines = (
        [Path(p) for p in args.pipelines]
        if args.pipelines is not None
        else ([] if args.checkpoints is not None else default_pipelines())
    )
    if not paths and not pipelines:
        raise SystemExit("no checkpoints to benchmark; train some or pass --checkpoints")
    if counts is not None:
        from recmodels.bench.concurrency import run_concurrency
        from recmodels.serving.concurrency import set_policy

        set_policy(args.workers, args.torch_threads)
        rows = [row for path in paths[:1] for row in run_concurrency(path, counts, args.seconds, devices[0])]
        print(
            "\n"
            + text_table(
                rows,
                ["checkpoint", "clients", "requests", "p50_ms", "p95_ms", "throughput", "workers", "torch_threads"],
            )
        )
        return 0
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA device")
    )
    rows = run_bench(paths, devices, repeats=args.repeats, scales=scales, naive=not args.no_naive)
    if rows:
        print_model_table(rows)
    if pipelines:
        from recmodels.bench.pipeline import PIPELINE_COLUMNS, PIPELINE_HEADERS, run_pipeline_bench

        staged = run_pipeline_bench(pipelines, devices, args.repeats, scales, sizes)
        print("\n" + text_table(staged, PIPELINE_COLUMNS, PIPELINE_HEADERS))
        if args.write_docs:
            write_pipeline_table(Path(args.write_docs), staged, args)
        print(
            "\nrecommend: the retriever over the whole catalogue, the ranker over its top N; explain: every "
            "attention map and IG (50 steps) of one pair in each stage"
        )
    print(
        "\ntargets on a 2-core CPU: recommend <= 20 ms/user at ml-1m scale, <= 50 ms/user at ml-20m scale (a "
        "pipeline too); maps <= 20 ms (1 pair), <= 2x recommend (catalogue); IG top-10 (n_steps=50) <= 500 ms (<= 1 s "
        "at ml-20m scale), |delta| <= 1% of the score range; head importance <= 50 ms; explaining both stages of a "
        "pipeline <= 2x explaining its ranker"
    )
    return 0


BENCH_PIPELINES = ("<!-- bench-pipelines:start -->", "<!-- bench-pipelines:end -->")


def shortlist_sizes(text: str | None) -> list[int] | None:
    """``--shortlist``: whole numbers from 1 to 10,000,000, comma-separated; None keeps each pipeline's own N."""
    from recmodels.cli.arguments import whole_numbers

    if text is None:
        return None
    sizes = whole_numbers(text, "--shortlist", 10_000_000, "shortlist sizes")
    if not sizes:
        raise InvalidArgumentError(
            f"--shortlist takes shortlist sizes from 1 to 10,000,000 separated by commas, got {text!r}."
        )
    return sizes


def write_pipeline_table(path: Path, rows: list[dict], args: argparse.Namespace) -> None:
    """The pipeline rows as a markdown table, with the command and machine under it, between the markers."""
    import platform

    import torch

    from recmodels.bench.pipeline import PIPELINE_COLUMNS, PIPELINE_HEADERS
    from recmodels.formatting import markdown_table, write_between_markers

    shown = [
        {
            **{key: f"{value:.1f}" if key.endswith("_ms") else value for key, value in row.items()},
            "explain_ratio": f"x{row['explain_ratio']:.2f}",
        }
        for row in rows
    ]
    command = "python -m recmodels bench --checkpoints --pipelines " + " ".join(str(p) for p in (args.pipelines or []))
    command += f" --scales {args.scales} --repeats {args.repeats}"
    command += f" --shortlist {args.shortlist}" if args.shortlist else ""
    note = (
        f"`{command} --write-docs {path.as_posix()}` on {platform.machine()} with {torch.get_num_threads()} torch "
        f"threads, {'CUDA' if torch.cuda.is_available() else 'no CUDA device'}; median of {args.repeats} calls "
        f"(recommend, and the two explanations, taken in turn), of {max(1, args.repeats // 4)} (the ranker alone over "
        "the whole catalogue, IG top-10), in ms."
    )
    write_between_markers(
        path, *BENCH_PIPELINES, markdown_table(shown, PIPELINE_COLUMNS, PIPELINE_HEADERS) + "\n\n" + note
    )
    print(f"wrote the pipeline table into {path}")


def print_model_table(rows: list[dict]) -> None:
    from recmodels.bench.latency import NAIVE_CANDIDATES, extrapolated, shown
    from recmodels.formatting import text_table

    print(
        "\n"
        + text_table(
            [shown(row) for row in rows],
            [
                "checkpoint",
                "scale",
                "device",
                "items",
                "recommend_ms",
                "naive_ms",
                "speedup",
                "maps_ms",
                "catalogue_maps_ms",
                "heads_ms",
                "ig_top10_ms",
                "max_delta_share",
            ],
            [
                "checkpoint",
                "scale",
                "device",
                "items",
                "recommend ms/user",
                "naive ms/user",
                "speed-up",
                "maps ms (1 pair)",
                "maps ms (catalogue)",
                "head importance ms (1 pair)",
                "IG top-10 ms",
                "max |delta|/range",
            ],
        )
    )
    if any(extrapolated(row) for row in rows if "naive_ms" in row):
        print(f"\n* naive: the first {NAIVE_CANDIDATES:,} candidates timed one at a time, scaled to the catalogue")
