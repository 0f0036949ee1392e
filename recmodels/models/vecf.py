"""VECF, Visually Explainable Collaborative Filtering (Chen et al., SIGIR 2019): the user attends over the regions
of the candidate's own image, and the attended image enters the score.

For user i with history h_1..h_T and candidate j, whose image gives region features f_j1..f_jR (the cells of a
CNN's last feature grid, row-major, read from the region feature store of :mod:`recmodels.vision`), and m_jr the
mean of region r over the items of j's genres:

    x_jr        = f_jr, or f_jr - m_jr with contrast=True                the candidate's regions
    q_i         = u_i                                                    query="user" (the paper)
    q_i         = u_i + sum_t a_t e_{h_t}                                query="history"
    a_t         = softmax over t of  k^T tanh(W_p e_{h_t} + b_p)         additive attention pooling, as NRMS pools
    P_ir        = mean over the history of  W_s (f_{h_t,r} - m_{h_t,r})  the shopper's region profile (profile_dim)
    c_ijr       = w^T relu(W_u q_i + W_f x_jr + W_P P_ir + p_r + b)
    beta_ijr    = softmax over r of c_ijr                                (masked: an item without an image has none)
    v_ij        = sum_r beta_ijr W_v x_jr                                the attended image vector
    score(i, j) = q_i^T (e_j + v_ij) + b_j

u is the user embedding, e the item embedding (the history's and the candidate's alike) and b an item bias. The
score is the paper's fusion of the user with the item and its attended image, reduced to one inner product:
q^T e_j + b_j is BPR-MF, and q^T v_ij = sum_r beta_ijr (W_v^T q_i)^T x_jr reads each attended region with a
per-user linear probe, so the regions the attention picks are the ones that move the score.

The paper's model is ``content=True, profile_dim=0, position=False, contrast=False``. The other settings extend it,
each kept or dropped on valid NDCG@10 (the defaults are fashion's choice):

- ``position``: p_r, a learned vector per grid cell. A CNN cell's feature says what is there, not where, so
  without p_r the attention can prefer a kind of content but not a place on the garment.
- ``profile_dim`` k > 0: the shopper's region profile P_i, a k-vector per region summarising what the history's
  images show there, each measured against its genres' mean (the history of a shoe buyer is full of shoes; what
  tells their taste is where their shoes differ from shoes in general). It is a history-aware query per region,
  read from the images, so it needs no per-user parameter to learn where a shopper looks.
- ``content``: whether the candidate's own regions enter the attention (W_f x_jr). Without them beta depends on
  the user and the grid only, and the candidate's regions enter the score through v_ij.
- ``contrast``: the candidate's regions as what sets them apart from their genre's typical item.
- ``aux_loss="image"`` (a training setting): the ranking loss of the image term q^T v_ij alone, weighted by
  ``aux_weight``, so the attended regions learn to rank the candidates themselves.
- ``image_from_zero``: W_v starts at 0, so the attended image vector adds nothing at first and the model starts as
  its CF part: warm-started from BPR-MF's u, e and b (``train --init-from``), it starts at BPR-MF's scores, where a
  random W_v would halve BPR-MF's valid NDCG@10 before the first step.

With ``components="genres"`` (a dataset without images) the candidate's genres take the regions' place: unit g is
genre g as a one-hot vector, masked where the item lacks it, m is 0, and the map is ``candidate_genres``.

Maps (``output_attentions=True``): ``candidate_regions`` (region,), beta, level component, with the grid in its
meta; with query="history" also ``history`` (history,), a, level item. Both can be replaced per call with
``attention_override``. Taps: the user and candidate embeddings, the history's embeddings (query="history"), each
history item's profile summary per region, and the candidate's regions after their linear maps, [W_f x_jr,
W_v x_jr]: without bias, and every other use of x_jr goes through them, so integrated gradients per region equal
those on x_jr itself (from x = 0: a black region, or with contrast the genre's mean region), while the
projections are computed once per distinct item.

Region features are too large for a checkpoint: they are read from the store at load (as ACF's), m is recomputed
from them, and they are refused if the images or the backbone changed. :meth:`VECF.score_items` encodes the users
once and the catalogue's regions once, then runs the attention over the (user, item, region) cells in chunks over
items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.config import MAX_GRID, MAX_WIDTH, bounded, check_bounds
from recmodels.models.layers import masked_softmax
from recmodels.models.losses import training_loss
from recmodels.models.outputs import AttentionMap, AttentionOverride, Batch, InputTap, RecOutput, apply_override
from recmodels.models.region_units import RegionUnits

COMPONENT_SOURCES = ("genres", "regions")
QUERIES = ("user", "history")


@dataclass
class VECFConfig:
    """VECF's hyperparameters (the defaults were chosen on fashion's valid NDCG@10; see the module docstring).

    Attributes:
        dim: size of the user and item embeddings and of the attended image vector.
        attention_dim: hidden size of the region attention MLP (defaults to ``dim``).
        query: ``"user"``, the user embedding alone (the paper), or ``"history"``, the user embedding plus an
            additive-attention pooling of the history's item embeddings.
        pool_dim: hidden size of that pooling (defaults to ``dim``; unused with query="user").
        position: whether the attention adds a learned vector per grid cell (p_r).
        content: whether the attention reads the candidate's region features (W_f f_jr, the paper's).
        profile_dim: k, the size per region of the shopper's region profile P_ir; 0 leaves it out.
        contrast: whether the candidate's regions enter as x = f - m (against their genres' mean) rather than f.
        image_from_zero: whether W_v (the attended image vector's map) starts at zero rather than random.
        components: ``"regions"`` of item images or ``"genres"``; :meth:`VECF.from_data` picks regions when the
            dataset has an image folder.
        init_std: standard deviation of the embedding initialisation.
        backbone, component_dim, grid, region_fingerprint: for regions, the CNN backbone's name, its channels D,
            its grid (h, w) and the fingerprint of the images and backbone; :meth:`VECF.from_data` fills them in.
    """

    dim: int = bounded(64, 1, MAX_WIDTH)
    attention_dim: int | None = bounded(None, 1, MAX_WIDTH)
    query: str = "user"
    pool_dim: int | None = bounded(None, 1, MAX_WIDTH)
    position: bool = True
    content: bool = False
    profile_dim: int = bounded(8, 0, MAX_WIDTH)
    contrast: bool = False
    image_from_zero: bool = False
    components: str = "genres"
    init_std: float = bounded(0.05, 0.0, 1.0, low_open=True)
    backbone: str | None = None
    component_dim: int | None = bounded(None, 1, MAX_WIDTH)
    grid: tuple[int, ...] | None = bounded(None, 1, MAX_GRID)
    region_fingerprint: str | None = None

    def __post_init__(self):
        check_bounds(self)
        if self.components not in COMPONENT_SOURCES:
            raise ValueError(f"components must be one of {COMPONENT_SOURCES}, got {self.components!r}")
        if self.query not in QUERIES:
            raise ValueError(f"query must be one of {QUERIES}, got {self.query!r}")
        if self.components == "regions" and (self.component_dim is None or self.grid is None or self.backbone is None):
            raise ValueError(
                "components='regions' needs backbone, component_dim and grid; build the model with "
                "VECF.from_data(data), which reads them from the region feature store"
            )
        self.attention_dim = self.attention_dim or self.dim
        self.pool_dim = self.pool_dim or self.dim
        self.grid = None if self.grid is None else tuple(int(g) for g in self.grid)


@dataclass
class VECFOutput(RecOutput):
    """The scores and maps, and each row's image term q^T v_ij (B,), which the "image" auxiliary loss ranks by."""

    image_term: torch.Tensor | None = None


class VECF(RegionUnits, RecModel):
    """Visually explainable CF: user-conditioned attention over the candidate's image regions."""

    name = "vecf"
    title = "VECF"
    order = 110
    new_user = (
        "VECF's query adds a learned vector per user id to the pooled history: a new user gets the padding vector "
        "(zeros), so their history alone asks the candidate's regions."
    )
    config_class = VECFConfig
    aux_losses = ("image",)
    needs_item_features = True
    uses_images = True
    # what reads the regions and attends over them; the rest (u, e, b and the history pooling) is the CF part
    image_pathway = (
        "attention_user",
        "region_projection",
        "profile_projection",
        "profile_attention",
        "position",
        "attention_out",
    )
    default_training = {
        "loss": "bpr",
        "negatives": 1,
        "epochs": 80,
        "lr": 2e-3,
        "weight_decay": 1e-5,
        "batch_size": 1024,
        "patience": 8,
        "monitor": "ndcg@10",
    }

    def __init__(self, spec: dict, config: VECFConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        config = self.config
        dim, attention_dim, profile_dim = config.dim, config.attention_dim, config.profile_dim
        self.dim, self.component_source, self.query = dim, config.components, config.query
        self.grid = None if config.grid is None else list(config.grid)
        if self.component_source == "regions":
            feature_dim, self.n_units = int(config.component_dim), self.grid[0] * self.grid[1]
        else:
            feature_dim = self.n_units = len(spec["genre_names"])
        self.needs_data = self.component_source == "regions"
        if self.needs_data:
            # float16 halves the memory of the largest table; never in a checkpoint, nor m (recomputed from it)
            self.register_buffer(
                "region_table",
                torch.zeros(self.n_items + 1, self.n_units, feature_dim, dtype=torch.float16),
                persistent=False,
            )
            self.register_buffer("has_image", torch.zeros(self.n_items + 1, dtype=torch.bool), persistent=False)
            self.register_buffer(
                "genre_mean", torch.zeros(len(spec["genre_names"]), self.n_units, feature_dim), persistent=False
            )

        self.user_embedding = nn.Embedding(self.n_users + 1, dim, padding_idx=0)  # u
        self.item_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)  # e
        self.item_bias = nn.Embedding(self.n_items + 1, 1, padding_idx=0)  # b
        if self.query == "history":
            self.pool_projection = nn.Linear(dim, config.pool_dim)  # W_p, b_p
            self.pool_query = nn.Parameter(torch.empty(config.pool_dim))  # k
        self.attention_user = nn.Linear(dim, attention_dim)  # W_u, b
        # [W_f; W_v] stacked: one product projects a region for the attention (W_f) and the image vector (W_v)
        self.key_dim = attention_dim if config.content else 0
        self.region_projection = nn.Linear(feature_dim, self.key_dim + dim, bias=False)
        if profile_dim:
            self.profile_projection = nn.Linear(feature_dim, profile_dim, bias=False)  # W_s
            self.profile_attention = nn.Linear(profile_dim, attention_dim, bias=False)  # W_P
        if config.position:
            self.position = nn.Parameter(torch.empty(self.n_units, attention_dim))  # p_r
        self.attention_out = nn.Linear(attention_dim, 1, bias=False)  # w

        unit = "region" if self.needs_data else "genre"
        self.unit_labels = self._unit_labels()
        self.user_tap = InputTap(("user",), labels=["user id"], description="the user's id embedding u")
        if self.query == "history":
            self.history_tap = InputTap(
                ("history",), item_axis="history", description="each history item's embedding e, pooled into the query"
            )
        if profile_dim:
            # units of their own: the region map's tap is the one whose units are its axes ("region",)
            self.profile_tap = InputTap(
                ("history", f"history_{unit}"),
                labels=self.unit_labels,
                item_axis="history",
                description=f"each history item's summary W_s (f - m) at each {unit}, "
                "averaged into the shopper's region profile",
            )
        self.candidate_tap = InputTap(
            ("candidate",), labels=["item id"], description="the candidate's embedding e_j (its bias b_j is held fixed)"
        )
        self.region_tap = InputTap(
            (unit,),
            labels=self.unit_labels,
            description=f"each {unit} of the candidate, as [W_f f, W_v f] (linear in its features f, so the "
            f"attribution per {unit} is that of its raw features)",
        )

        self.init_embeddings(self.user_embedding, self.item_embedding, std=config.init_std)
        nn.init.zeros_(self.item_bias.weight)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        if config.image_from_zero:
            nn.init.zeros_(self.region_projection.weight[self.key_dim :])  # W_v; W_f keeps its start
        if self.query == "history":
            nn.init.normal_(self.pool_query, std=config.pool_dim**-0.5)
        if config.position:
            nn.init.normal_(self.position, std=config.init_std)

    # ------------------------------------------------------------------ units: image regions or genres (as ACF's)
    @classmethod
    def from_data(cls, data, config: VECFConfig | None = None, **hparams) -> VECF:
        """Build for ``data``: image regions when the dataset has an image folder, else genres (unless the config
        or ``components`` says which)."""
        hparams, regions = cls._units_for(data, config, hparams)
        return cls(data.tables.spec(), **hparams).load_feature_tables(data.tables)._with_units(data, regions)

    def _regions_loaded(self) -> None:
        """The profile's genre means: m per genre is the mean region features of the genre's items that have an
        image, summed in float32 over slices of items (the whole table in float32 can be hundreds of MB)."""
        members = (self.item_genres > 0).float() * self.has_image.unsqueeze(1).float()  # (N + 1, G)
        totals = torch.zeros_like(self.genre_mean).flatten(1)  # (G, R * D)
        for start in range(0, len(members), 256):
            part = slice(start, start + 256)
            totals += members[part].T @ self.region_table[part].float().flatten(1)
        self.genre_mean.copy_((totals / members.sum(0).clamp(min=1).unsqueeze(1)).view_as(self.genre_mean))

    def _unit_labels(self) -> list[str]:
        if self.needs_data:
            cols = self.grid[1]
            return [f"region {r // cols + 1},{r % cols + 1}" for r in range(self.n_units)]
        return [str(name) for name in self.spec["genre_names"]]

    def units(self, items: torch.Tensor, against_genres: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, R, D) and mask (N, R) of items (N,): image regions (minus m with ``against_genres``, 0 where
        masked), or one-hot genres (m = 0)."""
        if not self.needs_data:
            mask = self.item_genres[items] > 0
            eye = torch.eye(self.n_units, dtype=self.region_projection.weight.dtype, device=items.device)
            return eye.expand(len(items), -1, -1) * mask.unsqueeze(-1), mask
        features = self.region_table[items].to(self.region_projection.weight.dtype)
        mask = (self.has_image[items] & (items != 0)).unsqueeze(-1).expand(-1, self.n_units)
        if against_genres:
            genres = (self.item_genres[items] > 0).to(features.dtype)
            weights = genres / genres.sum(1, keepdim=True).clamp(min=1)  # m: mean of its genres'
            features = (features - (weights @ self.genre_mean.flatten(1)).view_as(features)) * mask.unsqueeze(-1)
        return features, mask

    def project_units(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[W_f x, W_v x] (N, R, key_dim + d) and the mask (N, R) of items (N,), projected once per distinct item."""
        distinct, inverse = torch.unique(items, return_inverse=True)
        features, mask = self.units(distinct, self.config.contrast)
        return self.region_projection(features)[inverse], mask[inverse]

    # ------------------------------------------------------------------ user side
    def user_queries(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, AttentionMap] | None]:
        """q (B, d), the user's part of the attention's hidden layer, W_u q + b + W_P P + p_r (B, R or 1, A), and
        the history pooling map when asked (query="history")."""
        state, maps = self.encode_users(self._encode_users, users, history, output_attentions, attention_override)
        query, hidden = state[:, : self.dim], state[:, self.dim :].view(len(state), -1, self.config.attention_dim)
        return query, hidden, maps

    def _encode_users(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> tuple[torch.Tensor, dict[str, AttentionMap] | None]:
        """[q, flattened user part of the hidden layer] as one tensor, so :meth:`encode_users` can encode each
        distinct (user, history) row once in training."""
        query = self.user_tap(self.user_embedding(users).unsqueeze(1)).squeeze(1)  # (B, d)
        valid = history != 0
        maps = {} if output_attentions else None
        if self.query == "history":
            items = self.history_tap(self.item_embedding(history))  # (B, T, d)
            alpha = masked_softmax(torch.tanh(self.pool_projection(items)) @ self.pool_query, valid)
            alpha = apply_override("history", alpha, valid, attention_override)
            query = query + (alpha.unsqueeze(-1) * items).sum(1)
            if output_attentions:
                maps["history"] = AttentionMap(
                    values=alpha,
                    axes=("history",),
                    level="item",
                    mask=valid,
                    normalised_over="history",
                    axis_items={"history": history},
                    description="How much each history item adds its embedding to the query that looks at the "
                    "candidate's image (additive attention pooling); the user's own embedding is added.",
                )
        hidden = self.attention_user(query).unsqueeze(1)  # (B, 1, A)
        if self.config.profile_dim:
            distinct, inverse = torch.unique(history, return_inverse=True)
            summaries = self.profile_projection(self.units(distinct, against_genres=True)[0])
            summaries = self.profile_tap(summaries[inverse])  # (B, T, R, k)
            count = valid.sum(1).clamp(min=1).view(-1, 1, 1)
            profile = (summaries * valid[..., None, None]).sum(1) / count  # (B, R, k)
            hidden = hidden + self.profile_attention(profile)
        if self.config.position:
            hidden = hidden + self.position
        return torch.cat([query, hidden.flatten(1)], 1), maps

    # ------------------------------------------------------------------ attention and scores
    def keys_and_values(self, projected: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(W_f f_r or None without content, W_v f_r) from projected units (..., R, key_dim + d)."""
        keys, values = projected.split([self.key_dim, self.dim], -1)
        return (keys if self.config.content else None), values

    def attend(
        self,
        user_hidden: torch.Tensor,
        keys: torch.Tensor | None,
        mask: torch.Tensor,
        readout: torch.Tensor,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """beta (..., R) and q^T x = sum_r beta_r readout_r (...), from the user's part of the hidden layer
        (..., R or 1, A), the keys W_f f_r (..., R, A) and the readouts (W_v f_r)^T q (..., R)."""
        hidden = user_hidden if keys is None else user_hidden + keys
        beta = masked_softmax(self.attention_out(torch.relu(hidden)).squeeze(-1), mask)
        beta = apply_override(self.map_name, beta, mask, attention_override)
        return beta, (beta * readout).sum(-1)

    @property
    def map_name(self) -> str:
        return "candidate_regions" if self.needs_data else "candidate_genres"

    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> RecOutput:
        query, user_hidden, maps = self.user_queries(batch.users, batch.history, output_attentions, attention_override)
        candidate = self.candidate_tap(self.item_embedding(batch.items).unsqueeze(1)).squeeze(1)
        projected, mask = self.project_units(batch.items)
        keys, values = self.keys_and_values(self.region_tap(projected))
        readout = (values @ query.unsqueeze(-1)).squeeze(-1)  # (B, R)
        beta, image_term = self.attend(user_hidden, keys, mask, readout, attention_override)
        scores = (query * candidate).sum(-1) + image_term + self.item_bias(batch.items).squeeze(-1)
        if output_attentions:
            maps[self.map_name] = self._candidate_map(beta, mask)
        return VECFOutput(scores=scores, attentions=maps, image_term=image_term)

    def loss(self, output: VECFOutput, batch: Batch, training) -> torch.Tensor:
        """The ranking loss of the scores, plus with aux_loss="image" ``aux_weight`` times the same loss of the image
        term q^T v_ij alone: the attended regions must rank the candidates by themselves, not only correct what
        the CF part gets wrong (once u, e and b fit the train pairs, as warm-started from BPR-MF, little is)."""
        loss = super().loss(output, batch, training)
        if training.aux_loss == "image" and output.image_term is not None:
            image = training_loss(training.loss, output.image_term, batch.labels, batch.negatives, self.n_items)
            loss = loss + training.aux_weight * image
        return loss

    def _candidate_map(self, beta: torch.Tensor, mask: torch.Tensor) -> AttentionMap:
        if self.needs_data:
            axis, meta = (
                "region",
                {
                    "components": "image regions",
                    "grid": tuple(self.grid),
                    "backbone": self.config.backbone,
                    "image_of": "candidate",
                },
            )
            what = "regions of the candidate's image"
        else:
            axis, meta, what = "genre", {"components": "genres"}, "genres of the candidate"
        return AttentionMap(
            values=beta,
            axes=(axis,),
            level="component",
            mask=mask,
            normalised_over=axis,
            labels={axis: list(self.unit_labels)},
            meta=meta,
            description=f"Where this user looks among the {what}: the weights of the attended image vector "
            "that enters the score (component-level attention, conditioned on the user).",
        )

    def score_items(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        chunk_rows: int = 65536,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> torch.Tensor:
        """(B, C): the users once and the catalogue's regions once, then the attention over the (user, item,
        region) cells in chunks over items, about ``chunk_rows`` cells each."""
        query, user_hidden, _ = self.user_queries(users, history, attention_override=attention_override)
        projected, mask = self.project_units(items)
        keys, values = self.keys_and_values(projected)  # (C, R, A), (C, R, d)
        readout = torch.einsum("crd,bd->bcr", values, query)  # (B, C, R)
        scores = query @ self.item_embedding(items).T + self.item_bias(items).T  # (B, C)
        step = max(1, chunk_rows // max(len(users) * self.n_units, 1))
        for start in range(0, len(items), step):
            part = slice(start, start + step)
            _, image_term = self.attend(
                user_hidden[:, None],
                None if keys is None else keys[part],
                mask[part],
                readout[:, part],
                attention_override,
            )
            scores[:, part] += image_term
        return scores
