"""Metrics: AUC, GAUC, LogLoss for CTR; Recall, NDCG, HR, MRR at k for full ranking.

Ranking metrics follow the usual definitions (as in RecBole): Recall@k = hits / |positives|;
NDCG@k = DCG / IDCG with binary gains and IDCG over min(|positives|, k) ideal hits; HR@k = 1 if any hit;
MRR@k = 1 / rank of the first hit within k, else 0. Each is averaged over users.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from recmodels.errors import NotFiniteError


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted as half). NaN without both classes."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():  # a NaN would sort last and count as a low score
        raise NotFiniteError(
            f"{int(np.isnan(scores).sum()):,} of {len(scores):,} scores are NaN, so AUC cannot rank them."
        )
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean of per-user AUC over users who have both positive and negative rows."""
    users = np.asarray(users)
    order = np.argsort(users, kind="stable")
    users, labels, scores = users[order], np.asarray(labels)[order], np.asarray(scores)[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    values = [auc(labels[a:b], scores[a:b]) for a, b in itertools.pairwise(bounds)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def logloss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    if np.isnan(p).any():
        raise NotFiniteError(
            f"{int(np.isnan(p).sum()):,} of {len(p):,} probabilities are NaN, so LogLoss is undefined."
        )
    p = np.clip(p, eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    bounds = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1], True])
    # tied values share the mean of the 1-based ranks they span
    mean_rank = (bounds[:-1] + bounds[1:] + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, np.diff(bounds))
    return ranks


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the ``k`` highest scores along the last axis, ties broken by the lower index first.

    The one ranking rule of the library (full-ranking evaluation and ``RecService.recommend`` both use it):
    items with equal scores are ranked by their internal item index, lower first (the dataset's item order;
    column j is item j + 1), on every device and every run. ``torch.topk`` leaves the order of ties undefined,
    which moved MostPopular's metrics by up to .0006 between runs; a stable descending sort does not. Only the
    rows with a tie inside the top k or at its boundary are sorted; ``torch.topk`` answers the rest, faster.
    """
    k = min(int(k), scores.shape[-1])
    if bool(torch.isnan(scores).any()):  # topk would rank NaN above every number; -inf (an excluded item) is fine
        raise NotFiniteError(
            f"{int(torch.isnan(scores).sum()):,} of {scores.numel():,} scores are NaN, which cannot be ranked; the "
            "model's weights or its forward are broken."
        )
    values, indices = torch.topk(scores, k, dim=-1)
    tied = ((scores >= values[..., -1:]).sum(-1) > k) | (values[..., 1:] == values[..., :-1]).any(-1)
    if tied.any():
        sorted_values, sorted_indices = torch.sort(scores[tied], dim=-1, descending=True, stable=True)
        values[tied], indices[tied] = sorted_values[..., :k], sorted_indices[..., :k]
    return values, indices


def topk_hits(scores: torch.Tensor, positives: torch.Tensor, k: int) -> torch.Tensor:
    """(U, k) bool: whether each of the top-k items of each row is a positive (ties ranked as :func:`top_k`).

    ``scores`` is (U, I) with excluded items already at -inf; ``positives`` is (U, I) bool.
    """
    return torch.gather(positives, 1, top_k(scores, k)[1])


def ranking_metrics(hits: torch.Tensor, n_positives: torch.Tensor, ks=(10, 20)) -> dict[str, torch.Tensor]:
    """Per-user metric values from the hit matrix of the top max(ks) items."""
    hits = hits.float()
    n_pos = n_positives.float().clamp(min=1)
    discounts = 1.0 / torch.log2(torch.arange(hits.shape[1], device=hits.device, dtype=torch.float32) + 2.0)
    out = {}
    for k in ks:
        h = hits[:, :k]
        ideal = torch.cumsum(discounts[:k], 0)[(n_pos.clamp(max=k) - 1).long()]
        out[f"recall@{k}"] = h.sum(1) / n_pos
        out[f"ndcg@{k}"] = (h * discounts[:k]).sum(1) / ideal
        out[f"hr@{k}"] = (h.sum(1) > 0).float()
        first = torch.where(h.any(1), h.argmax(1).float() + 1.0, torch.full_like(n_pos, float("inf")))
        out[f"mrr@{k}"] = 1.0 / first
    return out
