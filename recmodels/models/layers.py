"""Blocks that several model files share (as ``timm.layers``): each is used by at least two models.

Each block keeps the attribute and parameter names its models always had, so checkpoints load unchanged: a
model registers ``FieldEmbedding`` as ``user_field_embedding`` (key ``user_field_embedding.weight``) and
``GenreEmbedding`` as ``genre_embedding`` (key ``genre_embedding.weight``).
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Softmax that gives exactly 0 to masked positions and all-zero rows when nothing is valid."""
    if mask is None:
        return torch.softmax(scores, dim=dim)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return torch.nan_to_num(weights, nan=0.0)  # a row with no valid position is all -inf -> NaN -> 0


class FieldEmbedding(nn.Embedding):
    """Every categorical user field in one table: field f's code i is row ``offsets[f] + i``.

    ``forward(codes)`` takes ``(..., F)`` codes (``RecModel.user_fields[users]``) and returns ``(..., F, dim)``.
    A data set without user fields still gets a one-row table, so the model's parameters do not depend on it.
    """

    def __init__(self, sizes: list[int], dim: int):
        super().__init__(max(sum(sizes), 1), dim)
        # not stored: the offsets follow from spec["user_field_sizes"], which config.json holds
        self.register_buffer(
            "offsets",
            torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0) if sizes else torch.zeros(0, dtype=torch.long),
            persistent=False,
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return super().forward(codes + self.offsets)


class GenreEmbedding(nn.Linear):
    """The mean of an item's genre embeddings: ``E_genre^T g / |g|`` for the multi-hot genres g.

    ``forward(genres)`` takes ``(..., G)`` rows of ``RecModel.item_genres``; an item without genres gets 0.
    """

    def __init__(self, n_genres: int, dim: int):
        super().__init__(n_genres, dim, bias=False)

    def forward(self, genres: torch.Tensor) -> torch.Tensor:
        return super().forward(genres / genres.sum(-1, keepdim=True).clamp(min=1))
