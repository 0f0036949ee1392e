"""Collapse statistics of attention distributions, computed per row over valid positions only.

For a distribution p over n valid positions:
- normalised entropy  H(p) / log(n): 1 for uniform, 0 for one-hot;
- max weight          max_i p_i;
- effective number    exp(H(p)): how many positions the weight is spread over (1 .. n);
- Gini coefficient    0 for uniform, (n - 1) / n for one-hot.
Weights are clamped at 0 and renormalised over the valid positions first, so un-normalised maps (DIN's
original mode) are measured by the shares they give. Rows with fewer than 2 valid positions carry no
information about collapse and come back as NaN.

Rank collapse (Dong et al., 2021) is measured on the hidden states of the sequence transformers: the effective rank
(Roy & Vetterli, 2007) of each row's states after every layer, over its real positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from recmodels.models.outputs import AttentionMap

STATISTICS = ("normalised_entropy", "max_weight", "effective_number", "gini")
HISTORY_STATISTICS = ("normalised_entropy", "max_weight")  # recorded per epoch, per map and per (layer, head)
RANK_QUANTILES = {"q10": 0.1, "median": 0.5, "q90": 0.9}  # of the probe rows' effective ranks, per epoch


@dataclass(frozen=True)
class CollapseThresholds:
    """When a distribution is flagged (docs: Explanations and collapse); pass your own to change them.

    near_uniform: normalised entropy at or above this (0.98 means within 2% of the uniform entropy).
    near_one_hot: max weight at or above this (0.9 means one position takes 90% of the weight).
    rank_collapse: a layer's hidden states have collapsed in rank when their effective rank is below this: fewer
        than two equally strong directions' worth, i.e. every position says nearly the same thing (rank 1 is
        complete collapse, Dong et al. 2021).
    """

    near_uniform: float = 0.98
    near_one_hot: float = 0.9
    rank_collapse: float = 2.0


def distribution(values: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Clamp at 0, zero the padding and renormalise along ``dim``; all-zero rows stay zero."""
    weights = values.clamp(min=0) * mask
    total = weights.sum(dim, keepdim=True)
    return torch.where(total > 0, weights / total.clamp(min=1e-30), torch.zeros_like(weights))


def row_statistics(values: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> dict[str, torch.Tensor]:
    """Statistics along ``dim`` for every other index; the reduced axis disappears from the output."""
    values = values.double()
    mask = mask.expand_as(values)
    p = distribution(values, mask, dim)
    n_valid = mask.sum(dim).double()
    log_p = torch.where(p > 0, p.log(), torch.zeros_like(p))
    entropy = -(p * log_p).sum(dim)
    informative = n_valid >= 2
    nan = torch.full_like(entropy, float("nan"))
    normalised = torch.where(informative, entropy / n_valid.clamp(min=2).log(), nan)
    max_weight = torch.where(informative, p.amax(dim), nan)
    effective = torch.where(informative, entropy.exp(), nan)
    # Gini over valid positions: sort with padding pushed to the front as zeros, which add nothing
    sorted_p = torch.sort(p.masked_fill(~mask, float("-inf")), dim=dim).values.clamp(min=0)
    size = p.shape[dim]
    ranks = torch.arange(1, size + 1, dtype=p.dtype, device=p.device)
    shape = [1] * p.dim()
    shape[dim] = size
    # ranks among valid positions: padding occupies the first (size - n) sorted slots
    valid_rank = ranks.view(shape) - (size - n_valid).unsqueeze(dim)
    weighted = ((2 * valid_rank - n_valid.unsqueeze(dim) - 1) * sorted_p).sum(dim)
    gini = torch.where(informative, weighted / n_valid.clamp(min=1), nan)
    return {
        "normalised_entropy": normalised.float(),
        "max_weight": max_weight.float(),
        "effective_number": effective.float(),
        "gini": gini.float(),
    }


def map_statistics(attention: AttentionMap) -> dict[str, torch.Tensor] | None:
    """Row statistics of a map along its ``normalised_over`` axis; None for maps that are not distributions."""
    if attention.normalised_over is None:
        return None
    dim = 1 + attention.axes.index(attention.normalised_over)
    return row_statistics(attention.values.detach(), attention.full_mask(), dim=dim)


def flags(
    stats: dict[str, torch.Tensor], thresholds: CollapseThresholds = CollapseThresholds()
) -> dict[str, torch.Tensor]:
    return {
        "near_uniform": stats["normalised_entropy"] >= thresholds.near_uniform,
        "near_one_hot": stats["max_weight"] >= thresholds.near_one_hot,
    }


def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Jensen-Shannon divergence in nats (0 .. log 2) between distributions along ``dim``."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)

    def kl(a, b):
        return torch.where(a > 0, a * (a.clamp(min=1e-300).log() - b.clamp(min=1e-300).log()), torch.zeros_like(a)).sum(
            dim
        )

    return (0.5 * kl(p, m) + 0.5 * kl(q, m)).float()


def pairwise_head_js(weights: torch.Tensor, mask: torch.Tensor, head_dim: int = 0) -> torch.Tensor:
    """(H, H) mean JS divergence between heads; ``weights`` has the heads on ``head_dim`` and the
    distribution on its last axis. Other axes (query positions, rows) are averaged over valid rows."""
    mask = mask.expand_as(weights)
    p = distribution(weights.double(), mask, -1).movedim(head_dim, 0)
    valid = (mask.movedim(head_dim, 0).sum(-1) >= 2)[0]  # rows (e.g. query items) that exist
    js = js_divergence(p.unsqueeze(1), p.unsqueeze(0), dim=-1)  # (H, H, ...)
    weight = valid.to(js.dtype)
    return (js * weight).flatten(2).sum(-1) / weight.sum().clamp(min=1)


def epoch_summary(
    attentions: dict[str, AttentionMap], thresholds: CollapseThresholds = CollapseThresholds()
) -> dict[str, dict[str, float | None]]:
    """The attention statistics of one record of a training history (the trainer's per epoch, and
    :class:`~recmodels.train.monitor.AttentionMonitor`'s in any loop), per distribution map:

    - the mean normalised entropy and mean max weight over the rows, and the shares of rows flagged near uniform and
      near one-hot (by ``thresholds``);
    - for a map with a ``layer`` and/or ``head`` axis, the same four per (layer, head), as flat keys
      (``"normalised_entropy/layer 1/head 2"``; :func:`layer_head_key`): the checkpoint schema allows only numbers
      under a map's name, and old histories keep reading the per-map keys. A (layer, head) with no informative row
      is null;
    - for a map with heads, ``head_similarity``: the mean Jensen-Shannon divergence between two different heads
      (nats, 0 for identical heads), per layer (``"head_similarity/layer 1"``) and over the layers.
    """
    summary = {}
    for name, attention in attentions.items():
        stats = map_statistics(attention)
        if stats is None:
            continue
        entropy, max_weight = stats["normalised_entropy"], stats["max_weight"]
        keep = torch.isfinite(entropy)
        if not keep.any():
            continue
        flagged = flags(stats, thresholds)
        per_row = {
            "normalised_entropy": entropy,
            "max_weight": max_weight,
            "share_near_uniform": torch.where(keep, flagged["near_uniform"].double(), torch.nan),
            "share_near_one_hot": torch.where(keep, flagged["near_one_hot"].double(), torch.nan),
        }
        summary[name] = {stat: float(values[keep].double().mean()) for stat, values in per_row.items()}
        remaining = [a for a in attention.axes if a != attention.normalised_over]
        if "layer" in remaining or "head" in remaining:
            for stat, values in per_row.items():
                laid_out = by_layer_and_head(values.double(), remaining)  # (B, L, H, N)
                means = finite_mean(laid_out.movedim(0, 2).flatten(2), -1).cpu().numpy()  # (L, H)
                for (layer, head), value in np.ndenumerate(means):
                    key = layer_head_key(
                        stat, layer if "layer" in remaining else None, head if "head" in remaining else None
                    )
                    summary[name][key] = float(value) if np.isfinite(value) else None
        summary[name].update(_head_similarity(attention))
    return summary


def _head_similarity(attention: AttentionMap) -> dict[str, float]:
    """``head_similarity`` (and per layer, ``head_similarity/layer l``): the mean JS divergence between two
    different heads; nothing for a map with fewer than two heads."""
    out, total, count = {}, 0.0, 0
    for label, (js_sum, rows) in head_divergence(attention).items():
        heads = js_sum.shape[0]
        if heads < 2 or rows == 0:
            continue
        value = float(js_sum.sum() / rows / (heads * (heads - 1)))  # the diagonal is 0
        total, count = total + value, count + 1
        if label is not None:
            out[f"head_similarity/{label}"] = value
    if count:
        out["head_similarity"] = total / count
    return out


def head_divergence(attention: AttentionMap) -> dict[str | None, tuple[torch.Tensor, float]]:
    """Jensen-Shannon divergence between the heads of a head-level map, per layer where it has layers (label
    "layer l", else None): ``(JS sum weighted by rows, rows)``, so sums over batches add up; the mean (H, H) matrix
    is their ratio. Empty for a map without heads or that is not a distribution."""
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
        parts = {
            f"layer {layer + 1}": (values.select(dim, layer), mask.select(dim, layer))
            for layer in range(values.shape[dim])
        }
        remaining.remove("layer")
    head_dim = 1 + remaining.index("head")
    sums = {}
    for label, (part, part_mask) in parts.items():
        rows = float((part_mask.movedim(head_dim, 0)[0].sum(-1) >= 2).sum())
        sums[label] = (pairwise_head_js(part, part_mask, head_dim=head_dim) * rows, rows)
    return sums


def layer_head_key(statistic: str, layer: int | None, head: int | None) -> str:
    """The history key of one (layer, head) statistic, 0-based indices written 1-based; None leaves an axis out."""
    parts = (
        [statistic]
        + ([f"layer {layer + 1}"] if layer is not None else [])
        + ([f"head {head + 1}"] if head is not None else [])
    )
    return "/".join(parts)


_KEY = re.compile(r"^(normalised_entropy|max_weight)(?:/layer (\d{1,4}))?(?:/head (\d{1,4}))?$")


def parse_layer_head_key(key) -> tuple[str, int | None, int | None] | None:
    """(statistic, layer, head) of a key written by :func:`layer_head_key` (1-based, None where absent), or None
    for a per-map key (``"normalised_entropy"``) and anything else."""
    match = _KEY.match(key) if isinstance(key, str) else None
    if match is None or (match.group(2) is None and match.group(3) is None):
        return None
    layer, head = (int(g) if g is not None else None for g in match.group(2, 3))
    return match.group(1), layer, head


def by_layer_and_head(values: torch.Tensor, remaining: list[str]) -> torch.Tensor:
    """Row statistics ``(B, *remaining)`` laid out as ``(B, L, H, N)``: L (H) is 1 for a map without a layer (head)
    axis, and N gathers every other remaining axis (e.g. the query positions)."""
    dims = {axis: 1 + i for i, axis in enumerate(remaining)}
    present = [dims[axis] for axis in ("layer", "head") if axis in dims]
    values = values.movedim(present, list(range(1, 1 + len(present))))  # (B, [L], [H], rest)
    if "layer" not in dims:
        values = values.unsqueeze(1)
    if "head" not in dims:
        values = values.unsqueeze(2)
    return values.flatten(3) if values.dim() > 3 else values.unsqueeze(-1)


def finite_mean(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean over ``dim`` of the finite entries; NaN where there is none (rows with under 2 valid positions)."""
    finite = torch.isfinite(values)
    total = torch.where(finite, values, torch.zeros_like(values)).sum(dim)
    count = finite.sum(dim)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


# ---------------------------------------------------------------- rank collapse
def effective_rank(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli, 2007) of each row's hidden states over its valid positions:
    ``exp`` of the entropy of the normalised singular values. ``states`` (B, T, d), ``mask`` (B, T) -> (B,);
    NaN for rows with no valid position. 1 means every position carries the same direction (rank collapse)."""
    masked = states.double() * mask.unsqueeze(-1)
    singular = torch.linalg.svdvals(masked)  # (B, min(T, d))
    total = singular.sum(-1, keepdim=True)
    p = singular / total.clamp(min=1e-300)
    entropy = -(torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p))).sum(-1)
    rank = entropy.exp()
    return torch.where(mask.any(1) & (total.squeeze(-1) > 0), rank, torch.full_like(rank, float("nan"))).float()


def rank_summary(output) -> dict[str, dict[str, float]]:
    """Effective rank of the hidden states after each layer over the probe rows, for the training history:
    ``{"embeddings": {"mean", "q10", "median", "q90"}, "layer 1": ..., ...}``. Empty for an output without
    ``hidden_states`` (every model but the sequence transformers)."""
    summary = {}
    for label, ranks in layer_ranks(output).items():
        ranks = ranks.double()[torch.isfinite(ranks)]
        if not len(ranks):
            continue
        levels = torch.tensor(list(RANK_QUANTILES.values()), dtype=ranks.dtype, device=ranks.device)
        summary[label] = {
            "mean": float(ranks.mean()),
            **{k: float(q) for k, q in zip(RANK_QUANTILES, torch.quantile(ranks, levels))},
        }
    return summary


def layer_ranks(output) -> dict[str, torch.Tensor]:
    """Each row's effective rank (:func:`effective_rank`) of ``output.hidden_states``
    over ``output.hidden_mask``, named "embeddings", "layer 1", ...; empty for outputs without hidden states."""
    hidden, mask = getattr(output, "hidden_states", None), getattr(output, "hidden_mask", None)
    if not hidden or mask is None:
        return {}
    return {
        "embeddings" if index == 0 else f"layer {index}": effective_rank(states.detach(), mask)
        for index, states in enumerate(hidden)
    }
