"""IntTower, the interaction-enhanced two-tower model (Li et al., CIKM 2022): Light-SE, FE-Block and CIR.

Each tower embeds its fields into ``F`` vectors of size d, refines them with its own Light-SE and feeds the
flattened result through an MLP. The towers meet only in the score:

    Light-SE     z_f = mean_d(x_f),  A = softmax(W z) (W bias-free F x F),  x'_f = x_f + A_f x_f
    user MLP     h_1 .. h_L = relu(Linear(...)) over the flattened user fields
    item MLP     g_1 .. g_L the same over the item fields (same sizes)
    FE-Block     u^{l,h} = P_l h_l   split into H_u heads of size p   (every user layer l)
                 v^{k}   = Q g_L     split into H_i heads of size p   (the item's last layer only)
    score        s = sum_l sum_h max_k <u^{l,h}, v^{k}> + b           (a logit; sigmoid gives the CTR)

``b`` is one learned scalar that calibrates the logit (the paper's prediction layer). CIR, the contrastive
interaction regularisation, is :func:`recmodels.models.losses.cir` on the towers' last-layer outputs h_L and
g_L, which :meth:`IntTower.forward` returns as ``user_vector`` and ``item_vector`` of an
:class:`IntTowerOutput`; :meth:`IntTower.loss` adds it, over the liked rows, to the ranking loss.

Fields. User side: user id, each categorical user field of the data (age, gender, occupation on MovieLens),
the history (the masked mean of the history items' embeddings; an empty history gives a zero vector) and the
user's mean rating. Item side: item id, genres (the mean of the item's genre embeddings), release decade
(``use_decade``) and the item's mean rating. The mean ratings are the train-only buffers of
:class:`RecModel`, each projected to a field embedding ``r w + c`` so Light-SE weighs it like any other field.

Maps (``output_attentions=True``): ``user_fields`` and ``item_fields``, the Light-SE weights A (field,) of each
side (distributions; ``attention_override`` can replace them), and ``head_similarity``, the user-head x
item-head dot products (layer, user_head, item_head), not a distribution; its ``meta["argmax"]`` holds, per
layer and user head, the item head that the max picked and so the one that enters the score. An
``attention_override`` named ``head_similarity`` replaces the similarities before the max (head masking,
:mod:`recmodels.explain.heads`).

The item side never sees the user, so :meth:`IntTower.score_items` runs the user tower once per user and the
item tower once per candidate and does the max-sim as one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.config import MAX_HEADS, MAX_WIDTH, bounded, check_bounds
from recmodels.models.layers import FieldEmbedding, GenreEmbedding
from recmodels.models.losses import cir
from recmodels.models.outputs import AttentionMap, AttentionOverride, Batch, InputTap, RecOutput, apply_override


class LightSE(nn.Module):
    """Light squeeze-and-excitation over F field embeddings: x + x * softmax(W mean_d(x)), W bias-free F x F."""

    def __init__(self, n_fields: int):
        super().__init__()
        self.excitation = nn.Linear(n_fields, n_fields, bias=False)

    def weights(self, fields: torch.Tensor) -> torch.Tensor:
        """(B, F) field weights, summing to 1 per row, for fields (B, F, d)."""
        return torch.softmax(self.excitation(fields.mean(-1)), dim=-1)

    @staticmethod
    def reweight(fields: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return fields + fields * weights.unsqueeze(-1)


@dataclass
class IntTowerConfig:
    """IntTower's hyperparameters.

    Attributes:
        dim: size d of every field embedding.
        hidden: sizes of the MLP layers of both towers (the same for both, so CIR can compare h_L and g_L).
        user_heads: H_u, heads per user layer in the FE-Block.
        item_heads: H_i, heads of the item's last layer.
        head_dim: p, the size of each head.
        use_decade: whether the item side has a release-decade field.
        init_std: standard deviation of the embedding initialisation.
    """

    dim: int = bounded(32, 1, MAX_WIDTH)
    hidden: tuple[int, ...] = bounded((128, 64, 32), 1, MAX_WIDTH)
    user_heads: int = bounded(4, 1, MAX_HEADS)
    item_heads: int = bounded(4, 1, MAX_HEADS)
    head_dim: int = bounded(16, 1, MAX_WIDTH)
    use_decade: bool = True
    init_std: float = bounded(0.05, 0.0, 1.0, low_open=True)

    def __post_init__(self):
        check_bounds(self)
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden:
            raise ValueError(f"hidden needs at least one positive layer size, got {self.hidden}")


@dataclass
class IntTowerOutput(RecOutput):
    """The scores and maps, and the towers' last-layer outputs h_L and g_L (B, hidden[-1]) that CIR compares."""

    user_vector: torch.Tensor | None = None
    item_vector: torch.Tensor | None = None


class IntTower(RecModel):
    """IntTower with CTR training (BCE) plus the CIR contrastive loss."""

    name = "inttower"
    title = "IntTower"
    order = 60
    new_user = (
        "IntTower's user tower reads a learned vector per user id and per user field and the user's mean rating: a new "
        "user gets the padding vector (zeros) for the id, the '<unknown>' value of each field and a mean rating of 0, "
        "so their history carries the user side."
    )
    config_class = IntTowerConfig
    task = "ctr"
    aux_losses = ("cir",)
    predicts_probability = True
    needs_item_features = True
    # CTR rows (BCE) plus 4 sampled unobserved items per row as label-0 rows, and CIR; chosen on valid
    # ml-100k: without the sampled rows valid AUC is higher (0.85 against 0.77) but the model never learns
    # which items a user picks at all, and valid NDCG@10 falls to 0.01 (MostPopular: 0.06)
    default_training = {
        "loss": "bce",
        "negatives": 4,
        "aux_loss": "cir",
        "aux_weight": 0.1,
        "temperature": 0.07,
        "epochs": 60,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "batch_size": 1024,
        "patience": 8,
        "monitor": "ndcg@10",
    }

    def __init__(self, spec: dict, config: IntTowerConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        config = self.config
        dim, hidden = config.dim, config.hidden
        self.dim, self.user_heads, self.item_heads = dim, config.user_heads, config.item_heads
        self.head_dim, self.use_decade = config.head_dim, config.use_decade
        field_names = list(spec["user_field_names"])
        self.user_field_labels = ["user id", *field_names, "history", "mean rating"]
        self.item_field_labels = ["item id", "genres", *(["decade"] if self.use_decade else []), "mean rating"]

        # ---- user side
        self.user_embedding = nn.Embedding(self.n_users + 1, dim, padding_idx=0)
        self.user_field_embedding = FieldEmbedding(list(spec.get("user_field_sizes", [])), dim)
        self.history_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)
        self.user_rating = nn.Linear(1, dim)
        self.user_se = LightSE(len(self.user_field_labels))
        # ---- item side
        self.item_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)
        self.genre_embedding = GenreEmbedding(len(spec["genre_names"]), dim)
        self.decade_embedding = nn.Embedding(spec["n_years"], dim) if self.use_decade else None
        self.item_rating = nn.Linear(1, dim)
        self.item_se = LightSE(len(self.item_field_labels))
        # ---- towers and the FE-Block
        self.user_mlp = self._mlp(len(self.user_field_labels) * dim, hidden)
        self.item_mlp = self._mlp(len(self.item_field_labels) * dim, hidden)
        self.user_head_projections = nn.ModuleList(nn.Linear(size, self.user_heads * self.head_dim) for size in hidden)
        self.item_head_projection = nn.Linear(hidden[-1], self.item_heads * self.head_dim)
        self.bias = nn.Parameter(torch.zeros(()))

        self.history_tap = InputTap(
            ("history",), item_axis="history", description="each history item's embedding, before the masked mean"
        )
        self.user_tap = InputTap(
            ("user_feature",),
            labels=["user id", *field_names, "mean rating"],
            description="the user's id, categorical field and mean-rating embeddings",
        )
        self.candidate_tap = InputTap(
            ("item_feature",),
            labels=list(self.item_field_labels),
            description="the candidate's id, genre, decade and mean-rating embeddings",
        )

        self.init_embeddings(
            self.user_embedding,
            self.user_field_embedding,
            self.history_embedding,
            self.item_embedding,
            *([self.decade_embedding] if self.use_decade else []),
            std=config.init_std,
        )
        nn.init.normal_(self.genre_embedding.weight, std=config.init_std)

    @staticmethod
    def _mlp(in_features: int, hidden: tuple[int, ...]) -> nn.ModuleList:
        sizes = (in_features, *hidden)
        return nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(hidden)))

    # ------------------------------------------------------------------ fields
    def user_field_embeddings(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """(B, F_u, d) in the order of ``user_field_labels``; each input embedding passes its tap once."""
        categorical = self.user_field_embedding(self.user_fields[users])  # (B, n, d)
        rating = self.user_rating(self.user_mean_rating[users].unsqueeze(-1)).unsqueeze(1)  # (B, 1, d)
        tapped = self.user_tap(torch.cat([self.user_embedding(users).unsqueeze(1), categorical, rating], 1))
        mask = (history != 0).unsqueeze(-1)
        items = self.history_tap(self.history_embedding(history)) * mask  # (B, T, d)
        pooled = items.sum(1) / mask.sum(1).clamp(min=1)  # (B, d)
        return torch.cat([tapped[:, :-1], pooled.unsqueeze(1), tapped[:, -1:]], 1)

    def item_field_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """(B, F_i, d) in the order of ``item_field_labels``."""
        fields = [self.item_embedding(items), self.genre_embedding(self.item_genres[items])]
        if self.decade_embedding is not None:
            fields.append(self.decade_embedding(self.item_year[items]))
        fields.append(self.item_rating(self.item_mean_rating[items].unsqueeze(-1)))
        return self.candidate_tap(torch.stack(fields, 1))

    # ------------------------------------------------------------------ towers
    def user_tower(
        self, users: torch.Tensor, history: torch.Tensor, attention_override: dict[str, AttentionOverride] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(heads (B, L, H_u, p), last layer h_L (B, hidden[-1]), Light-SE weights (B, F_u))."""
        fields = self.user_field_embeddings(users, history)
        weights = apply_override("user_fields", self.user_se.weights(fields), None, attention_override)
        hidden, heads = LightSE.reweight(fields, weights).flatten(1), []
        for layer, projection in zip(self.user_mlp, self.user_head_projections):
            hidden = torch.relu(layer(hidden))
            heads.append(projection(hidden).view(-1, self.user_heads, self.head_dim))
        return torch.stack(heads, 1), hidden, weights

    def item_tower(
        self, items: torch.Tensor, attention_override: dict[str, AttentionOverride] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(heads (B, H_i, p), last layer g_L (B, hidden[-1]), Light-SE weights (B, F_i))."""
        fields = self.item_field_embeddings(items)
        weights = apply_override("item_fields", self.item_se.weights(fields), None, attention_override)
        hidden = LightSE.reweight(fields, weights).flatten(1)
        for layer in self.item_mlp:
            hidden = torch.relu(layer(hidden))
        return self.item_head_projection(hidden).view(-1, self.item_heads, self.head_dim), hidden, weights

    # ------------------------------------------------------------------ scores
    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> RecOutput:
        user_heads, user_vector, user_weights = self.user_tower(batch.users, batch.history, attention_override)
        item_heads, item_vector, item_weights = self.item_tower(batch.items, attention_override)
        similarity = torch.einsum("blhp,bkp->blhk", user_heads, item_heads)  # (B, L, H_u, H_i)
        # head masking (recmodels.explain.heads) replaces similarities before the max; not a distribution
        similarity = apply_override("head_similarity", similarity, None, attention_override)
        best = similarity.max(-1)
        scores = best.values.sum((1, 2)) + self.bias
        if not output_attentions:
            return IntTowerOutput(scores=scores, user_vector=user_vector, item_vector=item_vector)
        layers = similarity.shape[1]
        maps = {
            "user_fields": AttentionMap(
                values=user_weights,
                axes=("field",),
                level="field",
                normalised_over="field",
                labels={"field": list(self.user_field_labels)},
                description="Light-SE weight of each user field: how much the user tower amplifies it "
                "(x + x * weight) before its MLP.",
            ),
            "item_fields": AttentionMap(
                values=item_weights,
                axes=("field",),
                level="field",
                normalised_over="field",
                labels={"field": list(self.item_field_labels)},
                description="Light-SE weight of each item field: how much the item tower amplifies it "
                "(x + x * weight) before its MLP.",
            ),
            "head_similarity": AttentionMap(
                values=similarity,
                axes=("layer", "user_head", "item_head"),
                level="head",
                labels={
                    "layer": [f"layer {i + 1}" for i in range(layers)],
                    "user_head": [f"user head {i + 1}" for i in range(self.user_heads)],
                    "item_head": [f"item head {i + 1}" for i in range(self.item_heads)],
                },
                meta={"argmax_axis": "item_head", "argmax": best.indices, "bias": float(self.bias.detach())},
                description="Dot product of each user head (at every user layer) with each head of the item's "
                "last layer. Not a distribution: the score is the sum over layers and user heads "
                "of each row's maximum (meta['argmax'] names the item head chosen), plus a bias.",
            ),
        }
        return IntTowerOutput(scores=scores, attentions=maps, user_vector=user_vector, item_vector=item_vector)

    def loss(self, output: IntTowerOutput, batch: Batch, training) -> torch.Tensor:
        """The ranking loss plus ``aux_weight`` times CIR between the towers' outputs of the liked rows (in-batch
        negatives; only with at least two liked rows)."""
        loss = super().loss(output, batch, training)
        if training.aux_loss == "cir":
            size = batch.n_observed
            liked = batch.labels[:size] > 0
            if int(liked.sum()) > 1:
                loss = loss + training.aux_weight * cir(
                    output.user_vector[:size][liked], output.item_vector[:size][liked], training.temperature
                )
        return loss

    def score_items(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        chunk_rows: int = 65536,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> torch.Tensor:
        """(B, C): the user tower once per row, the item tower once per candidate, one matrix product."""
        if attention_override and "head_similarity" in attention_override:  # it needs each row's own similarities
            return super().score_items(users, history, items, chunk_rows, attention_override)
        user_heads = self.user_tower(users, history, attention_override)[0].flatten(1, 2)  # (B, L*H_u, p)
        item_heads = self.item_tower(items, attention_override)[0].flatten(0, 1)  # (C*H_i, p)
        n_users, n_candidates = users.shape[0], items.shape[0]
        out = torch.empty(n_users, n_candidates, device=user_heads.device, dtype=user_heads.dtype)
        # bound the (users, L*H_u, C, H_i) similarity tensor to about chunk_rows * L*H_u*H_i values
        users_per_chunk = max(1, chunk_rows // max(n_candidates, 1))
        for start in range(0, n_users, users_per_chunk):
            part = user_heads[start : start + users_per_chunk]
            similarity = (part @ item_heads.T).view(part.shape[0], part.shape[1], n_candidates, self.item_heads)
            out[start : start + users_per_chunk] = similarity.amax(-1).sum(1) + self.bias
        return out
