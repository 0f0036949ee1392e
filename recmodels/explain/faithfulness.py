"""Does the attention say what the model does? Agreement with attributions, and perturbation tests.

- Kendall's tau-b and top-k overlap between attention over history items and an attribution over them.
- Perturbations, each reported as the change in score and in the item's rank among the user's candidates:
  remove the top-attended history item (against removing random other items), force uniform attention over
  the valid positions, and randomly permute the attention weights among the valid positions.
"""

from __future__ import annotations

import numpy as np
import torch

from recmodels.models.output_check import check_scores, users_and_items


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (tie-corrected); NaN when fewer than two pairs can be compared."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 2:
        return float("nan")
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), k=1)
    da, db = da[upper], db[upper]
    concordance = float((da * db).sum())
    untied_a, untied_b = float((da != 0).sum()), float((db != 0).sum())
    if untied_a == 0 or untied_b == 0:
        return float("nan")
    return concordance / np.sqrt(untied_a * untied_b)


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the k largest entries of ``a`` that are also among the k largest of ``b``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    idx = np.flatnonzero(keep)
    k = min(k, len(idx))
    if k == 0:
        return float("nan")
    top_a = set(idx[np.argsort(-a[idx], kind="stable")[:k]])
    top_b = set(idx[np.argsort(-b[idx], kind="stable")[:k]])
    return len(top_a & top_b) / k


def uniform_override(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Equal weight on every valid position (of the last axis), 0 on padding."""
    mask = mask.to(weights.dtype)
    return mask / mask.sum(-1, keepdim=True).clamp(min=1)


def permute_override(seed: int = 0):
    """An override that shuffles the weights among the valid positions of each distribution (seeded).

    One shuffle of the positions serves every row and head, so that the candidates of one user, whether
    scored in one batch or one at a time, all see the same permuted attention.
    """

    def override(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.rand(weights.shape[-1], generator=generator).to(weights.device).expand(weights.shape)
        # a random order of the valid positions: padding sorts last in both orders
        order_keys = torch.where(mask, noise, torch.full_like(noise, 2.0))
        shuffled_slots = torch.argsort(order_keys, dim=-1)
        sorted_slots = torch.argsort(
            torch.where(mask, torch.zeros_like(noise), torch.ones_like(noise)), dim=-1, stable=True
        )
        out = torch.zeros_like(weights)
        # the i-th valid slot receives the weight of the i-th valid slot in a random order
        out.scatter_(-1, sorted_slots, weights.gather(-1, shuffled_slots))
        return out * mask

    return override


@torch.no_grad()
def catalogue_scores(
    model, user: int, history: torch.Tensor, items: torch.Tensor, attention_override=None
) -> torch.Tensor:
    """Scores of ``items`` for one user, with the attention replaced where ``attention_override`` says."""
    device = model.device
    users = torch.tensor([user], device=device)
    scores = model.score_items(
        users, history.to(device).unsqueeze(0), items.to(device), attention_override=attention_override
    )
    # the perturbed attention is where a model that passed its plain forward can still break its rules
    fix = "fix the model's score_items (or its forward) under attention_override"
    return check_scores(model, scores, (1, len(items)), users_and_items(1, len(items)), fix=fix)[0]


def rank_among(scores: torch.Tensor, target_index: int, excluded: torch.Tensor) -> int:
    """1-based rank of ``scores[target_index]`` among the candidates that are not excluded.

    Ties follow :func:`recmodels.eval.metrics.top_k`: an equal score at a lower index ranks first, so the rank
    shown for an item is its place in ``recommend``."""
    keep = ~excluded.to(scores.device)
    keep[target_index] = True
    target = scores[target_index]
    before = torch.arange(len(scores), device=scores.device) < target_index
    return int(((scores > target) & keep).sum() + ((scores == target) & before & keep).sum()) + 1


def perturbation_tests(
    model,
    user: int,
    item: int,
    history: torch.Tensor,
    item_attention: torch.Tensor,
    distribution_maps: list[str],
    excluded: torch.Tensor,
    n_random: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Score and rank of (user, item) under each perturbation; ``item_attention`` is (T,) over history slots.

    Ranks are over the whole catalogue (index i of ``excluded`` is item i + 1), so a change in rank says how
    far the recommendation list would move.
    """
    from recmodels.explain.attributions import remove_positions

    items = torch.arange(1, len(excluded) + 1)
    target = item - 1
    base = catalogue_scores(model, user, history, items)
    base_score, base_rank = float(base[target]), rank_among(base, target, excluded)
    rows = [{"perturbation": "none", "score": base_score, "score_change": 0.0, "rank": base_rank, "rank_change": 0}]

    def record(name, scores, detail=""):
        rank = rank_among(scores, target, excluded)
        rows.append(
            {
                "perturbation": name,
                "detail": detail,
                "score": float(scores[target]),
                "score_change": float(scores[target]) - base_score,
                "rank": rank,
                "rank_change": rank - base_rank,
            }
        )

    valid = torch.nonzero(history != 0).squeeze(1)
    if valid.numel() >= 1 and torch.isfinite(item_attention[valid]).any():
        weights = torch.nan_to_num(item_attention[valid], nan=-1.0)
        top = valid[int(torch.argmax(weights))]
        record(
            "remove top-attended item",
            catalogue_scores(model, user, remove_positions(history, top.view(1))[0], items),
            detail=str(int(history[top])),
        )
        others = valid[valid != top]
        if others.numel():
            generator = torch.Generator().manual_seed(seed)
            picks = others[torch.randperm(others.numel(), generator=generator)[:n_random]]
            changes = [catalogue_scores(model, user, remove_positions(history, p.view(1))[0], items) for p in picks]
            mean_scores = torch.stack(changes).mean(0)
            ranks = [rank_among(s, target, excluded) for s in changes]
            rows.append(
                {
                    "perturbation": f"remove a random other item (mean of {len(picks)})",
                    "detail": "",
                    "score": float(mean_scores[target]),
                    "score_change": float(mean_scores[target]) - base_score,
                    "rank": float(np.mean(ranks)),
                    "rank_change": float(np.mean(ranks)) - base_rank,
                }
            )
    if distribution_maps:
        record(
            "uniform attention",
            catalogue_scores(model, user, history, items, {name: uniform_override for name in distribution_maps}),
        )
        record(
            "permuted attention",
            catalogue_scores(model, user, history, items, {name: permute_override(seed) for name in distribution_maps}),
        )
    return rows
