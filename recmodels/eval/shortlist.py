"""Evaluation of retrieve-then-rank: a retriever's top N unseen items, ordered by a ranker, on the usual protocol
(full ranking over unseen items), for several N at once, with what the shortlist costs.

The pipeline's order of the whole catalogue is the shortlist by the ranker's scores, then the rest by the
retriever's (what the next page of a two-stage system would show), ties broken by the lower item index as
everywhere (:func:`~recmodels.eval.metrics.top_k`); so its top 10 is exactly what ``PipelineService.recommend``
shows. No score is invented: the order is built from each stage's positions, not by shifting one stage's scores
below the other's.

``shortlist_recall@10`` is the share of the ranker's own top 10 over the whole catalogue (unseen items) that the
retriever's top N kept: 1.0 when retrieval lost none of the items the ranker likes best.
"""

from __future__ import annotations

import numpy as np
import torch

from recmodels.data import TEST, RecData
from recmodels.errors import InvalidArgumentError
from recmodels.eval.evaluate import TOPK_METRICS, RankedBatches, evaluating
from recmodels.eval.metrics import ranking_metrics, top_k, topk_hits
from recmodels.models.base import RecModel

SHORTLIST_RECALL = "shortlist_recall@10"
PIPELINE_METRICS = (*TOPK_METRICS, SHORTLIST_RECALL)
__all__ = ["PIPELINE_METRICS", "SHORTLIST_RECALL", "evaluate_pipeline", "pipeline_order_keys"]


def _positions(scores: torch.Tensor) -> torch.Tensor:
    """(U, I) long: each item's 0-based place in its row's descending order, ties by the lower index."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    places = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, places)


def pipeline_order_keys(
    retriever_scores: torch.Tensor, ranker_scores: torch.Tensor, shortlist: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, shortlisted): keys whose descending order is the pipeline's order (-inf where the retriever's score
    is -inf, an excluded item), and the (U, I) bool mask of each row's shortlist. Both inputs are (U, I) with
    excluded items at -inf; a row with fewer than ``shortlist`` candidates shortlists them all."""
    n_items = retriever_scores.shape[1]
    candidate = torch.isfinite(retriever_scores)
    retriever_places = _positions(retriever_scores)
    shortlisted = candidate & (retriever_places < shortlist)
    ranker_places = _positions(ranker_scores.masked_fill(~shortlisted, float("-inf")))
    # distinct whole numbers (exact in float32 up to 2**24 items): the shortlist above every other candidate
    keys = torch.where(shortlisted, 2.0 * n_items - ranker_places, n_items - retriever_places.float())
    return keys.masked_fill(~candidate, float("-inf")), shortlisted


def _shortlist_recall(ranker_scores: torch.Tensor, shortlisted: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Per row: the share of the ranker's top ``k`` candidates (fewer when fewer remain) inside the shortlist."""
    n_candidates = torch.isfinite(ranker_scores).sum(1).clamp(max=k)
    _, favourites = top_k(ranker_scores, k)
    kept = torch.gather(shortlisted, 1, favourites) & torch.isfinite(torch.gather(ranker_scores, 1, favourites))
    return torch.where(n_candidates > 0, kept.sum(1) / n_candidates.clamp(min=1), torch.ones_like(n_candidates))


def _shortlists(values, n_items: int) -> list[int]:
    values = list(values)
    if not values:
        raise InvalidArgumentError("Give at least one shortlist size N to evaluate a pipeline with.")
    for n in values:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= n_items:
            raise InvalidArgumentError(
                f"A shortlist size must be a whole number from 1 to {n_items:,} (the catalogue), got {n!r}."
            )
    return sorted({int(n) for n in values})


@torch.no_grad()
def evaluate_pipeline(
    retriever: RecModel,
    ranker: RecModel,
    data: RecData,
    shortlists,
    part: int = TEST,
    ks=(10, 20),
    users_per_batch: int = 64,
    progress: bool = False,
    max_users: int | None = None,
) -> dict[int, dict[str, float]]:
    """{N: {metric: mean over the part's ranked users}} for each shortlist size N: the top-K metrics of the
    pipeline's order and :data:`SHORTLIST_RECALL`. Both stages score the whole catalogue once per batch of
    users; every N is read from those scores."""
    sizes = _shortlists(shortlists, data.dataset.n_items)
    sums = {n: {name: 0.0 for name in PIPELINE_METRICS} for n in sizes}
    with evaluating(retriever), evaluating(ranker):
        batches = RankedBatches([retriever, ranker], data, part, users_per_batch, progress, max_users)
        for (retriever_scores, ranker_scores), positives in batches:
            for n in sizes:
                keys, shortlisted = pipeline_order_keys(retriever_scores, ranker_scores, n)
                values = ranking_metrics(topk_hits(keys, positives, max(ks)), positives.sum(1), ks)
                values[SHORTLIST_RECALL] = _shortlist_recall(ranker_scores, shortlisted)
                for name in PIPELINE_METRICS:
                    sums[n][name] += float(values[name].double().sum())
    count = len(batches.users)
    return {n: {name: total / count if count else float("nan") for name, total in sums[n].items()} for n in sizes}
