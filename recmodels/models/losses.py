"""The losses models own: BCE, BPR, WARP, and IntTower's contrastive interaction regularisation (CIR).

:meth:`RecModel.loss <recmodels.models.base.RecModel.loss>` calls :func:`training_loss`; a model that adds a term of
its own (IntTower's CIR) finds it here too. The trainer only chooses which one, by name."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels)


def bpr(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: -log sigmoid(s_pos - s_neg); ``negative`` is (B,) or (B, K)."""
    if negative.dim() == 2:
        positive = positive.unsqueeze(1)
    return -F.logsigmoid(positive - negative).mean()


def warp(positive: torch.Tensor, negative: torch.Tensor, n_items: int, margin: float = 1.0) -> torch.Tensor:
    """Weighted approximate-rank pairwise loss (Weston et al., 2011) with K pre-drawn negatives.

    The first negative (in draw order) that violates the margin is the one WARP's sampling loop would have
    stopped at after n draws; the positive's rank is estimated as floor((n_items - 1) / n) and the hinge is
    weighted by L(rank) = sum_{j<=rank} 1/j. Rows with no violator contribute 0.
    """
    if negative.dim() == 1:
        negative = negative.unsqueeze(1)
    hinge = margin - positive.unsqueeze(1) + negative  # (B, K)
    violating = hinge > 0
    any_violation = violating.any(1)
    first = violating.float().argmax(1)  # index of the first violator
    trials = (first + 1).float()
    rank = torch.floor((n_items - 1) / trials).clamp(min=1)
    # L(rank) = harmonic number, approximated by ln(rank) + Euler-Mascheroni for large ranks
    weight = torch.where(rank < 20, _harmonic(rank), torch.log(rank) + 0.5772156649 + 1 / (2 * rank))
    chosen = hinge.gather(1, first.unsqueeze(1)).squeeze(1)
    loss = torch.where(any_violation, weight.detach() * chosen, torch.zeros_like(chosen))
    return loss.mean()


def _harmonic(n: torch.Tensor) -> torch.Tensor:
    steps = torch.arange(1, 20, device=n.device, dtype=n.dtype)
    return ((steps.unsqueeze(0) <= n.unsqueeze(1)).to(n.dtype) / steps).sum(1)


def cir(user_vectors: torch.Tensor, item_vectors: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Contrastive interaction regularisation as InfoNCE over in-batch pairs.

    Row i's user and row i's item are the positive pair (the diagonal); every other item in the batch is a
    negative for that user. Vectors are L2-normalised, so the logits are cosine similarities over tau.
    """
    users = F.normalize(user_vectors, dim=-1)
    items = F.normalize(item_vectors, dim=-1)
    logits = users @ items.T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, targets)


LOSSES = ("bce", "bpr", "warp")
DEFAULT_LOSS = "bce"  # a model that names no loss in its default_training trains with this one


def training_loss(name: str, scores: torch.Tensor, labels: torch.Tensor, negatives: int, n_items: int) -> torch.Tensor:
    """One of ``LOSSES`` on a batch in the trainer's layout: the observed rows, then ``negatives`` sampled
    items for each of them. "bce" reads every row's label; "bpr" and "warp" compare each observed row's score
    with its own negatives' scores."""
    if name == "bce":
        return bce(scores, labels)
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    size = scores.shape[0] // (1 + negatives)
    positive, negative = scores[:size], scores[size:].view(size, negatives)
    return bpr(positive, negative) if name == "bpr" else warp(positive, negative, n_items=n_items)
