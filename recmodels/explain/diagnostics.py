"""Dataset-wide collapse diagnostics: the distribution of each statistic per map and head over many rows."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..models.base import AttentionMap, Batch
from .collapse import STATISTICS, CollapseThresholds, flags, map_statistics, pairwise_head_js


@dataclass
class DiagnosticsReport:
    """``rows``: one row per (case, map, head); ``summary``: per (map, head) quantiles and flagged shares;
    ``head_similarity``: per head-level map, the (H, H) mean Jensen-Shannon divergence between heads."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    head_similarity: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: CollapseThresholds = CollapseThresholds()


def per_head_statistics(attention: AttentionMap) -> dict[str, torch.Tensor] | None:
    """Statistics reduced to (B, H) for maps with a head axis, else (B, 1); other axes are averaged over
    their informative rows (e.g. NRMS's query items, ACF's profile items)."""
    stats = map_statistics(attention)
    if stats is None:
        return None
    remaining = [a for a in attention.axes if a != attention.normalised_over]
    out = {}
    for name, values in stats.items():
        if "head" in remaining:
            values = values.movedim(1 + remaining.index("head"), 1)
        else:
            values = values.unsqueeze(1)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        finite = torch.isfinite(values)
        total = torch.where(finite, values, torch.zeros_like(values)).sum(-1)
        count = finite.sum(-1)
        out[name] = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))
    return out


def _head_js_sums(attention: AttentionMap) -> tuple[torch.Tensor, float] | None:
    if attention.normalised_over is None or "head" not in attention.axes:
        return None
    values = attention.values.detach()
    mask = attention.full_mask()
    last = 1 + attention.axes.index(attention.normalised_over)
    values, mask = values.movedim(last, -1), mask.movedim(last, -1)
    head_dim = 1 + [a for a in attention.axes if a != attention.normalised_over].index("head")
    rows = float((mask.movedim(head_dim, 0)[0].sum(-1) >= 2).sum())
    return pairwise_head_js(values, mask, head_dim=head_dim) * rows, rows


@torch.no_grad()
def dataset_diagnostics(model, users: np.ndarray, items: np.ndarray, histories: np.ndarray,
                        case_labels: list | None = None, batch_size: int = 256,
                        thresholds: CollapseThresholds = CollapseThresholds(), progress: bool = False) -> DiagnosticsReport:
    """Run ``model`` with attention on every (user, item, history) case in batches and collect statistics."""
    device = model.device
    frames, js_sums, js_rows = [], {}, {}
    labels = case_labels if case_labels is not None else list(users)
    for start in tqdm(range(0, len(users), batch_size), desc="diagnostics", disable=not progress, leave=False):
        stop = min(len(users), start + batch_size)
        batch = Batch.from_numpy(users[start:stop], items[start:stop], histories[start:stop]).to(device)
        out = model(batch, output_attentions=True)
        for name, attention in (out.attentions or {}).items():
            stats = per_head_statistics(attention)
            if stats is None:
                continue
            n_rows, n_heads = stats["max_weight"].shape
            frame = {"case": np.repeat(labels[start:stop], n_heads), "map": name, "level": attention.level,
                     "head": np.tile(np.arange(n_heads) if "head" in attention.axes else [-1], n_rows)}
            for stat in STATISTICS:
                frame[stat] = stats[stat].reshape(-1).cpu().numpy()
            for flag, values in flags(stats, thresholds).items():
                frame[flag] = values.reshape(-1).cpu().numpy()
            frames.append(pd.DataFrame(frame))
            js = _head_js_sums(attention)
            if js is not None:
                js_sums[name] = js_sums.get(name, 0) + js[0]
                js_rows[name] = js_rows.get(name, 0) + js[1]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["case", "map", "level", "head", *STATISTICS, "near_uniform", "near_one_hot"])
    rows = rows.dropna(subset=["normalised_entropy"])
    summary = summarise(rows)
    similarity = {name: (js_sums[name] / max(js_rows[name], 1)).numpy() for name in js_sums}
    return DiagnosticsReport(rows, summary, similarity, thresholds)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame()
    grouped = rows.groupby(["map", "head"], sort=True)
    summary = grouped[list(STATISTICS)].agg(["mean", "median"])
    summary.columns = [f"{stat}_{how}" for stat, how in summary.columns]
    summary["share_near_uniform"] = grouped["near_uniform"].mean()
    summary["share_near_one_hot"] = grouped["near_one_hot"].mean()
    summary["rows"] = grouped.size()
    return summary.reset_index()
