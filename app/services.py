"""Loaded services and derived results, cached for every session (``st.cache_resource``), and the checkpoint
roots: the only folders the app opens checkpoints from.

RecService is thread-safe and its results are never mutated here, so sharing them across sessions is safe.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from recmodels import settings
from recmodels.checkpoint import CONFIG_FILE, read_config
from recmodels.checkpoint.folders import checkpoint_folders
from recmodels.checkpoint.pipeline import is_pipeline, read_pipeline
from recmodels.checkpoint.runs import find_runs
from recmodels.errors import RecModelsError
from recmodels.models import model_info
from recmodels.serving.service import RecService
from recmodels.train.monitor import HISTORY_FILE
from recmodels.viz import FigureContext
from recmodels.viz.images import display_copy
from recmodels_explorer.open_checkpoints import OpenCheckpoints
from recmodels_explorer.search import ItemIndex, UserIndex
from recmodels_explorer.text import plain

ROOTS_ENV = settings.CHECKPOINT_ROOTS
log = logging.getLogger("attention-explorer")


@dataclass(frozen=True)
class CheckpointEntry:
    path: str
    label: str
    model: str
    dataset: str
    collapsed: bool
    simulated: bool = False  # the data was generated, not observed
    attention: bool = True  # the model records attention (its training history has attention statistics)
    global_split: bool = False  # trained on the global time split rather than the per-user one
    fingerprint: str = ""  # the data's fingerprint: two checkpoints with the same one have the same users and items
    next_item: bool = False  # trained and measured on the next-item split (leave one out)
    pipeline: bool = False  # a retriever's shortlist ranked by a ranker (model is the ranker's)


# ---------------------------------------------------------------- messages a browser may see
def unexpected_message(err: Exception, what: str) -> str:
    """For an exception nobody raised on purpose: its class only; the details go to the server's log."""
    return f"Something went wrong while {what} ({err.__class__.__name__}); the details are in the server's log."


def model_title(name) -> str:
    """The model's title from the registry (e.g. "Two-tower (MHA)"), or its name when the registry does not know
    it (a plugin that is not installed); plain text, not yet escaped."""
    try:
        return plain(model_info(name).title, 40) if isinstance(name, str) else plain(name, 40)
    except RecModelsError:
        return plain(name, 40)


def model_order(name) -> int | None:
    """The model's place in the registry's order, or None when the registry does not know it."""
    try:
        order = model_info(name).order if isinstance(name, str) else None
    except RecModelsError:
        return None
    return order if isinstance(order, int) else None


# ---------------------------------------------------------------- checkpoint roots
def checkpoint_roots() -> list[Path]:
    """The folders the app opens checkpoints from: every folder in $RECMODELS_CHECKPOINT_ROOTS (os.pathsep-separated;
    ``recmodels explore --checkpoint-root DIR`` sets it), or else the current folder's checkpoints/; symlinks
    resolved, each once. An empty or blank entry is one InvalidArgumentError sentence (explorer.py shows it and
    stops), never the current folder."""
    roots = []
    for root in settings.paths(ROOTS_ENV) or [Path.cwd() / "checkpoints"]:
        try:
            resolved = root.resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        if resolved not in roots:
            roots.append(resolved)
    return roots


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_checkpoint(typed: str) -> str | None:
    """The checkpoint folder that ``typed`` names inside a root (a relative name is looked for in each root, in
    order), or None for anything else: outside every root (after resolving symlinks), missing, or without
    config.json.

    The caller shows one message for every None, so the box cannot be used to learn what exists elsewhere.
    """
    return _resolve_inside_roots(typed, CONFIG_FILE)


find_checkpoint = resolve_checkpoint  # how a link's ?checkpoint= is read back


def resolve_run(typed: str) -> str | None:
    """The training-run folder (one with history.jsonl, written while a model trains) that ``typed`` names inside a
    root, or None on the same terms as :func:`resolve_checkpoint`."""
    return _resolve_inside_roots(typed, HISTORY_FILE)


def _resolve_inside_roots(typed: str, marker: str) -> str | None:
    text = typed.strip() if isinstance(typed, str) else ""
    if not text or "\x00" in text or len(text) > 4096:
        return None
    roots = checkpoint_roots()
    candidate = Path(text)
    for folder in [candidate] if candidate.is_absolute() else [root / candidate for root in roots]:
        try:
            folder = folder.resolve()
            marked = (folder / marker).resolve()
            if _inside(folder, roots) and _inside(marked, roots) and marked.is_file():
                return str(folder)
        except (OSError, RuntimeError, ValueError):  # too long a name, a symlink loop, ...
            continue
    return None


def training_runs() -> list[str]:
    """Run folders directly inside the checkpoint roots (those with history.jsonl), written by train --log-dir or
    an AttentionMonitor in any training loop."""
    return [str(folder) for folder in find_runs(checkpoint_roots()) if _resolve_inside_roots(str(folder), HISTORY_FILE)]


def shipped_checkpoints() -> list[CheckpointEntry]:
    """Every checkpoint folder directly inside a root: real data before simulated, by dataset; within one, collapse
    examples last and models that record attention before those that do not (so the first checkpoint has
    something to explain); then in the registry's model order (unknown models last), then by label."""
    return _scan_roots(tuple(str(root) for root in checkpoint_roots()))


@st.cache_data(ttl=60, show_spinner=False)
def _scan_roots(roots: tuple[str, ...]) -> list[CheckpointEntry]:
    entries = []
    for root in map(Path, roots):
        for folder in checkpoint_folders(root):
            try:  # a config.json linked from outside the roots is not read
                entries.append(_pipeline_entry(folder, roots) if is_pipeline(folder, roots) else _entry(folder, roots))
            except (RecModelsError, KeyError, TypeError, AttributeError):
                continue
    entries = _unique_labels(entries)
    orders = {e.model: model_order(e.model) for e in entries}
    return sorted(
        entries,
        key=lambda e: (
            e.simulated,
            e.dataset,
            e.global_split,
            e.next_item,  # after the per-user checkpoints, which the tables lead with
            e.pipeline,
            e.collapsed,
            not e.attention,
            orders[e.model] is None,
            orders[e.model] or 0,
            e.label,
        ),
    )


def _entry(folder: Path, roots, config=None) -> CheckpointEntry:
    config = config or read_config(folder, roots)
    return CheckpointEntry(
        str(folder),
        checkpoint_label(config),
        config.model,
        config.dataset.name,
        bool(config.collapse_example),
        config.dataset.simulated,
        config.records_attention,
        _global_split(config),
        config.dataset.fingerprint,
        config.dataset.split_mode == "next_item",
    )


def _pipeline_entry(folder: Path, roots) -> CheckpointEntry:
    """A pipeline, listed under its ranker's model with both stages' titles in its label."""
    pipeline = read_pipeline(folder, roots)
    retriever, ranker = pipeline.retriever_config, pipeline.ranker_config
    label = (
        f"{model_title(retriever.model)} → {model_title(ranker.model)} (top {pipeline.shortlist:,}) · "
        f"{plain(ranker.dataset.name, 40)}{_split_tag(ranker)}"
    )
    ranker_entry = _entry(pipeline.ranker, roots, ranker)  # read_pipeline has read (and checked) its config
    return replace(ranker_entry, path=str(folder), label=label, collapsed=False, pipeline=True)


def _global_split(config) -> bool:
    return config.dataset.split_mode == "global"


def _split_tag(config) -> str:
    mode = config.dataset.split_mode
    return " · global split" if mode == "global" else " · next-item split" if mode == "next_item" else ""


def checkpoint_label(config) -> str:
    tag = _split_tag(config)
    tag += " · collapse example" if config.collapse_example else ""
    return f"{model_title(config.model)} · {plain(config.dataset.name, 40)}{tag}"


def _unique_labels(entries: list[CheckpointEntry]) -> list[CheckpointEntry]:
    """Two checkpoints of one model and dataset (e.g. in two roots) get their folder names added."""
    labels = [e.label for e in entries]
    return [
        replace(e, label=f"{e.label} ({plain(Path(e.path).name, 40)})") if labels.count(e.label) > 1 else e
        for e in entries
    ]


# ---------------------------------------------------------------- services and results
@st.cache_resource(show_spinner="Loading the checkpoint and its data…", max_entries=16)
def load_service(path: str) -> RecService:
    # every file the checkpoint opens (config.json, model.safetensors) must resolve inside a root, links followed
    return RecService.from_checkpoint(path, roots=checkpoint_roots())


def open_service(path: str) -> tuple[RecService | None, str | None]:
    """The service for ``path``, or a one-sentence reason it cannot be opened (plain text, not yet escaped). The
    running session holds it open until a later run opens something else."""
    try:
        service = load_service(path)
        session = _session_id()
        if session is not None:
            OPEN.hold(session, path, service.data.fingerprint)
        return service, None
    except RecModelsError as err:
        return None, err.public_message()
    except Exception as err:
        log.exception("could not open %s", path)
        return None, unexpected_message(err, "opening the checkpoint") + " Pick another checkpoint."


def _session_id() -> str | None:
    context = get_script_run_ctx(suppress_warning=True)
    return None if context is None else context.session_id


def _is_live(session: str) -> bool:
    """Streamlit still has the session (a closed tab's goes); outside a server, idle time alone decides."""
    return not st.runtime.exists() or st.runtime.get_instance().is_active_session(session)


OPEN = OpenCheckpoints(_is_live)


def release_closed_checkpoints() -> list[str]:
    """At the start of a run: drop what is cached for each checkpoint no live session holds (its service, with
    the model and the data, its user and item indexes and its diagnostics). Returns the released paths."""
    session = _session_id()
    released = OPEN.begin_run(session) if session is not None else []
    for path, fingerprint in released:
        load_service.clear(path)
        diagnostics.clear(path)
        user_index.clear(path, fingerprint, None)  # the underscored service is not part of the key
        item_index.clear(path, fingerprint, None)
        log.info("released %s: no session has it open", path)
    return [path for path, _ in released]


@st.cache_resource(show_spinner=False, max_entries=16)
def user_index(path: str, fingerprint: str, _service: RecService) -> UserIndex:
    """The service's users, searchable by id prefix: built once per checkpoint and shared by every session."""
    return UserIndex(_service.users())


def users_of(service: RecService) -> UserIndex:
    return user_index(str(service.path), service.data.fingerprint, service)


@st.cache_resource(show_spinner=False, max_entries=256)
def explanation(
    path: str,
    user: str | None,
    item: str,
    attributions: bool,
    n_steps: int,
    perturbations: bool = False,
    history: tuple[str, ...] | None = None,
):
    """The pair's explanation; the perturbation tests (most of its time) only when asked: the Attributions tab and
    the report, which show them, ask. ``history`` is a what-if's edited history (``user`` None: a new user's)."""
    return load_service(path).explain(
        user,
        item,
        attributions=attributions,
        n_steps=n_steps,
        perturbations=perturbations,
        history=None if history is None else list(history),
    )


@st.cache_resource(show_spinner=False, max_entries=64)
def recommendations(path: str, user: str | None, k: int, exclude_seen: bool, history: tuple[str, ...] | None = None):
    """The top-k of a user, or of a what-if's edited history (``user`` None: a new user's); shared by sessions."""
    return load_service(path).recommend(
        user, k=k, exclude_seen=exclude_seen, history=None if history is None else list(history)
    )


@st.cache_resource(show_spinner=False, max_entries=64)
def missed_by_retrieval(path: str, user: str | None, k: int, history: tuple[str, ...] | None = None):
    """A pipeline's missed-by-retrieval list: the ranker's own top ``k`` that the shortlist dropped."""
    return load_service(path).missed_by_retrieval(user, k=k, history=None if history is None else list(history))


@st.cache_resource(show_spinner="Computing attention statistics over the users…", max_entries=16)
def diagnostics(path: str):
    return load_service(path).diagnostics()


@st.cache_resource(show_spinner=False, max_entries=512)
def item_display_image(path: str, item: str):
    """The item's image at display size (shared, never modified), or None; a large image is read once."""
    image = load_service(path).item_image(item)
    return None if image is None else display_copy(image)


def figure_context(path: str, user: str, result=None, scale: str = "fixed") -> FigureContext:
    """What the figure registry needs from the service to draw a user's maps: item images at display size, the
    regions the user was planted to care about, and, given the explanation ``result``, its item and attributions
    (for maps over the candidate's own regions); ``scale`` "data" draws attention on 0..the largest weight."""
    return FigureContext(
        item_image=partial(item_display_image, path),
        planted=load_service(path).planted_regions(user),
        candidate=None if result is None else result.item,
        attributions={} if result is None else result.attributions,
        scale=scale,
    )


@st.cache_data(show_spinner=False, max_entries=4096)
def thumbnail_uri(image_path, size: int = 64) -> str | None:
    """A small PNG data URI, so the browser can show local images inside tables; None without an image."""
    if not isinstance(image_path, str) or not image_path.strip():  # None, NaN and "" all mean no image
        return None
    from recmodels.vision.images import load_image

    image = load_image(image_path)
    if image is None:
        return None
    small = display_copy(image, size)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@st.cache_resource(show_spinner=False, max_entries=16)
def item_index(path: str, fingerprint: str, _service: RecService) -> ItemIndex:
    """The service's catalogue, searchable by id prefix and title: built once per checkpoint and shared by every
    session, so a picker lists a few items and never sends the browser the whole catalogue."""
    return ItemIndex(_service.items())


def items_of(service: RecService) -> ItemIndex:
    return item_index(str(service.path), service.data.fingerprint, service)
