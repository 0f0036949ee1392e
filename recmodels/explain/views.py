"""What an explanation hands to the app: one pair's maps and attributions as labelled numpy views.

Labels come from the map alone (its axes, ``axis_items``, ``labels`` and ``meta``) and from the dataset's
item names, so any model's maps are labelled the same way; nothing here knows which model made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from recmodels.explain.collapse import CollapseThresholds, flags, map_statistics, pairwise_head_js
from recmodels.models.outputs import AttentionMap

PADDING_LABEL = "(padding)"
MASK_LABEL = "[mask]"  # item index -1 on an item axis: a model's mask token (BERT4Rec's scoring position)


@dataclass(frozen=True)
class ItemNames:
    """Item index -> the dataset's id, title and genres (index 0, padding, is "" everywhere; -1 is a mask token)."""

    raw_ids: np.ndarray
    titles: np.ndarray
    genres: np.ndarray

    def raw(self, indices) -> list[str]:
        return [self.raw_ids[i] if i > 0 else "" for i in np.asarray(indices).ravel()]

    def labels(self, indices) -> list[str]:
        return [
            self.titles[i] if i > 0 else MASK_LABEL if i == -1 else PADDING_LABEL for i in np.asarray(indices).ravel()
        ]


def axis_label(axis: str, position: int) -> str:
    """The label of an unlabelled position: the axis name in words, counted from 1 ("user_head" -> "user head 1")."""
    return f"{axis.replace('_', ' ')} {position + 1}"


def cell_labels(meta: dict) -> dict:
    """``meta`` with ``<key>_labels`` added for every ``<key>_ids`` / ``<key>_names`` pair (see AttentionMap)."""
    out = dict(meta)
    for key, ids in meta.items():
        stem = key[: -len("_ids")]
        if not key.endswith("_ids") or f"{stem}_names" not in meta:
            continue
        names = np.asarray([str(n) for n in meta[f"{stem}_names"]] + [""], dtype=object)  # index -1 is ""
        ids = np.asarray(ids, dtype=np.int64)
        out[f"{stem}_labels"] = names[np.where(ids >= 0, ids, -1)].tolist()
    return out


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
    statistics: dict[str, np.ndarray] | None = None  # over the remaining axes (e.g. per head)
    flags: dict[str, np.ndarray] | None = None
    head_similarity: np.ndarray | None = None  # (H, H) Jensen-Shannon divergence between heads

    def valid_positions(self, axis: str) -> np.ndarray:
        """Indices along ``axis`` that hold a real position somewhere (padding is dropped for display)."""
        other = tuple(i for i, a in enumerate(self.axes) if a != axis)
        return np.flatnonzero(self.mask.any(axis=other) if other else self.mask)

    def mean_over(self, axis: str) -> MapView:
        """The map averaged over one axis (e.g. the mean over heads), masked positions ignored."""
        position = self.axes.index(axis)
        weight = self.mask.astype(float)
        total = (np.where(self.mask, self.values, 0.0)).sum(axis=position)
        count = weight.sum(axis=position)
        values = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        axes = tuple(a for a in self.axes if a != axis)
        return MapView(
            f"{self.name} (mean over {axis}s)",
            self.level,
            axes,
            values,
            count > 0,
            self.normalised_over if self.normalised_over != axis else None,
            {a: self.labels[a] for a in axes},
            {a: v for a, v in self.item_ids.items() if a in axes},
            self.description,
            dict(self.meta),
        )

    def select(self, axis: str, index: int) -> MapView:
        """One slice along ``axis`` (e.g. one head)."""
        position = self.axes.index(axis)
        axes = tuple(a for a in self.axes if a != axis)
        return MapView(
            f"{self.name} ({self.labels[axis][index]})",
            self.level,
            axes,
            np.take(self.values, index, axis=position),
            np.take(self.mask, index, axis=position),
            self.normalised_over if self.normalised_over != axis else None,
            {a: self.labels[a] for a in axes},
            {a: v for a, v in self.item_ids.items() if a in axes},
            self.description,
            dict(self.meta),
        )

    def to_frame(self) -> pd.DataFrame:
        """Long format, one row per cell, with the labels of every axis (for CSV export)."""
        frame = _long_frame(self.axes, self.values, self.labels)
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
        frame = _long_frame(self.units, self.values, self.labels)
        frame["attribution"] = self.values.ravel()
        return pd.DataFrame(frame)


@dataclass
class HeadImportanceView:
    """Head importance of one pair for the heads of one map (Michel et al., NeurIPS 2019): ``change[r, c]`` is the
    score with head (``rows[r]``, ``columns[c]``) masked out minus the score with every head, so a negative change
    means the head was raising the score; NaN where the grid has no head (see :mod:`recmodels.explain.heads`)."""

    map: str
    score: float
    rows: list[str]  # layers (or groups of heads)
    columns: list[str]  # heads
    change: np.ndarray  # (len(rows), len(columns))
    description: str = ""

    def table(self) -> pd.DataFrame:
        """The layer x head grid, labelled."""
        return pd.DataFrame(
            self.change, index=pd.Index(self.rows, name="layer"), columns=pd.Index(self.columns, name="head")
        )

    def to_frame(self) -> pd.DataFrame:
        """Long format, one row per head (for CSV export): its change and the score with it masked."""
        frame = pd.DataFrame(_long_frame(("layer", "head"), self.change, {"layer": self.rows, "head": self.columns}))
        frame["score_change"] = self.change.ravel()
        frame["masked_score"] = self.score + self.change.ravel()
        return frame[np.isfinite(frame["score_change"].to_numpy())].reset_index(drop=True)


@dataclass
class Explanation:
    user: str
    item: str
    title: str
    score: float
    probability: float | None
    rank: int
    history: pd.DataFrame  # the history the model saw for this pair
    maps: dict[str, MapView]
    attributions: dict[str, AttributionView] = field(default_factory=dict)
    baseline_score: float | None = None
    delta: float | None = None
    n_steps: int | None = None
    per_item: pd.DataFrame | None = None  # attention, IG and leave-one-out per history item
    agreement: dict[str, float] = field(default_factory=dict)
    agreement_map: str | None = None  # the attention map the agreement is measured on
    perturbations: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)
    head_importance: dict[str, HeadImportanceView] = field(default_factory=dict)  # by map name; {} without heads
    sentences: list = field(default_factory=list)  # the explanation in plain words (recmodels.explain.narrative)
    # a pipeline's (recmodels.serving.pipeline): each stage's explanation of the pair, "retriever" and "ranker", and the
    # retrieval facts (retriever rank and score, shortlist size, in_shortlist, final_rank: None outside the shortlist)
    stages: dict[str, Explanation] = field(default_factory=dict)
    retrieval: dict | None = None


def _long_frame(axes, values: np.ndarray, labels: dict) -> dict:
    grids = np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij")
    frame = {}
    for axis, grid in zip(axes, grids):
        axis_labels = labels.get(axis)
        frame[axis] = np.asarray(axis_labels, dtype=object)[grid.ravel()] if axis_labels else grid.ravel()
    return frame


def map_view(
    name: str, attention: AttentionMap, names: ItemNames, thresholds: CollapseThresholds = CollapseThresholds()
) -> MapView:
    """The first row of ``attention``, labelled, with its collapse statistics and head similarity."""
    values = attention.values[0].float().cpu().numpy()
    mask = attention.full_mask()[0].cpu().numpy()
    items = {axis: ids[0].cpu().numpy() for axis, ids in attention.axis_items.items()}
    labels, item_ids = {}, {}
    for axis, size in zip(attention.axes, values.shape):
        if axis in items:
            labels[axis], item_ids[axis] = names.labels(items[axis]), names.raw(items[axis])
        elif attention.labels.get(axis) is not None:
            labels[axis] = [str(x) for x in attention.labels[axis]]
        else:
            labels[axis] = [axis_label(axis, i) for i in range(size)]
    stats = map_statistics(attention)
    stat_values = flag_values = None
    if stats is not None:
        stat_values = {k: v[0].cpu().numpy() for k, v in stats.items()}
        flag_values = {k: v[0].cpu().numpy() for k, v in flags(stats, thresholds).items()}
    similarity = None
    if attention.normalised_over is not None and "head" in attention.axes:
        last = 1 + attention.axes.index(attention.normalised_over)
        head_dim = 1 + [a for a in attention.axes if a != attention.normalised_over].index("head")
        similarity = (
            pairwise_head_js(
                attention.values[:1].movedim(last, -1), attention.full_mask()[:1].movedim(last, -1), head_dim=head_dim
            )
            .cpu()
            .numpy()
        )
    meta = {
        key: value[0].cpu().numpy() if isinstance(value, torch.Tensor) and value.dim() else value
        for key, value in attention.row(0).meta.items()
    }
    return MapView(
        name,
        attention.level,
        attention.axes,
        values,
        mask,
        attention.normalised_over,
        labels,
        item_ids,
        attention.description,
        cell_labels(meta),
        stat_values,
        flag_values,
        similarity,
    )


def attribution_view(
    name: str,
    units,
    values: np.ndarray,
    labels,
    item_axis: str | None,
    description: str,
    history: np.ndarray,
    maps: dict[str, MapView],
    names: ItemNames,
) -> AttributionView:
    """One tap's attributions for one pair; item axes take their titles from the history or a labelled map."""
    axis_labels = {}
    for axis, size in zip(units, values.shape):
        if item_axis == "history" and axis == units[0]:
            axis_labels[axis] = names.labels(history[:size])
            continue
        source = next((v for v in maps.values() if axis in v.item_ids), None)
        if source is not None:
            axis_labels[axis] = source.labels[axis]
        elif labels is not None and axis == units[-1]:
            axis_labels[axis] = list(labels)
        else:
            axis_labels[axis] = [axis_label(axis, i) for i in range(size)]
    return AttributionView(name, tuple(units), values, axis_labels, description)
