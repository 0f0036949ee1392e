"""``python -m recmodels recovery CHECKPOINT...``: planted-cell recovery of region-attention checkpoints (fashion),
printed, and optionally recorded in each config.json and written into a docs page (docs/images.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "planted-cell recovery of region-attention checkpoints (fashion)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--record", action="store_true", help="write the figures into each config.json")
    parser.add_argument(
        "--write-docs", metavar="PAGE", help="write the tables between the recovery markers of PAGE (docs/images.md)"
    )
    parser.add_argument(
        "--part",
        choices=["test", "valid"],
        default="test",
        help="the interactions measured: test (recorded and documented), or valid (for choosing settings; printed "
        "only, so neither --record nor --write-docs)",
    )
    parser.add_argument("--ig-rows", type=int, default=256, help="seeded rows for the IG and deletion figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.io import record_in_config
    from recmodels.errors import InvalidArgumentError
    from recmodels.explain.region_report import recovery_tables
    from recmodels.formatting import write_between_markers
    from recmodels.serving.service import RecService

    if args.part != "test" and (args.record or args.write_docs):
        raise InvalidArgumentError(
            "--record and --write-docs keep the test part's figures; leave out --part valid to write them."
        )
    reports = {}
    for path in args.checkpoints:
        reports[Path(path).name] = RecService.from_checkpoint(path, device=args.device).planted_region_recovery(
            ig_rows=args.ig_rows, progress=not args.quiet, part=args.part
        )
        if args.record:
            record_in_config(path, "recovery", reports[Path(path).name])
    text, markdown = recovery_tables(reports)
    print(text)
    if args.write_docs:
        markdown += f"\n\nProduced by `python -m recmodels recovery {' '.join(args.checkpoints)}`."
        write_between_markers(Path(args.write_docs), "<!-- recovery:start -->", "<!-- recovery:end -->", markdown)
        print(f"wrote the tables into {args.write_docs}")
    return 0
