"""The Explorer's what-if: remove items from a user's history, add any catalogue item, move an item in time (for
the sequence models), or start a new user from nothing; and show what changed against the real history.

The edit is one :class:`~recmodels_explorer.state.WhatIf` in the app state, so it is in the URL and a link reopens
it. Every recomputation goes through the service's batched paths with ``history=``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recmodels import viz
from recmodels.explain.what_if import attention_changes, head_changes, ranking_changes, ranking_summary
from recmodels_explorer.services import items_of
from recmodels_explorer.state import WHAT_IF, WhatIf
from recmodels_explorer.text import literal, plain
from recmodels_explorer.ui import figure, item_picker

EDITED_ROWS = "what_if_rows"
RANKING_COLUMNS = {
    "was": st.column_config.TextColumn("was", help="The rank with the real history; new: it entered the top."),
    "moved": st.column_config.TextColumn("moved", help="Places against the real history (+: it rose)."),
}


def recorded_window(service, user: str) -> list[str]:
    """The items of the user's history the model reads: the most recent ``max_history``, oldest first."""
    return list(service.history(user)["item"])[-service.data.max_history :]


def active_what_if(service, user: str | None) -> WhatIf | None:
    """The what-if on screen: the one in the state, or the one a link describes (read once); a what-if of another
    user ends when the user changes."""
    params = st.session_state.pop("_url_what_if", None)
    if params and user is not None:
        st.session_state[WHAT_IF] = checked(service, WhatIf.from_params(params, user, recorded_window(service, user)))
    elif params and "new" in params:
        st.session_state[WHAT_IF] = checked(service, WhatIf.from_params(params, None, []))
    what_if = st.session_state.get(WHAT_IF)
    if what_if is not None and what_if.user is not None and what_if.user != user:
        st.session_state[WHAT_IF] = what_if = None
    return what_if


def checked(service, what_if: WhatIf | None) -> WhatIf | None:
    """A link's what-if without the items the catalogue does not have, and at most the model's ``max_history``
    (the most recent), each said in one sentence: a link is typed by anyone."""
    if what_if is None:
        return None
    items = items_of(service)
    unknown = [item for item in what_if.items if not items.has(item)]
    if unknown:
        listed = ", ".join(literal(item, 40) for item in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        st.warning(f"The link's what-if names {len(unknown)} item{'s' if len(unknown) != 1 else ''} that "
                   f"{literal(service.dataset_name, 60)} does not have ({listed}); they are left out.")  # fmt: skip
    kept = [item for item in what_if.items if items.has(item)]
    limit = service.data.max_history
    if len(kept) > limit:
        st.warning(f"The link's what-if lists {len(kept)} items, but the model reads at most {limit}; the "
                   f"{limit} most recent are kept.")  # fmt: skip
    return WhatIf(what_if.user, tuple(kept[-limit:]))


def start_new_user() -> None:
    st.session_state[WHAT_IF] = WhatIf(None, ())


def reset() -> None:
    st.session_state[WHAT_IF] = None


def _edit(user: str | None, items: list[str]) -> None:
    st.session_state[WHAT_IF] = WhatIf(user, tuple(items))


def remove_selected(user: str | None, items: list[str], table_key: str) -> None:
    """Drop the rows selected in a history table (shown newest first) from the history."""
    rows = st.session_state.get(table_key, {}).get("selection", {}).get("rows", [])
    chosen = {items[len(items) - 1 - row] for row in rows if 0 <= row < len(items)}
    _edit(user, [item for item in items if item not in chosen])


def move_selected(user: str | None, items: list[str], table_key: str, later: bool) -> None:
    """Move the one selected item a step later (more recent) or earlier in the history."""
    rows = st.session_state.get(table_key, {}).get("selection", {}).get("rows", [])
    if len(rows) != 1 or not 0 <= rows[0] < len(items):
        return
    position = len(items) - 1 - rows[0]
    target = position + (1 if later else -1)
    if 0 <= target < len(items):
        items = list(items)
        items[position], items[target] = items[target], items[position]
        _edit(user, items)
        st.session_state.pop(table_key, None)  # the selection would point at another item now


def add_item(user: str | None, items: list[str], picker_key: str, limit: int) -> None:
    """Add the picked item as the most recent; a full history drops its oldest item, as the model would."""
    item = st.session_state.get(picker_key)
    if item is None or item in items:
        return
    _edit(user, [*list(items), item][-limit:])


def editor(service, user: str | None, what_if: WhatIf | None, recorded: list[str]) -> None:
    """The buttons under a history table, and the item search that adds one."""
    items = list(what_if.items) if what_if is not None else recorded
    subject = what_if.user if what_if is not None else user
    table_key = EDITED_ROWS if what_if is not None else "history_rows"
    buttons = st.container(horizontal=True)  # each button as wide as its label
    buttons.button("Remove selected", key="what_if_remove", icon=":material/remove_circle:",
                   on_click=remove_selected, args=(subject, items, table_key),
                   help="What if the user had not interacted with the selected items?")  # fmt: skip
    if service.model.sequence_training and what_if is not None:  # order matters to the sequence models only
        buttons.button("Earlier", key="what_if_earlier", icon=":material/arrow_downward:",
                       on_click=move_selected, args=(subject, items, table_key, False),
                       help="Move the selected item one step back in time.")  # fmt: skip
        buttons.button("Later", key="what_if_later", icon=":material/arrow_upward:",
                       on_click=move_selected, args=(subject, items, table_key, True),
                       help="Move the selected item one step forward in time.")  # fmt: skip
    if what_if is not None:
        label = "Leave the new user" if what_if.user is None else "Reset to the real history"
        buttons.button(label, key="what_if_reset", icon=":material/undo:", on_click=reset)
    add = st.columns([3, 1], vertical_alignment="bottom")
    picked = item_picker(service, [], key="what_if_add", label="Add an item", container=add[0], find_container=add[0])
    add[1].button("Add", key="what_if_add_button", icon=":material/add_circle:", disabled=picked is None,
                  on_click=add_item, args=(subject, items, "what_if_add", service.data.max_history))  # fmt: skip


def notes(service, what_if: WhatIf | None) -> None:
    """What the model can do with the edit, in one sentence each: what stands in for a new user, and a model that
    does not read the history."""
    if what_if is None:
        return
    model = service.model
    if what_if.user is None and model.new_user:
        st.info(f"A new user: {literal(model.new_user, 400)}", icon=":material/person_add:")
    if not model.reads_history:
        st.caption(f"{literal(model.title, 40)} does not read the history: an edit changes only which items count "
                   "as seen.")  # fmt: skip


def with_ranking_changes(original: pd.DataFrame, edited: pd.DataFrame) -> pd.DataFrame:
    """The edited top-k with two more columns: ``was`` (the rank with the real history, "new" for an item that
    entered) and ``moved`` (places, + when it rose)."""
    changes = ranking_changes(original, edited)
    kept = changes[changes["rank"].notna()].set_index("item")
    was = [kept.at[item, "was"] for item in edited["item"]]
    return edited.assign(
        was=[("new" if np.isnan(w) else f"{int(w)}") for w in was],
        moved=[("" if np.isnan(w) else f"{int(w - r):+d}") for w, r in zip(was, edited["rank"])],
    )


def say_ranking_changes(original: pd.DataFrame, edited: pd.DataFrame) -> None:
    """Which items entered the top-k and which left it, in one sentence."""
    entered, left = ranking_summary(ranking_changes(original, edited))
    said = []
    if entered:
        said.append(f"entered the top {len(edited)}: " + ", ".join(f"*{literal(t, 60)}*" for t in entered[:5]))
    if left:
        said.append("left it: " + ", ".join(f"*{literal(t, 60)}*" for t in left[:5]))
    st.markdown(("Against the real history, " + "; ".join(said) + ".") if said else
                f"The same top {len(edited)} as with the real history; the *was* and *moved* columns say how they "
                "moved.")  # fmt: skip


def show_explanation_changes(original, edited) -> None:
    """The explained item's score and rank before and after, the attention on each history item, and each head."""
    cols = st.columns(2)
    cols[0].metric("Score against the real history", f"{edited.score:.3f}", f"{edited.score - original.score:+.3g}")
    cols[1].metric("Rank against the real history", f"{edited.rank}", f"{original.rank - edited.rank:+d} places",
                   help="Positive: the item rose.")  # fmt: skip
    changes = attention_changes(original, edited)
    if not changes.empty:
        marks = {"kept": "", "added": " (added)", "removed": " (removed)"}
        labels = [f"{i + 1}. {plain(t, 40)}{marks[s]}" for i, (t, s) in enumerate(zip(changes["title"],
                                                                                     changes["status"]))]  # fmt: skip
        st.markdown("**Attention per history item: the edit against the real history**")
        st.caption("Blue: more attention than with the real history; red: less. A removed item had its attention "
                   "taken away; an added one gained all of its own.")  # fmt: skip
        figure(viz.weights_bar(labels, changes["change"].to_numpy(), "history item", signed=True,
                               value_title="attention change"), key="fig_attention_change")  # fmt: skip
    for name, moved in head_changes(original, edited).items():
        st.markdown(f"**{literal(name, 60)}: how far each head's attention moved** (0: the same, 1: elsewhere)")
        figure(viz.weights_bar(moved["head"].map(lambda h: plain(h, 40)).tolist(), moved["moved"].to_numpy(), "head",
                               value_title="moved (total variation)"), key=f"fig_head_change_{name}")  # fmt: skip
