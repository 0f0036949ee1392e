"""``python -m recmodels synth``: write a synthetic RecBole atomic dataset shaped like MovieLens (ml-20m by default;
``--preset ml-1m`` or ``tiny``)."""

from __future__ import annotations

import argparse

from recmodels.data.synth import DEFAULT_PRESET, PRESETS, generate, shape_of

HELP = "write a synthetic RecBole atomic dataset shaped like MovieLens (ml-20m by default; --preset ml-1m or tiny)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help=f"a shape to start from (default {DEFAULT_PRESET}); counts given replace its own",
    )
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--interactions", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="a new or empty folder for the atomic files")
    parser.add_argument("--name", default="synth", help="the dataset name: <name>.inter, .item, .user")
    parser.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.cli.output import check_output_folder

    check_output_folder(args.out, "--out")  # before minutes of generating, not after
    shape = shape_of(args.preset, args.users, args.items, args.interactions)
    folder = generate(args.out, shape, seed=args.seed, name=args.name, force=args.force, progress=not args.quiet)
    print(
        f"wrote {shape.users:,} users, {shape.items:,} items and {shape.interactions:,} interactions to {folder}; "
        f"train on it with --dataset {args.name} --data-dir {folder}"
    )
    return 0
