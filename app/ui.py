"""Widgets shared by the pages: checkpoint, user and item pickers, figure and CSV export, collapse badges."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import streamlit as st

from recmodels.errors import RecModelsError
from recmodels.explain.diagnostics import pair_layer_heads
from recmodels_explorer.search import MAX_QUERY, MAX_SHOWN
from recmodels_explorer.services import (
    ROOTS_ENV,
    checkpoint_roots,
    items_of,
    open_service,
    release_closed_checkpoints,
    resolve_checkpoint,
    shipped_checkpoints,
    unexpected_message,
    users_of,
)
from recmodels_explorer.state import linked_user, load_from_url, write_url
from recmodels_explorer.text import filename, literal, plain

log = logging.getLogger("attention-explorer")
FLAG_SENTENCES = {
    "near_uniform": "Near uniform: the weights are spread almost evenly, so this map says little about which "
    "positions matter.",
    "near_one_hot": "Near one-hot: almost all the weight sits on one position; check that the model is not ignoring "
    "the rest of the input.",
}


@contextlib.contextmanager
def guarded(what: str):
    """Show any failure inside as one sentence, never a traceback (nor what a data file holds)."""
    try:
        yield
    except RecModelsError as err:
        show_error(err.public_message())
    except Exception as err:
        log.exception("failure while %s", what)
        show_error(unexpected_message(err, what))


def show_error(message: str, container=None) -> None:
    """An error sentence that may quote ids or paths from data, shown as literal text."""
    (container or st).error(literal(message, 600))


def _remember(widget_key: str, store_key: str) -> None:
    st.session_state[store_key] = st.session_state[widget_key]


def checkpoint_picker(
    label: str = "Checkpoint",
    key: str = "checkpoint",
    default: str | None = None,
    container=None,
    allow_path: bool = True,
    among: list | None = None,
) -> str | None:
    """A checkpoint from a checkpoint root, or a folder typed inside one; returns the path or None.

    One choice, two ways to make it: the list and the folder box agree, because both write ``_<key>`` (the sidebar's
    is the whole app's checkpoint, :data:`recmodels_explorer.state.CHECKPOINT`) and a typed folder joins the list.
    Widgets are per page in Streamlit, so each page's widget starts from ``_<key>``. ``among`` limits the list to
    those checkpoints (entries of :func:`shipped_checkpoints`); a remembered choice outside them gives way to
    ``default``.
    """
    container = container or st.sidebar
    page = st.session_state.get("_page", "")
    widget = f"{key}_{page}" if page else key
    entries = shipped_checkpoints() if among is None else among
    labels = {e.path: plain(e.label, 80) for e in entries}
    options = [e.path for e in entries]
    current = st.session_state.get(f"_{key}") or default or next(iter(options), None)
    if among is not None and current not in options:
        current = default
    if current is not None and current not in options:  # a folder typed, or opened from a link
        options.insert(0, current)
        labels[current] = f"{plain(Path(current).name, 60)} (folder)"
    st.session_state[f"_{key}"] = current
    if current is not None and st.session_state.get(widget) != current:
        st.session_state[widget] = current
    chosen = container.selectbox(
        label,
        options,
        format_func=lambda p: labels.get(p, plain(p, 80)),
        key=widget,
        on_change=_pick_checkpoint,
        args=(widget, key),
        placeholder="no checkpoint in the checkpoint roots" if not options else None,
    )
    if allow_path:
        container.text_input(
            "…or a checkpoint folder",
            key=f"{widget}_path",
            value=st.session_state.get(f"_{key}_path", ""),
            on_change=_type_checkpoint,
            args=(f"{widget}_path", key),
            placeholder="my-model",
            help=_roots_help(),
            max_chars=4096,
        )
        if st.session_state.get(f"_{key}_refused"):
            container.error(not_a_checkpoint())
    return chosen


def _pick_checkpoint(widget: str, key: str) -> None:
    st.session_state[f"_{key}"] = st.session_state[widget]
    st.session_state[f"_{key}_path"] = ""  # the list was used: the box no longer names the choice
    st.session_state[f"_{key}_refused"] = False


def _type_checkpoint(widget: str, key: str) -> None:
    typed = str(st.session_state.get(widget) or "")
    st.session_state[f"_{key}_path"] = typed
    path = resolve_checkpoint(typed) if typed.strip() else None
    st.session_state[f"_{key}_refused"] = bool(typed.strip()) and path is None
    if path is not None:
        st.session_state[f"_{key}"] = path


def not_a_checkpoint() -> str:
    """One sentence for a typed folder outside the roots, missing, or not a checkpoint (the box is no file-system
    oracle), naming the roots it looked in."""
    roots = "; ".join(str(root) for root in checkpoint_roots())
    return (
        "That is not a checkpoint folder inside the checkpoint roots: type the name of a folder with config.json and "
        f"model.safetensors in one of the roots searched ({roots})."
    )


def _roots_help() -> str:
    roots = checkpoint_roots()
    listed = "; ".join(literal(str(root), 200) for root in roots)
    return (
        f"A folder with config.json and model.safetensors inside a checkpoint root: {listed}. A relative name "
        f"is looked for in each root, in order. More roots: the {ROOTS_ENV} environment variable or "
        "`recmodels explore --checkpoint-root DIR`."
    )


def sidebar(page: str):
    """The sidebar every page shares: the checkpoint, and how figures download. Returns the service or None."""
    st.session_state["_page"] = page
    load_from_url()
    release_closed_checkpoints()
    with st.sidebar:
        path = checkpoint_picker()
        st.radio(
            "Figure download format",
            ["png", "svg"],
            key=f"figure_format_{page}",
            horizontal=True,
            index=["png", "svg"].index(st.session_state.get("_figure_format", "png")),
            on_change=_remember,
            args=(f"figure_format_{page}", "_figure_format"),
            help="What the camera button in each chart's toolbar saves.",
        )
    st.session_state["checkpoint_resolved"] = path
    missing = st.session_state.pop("_url_checkpoint_missing", None)
    if missing:
        st.warning(
            f"The checkpoint {literal(missing, 200)} from the link is not in the checkpoint roots; showing "
            f"{literal(Path(path).name if path else 'none', 200)} instead."
        )
    write_url()  # the checkpoint chosen here, and what the other pages chose, stay in the link on every page
    return current_service()


def current_service():
    """The service of the sidebar's checkpoint, or None after showing why."""
    path = st.session_state.get("checkpoint_resolved")
    if not path:
        st.info("Pick a checkpoint in the sidebar, or train one with `python -m recmodels train --model din`.")
        return None
    service, error = open_service(path)
    if error:
        show_error(error)
        return None
    return service


def dataset_caption(service, container=None) -> None:
    """Where the data comes from (its citation and licence note, as the dataset gives them), and a notice when
    the interactions were simulated."""
    container = container or st.sidebar
    licence = service.licence_note
    source = "\n\n".join(
        part
        for part in (
            f"Data: {literal(service.citation, 400)}" if service.citation else "",
            f"Licence: {literal(licence, 200)}" if licence else "",
        )
        if part
    )
    if service.simulated:
        container.info(
            "**Simulated interactions.** The interactions in this dataset are generated by a simulation; "
            f"they are not real behaviour.\n\n{source}".strip()
        )
    elif source:
        container.caption(source)


def user_picker(
    service, key: str = "user", container=None, url_param: str | None = None, default: str | None = None
) -> str | None:
    """A search box (an id or its first characters), a random-user button and a list of at most
    :data:`MAX_SHOWN` users whose id starts with what was typed, all found on the server: the browser never gets
    every user. The choice lives in ``st.session_state[key]`` (and ``_<key>``, so it outlasts a visit to another
    page); with ``url_param`` it is also the page URL's ``?<url_param>=``, so a link opens that user. ``default``
    is the user to start from (the first user when it is not one)."""
    container = container or st.sidebar
    users = users_of(service)
    if not len(users):
        container.info("This dataset has no users.")
        return None
    dataset = literal(service.dataset_name, 60)
    chosen = st.session_state.get(key, st.session_state.get(f"_{key}", default))
    if chosen is None and url_param and (chosen := linked_user()) is not None and users.position(chosen) is None:
        container.warning(f"User {literal(chosen, 60)} from the link is not in {dataset}; showing the first user.")
    query = container.text_input(
        "Find a user",
        key=f"{key}_find",
        max_chars=MAX_QUERY,
        on_change=_jump_to_match,
        args=(key, users),
        placeholder="an id, or its first characters",
        help=f"Lists the users whose id starts with what you type (at most {MAX_SHOWN}); "
        "an exact id, or else the first match, is picked.",
    ).strip()
    container.button(
        "Random user", key=f"{key}_random", icon=":material/shuffle:", on_click=_random_user, args=(key, users)
    )
    found, matches = users.find(query)
    if query and not matches:
        container.warning(
            f"No user id in {dataset} starts with {literal(query, 60)}; the list shows the first users instead."
        )
        query = ""
        found, matches = users.find(query)
    if users.position(chosen) is None:  # the first run, or another checkpoint's user
        chosen = found["user"].iloc[0]
    rows = {row["user"]: row for row in found.to_dict("records")}
    if chosen not in rows:  # the current user stays on the list, first
        rows = {chosen: users.row(chosen), **rows}
    if matches > len(found):
        container.caption(
            f"The first {len(found)} of {matches:,} users whose id starts with {literal(query, 40)}; "
            "type more of the id to narrow the list."
            if query
            else f"The first {len(found)} of {matches:,} users; type an id, or its first characters, "
            "above to find the others."
        )
    st.session_state[key] = chosen
    # the user's own features (not the ones that identify a person, such as a zip code), the first few
    hidden = {"user", "interactions", *service.identifying_user_fields}
    features = [c for c in users.users.columns if c not in hidden][:4]
    user = container.selectbox(
        "User",
        list(rows),
        key=key,
        format_func=lambda u: _describe_user(rows[u], features),
        help="Type here to filter this list; the box above searches every user.",
    )
    st.session_state[f"_{key}"] = user
    if url_param:
        st.query_params[url_param] = user
    return user


def _jump_to_match(key: str, users) -> None:
    """A typed id picks that user, a prefix its first match; no match leaves the choice as it was."""
    query = str(st.session_state.get(f"{key}_find") or "").strip()
    found, _ = users.find(query, 1)
    if query and len(found):
        st.session_state[key] = found["user"].iloc[0]


def _random_user(key: str, users) -> None:
    rng = st.session_state.setdefault("_user_rng", np.random.default_rng())  # one generator per session
    st.session_state[key] = users.random(rng)
    st.session_state[f"{key}_find"] = ""


def _describe_user(row: dict, features: list[str]) -> str:
    shown = [text for text in (plain(row[k], 30, blank="") for k in features) if text]
    return f"user {plain(row['user'], 40)} · " + " ".join(shown) + f" · {row['interactions']} interactions"


def item_picker(
    service, preferred, key: str, label: str, container=None, find_container=None, help: str | None = None
) -> str | None:
    """A search box (an id's first characters or part of a title) and a list of at most :data:`MAX_SHOWN` items,
    found on the server: the browser never gets the whole catalogue. Without a search the list starts with
    ``preferred`` (e.g. the user's recommendations, then their history). The choice is ``st.session_state[key]``,
    an item id; it stays on the list whatever was searched (first, when the search would leave it out), and until
    there is one it is the first item listed. A search picks its first match."""
    container, find_container = container or st, find_container or container or st
    items = items_of(service)
    if not len(items):
        container.info("This dataset has no items.")
        return None
    preferred = tuple(preferred)
    query = find_container.text_input(
        "Find an item",
        key=f"{key}_find",
        max_chars=MAX_QUERY,
        on_change=_jump_to_item,
        args=(key, items, preferred),
        placeholder="an id, or part of a title",
        help=f"Lists the items whose id starts with, or whose title contains, what you "
        f"type (at most {MAX_SHOWN}); the first of them is picked.",
    ).strip()
    found, matches = items.find(query, preferred)
    if query and not matches:
        find_container.warning(
            f"No item in {literal(service.dataset_name, 60)} has an id that starts with, or a "
            f"title that contains, {literal(query, 60)}; the list shows its first page instead."
        )
        query = ""
        found, matches = items.find(query, preferred)
    chosen = st.session_state.get(key)
    if not items.has(chosen):  # the first run, or another checkpoint's item
        chosen = found[0]
    options = found if chosen in found else [chosen, *found][: MAX_SHOWN + 1]
    if matches > len(found):
        find_container.caption(
            f"{len(found)} of {matches:,} items whose id starts with, or whose title contains, "
            f"{literal(query, 40)}; type more to narrow the list."
            if query
            else f"{len(found)} of {matches:,} items; type an id or part of a title above to find the others."
        )
    st.session_state[key] = chosen
    return container.selectbox(label, options, key=key, format_func=items.label, help=help)


def _jump_to_item(key: str, items, preferred: tuple) -> None:
    """A search picks its first match (an exact id before anything else); no match leaves the choice as it was."""
    query = str(st.session_state.get(f"{key}_find") or "").strip()
    found, _ = items.find(query, preferred, limit=1)
    if query and found:
        st.session_state[key] = found[0]


def figure(fig, key: str) -> None:
    """A plotly chart whose toolbar camera saves PNG or SVG, as chosen in the sidebar."""
    fmt = st.session_state.get("_figure_format", "png")
    st.plotly_chart(
        fig,
        key=key,
        config={"displaylogo": False, "toImageButtonOptions": {"format": fmt, "filename": key, "scale": 2}},
    )


def show_figures(drawn, key: str, columns: int = 5) -> None:
    """Figures from :func:`recmodels.viz.registry.figures_for` in order, runs of tiles in a grid of ``columns``."""
    index = 0
    while index < len(drawn):
        if drawn[index].tile:
            run = []
            while index < len(drawn) and drawn[index].tile:
                run.append((index, drawn[index]))
                index += 1
            slots = st.columns(columns)
            for slot, (position, tile) in enumerate(run):
                with slots[slot % columns]:
                    _show_one(tile, f"{key}_{position}")
            continue
        _show_one(drawn[index], f"{key}_{index}")
        index += 1


def _show_one(drawn, key: str) -> None:
    if drawn.title and not drawn.tile:  # a tile's title is inside its figure
        st.markdown(literal(drawn.title, 200))
    if drawn.caption:
        st.caption(literal(drawn.caption, 600))
    if drawn.figure is not None:
        figure(drawn.figure, key=key)


def csv_button(frame, name: str, key: str, label: str = "CSV") -> None:
    st.download_button(
        label,
        data=lambda: frame.to_csv(index=False).encode(),
        file_name=f"{filename(name, 80)}.csv",
        mime="text/csv",
        key=key,
        on_click="ignore",  # a download changes nothing on the page: no rerun
        icon=":material/download:",
    )


def collapse_badges(view) -> None:
    """Collapse flags next to a map, with one sentence each."""
    if view.flags is None:
        st.caption("Not a distribution (similarity scores), so collapse statistics do not apply.")
        return
    stats = view.statistics
    entropy = np.nanmean(stats["normalised_entropy"]) if np.isfinite(stats["normalised_entropy"]).any() else np.nan
    max_weight = np.nanmean(stats["max_weight"]) if np.isfinite(stats["max_weight"]).any() else np.nan
    st.caption(
        f"normalised entropy {entropy:.2f} · max weight {max_weight:.2f} · effective positions "
        f"{np.nanmean(stats['effective_number']):.1f}"
        if np.isfinite(entropy)
        else "Fewer than two valid positions: collapse statistics need at least two."
    )
    units = pair_layer_heads(view)  # per (layer, head) counts, so a flag says which heads it is about
    for flag, sentence in FLAG_SENTENCES.items():
        values = view.flags[flag]
        if not np.any(values):
            continue
        if units is not None and flag in units:
            flagged = units[units[flag] > 0]
            share = (
                " (" + "; ".join(f"{row.unit}: {row[flag]} of {row.rows} rows" for _, row in flagged.iterrows()) + ")"
            )
        else:
            share = f" ({int(np.sum(values))} of {np.size(values)} rows)" if np.size(values) > 1 else ""
        st.warning(sentence + share, icon=":material/warning:")
