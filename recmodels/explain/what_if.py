"""What an edited history changed: the recommendations (which items entered or left the top-k, which moved and by
how much), and for the explained item its score, its rank, the attention on each history item and each head.

The two sides are lined up by the dataset's item ids, so an item removed from the history (or added to it) counts
as having no attention on the side that lacks it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recmodels.explain.views import Explanation, MapView


def ranking_changes(original: pd.DataFrame, edited: pd.DataFrame) -> pd.DataFrame:
    """The edited top-k with, for each item, its rank before (``was``, NaN for an item that entered) and ``moved``
    (places up, positive when it rose), then the items that left the top-k (``rank`` NaN)."""
    before = dict(zip(original["item"], original["rank"]))
    frame = edited[["rank", "item", "title", "score"]].copy()
    frame["was"] = [before.get(item, np.nan) for item in frame["item"]]
    frame["moved"] = frame["was"] - frame["rank"]
    left = original[~original["item"].isin(set(edited["item"]))][["rank", "item", "title", "score"]]
    left = left.rename(columns={"rank": "was"}).assign(rank=np.nan, moved=np.nan)
    return pd.concat([frame, left[frame.columns]], ignore_index=True)


def ranking_summary(changes: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(titles that entered the top-k, titles that left it)."""
    entered = changes[changes["was"].isna()]["title"].astype(str).tolist()
    left = changes[changes["rank"].isna()]["title"].astype(str).tolist()
    return entered, left


def attention_changes(original: Explanation, edited: Explanation) -> pd.DataFrame:
    """Per history item (on either side): its attention before and after, the change (after minus before; an item
    absent on one side has 0 there) and whether it was kept, added or removed. Empty without item attention."""
    sides = [_item_attention(side) for side in (original, edited)]
    if sides[0] is None or sides[1] is None:
        return pd.DataFrame(columns=["item", "title", "before", "after", "change", "status"])
    (before, titles_before), (after, titles_after) = sides
    items = list(dict.fromkeys([*before, *after]))
    titles = {**titles_before, **titles_after}
    frame = pd.DataFrame(
        {
            "item": items,
            "title": [titles[item] for item in items],
            "before": [before.get(item, 0.0) for item in items],
            "after": [after.get(item, 0.0) for item in items],
            "status": ["kept" if i in before and i in after else "added" if i in after else "removed" for i in items],
        }
    )
    frame["change"] = frame["after"] - frame["before"]
    return frame[["item", "title", "before", "after", "change", "status"]]


def _item_attention(explanation: Explanation) -> tuple[dict, dict] | None:
    per_item = explanation.per_item
    if per_item is None or not np.isfinite(per_item["attention"].to_numpy(dtype=float)).any():
        return None
    values = dict(zip(per_item["item"], per_item["attention"].astype(float)))
    return values, dict(zip(per_item["item"], per_item["title"].astype(str)))


def head_changes(original: Explanation, edited: Explanation) -> dict[str, pd.DataFrame]:
    """For each map with heads over the history items: per head (per layer and head where it has layers), how far
    its attention moved, as the total variation distance between its distributions over the items before and after
    (0: the same, 1: no overlap), averaged over the map's query rows."""
    out = {}
    for name, view in edited.maps.items():
        before = original.maps.get(name)
        units_after, units_before = _head_distributions(view), _head_distributions(before) if before else None
        if units_after is None or units_before is None:
            continue
        rows = [
            {"head": unit, "moved": 0.5 * sum(abs(after.get(i, 0.0) - units_before[unit].get(i, 0.0))
                                              for i in {*after, *units_before[unit]})}
            for unit, after in units_after.items() if unit in units_before
        ]  # fmt: skip
        if rows:
            out[name] = pd.DataFrame(rows)
    return out


def _head_distributions(view: MapView | None) -> dict[str, dict[str, float]] | None:
    """Each head's mean distribution over the history items it attends to, keyed by item id; None for a map without
    heads or whose weights are not over items."""
    if view is None or "head" not in view.axes or view.normalised_over not in view.item_ids:
        return None
    axis = view.axes.index(view.normalised_over)
    values = np.moveaxis(np.where(view.mask, view.values, 0.0), axis, -1)
    mask = np.moveaxis(view.mask, axis, -1).any(axis=-1)
    axes = [a for a in view.axes if a != view.normalised_over]
    ids = view.item_ids[view.normalised_over]
    units = {}
    layers = view.labels.get("layer") if "layer" in axes else [None]
    for li, layer in enumerate(layers):
        for hi, head in enumerate(view.labels["head"]):
            index = [slice(None)] * len(axes)
            index[axes.index("head")] = hi
            if layer is not None:
                index[axes.index("layer")] = li
            rows, valid = values[tuple(index)].reshape(-1, values.shape[-1]), mask[tuple(index)].reshape(-1)
            if not valid.any():
                continue
            mean = rows[valid].mean(axis=0)
            label = head if layer is None else f"{layer} · {head}"
            distribution: dict[str, float] = {}
            for item, weight in zip(ids, mean):
                if item:  # padding has no id
                    distribution[item] = distribution.get(item, 0.0) + float(weight)
            units[label] = distribution
    return units
