"""DIN, the Deep Interest Network (Zhou et al., KDD 2018): the candidate decides which history matters.

For a candidate with item vector q and history item vectors k_1 .. k_T (all from one shared item encoder,
the concatenation of the item id embedding and the mean of the item's genre embeddings, so q and k live in
one space of size D = 2 * dim):

    activation unit   a_t = w^T act(W [q; k_t; q - k_t; q * k_t] + b) (+ c)        one score per position
    weights           softmax over the valid positions                  (attention="softmax")
                      sigmoid(a_t), padding 0, no normalisation         (attention="unnormalised", DIN's own)
    interest          v = sum_t weight_t k_t
    score             MLP([user id, user fields, r_u; v; q, decade, r_i, pop_i (; v * q)]) -> one logit

``act`` is a ReLU (DIN's Dice is left out: its batch statistics would make a score depend on the rest of the
batch). The context is the three train-only dense features of :class:`RecModel`: the user's mean rating r_u
(placed with the user's block) and the item's mean rating r_i and popularity pop_i (with the candidate's).
The constant ``c`` only exists in the un-normalised mode: a softmax cancels it, so there it could never
receive a gradient.

``forward`` computes exactly this, one (candidate, history item) pair at a time. Ranking many candidates
(:meth:`DIN.score_items`) gives the same scores another way: it splits W into its four D-column blocks,

    W [q; k; q - k; q * k] = (W_q + W_d) q + (W_k - W_d) k + W_p (q * k),

and since W_p (q * k) = (W_p diag(k)) q, the pair's hidden layer is one matrix-vector product,
(W_q + W_d + W_p diag(k_t)) q + (W_k - W_d) k_t + b. The (H x D) matrices of one user's history, each with its
k part as an extra column, are stacked into a (T*H x (D + 1)) matrix that every candidate [q; 1] multiplies: the
GEMM of a block of candidates is the whole hidden layer, so no pass over the pairs is spent adding the q part.

Maps (``output_attentions=True``), item level over the axis ("history",) with the history's padding mask:
``history``, the softmax weights (a distribution) in the softmax mode; in the un-normalised mode ``history``
holds the raw sigmoid weights (not a distribution: their sum is the strength of the interest) and
``history_share`` the same weights renormalised over the valid positions (a distribution).
``attention_override`` may replace ``history`` in either mode; in the un-normalised mode it may instead
replace ``history_share``, and the new shares are scaled back by the row's total raw weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.config import MAX_WIDTH, bounded, check_bounds
from recmodels.models.layers import FieldEmbedding, GenreEmbedding, masked_softmax
from recmodels.models.outputs import AttentionMap, AttentionOverride, Batch, InputTap, RecOutput, apply_override

ATTENTION_MODES = ("softmax", "unnormalised")


@dataclass
class DINConfig:
    """DIN's hyperparameters.

    Attributes:
        dim: size of every field embedding; item vectors (id and genres) are 2 * dim.
        attention_hidden: hidden size H of the activation unit's MLP.
        hidden: layer sizes of the prediction MLP (PReLU between layers, as in DIN).
        attention: "softmax" (weights sum to 1 over the valid history) or "unnormalised" (DIN's original
            weights: a sigmoid per position, padding 0, no normalisation).
        use_decade: whether the candidate carries its release-decade embedding.
        interest_product: also feed the prediction MLP the element-wise product of the interest vector and
            the candidate's vector q (an MLP learns such products poorly from the concatenation alone).
        init_std: standard deviation of the embedding initialisation.
    """

    dim: int = bounded(32, 1, MAX_WIDTH)
    attention_hidden: int = bounded(32, 1, MAX_WIDTH)
    hidden: tuple[int, ...] = bounded((128, 64), 1, MAX_WIDTH)
    attention: str = "softmax"
    use_decade: bool = True
    interest_product: bool = False
    init_std: float = bounded(0.05, 0.0, 1.0, low_open=True)

    def __post_init__(self):
        check_bounds(self)
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        self.hidden = tuple(int(h) for h in self.hidden)


class DIN(RecModel):
    """Deep Interest Network trained on CTR rows with BCE (optionally with sampled unobserved items as label 0)."""

    name = "din"
    title = "DIN"
    order = 30
    new_user = (
        "DIN learned a vector for each user id and each user field: a new user gets the padding vector (zeros) for the "
        "id, the '<unknown>' value of each field and a mean rating of 0, so their history and the candidate carry the "
        "score."
    )
    config_class = DINConfig
    task = "ctr"
    predicts_probability = True
    needs_item_features = True
    # CTR rows (label rating > 3, rating 3 dropped) plus 4 sampled unobserved items per row as label 0. CTR rows
    # alone never show which items a user picks at all: on ml-100k they reach valid AUC 0.832 but NDCG@10 0.010
    # (MostPopular 0.064); with these settings valid AUC 0.765 and NDCG@10 0.134. Chosen on both, on valid.
    default_training = {
        "loss": "bce",
        "negatives": 4,
        "epochs": 15,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "batch_size": 1024,
        "patience": 3,
        "monitor": "ndcg@10",
    }

    def __init__(self, spec: dict, config: DINConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        config = self.config
        dim = config.dim
        self.dim, self.item_dim, self.attention = dim, 2 * dim, config.attention
        self.use_decade, self.interest_product = config.use_decade, config.interest_product
        field_names = list(spec["user_field_names"])
        self.user_field_labels = ["user id", *field_names]
        self.candidate_field_labels = ["item id", "genres", *(["decade"] if self.use_decade else [])]

        # ---- user features: id and the categorical fields
        self.user_embedding = nn.Embedding(self.n_users + 1, dim, padding_idx=0)
        self.user_field_embedding = FieldEmbedding(list(spec.get("user_field_sizes", [])), dim)
        # ---- the shared item encoder (history items and the candidate) and the candidate's decade
        self.item_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)
        self.genre_embedding = GenreEmbedding(len(spec["genre_names"]), dim)
        self.decade_embedding = nn.Embedding(spec["n_years"], dim) if self.use_decade else None
        # ---- the local activation unit: [q, k, q - k, q * k] -> H -> 1
        self.attention_in = nn.Linear(4 * self.item_dim, config.attention_hidden)
        self.attention_out = nn.Linear(config.attention_hidden, 1, bias=config.attention == "unnormalised")
        # ---- the prediction MLP
        # [user fields, user mean rating; interest; candidate fields, item mean rating, item popularity
        #  (; interest * q)]
        width = len(self.user_field_labels) * dim + 1 + self.item_dim + len(self.candidate_field_labels) * dim + 2
        width += self.item_dim if self.interest_product else 0
        layers: list[nn.Module] = []
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.PReLU(size)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

        self.history_tap = InputTap(
            ("history",), item_axis="history", description="each history item's vector (item id and genre embeddings)"
        )
        self.user_tap = InputTap(
            ("user_feature",),
            labels=list(self.user_field_labels),
            description="the user's id and categorical field embeddings",
        )
        self.candidate_tap = InputTap(
            ("item_feature",),
            labels=list(self.candidate_field_labels),
            description="the candidate's id, genre and decade embeddings",
        )

        self.init_embeddings(
            self.user_embedding,
            self.user_field_embedding,
            self.item_embedding,
            *([self.decade_embedding] if self.use_decade else []),
            std=config.init_std,
        )
        nn.init.normal_(self.genre_embedding.weight, std=config.init_std)

    # ------------------------------------------------------------------ features
    def item_fields(self, items: torch.Tensor) -> torch.Tensor:
        """The shared item encoder's fields, (..., 2, dim): the id embedding and the mean genre embedding."""
        return torch.stack([self.item_embedding(items), self.genre_embedding(self.item_genres[items])], -2)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(..., D): the item vector shared by history items and candidates."""
        return self.item_fields(items).flatten(-2)

    def candidate_fields(self, items: torch.Tensor) -> torch.Tensor:
        """(..., F_i, dim) in the order of ``candidate_field_labels``."""
        fields = self.item_fields(items)
        if self.decade_embedding is None:
            return fields
        return torch.cat([fields, self.decade_embedding(self.item_year[items]).unsqueeze(-2)], -2)

    def user_features(self, users: torch.Tensor) -> torch.Tensor:
        """(B, F_u * dim + 1): the user id and categorical field embeddings (through the user tap), then the
        user's mean rating."""
        categorical = self.user_field_embedding(self.user_fields[users])
        fields = self.user_tap(torch.cat([self.user_embedding(users).unsqueeze(1), categorical], 1))
        return torch.cat([fields.flatten(1), self.user_mean_rating[users].unsqueeze(-1)], -1)

    def item_features(self, candidate: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(..., F_i * dim + 2): the candidate's field embeddings, then its mean rating and popularity."""
        dense = torch.stack([self.item_mean_rating[items], self.item_popularity[items]], -1)
        return torch.cat([candidate.flatten(-2), dense], -1)

    # ------------------------------------------------------------------ activation unit
    def _attention_blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_q + W_d, W_k - W_d, W_p), each (H, D), from the first layer W = [W_q W_k W_d W_p]."""
        w_q, w_k, w_d, w_p = self.attention_in.weight.split(self.item_dim, dim=1)
        return w_q + w_d, w_k - w_d, w_p

    def _scores_to_weights(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.attention == "softmax":
            return masked_softmax(scores, mask)
        # DIN's original weights are not normalised. They end in a sigmoid so that none is negative: the
        # renormalised view (history_share) divides each weight by the row's sum, and that only gives shares
        # in [0, 1], fit for collapse statistics, when no weight is negative (a raw score could even sum to 0).
        return torch.sigmoid(scores) * mask

    def _override(
        self, weights: torch.Tensor, mask: torch.Tensor, attention_override: dict[str, AttentionOverride] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weights, shares): the weights after any override and, in the un-normalised mode, their shares."""
        weights = apply_override("history", weights, mask, attention_override)
        if self.attention == "softmax":
            return weights, None
        total = weights.sum(-1, keepdim=True)
        share = torch.where(total > 0, weights / total.clamp(min=1e-12), torch.zeros_like(weights))
        if attention_override and "history_share" in attention_override:
            share = apply_override("history_share", share, mask, attention_override)
            weights = share * total
        return weights, share

    @staticmethod
    def _maps(
        weights: torch.Tensor, share: torch.Tensor | None, mask: torch.Tensor, history: torch.Tensor
    ) -> dict[str, AttentionMap]:
        description = (
            "How much each history item counts for this candidate: the activation unit's score of "
            "[candidate, item, difference, product]"
        )
        if share is None:
            return {
                "history": AttentionMap(
                    values=weights,
                    axes=("history",),
                    level="item",
                    mask=mask,
                    normalised_over="history",
                    axis_items={"history": history},
                    description=description + ", softmax-normalised over the valid history.",
                )
            }
        return {
            "history": AttentionMap(
                values=weights,
                axes=("history",),
                level="item",
                mask=mask,
                axis_items={"history": history},
                description=description + " through a sigmoid, un-normalised as in DIN: each weight is in (0, 1) "
                "and their sum is the strength of the interest.",
            ),
            "history_share": AttentionMap(
                values=share,
                axes=("history",),
                level="item",
                mask=mask,
                normalised_over="history",
                axis_items={"history": history},
                description="Each history item's share of the total (un-normalised) attention weight for this "
                "candidate.",
            ),
        }

    # ------------------------------------------------------------------ scores
    def _predict(self, user: torch.Tensor, interest: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Logits of the prediction MLP on [user features; interest; item features], as ``forward``'s ``self.mlp`` on
        their concatenation.

        Its first layer is applied block by block, so ranking computes the user block once per user and the
        item block once per candidate: ``user`` (B, U) with ``interest`` (B, D) and ``item`` (B, I), or with
        ``interest`` (B, C, D) and ``item`` (C, I).
        """
        first = self.mlp[0]
        w_user, w_interest, w_item, w_product = first.weight.split(
            [user.shape[-1], self.item_dim, item.shape[-1], self.item_dim if self.interest_product else 0], 1
        )
        user = F.linear(user, w_user)
        hidden = F.linear(interest, w_interest) + F.linear(item, w_item, first.bias)
        if self.interest_product:  # the candidate's vector q opens its item features
            hidden = hidden + F.linear(interest * item[..., : self.item_dim], w_product)
        hidden = hidden + (user.unsqueeze(1) if interest.dim() == 3 else user)
        # the rest on 2-D rows: PReLU's per-unit slopes expect the units on axis 1
        return self.mlp[1:](hidden.flatten(0, -2)).view(hidden.shape[:-1])

    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> RecOutput:
        mask = batch.history_mask
        candidate = self.candidate_tap(self.candidate_fields(batch.items))  # (B, F_i, dim)
        q = candidate[:, :2].flatten(1)  # (B, D)
        k = self.history_tap(self.item_vectors(batch.history))  # (B, T, D)
        # the activation unit: a_t = w^T relu(W [q; k_t; q - k_t; q * k_t] + b) (+ c)
        q_t = q.unsqueeze(1).expand_as(k)
        hidden = torch.relu(self.attention_in(torch.cat([q_t, k, q_t - k, q_t * k], -1)))
        scores = self.attention_out(hidden).squeeze(-1)  # (B, T)
        weights, share = self._override(self._scores_to_weights(scores, mask), mask, attention_override)
        interest = (weights.unsqueeze(-1) * k).sum(1)  # v = sum_t w_t k_t
        # score = MLP([user fields, r_u; v; q, decade, r_i, pop_i (; v * q)])
        features = [self.user_features(batch.users), interest, self.item_features(candidate, batch.items)]
        if self.interest_product:
            features.append(interest * q)
        logits = self.mlp(torch.cat(features, -1)).squeeze(-1)
        maps = self._maps(weights, share, mask, batch.history) if output_attentions else None
        return RecOutput(scores=logits, attentions=maps)

    # candidates x history pairs per block of the ranking path: the block's (pairs x H) activations, 8 MB at
    # H = 32, stay in the last-level cache from the GEMM through the ReLU and the output layer. Measured at
    # 26,744 candidates x 50 positions on 2 cores: 2^16 pairs 56 ms, 2^14 69 ms, 2^17 69 ms
    block_pairs: ClassVar[int] = 1 << 16

    @torch.no_grad()
    def score_items(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        chunk_rows: int = 65536,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> torch.Tensor:
        """(B, C) logits, vectorised over candidates x history (see the module docstring).

        Users go in chunks of about ``chunk_rows`` (user, candidate) rows; the activation unit runs, user by
        user, over blocks of about ``block_pairs`` (candidate, history item) pairs. With an attention override
        the rows go through ``forward``, which is where overrides apply.
        """
        if attention_override:
            return super().score_items(users, history, items, chunk_rows, attention_override)
        return self._rank(users, history, items, chunk_rows, keep_weights=False)[0]

    @torch.no_grad()
    def catalogue_attention(
        self, users: torch.Tensor, history: torch.Tensor, items: torch.Tensor, chunk_rows: int = 65536
    ) -> dict[str, torch.Tensor]:
        """The ``history`` (and ``history_share``) weights of every candidate, (B, C, T), from the ranking path."""
        _, weights = self._rank(users, history, items, chunk_rows, keep_weights=True)
        if self.attention == "softmax":
            return {"history": weights}
        total = weights.sum(-1, keepdim=True)
        return {
            "history": weights,
            "history_share": torch.where(total > 0, weights / total.clamp(min=1e-12), torch.zeros_like(weights)),
        }

    def _rank(self, users, history, items, chunk_rows: int, keep_weights: bool):
        """(scores (B, C), weights (B, C, T) or None): the decomposed ranking path."""
        candidate = self.candidate_fields(items)  # (C, F_i, dim)
        query = candidate[:, :2].flatten(1)  # (C, D)
        item = self.item_features(candidate, items)  # (C, I)
        w_query, w_key, w_product = self._attention_blocks()
        # a column of ones meets the k part (with the bias), which rides along as an extra column of each
        # W_q + W_d + W_p diag(k_t)
        query = torch.cat([query, torch.ones_like(query[:, :1])], 1)  # (C, D + 1)
        w_out = self.attention_out.weight.squeeze(0)  # (H,)
        n_users, n_candidates, length = users.shape[0], items.shape[0], history.shape[1]
        size = w_product.shape[0]
        out = torch.empty(n_users, n_candidates, device=query.device, dtype=query.dtype)
        kept = (
            torch.empty(n_users, n_candidates, length, device=query.device, dtype=query.dtype) if keep_weights else None
        )
        users_per_chunk = max(1, chunk_rows // max(n_candidates, 1))
        for start in range(0, n_users, users_per_chunk):
            stop = min(n_users, start + users_per_chunk)
            hist = history[start:stop]
            mask = (hist != 0).unsqueeze(1)  # (b, 1, T)
            keys = self.item_vectors(hist)  # (b, T, D)
            per_key = torch.cat(
                [keys.unsqueeze(2) * w_product + w_query, F.linear(keys, w_key, self.attention_in.bias).unsqueeze(-1)],
                -1,
            )
            per_key = per_key.flatten(1, 2).transpose(1, 2).contiguous()  # (b, D + 1, T*H)
            scores = torch.empty(stop - start, n_candidates, length, device=query.device, dtype=query.dtype)
            step = max(1, self.block_pairs // max(length, 1))
            for row in range(stop - start):
                for first in range(0, n_candidates, step):
                    last = min(n_candidates, first + step)
                    pairs = (query[first:last] @ per_key[row]).view(last - first, length, size)
                    scores[row, first:last] = torch.relu_(pairs) @ w_out
            if self.attention_out.bias is not None:
                scores += self.attention_out.bias
            weights = self._scores_to_weights(scores, mask)  # (b, C, T)
            if kept is not None:
                kept[start:stop] = weights
            out[start:stop] = self._predict(self.user_features(users[start:stop]), weights @ keys, item)
        return out, kept
