"""Head importance (Michel, Levy & Neubig, NeurIPS 2019, "Are Sixteen Heads Really Better than One?"): how much
a pair's score changes when one attention head is masked out, so that it contributes nothing.

    change(h) = score(pair, head h masked) - score(pair)      negative: the head was raising the score

All heads of a pair come from ONE forward: the pair replicated 1 + N times (N heads in all), row 0 with every head
and row 1 + j with head j masked, through one :class:`HeadMask` per map passed as ``attention_override``. A
transformer calls the override once per layer and narrows it with ``at_layer`` first
(:func:`recmodels.models.base.apply_override`).

Which heads a model has is read from its maps alone (one forward with attentions on one row), never from its name:

- a distribution map with a ``head`` axis (NRMS's and SASRec's ``self_attention``, the two-tower's
  ``user_attention``): a head is masked by setting its weights to 0, so its output (weights times values) is 0; the
  map's ``layer`` axis, when it has one, gives the rows of the layer x head grid;
- a map of scores that a max is taken over (``meta["argmax_axis"]``; IntTower's ``head_similarity``, (layer,
  user_head, item_head)): a head on another head axis (a user head of one layer) is masked by setting its scores
  to 0, so its term of the sum is 0; a head on the argmax axis (an item head) is left out of the max at every layer.

A model without such a map has no heads, and every function here returns nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recmodels.data.split import TEST
from recmodels.eval.metrics import top_k
from recmodels.explain.views import HeadImportanceView, axis_label
from recmodels.models.output_check import check_output
from recmodels.models.outputs import AttentionMap, Batch

QUANTILES = (0.1, 0.5, 0.9)
PAIRS_FROM = ("top1", "test")
DESCRIPTION = (
    "Change in the score when each head is masked out (its weights set to 0, so it adds nothing), "
    "masked minus full score: negative where the head was raising the score (Michel et al., 2019)."
)


def is_head_axis(axis: str) -> bool:
    return axis == "head" or axis.endswith("_head")


@dataclass(frozen=True)
class HeadGroup:
    """The heads on one head axis of a map: ``layers`` x ``heads`` of them."""

    axis: str
    layered: bool  # the map's "layer" axis indexes these heads (else one row)
    max_over: bool  # masked by leaving the head out of a max (the map's argmax axis), not by zeroing it
    layers: int
    heads: int


@dataclass(frozen=True)
class MapHeads:
    """The heads of one map, and where each goes in its importance grid (``rows`` x ``columns``)."""

    name: str
    axes: tuple[str, ...]
    groups: tuple[HeadGroup, ...]
    rows: tuple[str, ...]
    columns: tuple[str, ...]

    def cells(self) -> list[tuple[int, int, int, int, int]]:
        """(group, layer, head, grid row, grid column) of every head, groups in order, then layer, then head."""
        cells, offset = [], 0
        for index, group in enumerate(self.groups):
            cells += [
                (index, layer, head, offset + layer, head)
                for layer in range(group.layers)
                for head in range(group.heads)
            ]
            offset += group.layers
        return cells


def map_heads(name: str, attention: AttentionMap) -> MapHeads | None:
    """The heads of one map (see the module docstring), or None for a map without heads to mask."""
    axes = attention.axes
    if attention.level != "head":
        return None
    size = {axis: attention.values.shape[1 + i] for i, axis in enumerate(axes)}
    layers = size.get("layer", 1)
    if attention.normalised_over is not None:
        if "head" not in axes or attention.normalised_over == "head":
            return None
        groups = (HeadGroup("head", "layer" in axes, False, layers, size["head"]),)
    else:
        argmax = attention.meta.get("argmax_axis")
        if argmax not in axes or not is_head_axis(argmax):
            return None
        groups = tuple(
            HeadGroup(
                axis,
                "layer" in axes and axis != argmax,
                axis == argmax,
                layers if "layer" in axes and axis != argmax else 1,
                size[axis],
            )
            for axis in axes
            if is_head_axis(axis)
        )
    layer_labels = _labels(attention, "layer", layers)
    if len(groups) == 1:
        group = groups[0]
        rows = layer_labels if group.layered else [axis_label("layer", 0)]
        columns = _labels(attention, group.axis, group.heads)
    else:  # e.g. user heads per layer and item heads: rows say which, columns count heads
        rows = [
            f"{_words(g.axis)}s · {label}" if g.layered else f"{_words(g.axis)}s"
            for g in groups
            for label in (layer_labels if g.layered else [""])
        ]
        columns = [axis_label("head", h) for h in range(max(g.heads for g in groups))]
    return MapHeads(name, tuple(axes), groups, tuple(rows), tuple(columns))


def find_heads(maps: dict[str, AttentionMap] | None) -> list[MapHeads]:
    return [heads for name, attention in (maps or {}).items() if (heads := map_heads(name, attention)) is not None]


def _labels(attention: AttentionMap, axis: str, size: int) -> list[str]:
    given = attention.labels.get(axis)
    if given is not None and len(given) == size:
        return [str(label) for label in given]
    return [axis_label(axis, i) for i in range(size)]


def _words(axis: str) -> str:
    return axis.replace("_", " ")


class HeadMask:
    """``attention_override`` that masks heads of one map, row by row.

    ``gates[g]`` is ``(rows, layers, heads)`` for group g of ``heads``: 1 where a head stays, 0 where it is masked.
    Called on the map's weights (a transformer calls it per layer, after :meth:`at_layer`, without the layer axis).
    """

    def __init__(self, heads: MapHeads, gates: list[torch.Tensor], layer: int | None = None):
        self.heads, self.gates, self.layer = heads, gates, layer

    def at_layer(self, layer: int) -> HeadMask:
        return HeadMask(self.heads, self.gates, layer)

    def __call__(self, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        axes = self.heads.axes if self.layer is None else tuple(a for a in self.heads.axes if a != "layer")
        if weights.dim() != 1 + len(axes) or weights.shape[0] != self.gates[0].shape[0]:
            raise ValueError(
                f"the head mask of {self.heads.name!r} expects {self.gates[0].shape[0]} rows over "
                f"{axes}, got weights of shape {tuple(weights.shape)}"
            )
        for group, gate in zip(self.heads.groups, self.gates):
            gate = gate.to(weights.dtype)
            if group.layered and "layer" in axes:
                positions = [axes.index("layer"), axes.index(group.axis)]
            else:
                gate = gate[:, self.layer if group.layered and self.layer is not None else 0]
                positions = [axes.index(group.axis)]
            keep = _broadcast(gate, positions, weights.dim())
            weights = _left_out_of_max(weights, keep, 1 + axes.index(group.axis)) if group.max_over else weights * keep
        return weights


def _broadcast(gate: torch.Tensor, positions: list[int], ndim: int) -> torch.Tensor:
    """``gate`` (B, *k) reshaped to broadcast against a (B, ...) tensor of ``ndim`` axes, its axes at ``positions``
    (0-based after the batch axis)."""
    order = sorted(range(len(positions)), key=positions.__getitem__)
    gate = gate.permute(0, *(1 + i for i in order))
    shape = [gate.shape[0]] + [1] * (ndim - 1)
    for position, size in zip(sorted(positions), gate.shape[1:]):
        shape[1 + position] = size
    return gate.reshape(shape)


def _left_out_of_max(weights: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Masked entries replaced by the max of the kept ones along ``dim`` (0 when none is kept), so a max over
    ``dim`` is the max over the kept entries alone."""
    keep = keep.expand_as(weights) > 0
    others = weights.masked_fill(~keep, float("-inf")).amax(dim, keepdim=True)
    others = torch.where(torch.isfinite(others), others, torch.zeros_like(others))
    return torch.where(keep, weights, others)


def _first_row(batch: Batch) -> Batch:
    return Batch(batch.users[:1], batch.items[:1], batch.history[:1])


@torch.no_grad()
def model_heads(model, users: np.ndarray, items: np.ndarray, histories: np.ndarray) -> list[MapHeads]:
    """The heads of ``model``, read from its maps on the first of the given rows."""
    batch = Batch.from_numpy(users[:1], items[:1], histories[:1]).to(model.device)
    return find_heads(check_output(model, model(batch, output_attentions=True), 1, maps=True).attentions)


@torch.no_grad()
def head_changes(
    model, batch: Batch, heads: list[MapHeads] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(scores (B,), {map name: change (B, rows, columns)}) for every row of ``batch``: the score with each head
    masked minus the full score, NaN where the grid has no head; one forward of B x (1 + N) rows.

    ``heads`` (from :func:`find_heads`) defaults to the heads of the maps of the first row."""
    if heads is None:
        heads = find_heads(
            check_output(model, model(_first_row(batch), output_attentions=True), 1, maps=True).attentions
        )
    if not heads:
        return check_output(model, model(batch), len(batch)).scores.detach().float(), {}
    units = [(m, *cell) for m, layout in enumerate(heads) for cell in layout.cells()]
    n, device = len(units), batch.users.device
    unit_map, unit_group, unit_layer, unit_head, unit_row, unit_column = (
        torch.tensor(column, device=device) for column in zip(*units)
    )
    overrides = {}
    for m, layout in enumerate(heads):
        gates = []
        for g, group in enumerate(layout.groups):
            gate = torch.ones(1 + n, group.layers, group.heads, device=device)
            mine = torch.nonzero((unit_map == m) & (unit_group == g)).squeeze(1)
            gate[1 + mine, unit_layer[mine], unit_head[mine]] = 0.0  # row 1 + j masks head j
            gates.append(gate.repeat(len(batch), 1, 1))
        overrides[layout.name] = HeadMask(layout, gates)
    repeated = Batch(
        batch.users.repeat_interleave(1 + n),
        batch.items.repeat_interleave(1 + n),
        batch.history.repeat_interleave(1 + n, dim=0),
    )
    # a model that keeps its rules on a plain forward can still break them with a head masked: checked here too
    masked = check_output(model, model(repeated, attention_override=overrides), len(repeated))
    scores = masked.scores.detach().float().view(len(batch), 1 + n)
    full, change = scores[:, 0], scores[:, 1:] - scores[:, :1]
    grids = {}
    for m, layout in enumerate(heads):
        grid = torch.full((len(batch), len(layout.rows), len(layout.columns)), float("nan"), device=device)
        mine = torch.nonzero(unit_map == m).squeeze(1)
        grid[:, unit_row[mine], unit_column[mine]] = change[:, mine]
        grids[layout.name] = grid
    return full, grids


@torch.no_grad()
def pair_head_importance(model, batch: Batch) -> dict[str, HeadImportanceView]:
    """Head importance of the single row of ``batch``, one labelled layer x head view per map with heads."""
    heads = find_heads(model(_first_row(batch), output_attentions=True).attentions)
    scores, grids = head_changes(model, _first_row(batch), heads)
    return {
        h.name: HeadImportanceView(
            h.name, float(scores[0]), list(h.rows), list(h.columns), grids[h.name][0].cpu().numpy(), DESCRIPTION
        )
        for h in heads
    }


@dataclass
class HeadImportanceReport:
    """Head importance over many (user, item) pairs, so that redundant or dead heads stand out.

    ``rows``: one row per (case, map, head) with ``layer`` and ``head`` labels, the pair's ``score`` and the
    ``change`` when that head is masked. ``summary``: per (map, layer, head), ``mean_change``, ``mean_abs_change``,
    quantiles of the change (``q10``, ``median``, ``q90``), ``share_tiny`` (the share of pairs where
    ``|change| <= tiny``) and ``pairs``. ``pairs_from`` says which item each user was read with."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    pairs_from: str
    tiny: float

    def grid(self, map_name: str, statistic: str = "mean_change") -> pd.DataFrame:
        """One statistic of one map as a labelled layer x head table, in the model's order."""
        part = self.summary[self.summary["map"] == map_name]
        table = part.pivot(index=["row", "layer"], columns=["column", "head"], values=statistic)
        table.index, table.columns = table.index.get_level_values("layer"), table.columns.get_level_values("head")
        return table


SUMMARY_COLUMNS = [
    "map",
    "row",
    "column",
    "layer",
    "head",
    "mean_change",
    "mean_abs_change",
    "q10",
    "median",
    "q90",
    "share_tiny",
    "pairs",
]


def dataset_head_importance(
    model,
    users: np.ndarray,
    items: np.ndarray,
    histories: np.ndarray,
    case_labels: list,
    batch_size: int = 256,
    tiny: float = 1e-3,
    pairs_from: str = "",
    heads: list[MapHeads] | None = None,
) -> HeadImportanceReport | None:
    """Head importance of every (user, item, history) case, ``batch_size`` forward rows at a time; None for a model
    without heads (or no case). ``heads`` defaults to :func:`model_heads` on the first case."""
    device = model.device
    if heads is None:
        heads = model_heads(model, users, items, histories) if len(users) else []
    if not heads or not len(users):
        return None
    per_pair = 1 + sum(len(h.cells()) for h in heads)
    step = max(1, batch_size // per_pair)
    frames = []
    for start in range(0, len(users), step):
        stop = min(len(users), start + step)
        batch = Batch.from_numpy(users[start:stop], items[start:stop], histories[start:stop]).to(device)
        scores, grids = head_changes(model, batch, heads)
        scores = scores.cpu().numpy()
        for h in heads:
            cells = np.array([cell[3:] for cell in h.cells()])  # (n, 2): grid row, column
            row, column = np.tile(cells[:, 0], stop - start), np.tile(cells[:, 1], stop - start)
            frames.append(
                pd.DataFrame(
                    {
                        "case": np.repeat(np.asarray(case_labels[start:stop], dtype=object), len(cells)),
                        "map": h.name,
                        "row": row,
                        "column": column,
                        "layer": np.asarray(h.rows, dtype=object)[row],
                        "head": np.asarray(h.columns, dtype=object)[column],
                        "score": np.repeat(scores, len(cells)),
                        "change": grids[h.name][:, cells[:, 0], cells[:, 1]].cpu().numpy().ravel(),
                    }
                )
            )
    rows = pd.concat(frames, ignore_index=True)
    return HeadImportanceReport(rows, summarise_heads(rows, tiny), pairs_from, tiny)


@torch.no_grad()
def sample_pairs(
    model, data, users: np.ndarray, pairs_from: str, sample: int, seed: int, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, histories) of a seeded sample of at most ``sample`` of ``users`` (indices), each read with
    its top-1 unseen item and its full history (``pairs_from="top1"``, what :meth:`RecService.recommend` shows) or
    with its first test interaction and the history strictly before it (``"test"``); users without such a pair,
    or with an empty history, are left out."""
    users = np.asarray(users, dtype=np.int64)
    if len(users) > sample:
        users = np.sort(np.random.default_rng(seed).choice(users, sample, replace=False))
    frame_users, frame_items = (data.dataset.interactions[c].to_numpy() for c in ("user", "item"))
    if pairs_from == "test":
        test_rows = np.flatnonzero(data.part == TEST)  # interactions are sorted by user, then time
        with_test, first = np.unique(frame_users[test_rows], return_index=True)
        rows = test_rows[first[np.isin(with_test, users)]]
        users, items, histories = frame_users[rows], frame_items[rows], data.histories(rows)
    else:
        histories = data.full_history(users)
        starts = np.searchsorted(frame_users, users, side="left")
        counts = np.searchsorted(frame_users, users, side="right") - starts
        seen_rows = np.repeat(np.arange(len(users)), counts)
        seen_items = frame_items[np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - starts, counts)]
        catalogue = torch.arange(1, data.dataset.n_items + 1, device=model.device)
        items = np.zeros(len(users), dtype=np.int64)
        for start in range(0, len(users), batch_size):
            stop = min(len(users), start + batch_size)
            scores = model.score_items(
                torch.as_tensor(users[start:stop], device=model.device),
                torch.as_tensor(histories[start:stop], device=model.device),
                catalogue,
            ).float()
            chunk = (seen_rows >= start) & (seen_rows < stop)
            scores[seen_rows[chunk] - start, seen_items[chunk] - 1] = float("-inf")
            values, best = top_k(scores, 1)  # ties: the lower item index, as recommend
            items[start:stop] = np.where(torch.isfinite(values[:, 0]).cpu().numpy(), best[:, 0].cpu().numpy() + 1, 0)
    keep = (items > 0) & (histories != 0).any(1)
    return users[keep], items[keep], histories[keep]


def summarise_heads(rows: pd.DataFrame, tiny: float) -> pd.DataFrame:
    grouped = rows.assign(abs_change=rows["change"].abs(), is_tiny=rows["change"].abs() <= tiny).groupby(
        ["map", "row", "column", "layer", "head"], sort=True
    )
    summary = grouped.agg(
        mean_change=("change", "mean"),
        mean_abs_change=("abs_change", "mean"),
        share_tiny=("is_tiny", "mean"),
        pairs=("change", "size"),
    )
    quantiles = grouped["change"].quantile(list(QUANTILES)).unstack()
    summary[["q10", "median", "q90"]] = quantiles.to_numpy()
    return summary.reset_index()[SUMMARY_COLUMNS]
