"""Dataset-wide collapse diagnostics: the distribution of each statistic per map, layer and head over many rows,
the effective rank of a sequence transformer's hidden states per layer, and the checkpoint-level findings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from recmodels.explain.collapse import (
    STATISTICS,
    CollapseThresholds,
    by_layer_and_head,
    finite_mean,
    flags,
    head_divergence,
    layer_ranks,
    map_statistics,
    parse_layer_head_key,
)
from recmodels.explain.heads import HeadImportanceReport
from recmodels.models.output_check import check_output
from recmodels.models.outputs import AttentionMap, Batch

RESAMPLES = 1000  # bootstrap resamples of the cases behind each interval
CONFIDENCE = 0.95
RESAMPLE_CELLS = 4_000_000  # resamples x cases drawn at once: 32 MB of float64 weights, whatever the user count
UNIT = ["map", "layer", "head"]
FLAGS = ("near_uniform", "near_one_hot")


@dataclass
class DiagnosticsReport:
    """``rows``: one row per (case, map, layer, head), with ``layer`` / ``head`` -1 for a map without that axis
    (0-based otherwise); ``summary``: per (map, layer, head) means, medians and flagged shares, with a bootstrap
    interval over cases for each mean and share (``<stat>_mean_low`` / ``_high``, ``share_<flag>_low`` / ``_high``);
    ``head_similarity``: per head-level map (per layer for a map with layers, named "map, layer l"), the (H, H)
    mean Jensen-Shannon divergence between heads; ``effective_rank``: one row per (case, layer) for models that
    return hidden states (rank collapse), empty otherwise, and ``rank_summary`` its mean (with its interval) and
    median per layer. ``users_sampled`` of the dataset's ``users_total`` users are covered (filled in by
    RecService.diagnostics; ``sampled`` when fewer than all), drawn with ``seed``, which also seeds the
    ``resamples`` bootstrap resamples of the ``confidence`` intervals."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    head_similarity: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: CollapseThresholds = CollapseThresholds()
    head_importance: HeadImportanceReport | None = None  # filled by RecService.diagnostics for a model with heads
    effective_rank: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["case", "layer", "effective_rank"])
    )
    rank_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    users_sampled: int | None = None
    users_total: int | None = None
    seed: int = 0
    resamples: int = RESAMPLES
    confidence: float = CONFIDENCE

    @property
    def sampled(self) -> bool:
        """Whether the figures cover a sample of the dataset's users rather than every one."""
        return self.users_sampled is not None and self.users_total is not None and self.users_sampled < self.users_total


def layer_head_statistics(attention: AttentionMap) -> dict[str, torch.Tensor] | None:
    """Statistics reduced to (B, L, H): L (H) is 1 for a map without a layer (head) axis; other axes are averaged
    over their informative rows (e.g. SASRec's query positions, NRMS's query items, ACF's profile items)."""
    stats = map_statistics(attention)
    if stats is None:
        return None
    remaining = [a for a in attention.axes if a != attention.normalised_over]
    return {name: finite_mean(by_layer_and_head(values, remaining), -1) for name, values in stats.items()}


def _rank_rows(output, labels) -> pd.DataFrame | None:
    """Effective rank of each case's hidden states after every layer (the embeddings as "embeddings")."""
    ranks = layer_ranks(output)
    if not ranks:
        return None
    values = torch.stack(list(ranks.values()), 1).cpu().numpy()  # (B, L + 1)
    return pd.DataFrame(
        {
            "case": np.repeat(labels, values.shape[1]),
            "layer": np.tile(list(ranks), len(labels)),
            "effective_rank": values.reshape(-1),
        }
    )


@torch.no_grad()
def dataset_diagnostics(
    model,
    users: np.ndarray,
    items: np.ndarray,
    histories: np.ndarray,
    case_labels: list | None = None,
    batch_size: int = 256,
    thresholds: CollapseThresholds = CollapseThresholds(),
    progress: bool = False,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> DiagnosticsReport:
    """Run ``model`` with attention on every (user, item, history) case in batches and collect statistics; the
    summaries' intervals come from ``resamples`` bootstrap resamples of the cases, seeded with ``seed``."""
    device = model.device
    frames, rank_frames, js_sums, js_rows = [], [], {}, {}
    labels = case_labels if case_labels is not None else list(users)
    for start in tqdm(range(0, len(users), batch_size), desc="diagnostics", disable=not progress, leave=False):
        stop = min(len(users), start + batch_size)
        batch = Batch.from_numpy(users[start:stop], items[start:stop], histories[start:stop]).to(device)
        out = check_output(model, model(batch, output_attentions=True), len(batch), maps=True)
        for name, attention in (out.attentions or {}).items():
            stats = layer_head_statistics(attention)
            if stats is None:
                continue
            n_rows, n_layers, n_heads = stats["max_weight"].shape
            layers = np.arange(n_layers) if "layer" in attention.axes else np.array([-1])
            heads = np.arange(n_heads) if "head" in attention.axes else np.array([-1])
            frame = {
                "case": np.repeat(labels[start:stop], n_layers * n_heads),
                "map": name,
                "level": attention.level,
                "layer": np.tile(np.repeat(layers, n_heads), n_rows),
                "head": np.tile(heads, n_rows * n_layers),
            }
            for stat in STATISTICS:
                frame[stat] = stats[stat].reshape(-1).cpu().numpy()
            for flag, values in flags(stats, thresholds).items():
                frame[flag] = values.reshape(-1).cpu().numpy()
            frames.append(pd.DataFrame(frame))
            for label, (js, n) in head_divergence(attention).items():
                key = name if label is None else f"{name}, {label}"
                js_sums[key] = js_sums.get(key, 0) + js
                js_rows[key] = js_rows.get(key, 0) + n
        ranks = _rank_rows(out, labels[start:stop])
        if ranks is not None:
            rank_frames.append(ranks)
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=["case", "map", "level", "layer", "head", *STATISTICS, "near_uniform", "near_one_hot"]
        )
    )
    rows = rows.dropna(subset=["normalised_entropy"])
    summary = summarise(rows, seed, resamples)
    similarity = {name: (js_sums[name] / max(js_rows[name], 1)).cpu().numpy() for name in js_sums}
    report = DiagnosticsReport(rows, summary, similarity, thresholds, seed=seed, resamples=resamples)
    if rank_frames:
        report.effective_rank = pd.concat(rank_frames, ignore_index=True).dropna(subset=["effective_rank"])
        report.rank_summary = summarise_ranks(report.effective_rank, seed, resamples)
    return report


def summarise(rows: pd.DataFrame, seed: int = 0, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Per (map, layer, head): each statistic's mean and median, each flag's share and the row count, then the
    bootstrap interval of every mean and share over cases (columns ``<stat>_mean_low`` / ``_high``,
    ``share_<flag>_low`` / ``_high``); a share's is widened to hold Wilson's score interval too."""
    if rows.empty:
        return pd.DataFrame()
    grouped = rows.groupby(UNIT, sort=True)
    summary = grouped[list(STATISTICS)].agg(["mean", "median"])
    summary.columns = [f"{stat}_{how}" for stat, how in summary.columns]
    summary["share_near_uniform"] = grouped["near_uniform"].mean()
    summary["share_near_one_hot"] = grouped["near_one_hot"].mean()
    summary["rows"] = grouped.size()
    names = {**{stat: f"{stat}_mean" for stat in STATISTICS}, **{flag: f"share_{flag}" for flag in FLAGS}}
    low, high = bootstrap_mean_intervals(rows, UNIT, list(names), seed, resamples)
    for flag in FLAGS:  # no flagged user (or every one) in the sample makes the bootstrap a point: widen
        wilson_low, wilson_high = wilson_interval(summary[f"share_{flag}"], grouped[flag].count())
        low[flag], high[flag] = np.fmin(low[flag], wilson_low), np.fmax(high[flag], wilson_high)
    for column, name in names.items():
        summary[f"{name}_low"], summary[f"{name}_high"] = around(summary[name], low[column], high[column])
    return summary.reset_index()


def summarise_ranks(ranks: pd.DataFrame, seed: int = 0, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Per layer (the embeddings first): the effective rank's mean with its bootstrap interval, its median and the
    row count."""
    grouped = ranks.groupby("layer", sort=False)["effective_rank"]
    summary = pd.DataFrame(
        {"effective_rank_mean": grouped.mean(), "effective_rank_median": grouped.median(), "rows": grouped.size()}
    )
    low, high = bootstrap_mean_intervals(ranks, ["layer"], ["effective_rank"], seed, resamples)
    summary["effective_rank_mean_low"], summary["effective_rank_mean_high"] = around(
        summary["effective_rank_mean"], low["effective_rank"], high["effective_rank"]
    )
    return summary.rename_axis("layer").reset_index()


def wilson_interval(share: pd.Series, n: pd.Series, confidence: float = CONFIDENCE) -> tuple[pd.Series, pd.Series]:
    """Wilson's score interval of a share of ``n`` cases: unlike the bootstrap's, it has a width when the share
    is 0 or 1 (3 / n or so), so a flag no sampled user raised is not reported as certainly absent."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half).clip(lower=0), (centre + half).clip(upper=1)


def around(estimate: pd.Series, low: pd.Series, high: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The interval widened to hold the estimate: round-off (the bootstrap sums in another order) or the skew of a
    tiny sample can leave it a hair outside."""
    return np.fmin(low, estimate), np.fmax(high, estimate)


def bootstrap_mean_intervals(
    rows: pd.DataFrame,
    unit: list[str],
    columns: list[str],
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The percentile bootstrap interval of each unit's mean of each column, resampling cases (``rows["case"]``)
    with replacement: (low, high), indexed by unit like ``rows.groupby(unit)``. Every resample draws the same cases
    for every unit and column and is a weighted sum of per-case sums, so the whole bootstrap is a few matrix
    products (no loop per unit or resample). A case missing from a unit, or NaN there, counts for nothing in it."""
    cases = pd.factorize(rows["case"])[0]
    grouped = rows.groupby(unit, sort=True)
    index, units, n_cases = grouped.size().index, grouped.ngroup().to_numpy(), int(cases.max()) + 1
    values = rows[columns].to_numpy(dtype=np.float64)
    present = np.isfinite(values)
    # per (case, unit, column): the sum of the case's values and how many it has (a case listed twice counts twice)
    width = len(index) * len(columns)
    cells = ((cases * len(index) + units)[:, None] * len(columns) + np.arange(len(columns))).reshape(-1)
    sums = np.bincount(cells, np.where(present, values, 0.0).reshape(-1), n_cases * width).reshape(n_cases, width)
    counts = np.bincount(cells, present.reshape(-1), n_cases * width).reshape(n_cases, width)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimates = sums.sum(0) / counts.sum(0)
    means = np.empty((resamples, sums.shape[1]))
    rng = np.random.default_rng(seed)
    step = max(1, RESAMPLE_CELLS // n_cases)
    for start in range(0, resamples, step):  # in chunks only to bound the weights' memory at --all scale
        chunk = min(step, resamples - start)
        picks = rng.integers(0, n_cases, size=(chunk, n_cases)) + n_cases * np.arange(chunk)[:, None]
        weights = np.bincount(picks.reshape(-1), minlength=chunk * n_cases).reshape(chunk, n_cases).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start : start + chunk] = (weights @ sums) / (weights @ counts)
    low, high = estimates, estimates
    if resamples:
        tail = (1 - confidence) / 2
        with warnings.catch_warnings():  # a unit no resample has data for stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanquantile(means, [tail, 1 - tail], axis=0)
    shape = (len(index), len(columns))
    return (
        pd.DataFrame(low.reshape(shape), index=index, columns=columns),
        pd.DataFrame(high.reshape(shape), index=index, columns=columns),
    )


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
            found["rank_collapse"] = [
                layer for layer, value in medians.items() if layer != "embeddings" and value < thresholds.rank_collapse
            ]
    return found


def unit_label(map_name: str | None, layer: int, head: int) -> str:
    """ "map · layer l · head h" from 0-based indices; -1 (None for the map) leaves that part out."""
    parts = (
        ([str(map_name)] if map_name is not None else [])
        + ([f"layer {layer + 1}"] if layer >= 0 else [])
        + ([f"head {head + 1}"] if head >= 0 else [])
    )
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

    def laid_out(values) -> torch.Tensor:  # (L, H, N)
        return by_layer_and_head(torch.as_tensor(np.asarray(values, dtype=np.float64)).unsqueeze(0), remaining)[0]

    entropy = laid_out(view.statistics["normalised_entropy"])
    informative = torch.isfinite(entropy)
    layers, heads = entropy.shape[:2]
    frame = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(layers) if "layer" in remaining else [-1], heads),
            "head": np.tile(np.arange(heads) if "head" in remaining else [-1], layers),
        }
    )
    frame["unit"] = [unit_label(None, layer, head) for layer, head in zip(frame["layer"], frame["head"])]
    frame["normalised_entropy"] = finite_mean(entropy, -1).reshape(-1).numpy()
    frame["max_weight"] = finite_mean(laid_out(view.statistics["max_weight"]), -1).reshape(-1).numpy()
    for flag, values in (view.flags or {}).items():
        frame[flag] = (laid_out(values) * informative).sum(-1).reshape(-1).numpy().astype(int)
    frame["rows"] = informative.sum(-1).reshape(-1).numpy()
    return frame


# ---------------------------------------------------------------- the training history
def history_frame(history) -> pd.DataFrame:
    """A training ``history`` (config.json's, or a run folder's records) in long format: per record, the training
    loss and valid metrics, and one row per attention map with its statistics. Entries of the wrong shape are skipped
    (the file is untrusted)."""
    rows = []
    for entry in _entries(history):
        valid = entry.get("valid") if isinstance(entry.get("valid"), dict) else {}
        base = {
            "epoch": entry["epoch"],
            "train_loss": _number(entry.get("train_loss")),
            **{str(k): _number(v) for k, v in valid.items()},
        }
        maps = entry.get("attention") if isinstance(entry.get("attention"), dict) else {}
        if not maps:
            rows.append(base)
        for name, stats in maps.items():
            stats = stats if isinstance(stats, dict) else {}
            rows.append({**base, "map": str(name), **{str(k): _number(v) for k, v in stats.items()}})
    return pd.DataFrame(rows)


def layer_head_history(history) -> pd.DataFrame:
    """The per-(layer, head) attention statistics of a checkpoint's ``history`` (config.json), in long format:
    epoch, map, layer, head (0-based, -1 where the map lacks the axis), normalised_entropy, max_weight. Empty for
    a history written before they were recorded; entries or values of the wrong type are skipped (the file is
    untrusted)."""
    records: dict[tuple, dict] = {}
    for entry in _entries(history):
        attention = entry.get("attention")
        for name, stats in attention.items() if isinstance(attention, dict) else ():
            for key, value in stats.items() if isinstance(stats, dict) else ():
                parsed = parse_layer_head_key(key)
                if parsed is None:
                    continue
                stat, layer, head = parsed
                unit = (entry["epoch"], str(name), -1 if layer is None else layer - 1, -1 if head is None else head - 1)
                records.setdefault(unit, {})[stat] = _number(value)
    columns = ["epoch", "map", "layer", "head", "normalised_entropy", "max_weight"]
    frame = pd.DataFrame([{**dict(zip(columns, unit)), **stats} for unit, stats in records.items()], columns=columns)
    return frame.sort_values(["map", "layer", "head", "epoch"], ignore_index=True)


def rank_history(history) -> pd.DataFrame:
    """The effective rank per layer and epoch from a checkpoint's ``history``: epoch, layer ("embeddings",
    "layer 1", ...), depth (0 for the embeddings), mean, q10, median, q90. Empty when it was not recorded (every
    model but the sequence transformers, and checkpoints written before it was)."""
    rows = []
    for entry in _entries(history):
        ranks = entry.get("effective_rank")
        for layer, stats in ranks.items() if isinstance(ranks, dict) else ():
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
