"""Collapse statistics of attention distributions, computed per row over valid positions only.

For a distribution p over n valid positions:
- normalised entropy  H(p) / log(n): 1 for uniform, 0 for one-hot;
- max weight          max_i p_i;
- effective number    exp(H(p)): how many positions the weight is spread over (1 .. n);
- Gini coefficient    0 for uniform, (n - 1) / n for one-hot.
Weights are clamped at 0 and renormalised over the valid positions first, so un-normalised maps (DIN's
original mode) are measured by the shares they give. Rows with fewer than 2 valid positions carry no
information about collapse and come back as NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.base import AttentionMap

STATISTICS = ("normalised_entropy", "max_weight", "effective_number", "gini")


@dataclass(frozen=True)
class CollapseThresholds:
    """When a distribution is flagged. Documented in the README; pass your own to change them.

    near_uniform: normalised entropy at or above this (0.98 means within 2% of the uniform entropy).
    near_one_hot: max weight at or above this (0.9 means one position takes 90% of the weight).
    """

    near_uniform: float = 0.98
    near_one_hot: float = 0.9


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
    return {"normalised_entropy": normalised.float(), "max_weight": max_weight.float(),
            "effective_number": effective.float(), "gini": gini.float()}


def map_statistics(attention: AttentionMap) -> dict[str, torch.Tensor] | None:
    """Row statistics of a map along its ``normalised_over`` axis; None for maps that are not distributions."""
    if attention.normalised_over is None:
        return None
    dim = 1 + attention.axes.index(attention.normalised_over)
    return row_statistics(attention.values.detach(), attention.full_mask(), dim=dim)


def flags(stats: dict[str, torch.Tensor], thresholds: CollapseThresholds = CollapseThresholds()) -> dict[str, torch.Tensor]:
    return {
        "near_uniform": stats["normalised_entropy"] >= thresholds.near_uniform,
        "near_one_hot": stats["max_weight"] >= thresholds.near_one_hot,
    }


def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Jensen-Shannon divergence in nats (0 .. log 2) between distributions along ``dim``."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)

    def kl(a, b):
        return torch.where(a > 0, a * (a.clamp(min=1e-300).log() - b.clamp(min=1e-300).log()),
                           torch.zeros_like(a)).sum(dim)

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


def epoch_summary(attentions: dict[str, AttentionMap]) -> dict[str, dict[str, float]]:
    """Mean normalised entropy and mean max weight of each distribution map, for the training history."""
    summary = {}
    for name, attention in attentions.items():
        stats = map_statistics(attention)
        if stats is None:
            continue
        entropy, max_weight = stats["normalised_entropy"], stats["max_weight"]
        keep = torch.isfinite(entropy)
        if keep.any():
            summary[name] = {"normalised_entropy": float(entropy[keep].mean()),
                             "max_weight": float(max_weight[keep].mean())}
    return summary
