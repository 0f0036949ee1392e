"""Metrics against small cases worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recmodels.eval.metrics import auc, gauc, logloss, ranking_metrics, topk_hits


def test_auc_by_hand():
    # positives score 0.9 and 0.4; negatives 0.5 and 0.1 -> pairs won: (0.9>0.5),(0.9>0.1),(0.4>0.1) = 3 of 4
    assert auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)


def test_auc_counts_ties_as_half():
    # one positive, two negatives; the positive ties one negative and beats the other -> (1 + 0.5) / 2
    assert auc([1, 0, 0], [0.5, 0.5, 0.2]) == pytest.approx(0.75)


def test_auc_needs_both_classes():
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_gauc_is_the_unweighted_mean_of_per_user_auc():
    users = [1, 1, 1, 2, 2, 3, 3]
    labels = [1, 0, 0, 1, 0, 1, 1]          # user 3 has no negative: skipped
    scores = [0.9, 0.1, 0.95, 0.2, 0.8, 0.5, 0.6]
    # user 1: positive 0.9 beats 0.1, loses to 0.95 -> 0.5; user 2: 0.2 < 0.8 -> 0.0
    assert gauc(users, labels, scores) == pytest.approx(0.25)


def test_logloss_by_hand():
    expected = -(math.log(0.8) + math.log(1 - 0.3)) / 2
    assert logloss([1, 0], [0.8, 0.3]) == pytest.approx(expected)


def test_ranking_metrics_by_hand():
    # one user, 6 items; scores rank items 5,4,3,2,1,0; positives are items 4 and 0
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    positives = torch.tensor([[True, False, False, False, True, False]])
    hits = topk_hits(scores, positives, 3)          # top-3 = items 5, 4, 3 -> [F, T, F]
    assert hits.tolist() == [[False, True, False]]
    values = ranking_metrics(hits, positives.sum(1), ks=(3,))
    assert values["recall@3"].item() == pytest.approx(0.5)
    dcg = 1 / math.log2(3)                          # hit at rank 2
    idcg = 1 / math.log2(2) + 1 / math.log2(3)      # two positives, both could be in the top 3
    assert values["ndcg@3"].item() == pytest.approx(dcg / idcg)
    assert values["hr@3"].item() == 1.0
    assert values["mrr@3"].item() == pytest.approx(0.5)


def test_ranking_metrics_without_hits_and_ideal_capped_at_k():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    positives = torch.tensor([[False, False, True, True], [True, True, True, True]])
    values = ranking_metrics(topk_hits(scores, positives, 2), positives.sum(1), ks=(2,))
    assert values["ndcg@2"].tolist() == pytest.approx([0.0, 1.0])   # row 2: IDCG uses min(4, k=2) hits
    assert values["recall@2"].tolist() == pytest.approx([0.0, 0.5])
    assert values["mrr@2"].tolist() == pytest.approx([0.0, 1.0])
    assert values["hr@2"].tolist() == [0.0, 1.0]


def test_auc_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert auc(labels, scores) == pytest.approx(brute)
