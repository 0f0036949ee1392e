"""Loaded services and derived results, cached for every session (``st.cache_resource``).

RecService is thread-safe and its results are never mutated here, so sharing them across sessions is safe.
"""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from recmodels.checkpoint import read_config
from recmodels.errors import RecModelsError
from recmodels.service import RecService

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
MODEL_TITLES = {"din": "DIN", "nrms": "NRMS", "two_tower": "Two-tower (MHA)", "inttower": "IntTower", "acf": "ACF",
                "bpr": "BPR-MF", "mostpop": "MostPopular"}
log = logging.getLogger("attention-explorer")


@dataclass(frozen=True)
class CheckpointEntry:
    path: str
    label: str
    model: str
    dataset: str
    collapsed: bool


def checkpoint_label(path: Path, config: dict) -> str:
    title = MODEL_TITLES.get(config["model"], config["model"])
    tag = " · collapse example" if config.get("collapse_example") else ""
    return f"{title} · {config['dataset']['name']}{tag}"


@st.cache_data(ttl=60, show_spinner=False)
def shipped_checkpoints() -> list[CheckpointEntry]:
    entries = []
    if CHECKPOINTS.is_dir():
        for folder in sorted(p for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file()):
            try:
                config = read_config(folder)
            except RecModelsError:
                continue
            entries.append(CheckpointEntry(str(folder), checkpoint_label(folder, config), config["model"],
                                           config["dataset"]["name"], bool(config.get("collapse_example"))))
    order = list(MODEL_TITLES)
    return sorted(entries, key=lambda e: (e.dataset != "ml-100k", e.collapsed,
                                          order.index(e.model) if e.model in order else 99, e.label))


@st.cache_resource(show_spinner="Loading the checkpoint and its data…", max_entries=16)
def load_service(path: str) -> RecService:
    return RecService.from_checkpoint(path)


def open_service(path: str) -> tuple[RecService | None, str | None]:
    """The service for ``path``, or a one-sentence reason it cannot be opened."""
    try:
        return load_service(path), None
    except RecModelsError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - the app must show a sentence, never a traceback
        log.exception("could not open %s", path)
        return None, f"{path} could not be opened ({err.__class__.__name__}: {err}); pick another checkpoint."


@st.cache_resource(show_spinner=False, max_entries=256)
def explanation(path: str, user: str, item: str, attributions: bool, n_steps: int):
    return load_service(path).explain(user, item, attributions=attributions, n_steps=n_steps)


@st.cache_resource(show_spinner="Computing attention statistics over every user…", max_entries=16)
def diagnostics(path: str):
    return load_service(path).diagnostics()


@st.cache_data(show_spinner=False, max_entries=4096)
def thumbnail_uri(image_path: str, size: int = 64) -> str | None:
    """A small PNG data URI, so the browser can show local images inside tables."""
    from recmodels.vision.images import load_image

    image = load_image(image_path)
    if image is None:
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
