"""Metrics and evaluation under the project's protocol (temporal split, full ranking)."""

from recmodels.eval.evaluate import CTR_METRICS, TOPK_METRICS, evaluate, evaluate_ctr, evaluate_topk, score_rows
from recmodels.eval.metrics import auc, gauc, logloss, ranking_metrics, top_k, topk_hits

__all__ = [
    "CTR_METRICS",
    "TOPK_METRICS",
    "auc",
    "evaluate",
    "evaluate_ctr",
    "evaluate_topk",
    "gauc",
    "logloss",
    "ranking_metrics",
    "score_rows",
    "top_k",
    "topk_hits",
]
