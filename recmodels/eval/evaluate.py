"""Evaluation on a split part: CTR metrics on rated rows, and full ranking over unseen items."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm

from recmodels.data import PART_NAMES, TEST, RecData, Rows
from recmodels.errors import NotFiniteScoresError
from recmodels.eval.metrics import auc, gauc, logloss, ranking_metrics, topk_hits
from recmodels.models.base import RecModel
from recmodels.models.output_check import check_output, check_scores, model_label, users_and_items
from recmodels.models.outputs import Batch

TOPK_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hr@10", "mrr@10")
CTR_METRICS = ("auc", "gauc", "logloss")


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``model`` in eval mode inside the block, then back to the mode it was in (measurements during training)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def score_rows(model: RecModel, rows: Rows, batch_size: int = 4096, progress: bool = False) -> np.ndarray:
    device = model.device
    out = np.empty(len(rows), dtype=np.float32)
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="scoring", disable=not progress, leave=False):
        part = rows.take(slice(start, start + batch_size))
        batch = Batch.from_numpy(part.users, part.items, part.history).to(device)
        scores = check_output(model, model(batch), len(batch), finite=False).scores  # values: check_finite
        out[start : start + batch_size] = scores.float().cpu().numpy()
    return out


def evaluate_ctr(
    model: RecModel,
    data: RecData,
    part: int = TEST,
    batch_size: int = 4096,
    progress: bool = False,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """AUC, GAUC and LogLoss on the part's rated rows (of ``users`` only, when given)."""
    rows = data.ctr_rows(part, users=users)
    with evaluating(model):
        logits = score_rows(model, rows, batch_size, progress)
    check_finite(model, torch.from_numpy(logits), part, "rated rows")
    probabilities = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -50, 50)))
    return {
        "auc": auc(rows.labels, logits),
        "gauc": gauc(rows.users, rows.labels, logits),
        "logloss": logloss(rows.labels, probabilities),
    }


@torch.no_grad()
def evaluate_topk(
    model: RecModel,
    data: RecData,
    part: int = TEST,
    ks=(10, 20),
    users_per_batch: int = 64,
    progress: bool = False,
    max_users: int | None = None,
) -> dict[str, float]:
    """Full ranking: every item the user has not interacted with (train, and valid when testing)."""
    return _means(*topk_per_user(model, data, part, ks, users_per_batch, progress, max_users))


def _means(users: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        name: float(values[name].sum()) / max(len(users), 1) if len(users) else float("nan") for name in TOPK_METRICS
    }


@torch.no_grad()
def topk_per_user(
    model: RecModel,
    data: RecData,
    part: int = TEST,
    ks=(10, 20),
    users_per_batch: int = 64,
    progress: bool = False,
    max_users: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(evaluated users, {metric: value per user}) of full ranking on ``part``; :func:`evaluate_topk` averages it."""
    with evaluating(model):
        return _topk_per_user(model, data, part, ks, users_per_batch, progress, max_users)


def _topk_per_user(model, data, part, ks, users_per_batch, progress, max_users):
    per_user: dict[str, list[np.ndarray]] = {name: [] for name in TOPK_METRICS}
    batches = RankedBatches([model], data, part, users_per_batch, progress, max_users)
    for (scores,), positives in batches:
        hits = topk_hits(scores, positives, max(ks))
        values = ranking_metrics(hits, positives.sum(1), ks)
        for name in TOPK_METRICS:
            per_user[name].append(values[name].double().cpu().numpy())
    return batches.users, {name: np.concatenate(v) if v else np.zeros(0) for name, v in per_user.items()}


class RankedBatches:
    """Batches of the part's ranked users: (each model's (U, I) scores of the whole catalogue with the items the
    user has seen at -inf, the (U, I) bool positives); column j is item j + 1. Every model's scores are checked by
    the output rules and for finiteness. ``.users`` is the users it goes over, in order."""

    def __init__(self, models, data, part, users_per_batch=64, progress=False, max_users=None):
        self.models, self.data, self.part = list(models), data, part
        self.users_per_batch, self.progress = users_per_batch, progress
        self.cases = data.topk_cases(part)
        self.n_users = len(self.cases) if max_users is None else min(max_users, len(self.cases))
        self.users = self.cases.users[: self.n_users]

    def __iter__(self):
        cases, n_items = self.cases, self.data.dataset.n_items
        device = self.models[0].device
        all_items = torch.arange(1, n_items + 1, device=device)
        starts = range(0, self.n_users, self.users_per_batch)
        for start in tqdm(starts, desc="ranking", disable=not self.progress, leave=False):
            stop = min(self.n_users, start + self.users_per_batch)
            users = torch.as_tensor(cases.users[start:stop], device=device)
            history = torch.as_tensor(cases.history[start:stop], device=device)
            seen = _csr_to_dense(cases.seen_indptr, cases.seen_items, start, stop, n_items + 1, device)[:, 1:]
            positives = _csr_to_dense(cases.positive_indptr, cases.positive_items, start, stop, n_items + 1, device)
            yield [self._scores(model, users, history, all_items, seen) for model in self.models], positives[:, 1:]

    def _scores(self, model, users, history, all_items, seen) -> torch.Tensor:
        shape = (len(users), len(all_items))
        scores = model.score_items(users, history, all_items)
        # shape and dtype by the output rules; the values below, naming the part: NaN would be ranked as a number
        check_scores(
            model,
            scores,
            shape,
            users_and_items(*shape),
            fix="fix the model's score_items (or its forward)",
            finite=False,
        )
        scores = scores.float()
        check_finite(model, scores, self.part, "candidate items")
        return scores.masked_fill(seen, float("-inf"))


def check_finite(model, scores: torch.Tensor, part: int, what: str) -> None:
    """A NaN or infinite score has no rank: ``top_k`` would place NaN first and the metrics would be made up."""
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        kinds = sorted({"nan" if v != v else ("inf" if v > 0 else "-inf") for v in scores[bad][:1000].tolist()})
        part_name = next((name for name, value in PART_NAMES.items() if value == part), str(part))
        raise NotFiniteScoresError(
            f"{model_label(model)} gave {int(bad.sum()):,} of {scores.numel():,} "
            f"scores of the {part_name} part's {what} as {'/'.join(kinds)}, which cannot be ranked; its weights or "
            "its forward are broken (a diverged training run leaves such weights), so retrain it or fix the model."
        )


def evaluate(
    model: RecModel, data: RecData, part: int = TEST, progress: bool = False, max_users: int | None = None
) -> dict[str, float]:
    """Both tasks on one part: top-K for every model, CTR metrics on the rated rows; with ``max_users``, both over
    the part's first ``max_users`` ranked users only (at ml-20m scale every user takes hours)."""
    users, values = topk_per_user(model, data, part, progress=progress, max_users=max_users)
    metrics = _means(users, values)
    metrics.update(evaluate_ctr(model, data, part, progress=progress, users=None if max_users is None else users))
    return metrics


def _csr_to_dense(indptr, values, start, stop, width, device) -> torch.Tensor:
    lengths = np.diff(indptr[start : stop + 1])
    rows = np.repeat(np.arange(stop - start), lengths)
    cols = values[indptr[start] : indptr[stop]]
    dense = torch.zeros(stop - start, width, dtype=torch.bool, device=device)
    dense[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = True
    return dense
