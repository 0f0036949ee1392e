"""The ``python -m recmodels`` command line: one module per command, each with ``HELP``, ``add_arguments(parser)``
and ``run(args)``; a command's heavy imports happen inside its ``run``, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import sys

from recmodels.cli import (
    bench,
    diagnostics,
    evaluate,
    explore,
    import_recbole,
    listing,
    pipeline,
    recovery,
    results,
    synth,
    train,
)
from recmodels.errors import RecModelsError

# in the order ``--help`` lists them
COMMANDS = {
    "explore": explore,
    "train": train,
    "evaluate": evaluate,
    "pipeline": pipeline,
    "bench": bench,
    "synth": synth,
    "results": results,
    "recovery": recovery,
    "diagnostics": diagnostics,
    "import-recbole": import_recbole,
    "list": listing,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recmodels",
        description="Train attention-based recommenders, measure them, explain their scores and explore them in a "
        "browser (also python -m recmodels).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.HELP)).set_defaults(func=command.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (RecModelsError, ValueError) as err:  # every error a user can cause: one line, no traceback
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The message on one line (a quoted value or a wrapped library message may carry newlines)."""
    return " ".join(str(err).split()) or err.__class__.__name__
