"""The explanation of one (user, item) pair: its labelled maps, then each explainer, assembled into one answer.

Attention, integrated gradients and leave-one-out are lined up per history slot (``per_item``), so they can be
compared item by item; the agreement between them is measured on the map that speaks about history items.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recmodels.explain.attributions import AttributionResult
from recmodels.explain.collapse import CollapseThresholds
from recmodels.explain.explainers import IntegratedGradients, LeaveOneOut, PerturbationTests
from recmodels.explain.faithfulness import kendall_tau, topk_overlap
from recmodels.explain.views import Explanation, ItemNames, attribution_view, map_view
from recmodels.models.base import RecModel
from recmodels.models.output_check import check_output
from recmodels.models.outputs import AttentionMap, Batch


@dataclass
class PairExplainer:
    """Runs the explainers it is given on one pair; an explainer left as None is skipped.

    ``per_item`` and the agreement come with leave-one-out, which every model that reads a history supports.
    """

    names: ItemNames
    thresholds: CollapseThresholds = CollapseThresholds()
    integrated_gradients: IntegratedGradients | None = None
    leave_one_out: LeaveOneOut | None = None
    perturbations: PerturbationTests | None = None

    def explain(
        self, model: RecModel, batch: Batch, *, user: str, item: str, rank: int, excluded: torch.Tensor
    ) -> Explanation:
        """Explain the single row of ``batch``; ``rank`` is the item's place in the user's recommendations and
        ``excluded`` the catalogue items the perturbation ranks leave out (index i is item i + 1)."""
        timings = {}
        started = time.perf_counter()
        with torch.no_grad():
            out = check_output(model, model(batch, output_attentions=True), len(batch), maps=True)
        attentions = out.attentions or {}
        views = {name: map_view(name, attention, self.names, self.thresholds) for name, attention in attentions.items()}
        history = batch.history[0].cpu().numpy()
        item_index = int(batch.items[0])
        explanation = Explanation(
            user=user,
            item=item,
            title=self.names.titles[item_index],
            score=float(out.scores[0]),
            probability=float(torch.sigmoid(out.scores[0])) if model.predicts_probability else None,
            rank=rank,
            history=history_frame(history, self.names),
            maps=views,
            timings=timings,
        )
        timings["maps"] = time.perf_counter() - started

        result = None
        if self.integrated_gradients is not None and self.integrated_gradients.applies_to(model):
            started = time.perf_counter()
            result = self.integrated_gradients.attribute(model, batch)
            explanation.attributions = {
                name: attribution_view(
                    name,
                    a.units,
                    a.values[0].cpu().numpy(),
                    a.labels,
                    a.item_axis,
                    a.description,
                    history,
                    views,
                    self.names,
                )
                for name, a in result.attributions.items()
            }
            explanation.baseline_score = float(result.baseline_scores[0])
            explanation.delta = float(result.delta[0])
            explanation.n_steps = self.integrated_gradients.n_steps
            timings["integrated_gradients"] = time.perf_counter() - started

        map_name, attention = primary_item_map(attentions, history)
        if self.leave_one_out is not None:
            started = time.perf_counter()
            occlusion = self.leave_one_out.attribute(model, batch)[0].numpy()
            ig = ig_per_position(result, attentions, history) if result is not None else None
            explanation.per_item = per_item_frame(history, attention, ig, occlusion, self.names)
            explanation.agreement = agreement(attention, ig, occlusion)
            explanation.agreement_map = map_name
            timings["occlusion"] = time.perf_counter() - started

        if self.perturbations is not None:
            started = time.perf_counter()
            rows = self.perturbations.attribute(
                model,
                batch,
                excluded=excluded,
                item_attention=torch.as_tensor(attention if attention is not None else np.full(len(history), np.nan)),
                distribution_maps=[
                    name for name, m in attentions.items() if m.normalised_over is not None and not m.derived
                ],
            )
            for row in rows:
                if row.get("detail"):
                    row["detail"] = self.names.titles[int(row["detail"])]
            explanation.perturbations = pd.DataFrame(rows)
            timings["perturbations"] = time.perf_counter() - started
        return explanation


def history_frame(history: np.ndarray, names: ItemNames) -> pd.DataFrame:
    """The history a pair was scored with: slot, item id, title and genres of every real position."""
    valid = history != 0
    return pd.DataFrame(
        {
            "position": np.flatnonzero(valid),
            "item": names.raw(history[valid]),
            "title": names.titles[history[valid]],
            "genres": names.genres[history[valid]],
        }
    )


def attention_per_slot(attention: AttentionMap, history: np.ndarray) -> np.ndarray | None:
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
    out = np.full(len(history), np.nan)
    last_position = _last_position(history)
    for slot, item in enumerate(slot_items):
        if item != 0 and np.isfinite(per_slot[slot]) and int(item) in last_position:
            out[last_position[int(item)]] = per_slot[slot]
    return out


def primary_item_map(attentions: dict[str, AttentionMap], history: np.ndarray):
    """``(name, attention per slot)`` of the map that speaks about history items: item level first, then head
    level; ``(None, None)`` when no map does."""
    ranked = sorted(attentions.items(), key=lambda kv: (kv[1].level != "item", kv[1].level != "head", kv[0]))
    for name, attention in ranked:
        per = attention_per_slot(attention, history)
        if per is not None:
            return name, per
    return None, None


def ig_per_position(
    result: AttributionResult, attentions: dict[str, AttentionMap], history: np.ndarray
) -> np.ndarray | None:
    """IG per history slot, from the tap over history items (summed over any further unit axes).

    A tap over the history itself lines up slot by slot; a tap over another axis of items (ACF's profile)
    is placed at the slots holding the same items, through a map's ``axis_items`` for that axis.
    """
    last_position = _last_position(history)
    for attribution in sorted(result.attributions.values(), key=lambda a: len(a.units)):  # one-axis taps first
        axis = attribution.units[0] if attribution.units else None
        if attribution.values.dim() <= 1:
            continue
        values = attribution.values[0].reshape(attribution.values.shape[1], -1).sum(1).cpu().numpy()
        if axis == "history":
            out = np.full(len(history), np.nan)
            out[: len(values)] = values
            out[history == 0] = np.nan
            return out
        source = next((m.axis_items[axis][0].cpu().numpy() for m in attentions.values() if axis in m.axis_items), None)
        if source is not None and attribution.item_axis is None:
            out = np.full(len(history), np.nan)
            for slot, item in enumerate(source):
                if item != 0 and int(item) in last_position:
                    out[last_position[int(item)]] = values[slot]
            return out
    return None


def per_item_frame(history: np.ndarray, attention, ig, occlusion, names: ItemNames) -> pd.DataFrame:
    valid = np.flatnonzero(history != 0)
    frame = pd.DataFrame({"position": valid, "item": names.raw(history[valid]), "title": names.titles[history[valid]]})
    frame["attention"] = attention[valid] if attention is not None else np.nan
    frame["integrated_gradients"] = ig[valid] if ig is not None else np.nan
    frame["leave_one_out"] = occlusion[valid]
    return frame


def agreement(attention, ig, occlusion) -> dict[str, float]:
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


def _last_position(history: np.ndarray) -> dict[int, int]:
    """Item index -> the last history slot that holds it."""
    return {int(item): p for p, item in enumerate(history) if item != 0}
