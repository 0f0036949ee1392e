"""Metrics against small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recmodels.data import TEST
from recmodels.eval import evaluate_topk
from recmodels.eval.metrics import auc, gauc, logloss, ranking_metrics, top_k, topk_hits
from recmodels.models.baselines import MostPopular
from recmodels.serving.service import RecService


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
    labels = [1, 0, 0, 1, 0, 1, 1]  # user 3 has no negative: skipped
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
    hits = topk_hits(scores, positives, 3)  # top-3 = items 5, 4, 3 -> [F, T, F]
    assert hits.tolist() == [[False, True, False]]
    values = ranking_metrics(hits, positives.sum(1), ks=(3,))
    assert values["recall@3"].item() == pytest.approx(0.5)
    dcg = 1 / math.log2(3)  # hit at rank 2
    idcg = 1 / math.log2(2) + 1 / math.log2(3)  # two positives, both could be in the top 3
    assert values["ndcg@3"].item() == pytest.approx(dcg / idcg)
    assert values["hr@3"].item() == 1.0
    assert values["mrr@3"].item() == pytest.approx(0.5)


def test_ranking_metrics_without_hits_and_ideal_capped_at_k():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    positives = torch.tensor([[False, False, True, True], [True, True, True, True]])
    values = ranking_metrics(topk_hits(scores, positives, 2), positives.sum(1), ks=(2,))
    assert values["ndcg@2"].tolist() == pytest.approx([0.0, 1.0])  # row 2: IDCG uses min(4, k=2) hits
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


# ---------------------------------------------------------------- ties: lower item index first, every run
def test_ties_rank_the_lower_index_first():
    scores = torch.tensor([[1.0, 3.0, 1.0, 3.0, 1.0, float("-inf")], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    values, indices = top_k(scores, 4)
    assert indices.tolist() == [[1, 3, 0, 2], [0, 1, 2, 3]]
    assert values.tolist() == [[3.0, 3.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    # four tied items, the positive third by index: rank 3 at k=3, missed at k=2
    tied, positive = torch.zeros(1, 4), torch.tensor([[False, False, True, False]])
    assert topk_hits(tied, positive, 3).tolist() == [[False, False, True]]
    metrics = ranking_metrics(topk_hits(tied, positive, 3), positive.sum(1), ks=(2, 3))
    assert metrics["ndcg@2"].item() == 0.0 and metrics["mrr@3"].item() == pytest.approx(1 / 3)
    assert metrics["ndcg@3"].item() == pytest.approx(1 / math.log2(4))


def test_top_k_equals_a_stable_sort_with_and_without_ties():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 300, generator=generator)
    scores[::3] = torch.randint(0, 4, (17, 300), generator=generator).float()  # heavy ties in every third row
    scores[1::7, :250] = float("-inf")  # fewer finite items than k
    for k in (1, 10, 60, 300):
        values, indices = top_k(scores, k)
        expected = torch.sort(scores, dim=1, descending=True, stable=True)
        assert torch.equal(indices, expected.indices[:, :k]) and torch.equal(values, expected.values[:, :k])


def _all_tied(data) -> MostPopular:
    model = MostPopular.from_data(data).eval()
    model.item_popularity.fill_(7.0)  # every item scores the same
    return model


def test_an_all_tied_model_is_ranked_by_item_index_in_the_evaluator_and_in_recommend(tiny_data):
    model = _all_tied(tiny_data)
    measured = evaluate_topk(model, tiny_data, TEST, users_per_batch=7)
    assert evaluate_topk(model, tiny_data, TEST, users_per_batch=7) == measured  # every run
    assert evaluate_topk(model, tiny_data, TEST, users_per_batch=3) == pytest.approx(measured)  # any batching
    # by hand: each user's list is their unseen items in index order
    cases, expected = tiny_data.topk_cases(TEST), {"ndcg@10": [], "recall@10": [], "mrr@10": []}
    for row in range(len(cases)):
        seen = set(cases.seen_items[cases.seen_indptr[row] : cases.seen_indptr[row + 1]].tolist())
        positives = set(cases.positive_items[cases.positive_indptr[row] : cases.positive_indptr[row + 1]].tolist())
        ranked = [item for item in range(1, tiny_data.dataset.n_items + 1) if item not in seen][:10]
        gains = [1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked) if item in positives]
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(positives), 10)))
        first = next((rank + 1 for rank, item in enumerate(ranked) if item in positives), None)
        expected["ndcg@10"].append(sum(gains) / ideal)
        expected["recall@10"].append(len(gains) / len(positives))
        expected["mrr@10"].append(1.0 / first if first else 0.0)
    for name, values in expected.items():
        assert measured[name] == pytest.approx(np.mean(values), abs=1e-6), name
    service = RecService(model, tiny_data, device="cpu")
    user = tiny_data.dataset.user_ids[4]
    recs = service.recommend(user, k=8)
    seen = set(service.history(user)["item"])
    unseen = [raw for raw in tiny_data.dataset.item_ids[1:] if raw not in seen]
    assert list(recs["item"]) == unseen[:8]
    assert recs.equals(service.recommend(user, k=8))


def test_the_explained_rank_is_the_place_in_the_ranking_under_ties():
    from recmodels.eval.metrics import top_k
    from recmodels.explain.faithfulness import rank_among

    scores = torch.tensor([3.0, 5.0, 5.0, 1.0, 5.0, 2.0])
    excluded = torch.tensor([False, False, True, False, False, False])
    _, order = top_k(scores.masked_fill(excluded, float("-inf")), 5)
    for place, index in enumerate(order.tolist(), start=1):
        assert rank_among(scores, index, excluded) == place
    assert rank_among(scores, 2, excluded) == 2  # an excluded item is ranked as if it were a candidate
