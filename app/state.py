"""One state for the whole app: the chosen checkpoint, the user, the what-if and presentation mode.

Every page reads the same values from ``st.session_state`` and writes them into the page's URL, so a link opens
exactly the view it was copied from, on whichever page:

- ``checkpoint``: the checkpoint folder's name inside a checkpoint root (or its full path when it sits in none);
- ``user``: the user's id;
- a what-if: ``drop`` and ``add`` (item ids, comma-separated) for a user whose history kept its order, ``history``
  (the whole edited history, oldest first) when items moved, or ``new`` (a new user's items);
- ``present=1``: presentation mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from recmodels_explorer.services import checkpoint_roots, find_checkpoint

CHECKPOINT, USER, WHAT_IF, PRESENT = "_checkpoint", "_user", "_what_if", "_present"
PARAMS = ("checkpoint", "user", "drop", "add", "history", "new", "present")
MAX_PARAM_ITEMS = 500  # item ids a link may carry in one what-if parameter


@dataclass(frozen=True)
class WhatIf:
    """An edited history: ``user`` None is a new user; ``items`` the history, oldest first (dataset item ids)."""

    user: str | None
    items: tuple[str, ...]

    def params(self, recorded: list[str]) -> dict[str, str]:
        """The URL's what-if parameters: drop and add when the user's recorded window kept its order (additions go
        last, as the most recent), else the whole history; new for a new user."""
        if self.user is None:
            return {"new": ",".join(self.items)}
        kept = [item for item in recorded if item in self.items]
        added = [item for item in self.items if item not in recorded]
        if list(self.items) == kept + added:
            return {"drop": ",".join(item for item in recorded if item not in self.items), "add": ",".join(added)}
        return {"history": ",".join(self.items)}

    @classmethod
    def from_params(cls, params: dict, user: str | None, recorded: list[str]) -> WhatIf | None:
        """The what-if a URL describes, or None when it describes none; ids are checked later, by the service."""

        def listed(key: str) -> list[str]:
            return [part for part in str(params.get(key, "")).split(",") if part][:MAX_PARAM_ITEMS]

        if "new" in params:
            return cls(None, tuple(dict.fromkeys(listed("new"))))
        if user is None:
            return None
        if "history" in params:
            return cls(user, tuple(dict.fromkeys(listed("history"))))
        if "drop" in params or "add" in params:
            dropped = set(listed("drop"))
            kept = [item for item in recorded if item not in dropped]
            return cls(user, tuple(dict.fromkeys(kept + [i for i in listed("add") if i not in kept])))
        return None


# ---------------------------------------------------------------- the checkpoint
def checkpoint_param(path: str) -> str:
    """How the URL names a checkpoint: its path inside the root that holds it, else its full path."""
    folder = Path(path)
    for root in checkpoint_roots():
        if folder.is_relative_to(root):
            return str(folder.relative_to(root))
    return str(folder)


def load_from_url() -> None:
    """Once per session: what the URL asks for becomes the state every page starts from."""
    if st.session_state.get("_url_loaded"):
        return
    st.session_state["_url_loaded"] = True
    params = st.query_params
    if "checkpoint" in params:
        path = find_checkpoint(params["checkpoint"])
        st.session_state[CHECKPOINT] = path
        st.session_state["_url_checkpoint_missing"] = None if path else params["checkpoint"]
    # the user picker takes the link's user (and says when it is not in the data); until then it is kept here
    st.session_state["_url_user"] = params.get("user")
    st.session_state["_url_what_if"] = {k: params[k] for k in ("drop", "add", "history", "new") if k in params}
    st.session_state[PRESENT] = params.get("present") == "1"


def linked_user() -> str | None:
    """The user a link asked for, once: the user picker that takes it says when it is not in the data."""
    return st.session_state.pop("_url_user", None)


def write_url(recorded: list[str] | None = None) -> None:
    """The URL as the state stands: checkpoint, user, what-if (``recorded``: the user's recorded window, to write an
    edit as drop and add; other pages pass none and the Explorer's last one is used) and presentation mode."""
    if recorded is None:
        recorded = st.session_state.get("_recorded_window")
    else:
        st.session_state["_recorded_window"] = recorded
    wanted = {}
    if st.session_state.get(CHECKPOINT):
        wanted["checkpoint"] = checkpoint_param(st.session_state[CHECKPOINT])
    what_if = st.session_state.get(WHAT_IF)
    if what_if is not None and what_if.user is None:
        wanted.update(what_if.params([]))
    else:
        user = st.session_state.get(USER) or st.session_state.get("_url_user")
        if user is not None:
            wanted["user"] = str(user)
        if what_if is not None and recorded is not None:
            wanted.update({k: v for k, v in what_if.params(recorded).items() if v})
    if st.session_state.get(PRESENT):
        wanted["present"] = "1"
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)
