"""ACF, Attentive Collaborative Filtering (Chen et al., SIGIR 2017): item- and component-level attention.

For user i with profile items l (the most recent ``profile_size`` history items) and their components m:

    x_lm        = R x^raw_lm + r                                          learned reduction D_c -> d
    b(i,l,m)    = w2^T relu(W2u u_i + W2x x_lm + b2) + c2                 beta = softmax over m (masked)
    xbar_l      = sum_m beta(i,l,m) x_lm
    a(i,l)      = w1^T relu(W1u u_i + W1v v_l + W1p p_l + W1x xbar_l + b1) + c1
                                                                          alpha = softmax over l (masked)
    score(i, j) = (u_i + sum_l alpha(i,l) p_l)^T v_j

u is the user embedding, v the item embedding and p the auxiliary item embedding of profile items. The
constants c1 and c2 add the same amount to every position of a softmax, so they cancel and are left out:
they could never receive a gradient. The user side does not depend on the candidate, so ranking is one
matrix product (:meth:`ACF.score_items`).

Components are a generic per-item tensor with a mask, produced by :meth:`ACF.components`. With
``components="genres"`` an item's components are its genres, each a one-hot genre vector, so the reduction
acts as a genre embedding; M is the largest genre count of any item. With ``components="regions"`` they are
the cells of a CNN's last feature grid over the item's image (M = 49 for a 7 x 7 grid, D_c the backbone's
channels), read from the region feature store of :mod:`recmodels.vision`; an item without a readable image has
every region masked. Region features are too large for a checkpoint, so they are recomputed (or read from the
cache) from the dataset's images at load, and refused if the images or the backbone changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.config import MAX_COMPONENTS, MAX_GRID, MAX_POSITIONS, MAX_WIDTH, bounded, check_bounds
from recmodels.models.layers import masked_softmax
from recmodels.models.outputs import AttentionMap, AttentionOverride, Batch, InputTap, RecOutput, apply_override
from recmodels.models.region_units import RegionUnits

COMPONENT_SOURCES = ("genres", "regions")


@dataclass
class ACFConfig:
    """ACF's hyperparameters.

    Attributes:
        dim: size of the user, item and auxiliary item embeddings (and of the reduced components).
        attention_dim: hidden size of both attention MLPs (defaults to ``dim``).
        profile_size: how many of the most recent history items form the profile.
        components: where the component features come from: ``"genres"``, or ``"regions"`` of item images
            (:meth:`ACF.from_data` picks regions when the dataset has an image folder).
        max_components: M, the number of component slots per item; :meth:`ACF.from_data` sets it to the
            largest genre count of any item (without it, every genre gets a slot, which is correct but wider).
        init_std: standard deviation of the embedding initialisation.
        backbone, component_dim, grid, region_fingerprint: for regions, the CNN backbone's name, its
            channels D_c, its grid (h, w) and the fingerprint of images and backbone the model was trained on;
            :meth:`ACF.from_data` fills them in.
    """

    dim: int = bounded(64, 1, MAX_WIDTH)
    attention_dim: int | None = bounded(None, 1, MAX_WIDTH)
    profile_size: int = bounded(9, 1, MAX_POSITIONS)
    components: str = "genres"
    max_components: int | None = bounded(None, 1, MAX_COMPONENTS)
    init_std: float = bounded(0.05, 0.0, 1.0, low_open=True)
    backbone: str | None = None
    component_dim: int | None = bounded(None, 1, MAX_WIDTH)
    grid: tuple[int, ...] | None = bounded(None, 1, MAX_GRID)
    region_fingerprint: str | None = None

    def __post_init__(self):
        check_bounds(self)
        if self.components not in COMPONENT_SOURCES:
            raise ValueError(f"components must be one of {COMPONENT_SOURCES}, got {self.components!r}")
        if self.components == "regions" and (self.component_dim is None or self.grid is None or self.backbone is None):
            raise ValueError(
                "components='regions' needs backbone, component_dim and grid; build the model with "
                "ACF.from_data(data), which reads them from the region feature store"
            )
        self.attention_dim = self.attention_dim or self.dim
        self.grid = None if self.grid is None else tuple(int(g) for g in self.grid)


class ACF(RegionUnits, RecModel):
    """Attentive Collaborative Filtering, trained with WARP (default) or BPR (``loss="bpr"``).

    The defaults were chosen by valid NDCG@10 on ml-100k, and they also keep both maps informative. With
    BPR, Adam's coupled L2 (weight_decay) outweighs the small gradient that reaches the component attention
    through xbar, decays w2 and W2x towards 0 and leaves the component weights uniform. WARP's rank-weighted
    gradient keeps them alive at the same lambda of 1e-5.
    """

    name = "acf"
    title = "ACF"
    order = 70
    new_user = (
        "ACF adds a learned vector per user id to the attended profile: a new user gets the padding vector (zeros), "
        "so their profile alone makes their vector."
    )
    config_class = ACFConfig
    needs_item_features = True
    uses_images = True
    default_training = {
        "loss": "warp",
        "negatives": 5,
        "epochs": 80,
        "lr": 2e-3,
        "weight_decay": 1e-5,
        "batch_size": 1024,
        "patience": 5,
        "monitor": "ndcg@10",
    }

    def __init__(self, spec: dict, config: ACFConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        config = self.config
        dim, attention_dim, components = config.dim, config.attention_dim, config.components
        self.dim, self.profile_size, self.component_source = dim, config.profile_size, components
        self.grid = None if config.grid is None else list(config.grid)
        component_dim, self.n_components = self._component_shape(
            spec, components, config.max_components, config.component_dim, self.grid
        )
        self.needs_data = components == "regions"
        if self.needs_data:
            # float16 halves the memory of the largest table (e.g. 1,682 posters x 49 x 1,280); not in checkpoints
            self.register_buffer(
                "region_table",
                torch.zeros(self.n_items + 1, self.n_components, component_dim, dtype=torch.float16),
                persistent=False,
            )
            self.register_buffer("has_image", torch.zeros(self.n_items + 1, dtype=torch.bool), persistent=False)

        self.user_embedding = nn.Embedding(self.n_users + 1, dim, padding_idx=0)  # u
        self.item_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)  # v
        self.aux_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)  # p
        self.component_reduction = nn.Linear(component_dim, dim)  # D_c -> d
        # component level: b = w2^T relu(W2u u + W2x x + b2)
        self.component_user = nn.Linear(dim, attention_dim)  # W2u, b2
        self.component_feature = nn.Linear(dim, attention_dim, bias=False)  # W2x
        self.component_out = nn.Linear(attention_dim, 1, bias=False)  # w2
        # item level: a = w1^T relu(W1u u + W1v v + W1p p + W1x xbar + b1)
        self.profile_user = nn.Linear(dim, attention_dim)  # W1u, b1
        self.profile_item = nn.Linear(2 * dim, attention_dim, bias=False)  # [W1v W1p] on [v_l, p_l]
        self.profile_component = nn.Linear(dim, attention_dim, bias=False)  # W1x
        self.profile_out = nn.Linear(attention_dim, 1, bias=False)  # w1

        self.user_tap = InputTap(("user",), labels=["user id"], description="the user's id embedding u_i")
        self.profile_tap = InputTap(
            ("profile",),
            description="each profile item's embeddings [v_l, p_l]; profile positions are items "
            "through the 'profile' map's axis_items",
        )
        self.component_tap = InputTap(
            ("profile", "component"), description=f"the raw component features of each profile item ({components})"
        )
        self.candidate_tap = InputTap(("candidate",), labels=["item id"], description="the candidate's embedding v_j")

        self.init_embeddings(self.user_embedding, self.item_embedding, self.aux_embedding, std=config.init_std)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------ component source
    # The only place that knows what a component is. A new source (image regions) adds a branch to each of
    # the four methods below; everything after `components` works on (x, mask) alone.
    @staticmethod
    def _component_shape(
        spec: dict, source: str, max_components: int | None, component_dim: int | None = None, grid=None
    ) -> tuple[int, int]:
        """(D_c, M) of a source."""
        if source == "regions":
            return int(component_dim), int(grid[0]) * int(grid[1])
        n_genres = len(spec["genre_names"])
        return n_genres, max(1, min(max_components or n_genres, n_genres))

    @classmethod
    def from_data(cls, data, config: ACFConfig | None = None, **hparams) -> ACF:
        """Build for ``data``: image regions when the dataset has an image folder, else genres (unless the config
        or ``components`` says which)."""
        hparams, regions = cls._units_for(data, config, hparams)
        if hparams["components"] == "genres" and hparams.get("max_components") is None:
            hparams["max_components"] = max(1, int((data.tables.item_genres > 0).sum(1).max()))
        return cls(data.tables.spec(), **hparams).load_feature_tables(data.tables)._with_units(data, regions)

    def components(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Component features ``x`` (B, P, M, D_c) and their mask (B, P, M) for item indices (B, P).

        Genres: component m of an item is its m-th genre (in genre order) as a one-hot vector; slots
        beyond the item's genre count are masked and zero. Regions: the CNN feature of grid cell m (row-major);
        all cells of an item without an image are masked.
        """
        if self.component_source == "regions":
            x = self.region_table[items].to(self.component_reduction.weight.dtype)
            mask = self.has_image[items].unsqueeze(-1).expand(*items.shape, self.n_components)
            return x, mask & (items != 0).unsqueeze(-1)
        present = self.item_genres[items] > 0  # (B, P, G)
        # the genres an item has first, in genre order (a stable sort of the 0/1 flags)
        order = torch.sort(present.to(torch.float32), dim=-1, descending=True, stable=True).indices
        order = order[..., : self.n_components]
        mask = present.gather(-1, order)
        x = F.one_hot(order, present.shape[-1]).to(self.item_genres.dtype) * mask.unsqueeze(-1)
        return x, mask

    def _component_meta(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[dict, dict]:
        """(labels, meta) of the component map: which genre or image region each (profile, component) cell is."""
        if self.component_source == "regions":
            rows, cols = self.grid
            labels = {"component": [f"region {m // cols + 1},{m % cols + 1}" for m in range(rows * cols)]}
            return labels, {"components": "image regions", "grid": (rows, cols), "backbone": self.config.backbone}
        names = list(self.spec["genre_names"])
        ids = torch.where(mask, x.argmax(-1), torch.full_like(mask, -1, dtype=torch.long))
        labels = {"component": [f"genre {m + 1}" for m in range(x.shape[2])]}
        return labels, {"components": "genres", "component_names": names, "component_ids": ids}

    # ------------------------------------------------------------------ model
    def profile(self, history: torch.Tensor) -> torch.Tensor:
        """The most recent ``profile_size`` valid items of each (chronological, right-padded) history.

        Returns (B, P) with P = min(profile_size, T), chronological and right-padded with 0.
        """
        width = history.shape[1]
        size = min(self.profile_size, width)
        lengths = (history != 0).sum(1, keepdim=True)  # (B, 1)
        positions = torch.arange(size, device=history.device).unsqueeze(0)  # (1, P)
        index = (lengths - size).clamp(min=0) + positions
        valid = positions < lengths
        picked = history.gather(1, index.clamp(max=max(width - 1, 0)))
        return torch.where(valid, picked, torch.zeros_like(picked))

    def user_representation(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> tuple[torch.Tensor, dict[str, AttentionMap] | None]:
        """u_i + sum_l alpha(i,l) p_l, (B, d); with the two maps when asked."""
        profile = self.profile(history)  # (B, P)
        profile_mask = profile != 0
        user = self.user_tap(self.user_embedding(users).unsqueeze(1)).squeeze(1)  # (B, d)
        profile_vectors = self.profile_tap(torch.cat([self.item_embedding(profile), self.aux_embedding(profile)], -1))
        aux = profile_vectors[..., self.dim :]  # p_l, (B, P, d)

        raw, component_mask = self.components(profile)
        raw = self.component_tap(raw)  # (B, P, M, D_c)
        # x_lm = R raw_lm + r is never built: W2x x_lm is one product of raw_lm with W2x R (plus W2x r), and
        # xbar_l = R (sum_m beta raw_lm) + r sum_m beta. Same numbers, without two (B, P, M, d) matmuls.
        reduction = self.component_reduction
        feature_weight = self.component_feature.weight @ reduction.weight  # (A, D_c)
        shift = self.component_user(user) + self.component_feature.weight @ reduction.bias  # (B, A)
        hidden = torch.relu(raw @ feature_weight.T + shift[:, None, None])
        beta = masked_softmax(self.component_out(hidden).squeeze(-1), component_mask)  # (B, P, M)
        beta = apply_override("components", beta, component_mask, attention_override)
        pooled = (beta.unsqueeze(-1) * raw).sum(2)  # (B, P, D_c)
        xbar = F.linear(pooled, reduction.weight) + beta.sum(-1, keepdim=True) * reduction.bias  # (B, P, d)

        hidden = torch.relu(
            self.profile_user(user)[:, None] + self.profile_item(profile_vectors) + self.profile_component(xbar)
        )
        alpha = masked_softmax(self.profile_out(hidden).squeeze(-1), profile_mask)  # (B, P)
        alpha = apply_override("profile", alpha, profile_mask, attention_override)
        representation = user + (alpha.unsqueeze(-1) * aux).sum(1)

        if not output_attentions:
            return representation, None
        labels, meta = self._component_meta(raw.detach(), component_mask)
        maps = {
            "profile": AttentionMap(
                values=alpha,
                axes=("profile",),
                level="item",
                mask=profile_mask,
                normalised_over="profile",
                axis_items={"profile": profile},
                meta={"components": meta["components"]},
                description=f"How much each of the user's {self.profile_size} most recent items adds its "
                "auxiliary vector to the user's representation (item-level attention).",
            ),
            "components": AttentionMap(
                values=beta,
                axes=("profile", "component"),
                level="component",
                mask=component_mask,
                normalised_over="component",
                labels=labels,
                axis_items={"profile": profile},
                meta=meta,
                description=f"Within each profile item, how the user weighs its {meta['components']} when "
                "judging that item (component-level attention).",
            ),
        }
        return representation, maps

    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> RecOutput:
        user, maps = self.encode_users(
            self.user_representation, batch.users, batch.history, output_attentions, attention_override
        )
        candidate = self.candidate_tap(self.item_embedding(batch.items).unsqueeze(1)).squeeze(1)
        return RecOutput(scores=(user * candidate).sum(-1), attentions=maps)

    def score_items(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        chunk_rows: int = 65536,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> torch.Tensor:
        user, _ = self.user_representation(users, history, attention_override=attention_override)
        return user @ self.item_embedding(items).T
