"""Safe server settings whichever way the app is started.

`make app` and `recmodels explore` pass them as flags, and .streamlit/config.toml (read from the working
folder) and app/.streamlit/config.toml (read next to the entry point by recent Streamlit) hold them too. A plain
`streamlit run` from elsewhere on an older Streamlit reads neither file, so the entry point sets what can still be
set once the server runs, and refuses to show anything when the listening address was never chosen.
"""

from __future__ import annotations

from streamlit import config
from streamlit.config_option import ConfigOption

# client options reach the browser with each run; gatherUsageStats is read by the server
SAFE_OPTIONS = {"client.showErrorDetails": "none", "client.toolbarMode": "viewer", "browser.gatherUsageStats": False}
# where_defined of an option nobody set: its default, or a value Streamlit itself filled in
NOT_CHOSEN = {ConfigOption.DEFAULT_DEFINITION, ConfigOption.STREAMLIT_DEFINITION}
REFUSAL = (
    "This app was started without choosing a network address, so it may be listening on every interface: "
    "stop it and start it with `make app` (or add `--server.address 127.0.0.1`), or add "
    "`--server.address 0.0.0.0` to expose it to other machines on purpose."
)


def apply_safe_options() -> None:
    """No tracebacks or exception details in the browser, the viewer's toolbar, no usage statistics."""
    for key, value in SAFE_OPTIONS.items():
        if config.get_option(key) != value:
            config.set_option(key, value)


def address_chosen() -> bool:
    """Whether server.address was set on purpose (flag, environment variable or config file) to an address.

    Left unset, or set empty, Streamlit listens on every interface; --server.address 0.0.0.0 is a choice."""
    try:
        where = config.get_where_defined("server.address")
    except RuntimeError:
        return False
    address = config.get_option("server.address")
    return where not in NOT_CHOSEN and isinstance(address, str) and bool(address.strip())
