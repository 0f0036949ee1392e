"""Dataset-wide collapse diagnostics: the distribution of each statistic per map, layer and head over many rows,
the effective rank of a sequence transformer's hidden states per layer, and the checkpoint-level findings."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..models.base import AttentionMap, Batch
from .collapse import (STATISTICS, CollapseThresholds, by_layer_and_head, finite_mean, flags, layer_ranks,
                       map_statistics, pairwise_head_js, parse_layer_head_key)
from .heads import HeadImportanceReport


@dataclass
class DiagnosticsReport:
    """``rows``: one row per (case, map, layer, head), with ``layer`` / ``head`` -1 for a map without that axis
    (0-based otherwise); ``summary``: per (map, layer, head) means, medians and flagged shares;
    ``head_similarity``: per head-level map (per layer for a map with layers, named "map, layer l"), the (H, H)
    mean Jensen-Shannon divergence between heads; ``effective_rank``: one row per (case, layer) for models that
    return hidden states (rank collapse), empty otherwise."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    head_similarity: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: CollapseThresholds = CollapseThresholds()
    head_importance: "HeadImportanceReport | None" = None  # filled by RecService.diagnostics for a model with heads
    effective_rank: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["case", "layer",
                                                                                       "effective_rank"]))


def layer_head_statistics(attention: AttentionMap) -> dict[str, torch.Tensor] | None:
    """Statistics reduced to (B, L, H): L (H) is 1 for a map without a layer (head) axis; other axes are averaged
    over their informative rows (e.g. SASRec's query positions, NRMS's query items, ACF's profile items)."""
    stats = map_statistics(attention)
    if stats is None:
        return None
    remaining = [a for a in attention.axes if a != attention.normalised_over]
    return {name: finite_mean(by_layer_and_head(values, remaining), -1) for name, values in stats.items()}


def _head_js_sums(attention: AttentionMap) -> dict[str | None, tuple[torch.Tensor, float]]:
    """Per head-level map, per layer where it has layers (label "layer l", else None): (JS sum weighted by rows,
    rows)."""
    if attention.normalised_over is None or "head" not in attention.axes:
        return {}
    values = attention.values.detach()
    mask = attention.full_mask()
    last = 1 + attention.axes.index(attention.normalised_over)
    values, mask = values.movedim(last, -1), mask.movedim(last, -1)
    remaining = [a for a in attention.axes if a != attention.normalised_over]
    parts = {None: (values, mask)}
    if "layer" in remaining:
        dim = 1 + remaining.index("layer")
        parts = {f"layer {layer + 1}": (values.select(dim, layer), mask.select(dim, layer))
                 for layer in range(values.shape[dim])}
        remaining.remove("layer")
    head_dim = 1 + remaining.index("head")
    sums = {}
    for label, (part, part_mask) in parts.items():
        rows = float((part_mask.movedim(head_dim, 0)[0].sum(-1) >= 2).sum())
        sums[label] = (pairwise_head_js(part, part_mask, head_dim=head_dim) * rows, rows)
    return sums


def _rank_rows(output, labels) -> pd.DataFrame | None:
    """Effective rank of each case's hidden states after every layer (the embeddings as "embeddings")."""
    ranks = layer_ranks(output)
    if not ranks:
        return None
    values = torch.stack(list(ranks.values()), 1).cpu().numpy()                                # (B, L + 1)
    return pd.DataFrame({"case": np.repeat(labels, values.shape[1]), "layer": np.tile(list(ranks), len(labels)),
                         "effective_rank": values.reshape(-1)})


@torch.no_grad()
def dataset_diagnostics(model, users: np.ndarray, items: np.ndarray, histories: np.ndarray,
                        case_labels: list | None = None, batch_size: int = 256,
                        thresholds: CollapseThresholds = CollapseThresholds(), progress: bool = False) -> DiagnosticsReport:
    """Run ``model`` with attention on every (user, item, history) case in batches and collect statistics."""
    device = model.device
    frames, rank_frames, js_sums, js_rows = [], [], {}, {}
    labels = case_labels if case_labels is not None else list(users)
    for start in tqdm(range(0, len(users), batch_size), desc="diagnostics", disable=not progress, leave=False):
        stop = min(len(users), start + batch_size)
        batch = Batch.from_numpy(users[start:stop], items[start:stop], histories[start:stop]).to(device)
        out = model(batch, output_attentions=True)
        for name, attention in (out.attentions or {}).items():
            stats = layer_head_statistics(attention)
            if stats is None:
                continue
            n_rows, n_layers, n_heads = stats["max_weight"].shape
            layers = np.arange(n_layers) if "layer" in attention.axes else np.array([-1])
            heads = np.arange(n_heads) if "head" in attention.axes else np.array([-1])
            frame = {"case": np.repeat(labels[start:stop], n_layers * n_heads), "map": name,
                     "level": attention.level, "layer": np.tile(np.repeat(layers, n_heads), n_rows),
                     "head": np.tile(heads, n_rows * n_layers)}
            for stat in STATISTICS:
                frame[stat] = stats[stat].reshape(-1).cpu().numpy()
            for flag, values in flags(stats, thresholds).items():
                frame[flag] = values.reshape(-1).cpu().numpy()
            frames.append(pd.DataFrame(frame))
            for label, (js, n) in _head_js_sums(attention).items():
                key = name if label is None else f"{name}, {label}"
                js_sums[key] = js_sums.get(key, 0) + js
                js_rows[key] = js_rows.get(key, 0) + n
        ranks = _rank_rows(out, labels[start:stop])
        if ranks is not None:
            rank_frames.append(ranks)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["case", "map", "level", "layer", "head", *STATISTICS, "near_uniform", "near_one_hot"])
    rows = rows.dropna(subset=["normalised_entropy"])
    summary = summarise(rows)
    similarity = {name: (js_sums[name] / max(js_rows[name], 1)).cpu().numpy() for name in js_sums}
    report = DiagnosticsReport(rows, summary, similarity, thresholds)
    if rank_frames:
        report.effective_rank = pd.concat(rank_frames, ignore_index=True).dropna(subset=["effective_rank"])
    return report


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame()
    grouped = rows.groupby(["map", "layer", "head"], sort=True)
    summary = grouped[list(STATISTICS)].agg(["mean", "median"])
    summary.columns = [f"{stat}_{how}" for stat, how in summary.columns]
    summary["share_near_uniform"] = grouped["near_uniform"].mean()
    summary["share_near_one_hot"] = grouped["near_one_hot"].mean()
    summary["rows"] = grouped.size()
    return summary.reset_index()


# ---------------------------------------------------------------- what the page flags
def collapse_findings(report: DiagnosticsReport) -> dict[str, list[str]]:
    """Where the typical case has collapsed, by the report's thresholds: ``near_one_hot`` / ``near_uniform``
    list the "map · layer l · head h" whose median statistic over cases crosses the per-row threshold (so at
    least half the cases are flagged); ``rank_collapse`` the layers whose median effective rank is below
    ``thresholds.rank_collapse`` while the embeddings' is not (the encoder lost the rank its input had)."""
    thresholds, summary = report.thresholds, report.summary
    found = {"near_one_hot": [], "near_uniform": [], "rank_collapse": []}
    if not summary.empty:
        for row in summary.itertuples(index=False):
            where = unit_label(row.map, row.layer, row.head)
            if row.max_weight_median >= thresholds.near_one_hot:
                found["near_one_hot"].append(where)
            if row.normalised_entropy_median >= thresholds.near_uniform:
                found["near_uniform"].append(where)
    ranks = report.effective_rank
    if not ranks.empty:
        medians = ranks.groupby("layer", sort=False)["effective_rank"].median()
        if medians.get("embeddings", np.inf) >= thresholds.rank_collapse:
            found["rank_collapse"] = [layer for layer, value in medians.items()
                                      if layer != "embeddings" and value < thresholds.rank_collapse]
    return found


def unit_label(map_name: str | None, layer: int, head: int) -> str:
    """ "map · layer l · head h" from 0-based indices; -1 (None for the map) leaves that part out."""
    parts = ([str(map_name)] if map_name is not None else []) + ([f"layer {layer + 1}"] if layer >= 0 else []) + \
        ([f"head {head + 1}"] if head >= 0 else [])
    return " · ".join(parts)


def pair_layer_heads(view) -> pd.DataFrame | None:
    """One explained pair's collapse statistics per (layer, head), from a map view's per-row ``statistics`` and
    ``flags`` (:class:`~recmodels.explain.views.MapView`): per (layer, head), the mean normalised entropy and max
    weight over its informative rows (e.g. SASRec's query positions), how many of those rows each flag marks, and
    the row count. Columns layer, head (0-based, -1 where the map lacks the axis), unit ("layer l · head h"), ...
    None for a map with neither axis, or one that is not a distribution."""
    remaining = [a for a in view.axes if a != view.normalised_over]
    if view.statistics is None or not {"layer", "head"} & set(remaining):
        return None

    def laid_out(values) -> torch.Tensor:                                                  # (L, H, N)
        return by_layer_and_head(torch.as_tensor(np.asarray(values, dtype=np.float64)).unsqueeze(0), remaining)[0]

    entropy = laid_out(view.statistics["normalised_entropy"])
    informative = torch.isfinite(entropy)
    layers, heads = entropy.shape[:2]
    frame = pd.DataFrame({"layer": np.repeat(np.arange(layers) if "layer" in remaining else [-1], heads),
                          "head": np.tile(np.arange(heads) if "head" in remaining else [-1], layers)})
    frame["unit"] = [unit_label(None, layer, head) for layer, head in zip(frame["layer"], frame["head"])]
    frame["normalised_entropy"] = finite_mean(entropy, -1).reshape(-1).numpy()
    frame["max_weight"] = finite_mean(laid_out(view.statistics["max_weight"]), -1).reshape(-1).numpy()
    for flag, values in (view.flags or {}).items():
        frame[flag] = (laid_out(values) * informative).sum(-1).reshape(-1).numpy().astype(int)
    frame["rows"] = informative.sum(-1).reshape(-1).numpy()
    return frame


# ---------------------------------------------------------------- the training history
def layer_head_history(history) -> pd.DataFrame:
    """The per-(layer, head) attention statistics of a checkpoint's ``history`` (config.json), in long format:
    epoch, map, layer, head (0-based, -1 where the map lacks the axis), normalised_entropy, max_weight. Empty for
    a history written before they were recorded; entries or values of the wrong type are skipped (the file is
    untrusted)."""
    records: dict[tuple, dict] = {}
    for entry in _entries(history):
        attention = entry.get("attention")
        for name, stats in (attention.items() if isinstance(attention, dict) else ()):
            for key, value in (stats.items() if isinstance(stats, dict) else ()):
                parsed = parse_layer_head_key(key)
                if parsed is None:
                    continue
                stat, layer, head = parsed
                unit = (entry["epoch"], str(name), -1 if layer is None else layer - 1, -1 if head is None else head - 1)
                records.setdefault(unit, {})[stat] = _number(value)
    columns = ["epoch", "map", "layer", "head", "normalised_entropy", "max_weight"]
    frame = pd.DataFrame([{**dict(zip(columns, unit)), **stats} for unit, stats in records.items()],
                         columns=columns)
    return frame.sort_values(["map", "layer", "head", "epoch"], ignore_index=True)


def rank_history(history) -> pd.DataFrame:
    """The effective rank per layer and epoch from a checkpoint's ``history``: epoch, layer ("embeddings",
    "layer 1", ...), depth (0 for the embeddings), mean, q10, median, q90. Empty when it was not recorded (every
    model but the sequence transformers, and checkpoints written before it was)."""
    rows = []
    for entry in _entries(history):
        ranks = entry.get("effective_rank")
        for layer, stats in (ranks.items() if isinstance(ranks, dict) else ()):
            depth = 0 if layer == "embeddings" else _layer_number(layer)
            if depth is None or not isinstance(stats, dict):
                continue
            values = {k: _number(stats.get(k)) for k in ("mean", "q10", "median", "q90")}
            rows.append({"epoch": entry["epoch"], "layer": layer, "depth": depth, **values})
    frame = pd.DataFrame(rows, columns=["epoch", "layer", "depth", "mean", "q10", "median", "q90"])
    return frame.sort_values(["depth", "epoch"], ignore_index=True)


def _entries(history):
    """The history's entries that are objects with a whole-number epoch."""
    for entry in history if isinstance(history, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("epoch"), int) and not isinstance(entry["epoch"], bool):
            yield entry


def _number(value) -> float:
    """A recorded number as a float; NaN for null, a missing value or anything that is not a number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return np.nan
    try:
        return float(value)
    except OverflowError:  # a whole number with hundreds of digits
        return np.nan


def _layer_number(label) -> int | None:
    if isinstance(label, str) and label.startswith("layer ") and label[6:].isdigit() and len(label) <= 12:
        return int(label[6:])
    return None
