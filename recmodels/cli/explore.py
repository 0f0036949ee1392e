"""``recmodels explore``: serve the explorer (the Streamlit app) in a browser, as ``tensorboard --logdir`` or
``mlflow ui`` do, on every checkpoint under ``--checkpoint-root`` (the current folder's ``checkpoints/`` by
default). It listens on 127.0.0.1 unless ``--address`` says otherwise (``--address 0.0.0.0`` exposes it on purpose),
with the same safe settings as ``make app``."""

from __future__ import annotations

import argparse

from recmodels.cli.arguments import int_argument

HELP = "serve the explorer in a browser on the checkpoints under --checkpoint-root (./checkpoints by default)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--checkpoint-root",
        action="append",
        type=checkpoint_root,
        metavar="DIR",
        help="a folder of checkpoint folders (and training runs) to open; repeatable (default: ./checkpoints)",
    )
    parser.add_argument("--port", type=int_argument(1, 65535, what="a port number"), default=8501)
    parser.add_argument(
        "--address", default="127.0.0.1", help="the address to listen on (0.0.0.0 exposes it to other machines)"
    )
    parser.add_argument(
        "streamlit_flags", nargs="*", metavar="-- STREAMLIT FLAGS", help="more Streamlit flags after a --"
    )
    return parser


def checkpoint_root(text: str) -> str:
    """An argparse type: a folder name taken literally; empty (the current folder, silently), spaces around it, or
    the list separator are refused in one sentence (:func:`recmodels.settings.path_entry`)."""
    from recmodels.errors import InvalidArgumentError
    from recmodels.settings import path_entry

    try:
        path_entry(text, "the folder is")
    except InvalidArgumentError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def run(args: argparse.Namespace) -> int:
    from recmodels_explorer.serve import main as serve  # the app layer: Streamlit loads only for this command

    roots = [f"--checkpoint-root={root}" for root in args.checkpoint_root or []]
    return serve([*roots, "--server.port", str(args.port), "--server.address", args.address, *args.streamlit_flags])
