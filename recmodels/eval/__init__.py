"""Metrics and evaluation under the project's protocol (temporal split, full ranking)."""
from .evaluate import CTR_METRICS, TOPK_METRICS, evaluate, evaluate_ctr, evaluate_topk, score_rows
from .metrics import auc, gauc, logloss, ranking_metrics, top_k, topk_hits

__all__ = ["CTR_METRICS", "TOPK_METRICS", "evaluate", "evaluate_ctr", "evaluate_topk", "score_rows", "auc", "gauc",
           "logloss", "ranking_metrics", "top_k", "topk_hits"]
