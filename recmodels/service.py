"""RecService: the one API the app calls. Users and items are named by the dataset's own ids.

One instance is safe to share across threads and Streamlit sessions: the model stays in eval mode and is never
modified after loading, attention perturbations are passed per call, and Captum's hooks go on a private copy
of the module tree (see :mod:`recmodels.explain.attributions`). Everything precomputed is built in the
constructor and only read afterwards.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import dataset_location, load_checkpoint, read_config
from .data import PART_NAMES, RecData
from .device import describe_device, resolve_device
from .arguments import flag, identifier, optional_whole_number, whole_number
from .errors import EmptyHistoryError, InvalidArgumentError, UnknownItemError, UnknownUserError, quote
from .explain.attributions import integrated_gradients, leave_one_out
from .explain.collapse import CollapseThresholds, flags, map_statistics, pairwise_head_js
from .explain.diagnostics import DiagnosticsReport, dataset_diagnostics
from .explain.faithfulness import kendall_tau, perturbation_tests, topk_overlap
from .models.base import AttentionMap, Batch

PART_LABELS = {v: k for k, v in PART_NAMES.items()}
MAX_K = 10_000              # recommendations per call
MAX_IG_STEPS = 2_000        # integrated-gradients steps per explanation
MAX_BATCH = 65_536          # rows per forward pass
AXIS_PREFIX = {"head": "head", "layer": "layer", "user_head": "user head", "item_head": "item head"}

_DATA_CACHE: dict[tuple, RecData] = {}
_DATA_LOCK = threading.Lock()


def load_data_cached(name: str, data_dir, image_dir, split: dict, max_history: int) -> RecData:
    """One RecData per dataset and split for the whole process (checkpoints on the same data share it)."""
    key = (name, str(data_dir), str(image_dir), tuple(sorted(split.items())), int(max_history))
    with _DATA_LOCK:
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = RecData.load(name, data_dir, image_dir=image_dir, split=split,
                                            max_history=max_history)
        return _DATA_CACHE[key]


@dataclass
class MapView:
    """One attention map for one (user, item) pair, labelled for drawing. ``values`` has no batch axis."""

    name: str
    level: str
    axes: tuple[str, ...]
    values: np.ndarray
    mask: np.ndarray
    normalised_over: str | None
    labels: dict[str, list[str]]
    item_ids: dict[str, list[str]]
    description: str
    meta: dict
    statistics: dict[str, np.ndarray] | None = None   # over the remaining axes (e.g. per head)
    flags: dict[str, np.ndarray] | None = None
    head_similarity: np.ndarray | None = None          # (H, H) Jensen-Shannon divergence between heads

    def valid_positions(self, axis: str) -> np.ndarray:
        """Indices along ``axis`` that hold a real position somewhere (padding is dropped for display)."""
        other = tuple(i for i, a in enumerate(self.axes) if a != axis)
        return np.flatnonzero(self.mask.any(axis=other) if other else self.mask)

    def mean_over(self, axis: str) -> "MapView":
        """The map averaged over one axis (e.g. the mean over heads), masked positions ignored."""
        position = self.axes.index(axis)
        weight = self.mask.astype(float)
        total = (np.where(self.mask, self.values, 0.0)).sum(axis=position)
        count = weight.sum(axis=position)
        values = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        axes = tuple(a for a in self.axes if a != axis)
        return MapView(f"{self.name} (mean over {axis}s)", self.level, axes, values, count > 0,
                       self.normalised_over if self.normalised_over != axis else None,
                       {a: self.labels[a] for a in axes}, {a: v for a, v in self.item_ids.items() if a in axes},
                       self.description, dict(self.meta))

    def select(self, axis: str, index: int) -> "MapView":
        """One slice along ``axis`` (e.g. one head)."""
        position = self.axes.index(axis)
        axes = tuple(a for a in self.axes if a != axis)
        return MapView(f"{self.name} ({self.labels[axis][index]})", self.level, axes,
                       np.take(self.values, index, axis=position), np.take(self.mask, index, axis=position),
                       self.normalised_over if self.normalised_over != axis else None,
                       {a: self.labels[a] for a in axes}, {a: v for a, v in self.item_ids.items() if a in axes},
                       self.description, dict(self.meta))

    def to_frame(self) -> pd.DataFrame:
        """Long format, one row per cell, with the labels of every axis (for CSV export)."""
        grids = np.meshgrid(*[np.arange(n) for n in self.values.shape], indexing="ij")
        frame = {}
        for axis, grid in zip(self.axes, grids):
            labels = self.labels.get(axis)
            frame[axis] = np.asarray(labels, dtype=object)[grid.ravel()] if labels else grid.ravel()
        frame["weight"] = self.values.ravel()
        frame["valid"] = self.mask.ravel()
        return pd.DataFrame(frame)


@dataclass
class AttributionView:
    """Integrated-gradients values of one input tap for one pair (summed over the embedding dimension)."""

    name: str
    units: tuple[str, ...]
    values: np.ndarray
    labels: dict[str, list[str]]
    description: str

    def to_frame(self) -> pd.DataFrame:
        grids = np.meshgrid(*[np.arange(n) for n in self.values.shape], indexing="ij")
        frame = {}
        for axis, grid in zip(self.units, grids):
            labels = self.labels.get(axis)
            frame[axis] = np.asarray(labels, dtype=object)[grid.ravel()] if labels else grid.ravel()
        frame["attribution"] = self.values.ravel()
        return pd.DataFrame(frame)


@dataclass
class Explanation:
    user: str
    item: str
    title: str
    score: float
    probability: float | None
    rank: int
    history: pd.DataFrame                       # the history the model saw for this pair
    maps: dict[str, MapView]
    attributions: dict[str, AttributionView] = field(default_factory=dict)
    baseline_score: float | None = None
    delta: float | None = None
    n_steps: int | None = None
    per_item: pd.DataFrame | None = None        # attention, IG and leave-one-out per history item
    agreement: dict[str, float] = field(default_factory=dict)
    agreement_map: str | None = None            # the attention map the agreement is measured on
    perturbations: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)


class RecService:
    """Recommendations and explanations for one checkpoint on its dataset."""

    def __init__(self, model, config: dict, data: RecData, device: torch.device, path: Path | None = None,
                 thresholds: CollapseThresholds = CollapseThresholds()):
        self.model = model.eval()
        self.config = config
        self.data = data
        self.device = device
        self.path = path
        self.thresholds = thresholds
        dataset = data.dataset
        self._titles = np.array([""] + dataset.item_features["title"].astype(str).tolist(), dtype=object)
        genres = [", ".join(g) for g in dataset.item_features["genres"]]
        self._genres = np.array([""] + genres, dtype=object)
        self._all_items = torch.arange(1, dataset.n_items + 1, device=device)
        self._full_history = torch.as_tensor(data.full_history(np.arange(dataset.n_users + 1)))
        frame = dataset.interactions
        self._user_start = np.searchsorted(frame["user"].to_numpy(), np.arange(dataset.n_users + 2))
        self._image_paths = self._find_images()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path, device="auto", data_dir=None, image_dir=None) -> "RecService":
        path = Path(path)
        config = read_config(path)
        dataset = config["dataset"]
        stored_data_dir, stored_image_dir = dataset_location(config, path)
        data = load_data_cached(dataset["name"], data_dir or stored_data_dir, image_dir or stored_image_dir,
                                dataset["split"], dataset["max_history"])
        device = resolve_device(device)
        model, config = load_checkpoint(path, device=device, data=data)
        return cls(model, config, data, device, path)

    # ------------------------------------------------------------------ facts
    @property
    def model_name(self) -> str:
        return self.config["model"]

    @property
    def dataset_name(self) -> str:
        return self.data.dataset.name

    @property
    def device_label(self) -> str:
        return describe_device(self.device)

    @property
    def citation(self) -> str:
        return self.data.dataset.citation

    @property
    def simulated(self) -> bool:
        return self.data.dataset.simulated

    @property
    def metrics(self) -> dict:
        return self.config.get("metrics", {})

    # ------------------------------------------------------------------ ids
    def _user(self, user) -> int:
        index = self.data.dataset.user_index(identifier("user", user))
        if index is None:
            raise UnknownUserError(f"User {quote(user)} is not in {self.dataset_name}; pick one from the user list.")
        return index

    def _item(self, item) -> int:
        index = self.data.dataset.item_index(identifier("item", item))
        if index is None:
            raise UnknownItemError(f"Item {quote(item)} is not in the {self.dataset_name} catalogue; pick an item "
                                   "from the recommendations or the history.")
        return index

    def _raw_items(self, indices) -> list[str]:
        return [self.data.dataset.item_ids[i] if i > 0 else "" for i in np.asarray(indices).ravel()]

    def _find_images(self) -> dict[int, Path]:
        folder = self.data.dataset.image_dir
        if folder is None or not Path(folder).is_dir():
            return {}
        from .vision.images import find_item_image
        found = {}
        for index, raw in enumerate(self.data.dataset.item_ids[1:], start=1):
            path = find_item_image(folder, raw)
            if path is not None:
                found[index] = path
        return found

    # ------------------------------------------------------------------ browsing
    def users(self) -> pd.DataFrame:
        """Every user with the number of interactions and their features."""
        dataset = self.data.dataset
        counts = np.diff(self._user_start)[1:dataset.n_users + 1]
        frame = pd.DataFrame({"user": dataset.user_ids[1:], "interactions": counts})
        for column in dataset.user_features.columns:
            frame[column] = dataset.user_features[column].to_numpy()
        return frame

    def history(self, user) -> pd.DataFrame:
        """The user's interactions in time order: item metadata, rating, time, split part and image."""
        index = self._user(user)
        start, stop = self._user_start[index], self._user_start[index + 1]
        frame = self.data.dataset.interactions.iloc[start:stop]
        items = frame["item"].to_numpy()
        return pd.DataFrame({
            "item": self._raw_items(items),
            "title": self._titles[items],
            "genres": self._genres[items],
            "rating": frame["rating"].to_numpy(),
            # timestamps are read as Unix seconds; one outside pandas' datetime range shows as NaT, not an error
            "time": pd.to_datetime(frame["timestamp"].to_numpy(), unit="s", utc=True, errors="coerce"),
            "part": [PART_LABELS[p] for p in self.data.part[start:stop]],
            "image": pd.Series([str(self._image_paths[i]) if i in self._image_paths else None for i in items],
                               dtype=object),  # None, not NaN, where an item has no image
        })

    def item_image(self, item):
        """The item's image as a PIL image, or None when it has none (or it cannot be read)."""
        path = self._image_paths.get(self._item(item))
        if path is None:
            return None
        from .vision.images import load_image
        return load_image(path)

    def planted_regions(self, user) -> list[int] | None:
        """Ground-truth grid cells a simulated shopper was planted to care about (None for real data)."""
        planted = self.data.dataset.extras.get("planted_regions")
        if not planted:
            return None
        return planted.get(str(user))

    def item_info(self, item) -> dict:
        index = self._item(item)
        return {"item": self.data.dataset.item_ids[index], "title": self._titles[index],
                "genres": self._genres[index], "image": str(self._image_paths[index]) if index in self._image_paths
                else None}

    # ------------------------------------------------------------------ recommendations
    def _seen_mask(self, user_index: int) -> torch.Tensor:
        start, stop = self._user_start[user_index], self._user_start[user_index + 1]
        seen = torch.zeros(self.data.dataset.n_items, dtype=torch.bool)
        items = self.data.dataset.interactions["item"].to_numpy()[start:stop]
        seen[torch.tensor(items) - 1] = True
        return seen

    @torch.no_grad()
    def _catalogue_scores(self, user_index: int) -> torch.Tensor:
        users = torch.tensor([user_index], device=self.device)
        history = self._full_history[user_index:user_index + 1].to(self.device)
        return self.model.score_items(users, history, self._all_items)[0].float().cpu()

    def recommend(self, user, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` items for the user, scored with their full history, as rank, item, title, score."""
        k = whole_number("k", k, 1, MAX_K)
        exclude_seen = flag("exclude_seen", exclude_seen)
        index = self._user(user)
        scores = self._catalogue_scores(index)
        if exclude_seen:
            scores = scores.masked_fill(self._seen_mask(index), float("-inf"))
        k = min(int(k), int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        items = (top.indices + 1).numpy()
        frame = pd.DataFrame({"rank": np.arange(1, k + 1), "item": self._raw_items(items),
                              "title": self._titles[items], "genres": self._genres[items],
                              "score": top.values.numpy()})
        if self.model.predicts_probability:
            frame["probability"] = torch.sigmoid(top.values).numpy()
        return frame

    # ------------------------------------------------------------------ explanations
    def _history_for(self, user_index: int, item_index: int) -> torch.Tensor:
        """The full history, or for an item the user has, the history strictly before that interaction."""
        start, stop = self._user_start[user_index], self._user_start[user_index + 1]
        items = self.data.dataset.interactions["item"].to_numpy()[start:stop]
        match = np.flatnonzero(items == item_index)
        if match.size:
            return torch.as_tensor(self.data.histories(np.array([start + match[-1]]))[0])
        return self._full_history[user_index].clone()

    def _label_axis(self, axis: str, size: int, given: dict, items: dict) -> tuple[list[str], list[str] | None]:
        if axis in items:
            ids = items[axis]
            return [self._titles[i] if i > 0 else "(padding)" for i in ids], self._raw_items(ids)
        if axis in given and given[axis] is not None:
            return [str(x) for x in given[axis]], None
        prefix = AXIS_PREFIX.get(axis, axis)
        return [f"{prefix} {i + 1}" for i in range(size)], None

    def _map_view(self, name: str, attention: AttentionMap) -> MapView:
        values = attention.values[0].float().cpu().numpy()
        mask = attention.full_mask()[0].cpu().numpy()
        items = {axis: ids[0].cpu().numpy() for axis, ids in attention.axis_items.items()}
        labels, item_ids = {}, {}
        for axis, size in zip(attention.axes, values.shape):
            labels[axis], raw = self._label_axis(axis, size, attention.labels, items)
            if raw is not None:
                item_ids[axis] = raw
        stats = map_statistics(attention)
        stat_values = flag_values = None
        if stats is not None:
            stat_values = {k: v[0].cpu().numpy() for k, v in stats.items()}
            flag_values = {k: v[0].cpu().numpy() for k, v in flags(stats, self.thresholds).items()}
        similarity = None
        if attention.normalised_over is not None and "head" in attention.axes:
            last = 1 + attention.axes.index(attention.normalised_over)
            head_dim = 1 + [a for a in attention.axes if a != attention.normalised_over].index("head")
            similarity = pairwise_head_js(attention.values[:1].movedim(last, -1),
                                          attention.full_mask()[:1].movedim(last, -1), head_dim=head_dim).numpy()
        meta = {key: value[0].cpu().numpy() if isinstance(value, torch.Tensor) and value.dim() else value
                for key, value in attention.row(0).meta.items()}
        if "component_ids" in meta and "component_names" in meta:  # e.g. which genre each ACF component is
            names = meta["component_names"]
            meta["component_labels"] = [[names[i] if i >= 0 else "" for i in row] for row in meta["component_ids"]]
        return MapView(name, attention.level, attention.axes, values, mask, attention.normalised_over, labels,
                       item_ids, attention.description, meta, stat_values, flag_values, similarity)

    @staticmethod
    def _per_position(attention: AttentionMap, history: np.ndarray) -> np.ndarray | None:
        """Attention per history slot, from a map whose distribution axis enumerates items: averaged over its
        other axes (heads, query items) and placed at the slot holding the same item."""
        axis = attention.normalised_over
        if axis is None or axis not in attention.axis_items:
            return None
        position = 1 + attention.axes.index(axis)
        values = attention.values[:1].float().movedim(position, -1)
        mask = attention.full_mask()[:1].movedim(position, -1)
        values = torch.where(mask, values, torch.full_like(values, float("nan")))
        per_slot = values.flatten(0, -2).nanmean(0).cpu().numpy() if values.dim() > 1 else values.cpu().numpy()
        slot_items = attention.axis_items[axis][0].cpu().numpy()
        last_position = {int(item): p for p, item in enumerate(history) if item != 0}
        out = np.full(len(history), np.nan)
        for slot, item in enumerate(slot_items):
            if item != 0 and np.isfinite(per_slot[slot]) and int(item) in last_position:
                out[last_position[int(item)]] = per_slot[slot]
        return out

    def _primary_item_map(self, attentions: dict[str, AttentionMap], history: np.ndarray):
        """The map that speaks about history items: item level first, then head level."""
        ranked = sorted(attentions.items(), key=lambda kv: (kv[1].level != "item", kv[1].level != "head", kv[0]))
        for name, attention in ranked:
            per = self._per_position(attention, history)
            if per is not None:
                return name, per
        return None, None

    def explain(self, user, item, attributions: bool = True, n_steps: int = 50, internal_batch_size: int | None = None,
                perturbations: bool = True) -> Explanation:
        """Every attention map of the pair, labelled; with ``attributions`` also integrated gradients, exact
        leave-one-out occlusion, agreement between attention and attributions, and the perturbation tests."""
        attributions, perturbations = flag("attributions", attributions), flag("perturbations", perturbations)
        n_steps = whole_number("n_steps", n_steps, 1, MAX_IG_STEPS)
        internal_batch_size = optional_whole_number("internal_batch_size", internal_batch_size, 1, MAX_BATCH)
        timings = {}
        started = time.perf_counter()
        user_index, item_index = self._user(user), self._item(item)
        history = self._history_for(user_index, item_index)
        if int((history != 0).sum()) == 0:
            raise EmptyHistoryError(f"User {quote(user)} has no interactions before item {quote(item)}, so there is no "
                                    "history to explain; pick an item they have not seen or one from later on.")
        batch = Batch(torch.tensor([user_index]), torch.tensor([item_index]), history.unsqueeze(0)).to(self.device)
        with torch.no_grad():
            out = self.model(batch, output_attentions=True)
        views = {name: self._map_view(name, attention) for name, attention in (out.attentions or {}).items()}
        score = float(out.scores[0])
        catalogue = self._catalogue_scores(user_index)
        seen = self._seen_mask(user_index)
        seen_other = seen.clone()
        seen_other[item_index - 1] = False
        rank = int((catalogue[~seen_other] > catalogue[item_index - 1]).sum()) + 1
        timings["maps"] = time.perf_counter() - started

        explanation = Explanation(
            user=str(user), item=str(item), title=self._titles[item_index], score=score,
            probability=float(torch.sigmoid(out.scores[0])) if self.model.predicts_probability else None,
            rank=rank, history=self._history_frame(history), maps=views, timings=timings)
        if not attributions:
            return explanation

        started = time.perf_counter()
        if self.model.input_taps():
            result = integrated_gradients(self.model, batch, n_steps=n_steps, internal_batch_size=internal_batch_size)
            explanation.attributions = {name: self._attribution_view(name, a.units, a.values[0].cpu().numpy(),
                                                                     a.labels, a.item_axis, a.description, history,
                                                                     views)
                                        for name, a in result.attributions.items()}
            explanation.baseline_score = float(result.baseline_scores[0])
            explanation.delta = float(result.delta[0])
            explanation.n_steps = n_steps
            timings["integrated_gradients"] = time.perf_counter() - started

        started = time.perf_counter()
        occlusion = leave_one_out(self.model, user_index, item_index, history).numpy()
        map_name, attention = self._primary_item_map(out.attentions or {}, history.numpy())
        ig = self._ig_per_position(result, out.attentions or {}, history.numpy()) if self.model.input_taps() \
            else None
        explanation.per_item = self._per_item_frame(history.numpy(), attention, ig, occlusion)
        explanation.agreement = self._agreement(attention, ig, occlusion)
        explanation.agreement_map = map_name
        timings["occlusion"] = time.perf_counter() - started

        if perturbations:
            started = time.perf_counter()
            distribution_maps = [name for name, view in views.items() if view.normalised_over is not None]
            rows = perturbation_tests(self.model, user_index, item_index, history,
                                      torch.as_tensor(attention if attention is not None
                                                      else np.full(len(history), np.nan)),
                                      distribution_maps, seen_other)
            for row in rows:
                if row.get("detail"):
                    row["detail"] = self._titles[int(row["detail"])]
            explanation.perturbations = pd.DataFrame(rows)
            timings["perturbations"] = time.perf_counter() - started
        return explanation

    def _history_frame(self, history: torch.Tensor) -> pd.DataFrame:
        items = history.numpy()
        valid = items != 0
        return pd.DataFrame({"position": np.flatnonzero(valid), "item": self._raw_items(items[valid]),
                             "title": self._titles[items[valid]], "genres": self._genres[items[valid]]})

    def _attribution_view(self, name, units, values, labels, item_axis, description, history, views) -> AttributionView:
        axis_labels = {}
        for axis, size in zip(units, values.shape):
            if item_axis == "history" and axis == units[0]:
                axis_labels[axis] = [self._titles[i] if i > 0 else "(padding)" for i in history.numpy()[:size]]
            else:
                source = next((v for v in views.values() if axis in v.item_ids), None)
                if source is not None:
                    axis_labels[axis] = source.labels[axis]
                elif labels is not None and axis == units[-1]:
                    axis_labels[axis] = list(labels)
                else:
                    axis_labels[axis] = [f"{axis} {i + 1}" for i in range(size)]
        return AttributionView(name, tuple(units), values, axis_labels, description)

    @staticmethod
    def _ig_per_position(result, attentions: dict[str, AttentionMap], history: np.ndarray) -> np.ndarray | None:
        """IG per history slot, from the tap over history items (summed over any further unit axes).

        A tap over the history itself lines up slot by slot; a tap over another axis of items (ACF's profile)
        is placed at the slots holding the same items, through a map's ``axis_items`` for that axis.
        """
        last_position = {int(item): p for p, item in enumerate(history) if item != 0}
        for attribution in sorted(result.attributions.values(), key=lambda a: len(a.units)):  # one-axis taps first
            axis = attribution.units[0] if attribution.units else None
            values = attribution.values[0].reshape(attribution.values.shape[1], -1).sum(1).cpu().numpy() \
                if attribution.values.dim() > 1 else None
            if values is None:
                continue
            if axis == "history":
                out = np.full(len(history), np.nan)
                out[:len(values)] = values
                out[history == 0] = np.nan
                return out
            source = next((m.axis_items[axis][0].cpu().numpy() for m in attentions.values() if axis in m.axis_items),
                          None)
            if source is not None and attribution.item_axis is None:
                out = np.full(len(history), np.nan)
                for slot, item in enumerate(source):
                    if item != 0 and int(item) in last_position:
                        out[last_position[int(item)]] = values[slot]
                return out
        return None

    def _per_item_frame(self, history, attention, ig, occlusion) -> pd.DataFrame:
        valid = np.flatnonzero(history != 0)
        frame = pd.DataFrame({"position": valid, "item": self._raw_items(history[valid]),
                              "title": self._titles[history[valid]]})
        frame["attention"] = attention[valid] if attention is not None else np.nan
        frame["integrated_gradients"] = ig[valid] if ig is not None else np.nan
        frame["leave_one_out"] = occlusion[valid]
        return frame

    @staticmethod
    def _agreement(attention, ig, occlusion) -> dict[str, float]:
        """Kendall's tau and top-k overlap between attention and each attribution over history items."""
        out = {}
        if attention is None:
            return out
        valid = np.isfinite(attention)
        k = int(min(3, max(valid.sum(), 1)))
        for name, other in (("integrated gradients", ig), ("leave-one-out", occlusion)):
            if other is None:
                continue
            out[f"Kendall τ, attention vs {name}"] = kendall_tau(attention[valid], other[valid])
            out[f"top-{k} overlap, attention vs {name}"] = topk_overlap(attention[valid], other[valid], k)
        return out

    def attribute_top(self, user, k: int = 10, n_steps: int = 50, internal_batch_size: int | None = None) -> pd.DataFrame:
        """Integrated gradients for the user's top-``k`` recommendations in one batched call.

        Returns one row per (item, tap unit) with the attribution, plus each item's delta.
        """
        n_steps = whole_number("n_steps", n_steps, 1, MAX_IG_STEPS)
        internal_batch_size = optional_whole_number("internal_batch_size", internal_batch_size, 1, MAX_BATCH)
        user_index = self._user(user)
        top = self.recommend(user, k=whole_number("k", k, 1, 1_000))
        items = torch.as_tensor([self._item(i) for i in top["item"]])
        history = self._full_history[user_index].unsqueeze(0).expand(len(items), -1)
        batch = Batch(torch.full((len(items),), user_index), items, history).to(self.device)
        result = integrated_gradients(self.model, batch, n_steps=n_steps, internal_batch_size=internal_batch_size)
        frames = []
        for name, attribution in result.attributions.items():
            values = attribution.values.reshape(len(items), -1).cpu().numpy()
            for row, item in enumerate(top["item"]):
                frames.append(pd.DataFrame({"item": item, "tap": name, "unit": np.arange(values.shape[1]),
                                            "attribution": values[row], "delta": float(result.delta[row])}))
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self, users=None, batch_size: int = 256, progress: bool = False) -> DiagnosticsReport:
        """Collapse statistics over users: each user's most recent interaction as the candidate, with the
        history strictly before it (the same view training used)."""
        dataset = self.data.dataset
        batch_size = whole_number("batch_size", batch_size, 1, MAX_BATCH)
        if users is None:
            indices = np.arange(1, dataset.n_users + 1)
        else:
            if isinstance(users, (str, bytes)) or not hasattr(users, "__iter__"):
                raise InvalidArgumentError(f"users must be a list of user ids, got {type(users).__name__} "
                                           f"{quote(users)}.")
            indices = np.array([self._user(u) for u in users], dtype=np.int64)
            if not len(indices):
                raise InvalidArgumentError("users is empty; pass at least one user id, or None for every user.")
        last_rows = self._user_start[indices + 1] - 1
        items = dataset.interactions["item"].to_numpy()[last_rows]
        histories = self.data.histories(last_rows)
        return dataset_diagnostics(self.model, indices, items, histories,
                                   case_labels=list(dataset.user_ids[indices]), batch_size=batch_size,
                                   thresholds=self.thresholds, progress=progress)

    @torch.no_grad()
    def planted_region_recovery(self, map_name: str = "components", batch_size: int = 256) -> dict:
        """Share of region attention on each simulated shopper's planted regions, against uniform (k / R).

        Each shopper is read at their most recent interaction with the history before it (as in
        :meth:`diagnostics`). Reported plain and weighted by the item-level attention of the profile, each
        with the other-shoppers control (the same attention scored against someone else's planted cells), so
        that shopper-specific recovery can be told apart from attention to generally informative cells.
        """
        from .vision.recovery import other_shoppers_control, planted_for_users, planted_region_recovery

        batch_size = whole_number("batch_size", batch_size, 1, MAX_BATCH)
        planted = self.data.dataset.extras.get("planted_regions")
        if not planted:
            raise InvalidArgumentError(f"{self.dataset_name} has no planted regions; recovery needs the simulated fashion data.")
        dataset = self.data.dataset
        users = np.arange(1, dataset.n_users + 1)
        last_rows = self._user_start[users + 1] - 1
        items = dataset.interactions["item"].to_numpy()[last_rows]
        histories = self.data.histories(last_rows)
        betas, masks, alphas = [], [], []
        for start in range(0, len(users), batch_size):
            batch = Batch.from_numpy(users[start:start + batch_size], items[start:start + batch_size],
                                     histories[start:start + batch_size]).to(self.device)
            maps = self.model(batch, output_attentions=True).attentions or {}
            if map_name not in maps or maps[map_name].meta.get("grid") is None:
                raise InvalidArgumentError(f"{self.model_name} has no region-level map {quote(map_name)}.")
            betas.append(maps[map_name].values.cpu())
            masks.append(maps[map_name].full_mask().cpu())
            item_level = next((m for m in maps.values() if m.level == "item"), None)
            alphas.append(item_level.values.cpu() if item_level is not None else None)
        beta, mask = torch.cat(betas), torch.cat(masks)
        grid = maps[map_name].meta["grid"]
        truth = planted_for_users(planted, dataset.user_ids[users], n_regions=grid[0] * grid[1])
        weightings = {"plain": None}
        if alphas[0] is not None:
            weightings["weighted_by_item_attention"] = torch.cat(alphas)
        out = {}
        for how, weights in weightings.items():
            own = planted_region_recovery(beta, truth, mask, item_weights=weights)
            control = other_shoppers_control(beta, truth, mask, item_weights=weights)
            out[how] = {**own.as_dict(), "other_shoppers_share": control.share,
                        "other_shoppers_lift": control.lift,
                        "lift_over_other_shoppers": own.share / control.share if control.share > 0 else float("nan")}
        return out

    def training_history(self) -> pd.DataFrame:
        """Per-epoch loss, valid metrics and attention statistics, from the checkpoint, in long format."""
        rows = []
        for entry in self.config.get("history", []):
            base = {"epoch": entry["epoch"], "train_loss": entry.get("train_loss"), **entry.get("valid", {})}
            maps = entry.get("attention", {})
            if not maps:
                rows.append(base)
            for name, stats in maps.items():
                rows.append({**base, "map": name, **stats})
        return pd.DataFrame(rows)

