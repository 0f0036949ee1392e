"""`python -m app.serve [streamlit flags]`: load the heavy parts once, then serve the explorer (what `make app` runs).

Streamlit runs a page only when a browser connects, so with a bare `streamlit run` the first visitor waits
while torch, Captum and the default checkpoint load. Here they load before the server listens, into the same
process and the same `st.cache_resource` cache the pages use.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def warm() -> None:
    import captum.attr  # noqa: F401 - imported for its load time
    import plotly.express  # noqa: F401
    import pyarrow  # noqa: F401 - what Streamlit serialises tables with

    # the caches work outside a script run; Streamlit only warns that there is no session or runtime yet.
    # Its modules set their loggers' levels when first imported, so import them before quieting them.
    import streamlit.runtime.caching.cache_data_api  # noqa: F401
    import streamlit.runtime.scriptrunner_utils.script_run_context  # noqa: F401

    loggers = [logging.getLogger(name) for name in ("streamlit.runtime.scriptrunner_utils.script_run_context",
                                                    "streamlit.runtime.caching.cache_data_api")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        from app.services import open_service, shipped_checkpoints

        entries = shipped_checkpoints()
        if entries:
            _, error = open_service(entries[0].path)
            if error:
                print(f"warm-up skipped: {error}", file=sys.stderr)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    print("loading torch, Captum and the default checkpoint…", file=sys.stderr, flush=True)
    warm()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "app" / "explorer.py"), *(sys.argv[1:] if argv is None else argv)]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
