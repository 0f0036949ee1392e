"""Serving the explorer: `recmodels explore [--checkpoint-root DIR]... [--port N]` (what `make app` runs) calls
:func:`main` here, as does `python -m recmodels_explorer.serve [--checkpoint-root DIR]... [streamlit flags]`: load the
heavy parts once, then serve the app.

Streamlit runs a page only when a browser connects, so with a bare `streamlit run` the first visitor waits
while torch, Captum and the default checkpoint load. Here they load before the server listens, into the same
process and the same `st.cache_resource` cache the pages use.

The safe settings are passed as flags, so they hold from whichever folder this is started: it listens on
127.0.0.1 unless `--server.address` says otherwise (`--server.address 0.0.0.0` exposes it on purpose).
`--checkpoint-root DIR` (repeatable) names a folder the app may open checkpoints from; without one, and without
$RECMODELS_CHECKPOINT_ROOTS, it is the current folder's checkpoints/.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from recmodels import settings  # reads no torch, so --help stays light

ENTRY = Path(__file__).resolve().with_name("explorer.py")
SAFE_FLAGS = {
    "--server.address": "127.0.0.1",
    "--server.headless": "true",
    "--browser.gatherUsageStats": "false",
    "--client.showErrorDetails": "none",
    "--client.toolbarMode": "viewer",
}


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(checkpoint roots, streamlit flags)``: ``--checkpoint-root DIR`` / ``--checkpoint-root=DIR`` taken out."""
    roots, rest = [], []
    items = iter(argv)
    for arg in items:
        if arg == "--checkpoint-root":
            value = next(items, None)
            if value is None:
                raise SystemExit("--checkpoint-root needs a folder: recmodels explore --checkpoint-root DIR")
            roots.append(value)
        elif arg.startswith("--checkpoint-root="):
            roots.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return roots, rest


def with_safe_flags(flags: list[str]) -> list[str]:
    """The flags given, plus each safe setting the caller did not choose."""
    given = {flag.split("=", 1)[0] for flag in flags if flag.startswith("--")}
    added = [part for flag, value in SAFE_FLAGS.items() if flag not in given for part in (flag, value)]
    return [*added, *flags]  # before a `--` that starts the script's own arguments


def add_checkpoint_roots(roots: list[str]) -> None:
    """Pass the roots down to the pages through the environment (the pages run in this process). An empty root
    (``--checkpoint-root ""``, or an empty entry of $RECMODELS_CHECKPOINT_ROOTS) is refused: it would add the current
    folder."""
    from recmodels.errors import InvalidArgumentError

    folders = []
    try:
        configured = settings.paths(settings.CHECKPOINT_ROOTS)
        for root in roots:
            folder = settings.path_entry(root, "--checkpoint-root is").resolve()
            if not folder.is_dir():
                raise SystemExit(
                    f"--checkpoint-root {root}: not a folder; pass a folder that holds checkpoint folders."
                )
            folders.append(str(folder))
    except InvalidArgumentError as err:
        raise SystemExit(str(err)) from None
    if not folders and not configured and not (Path.cwd() / "checkpoints").is_dir():
        raise SystemExit(
            f"There is no checkpoints/ folder in {Path.cwd()}; pass --checkpoint-root DIR, a folder that "
            "holds checkpoint folders."
        )
    settings.add_paths(settings.CHECKPOINT_ROOTS, folders)


def warm() -> None:
    import captum.attr  # noqa: F401 - imported for its load time
    import plotly.express  # noqa: F401
    import pyarrow  # noqa: F401 - what Streamlit serialises tables with

    # the caches work outside a script run; Streamlit only warns that there is no session or runtime yet.
    # Its modules set their loggers' levels when first imported, so import them before quieting them.
    import streamlit.runtime.caching.cache_data_api
    import streamlit.runtime.scriptrunner_utils.script_run_context  # noqa: F401

    loggers = [
        logging.getLogger(name)
        for name in (
            "streamlit.runtime.scriptrunner_utils.script_run_context",
            "streamlit.runtime.caching.cache_data_api",
        )
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        from recmodels_explorer.services import open_service, shipped_checkpoints

        entries = shipped_checkpoints()
        if entries:
            _, error = open_service(entries[0].path)
            if error:
                print(f"warm-up skipped: {error}", file=sys.stderr)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    roots, flags = split_arguments(sys.argv[1:] if argv is None else argv)
    add_checkpoint_roots(roots)
    print("loading torch, Captum and the default checkpoint…", file=sys.stderr, flush=True)
    warm()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ENTRY), *with_safe_flags(flags)]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
