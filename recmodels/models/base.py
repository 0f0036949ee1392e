"""The interface every model shares: a batch in, one score per (user, item) row out, attention on request.

This follows HF transformers' habit: ``model(batch, output_attentions=True)`` returns a dataclass whose
``attentions`` holds named maps. The app draws any :class:`AttentionMap` from its fields alone.

A model is one :class:`RecModel` subclass that sets ``name``; the registry (:mod:`recmodels.models.registry`)
finds it in this package, in an installed plugin's ``recmodels.models`` entry point, or in a module passed
with ``--model-module``. What a model declares is listed on :class:`RecModel`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from .config import NoConfig, build_config, config_dict
from .layers import masked_softmax

if TYPE_CHECKING:
    from ..train.trainer import TrainConfig

__all__ = ["LEVELS", "Batch", "AttentionMap", "RecOutput", "AttentionOverride", "apply_override", "InputTap",
           "RecModel", "masked_softmax"]

LEVELS = ("head", "item", "field", "component")


@dataclass
class Batch:
    """Rows of (user, candidate item) with the user's history before the target.

    ``history`` is chronological and right-padded with 0; ``labels`` is only needed for training. A training
    batch (the trainer's layout) holds ``n_observed`` rows of observed (user, item) pairs first, then
    ``negatives`` sampled unobserved items for each of them in the same order (row i's negatives are rows
    ``n_observed + i * negatives`` onwards), all labelled 0.
    """

    users: torch.Tensor            # (B,) int64
    items: torch.Tensor            # (B,) int64
    history: torch.Tensor          # (B, T) int64
    labels: torch.Tensor | None = None   # (B,) float32, 1 = liked
    negatives: int = 0             # sampled negatives per observed row, at the end of the batch

    @property
    def history_mask(self) -> torch.Tensor:
        return self.history != 0

    @property
    def n_observed(self) -> int:
        """Rows before the sampled negatives."""
        return len(self) // (1 + self.negatives)

    def to(self, device) -> "Batch":
        return Batch(self.users.to(device), self.items.to(device), self.history.to(device),
                     None if self.labels is None else self.labels.to(device), self.negatives)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @classmethod
    def from_numpy(cls, users, items, history, labels=None, negatives: int = 0) -> "Batch":
        return cls(torch.as_tensor(np.asarray(users), dtype=torch.long),
                   torch.as_tensor(np.asarray(items), dtype=torch.long),
                   torch.as_tensor(np.asarray(history), dtype=torch.long),
                   None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.float32),
                   negatives)


@dataclass
class AttentionMap:
    """One named attention map for a batch of rows.

    Attributes:
        values: ``(B, *sizes)``; one slice per row of the batch.
        axes: names of the non-batch axes, e.g. ``("head", "query_item", "key_item")``.
        level: one of ``LEVELS``.
        mask: bool, broadcastable to ``values``; True where the position is real (not padding).
        normalised_over: the axis the weights sum to 1 over, or None when the map is not a distribution
            (e.g. IntTower's head-similarity scores). Collapse statistics only apply to distributions.
        labels: per-axis labels (item titles, field names, grid shape), filled in by the service.
        description: one sentence on what the map means, shown beside it.
        axis_items: for axes that enumerate items, the item index at each position, ``(B, n)``; the
            service turns them into titles (e.g. ``{"history": batch.history}``).
        meta: extra facts, e.g. ``{"grid": (7, 7)}`` for image regions (planted-region recovery scores the
            map whose meta gives a grid) or ``{"components": "genres"}``. Per-cell labels take two entries:
            ``"<key>_ids"``, an integer per cell shaped like ``values`` (-1 where a cell has none), and
            ``"<key>_names"``, the names those integers index; the service adds ``"<key>_labels"``, each
            cell's name ("" for -1). ACF's ``component_ids`` / ``component_names`` become ``component_labels``.
        derived: True for a map computed from other maps after the forward pass (attention rollout): it is drawn
            and scored like any other, but no weight in the forward pass carries it, so it cannot be overridden.
    """

    values: torch.Tensor
    axes: tuple[str, ...]
    level: str
    mask: torch.Tensor | None = None
    normalised_over: str | None = None
    labels: dict[str, list[str]] = field(default_factory=dict)
    description: str = ""
    axis_items: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    derived: bool = False

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if self.values.dim() != len(self.axes) + 1:
            raise ValueError(f"values has {self.values.dim() - 1} non-batch axes but axes names {self.axes}")
        if self.normalised_over is not None and self.normalised_over not in self.axes:
            raise ValueError(f"normalised_over {self.normalised_over!r} is not one of {self.axes}")

    def row(self, index: int) -> "AttentionMap":
        """The map of one row, keeping a leading batch axis of size 1."""
        mask = None if self.mask is None else self.mask.expand_as(self.values)[index:index + 1]
        items = {axis: ids[index:index + 1] for axis, ids in self.axis_items.items()}
        batch = self.values.shape[0]
        # per-row tensors in meta (e.g. argmax matches) follow the row; everything else is shared
        meta = {key: value[index:index + 1] if isinstance(value, torch.Tensor) and value.dim() and
                value.shape[0] == batch else value for key, value in self.meta.items()}
        return replace(self, values=self.values[index:index + 1], mask=mask, axis_items=items, meta=meta)

    def full_mask(self) -> torch.Tensor:
        if self.mask is None:
            return torch.ones_like(self.values, dtype=torch.bool)
        return self.mask.expand_as(self.values)

    def detach(self) -> "AttentionMap":
        return replace(self, values=self.values.detach(), mask=None if self.mask is None else self.mask.detach())


@dataclass
class RecOutput:
    """What ``model(batch)`` returns: logits per row, and the named maps when asked for.

    A model whose loss needs more (IntTower's tower vectors) returns a subclass with typed fields.
    """

    scores: torch.Tensor                                   # (B,) logits
    attentions: dict[str, AttentionMap] | None = None


# An override replaces a distribution map's weights inside the forward pass (faithfulness perturbations):
# it is called as fn(weights, mask) with the distribution on the LAST axis of ``weights`` and ``mask``
# broadcastable to it, and returns weights of the same shape. Passed per call, never stored on the model,
# so one model can serve concurrent requests.
AttentionOverride = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def apply_override(name: str, weights: torch.Tensor, mask: torch.Tensor | None,
                   overrides: dict[str, AttentionOverride] | None, layer: int | None = None) -> torch.Tensor:
    """``overrides[name](weights, mask)`` when there is one. A map computed layer by layer (a transformer's
    ``self_attention``) passes ``layer``: an override with an ``at_layer`` method is narrowed to it first."""
    if not overrides or name not in overrides:
        return weights
    override = overrides[name]
    if layer is not None and hasattr(override, "at_layer"):
        override = override.at_layer(layer)
    if mask is None:
        mask = torch.ones_like(weights, dtype=torch.bool)
    return override(weights, mask.expand_as(weights))


class InputTap(nn.Identity):
    """Marks an embedding output for Captum's ``LayerIntegratedGradients``.

    A model passes each input embedding through its own tap, exactly once per forward, with shape
    ``(B, *units, dim)``. Attribution to the tap, summed over ``dim``, gives one value per unit.

    Args:
        units: names of the unit axes, e.g. ``("history",)`` or ``("user_feature",)``.
        labels: fixed labels of the last unit axis (e.g. field names); axes that enumerate items are
            labelled by the service from ``item_axis``.
        item_axis: the batch field whose item ids enumerate the units ("history" or "items"), if any.
    """

    def __init__(self, units: tuple[str, ...], labels: list[str] | None = None, item_axis: str | None = None,
                 description: str = ""):
        super().__init__()
        self.units = tuple(units)
        self.labels = list(labels) if labels is not None else None
        self.item_axis = item_axis
        self.description = description


class RecModel(nn.Module):
    """Base class: holds the data spec, the typed hyperparameters and the feature tables as buffers.

    A model declares, as class attributes (the registry reads them; nothing else lists models):

    - ``name``: the registry key, stored as config.json's "model" and typed after ``--model``.
    - ``title``: the name shown in tables and in the app (e.g. "Two-tower (MHA)"); ``name`` when empty.
    - ``order``: its place in ``--model all`` and in the results table (built-ins use 10 to 70).
    - ``config_class``: a dataclass of its hyperparameters (as nanoGPT's ``GPTConfig``); ``--set KEY=VALUE``
      and config.json's "hparams" use its field names. The built model holds it as ``self.config``.
    - ``task``: the rows it trains on: "implicit" (every train interaction is a positive) or "ctr" (rated rows
      labelled rating > 3, rating 3 dropped).
    - ``default_training``: its defaults for :class:`~recmodels.train.TrainConfig` (loss, negatives, epochs,
      lr, ...); the command line overrides any of them.
    - ``aux_losses``: the names of auxiliary losses its :meth:`loss` can add (``TrainConfig.aux_loss``).
    - ``predicts_probability``: whether the sigmoid of a score is a calibrated click probability.
    - ``needs_item_features`` / ``uses_images``: whether it reads the items' genres and years / image regions.

    and implements :meth:`forward`, which returns a :class:`RecOutput` whose named :class:`AttentionMap`s (when
    ``output_attentions``) say their axes, mask, level and normalisation, and which passes each input embedding
    through its own :class:`InputTap` exactly once. It may override :meth:`loss` (IntTower adds CIR) and
    :meth:`score_items` (a faster ranking path).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    config_class: ClassVar[type] = NoConfig
    task: ClassVar[str] = "implicit"
    default_training: ClassVar[dict] = {}
    aux_losses: ClassVar[tuple[str, ...]] = ()
    predicts_probability: ClassVar[bool] = False
    needs_item_features: ClassVar[bool] = False
    uses_images: ClassVar[bool] = False
    # True for models that read tables too large for a checkpoint (image-region features) from the data at load
    needs_data: ClassVar[bool] = False
    # True for sequence models whose loss reads every position: the trainer gives one row per window of each
    # user's train sequence instead of one per interaction (:meth:`RecData.sequence_rows`)
    sequence_training: ClassVar[bool] = False

    def __init__(self, spec: dict, config=None, **hparams):
        """``config`` is an instance of ``config_class``; keyword hyperparameters build one (or replace its
        fields), checked by name and type."""
        super().__init__()
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        if config is None or hparams:
            values = {**(config_dict(config) if config is not None else {}), **hparams}
            config = build_config(self.config_class, values, f"model {self.name!r}")
        self.config = config
        self.spec = dict(spec)
        n_users, n_items = spec["n_users"], spec["n_items"]
        n_fields = len(spec["user_field_names"])
        self.register_buffer("user_fields", torch.zeros(n_users + 1, n_fields, dtype=torch.long))
        self.register_buffer("item_genres", torch.zeros(n_items + 1, len(spec["genre_names"])))
        self.register_buffer("item_year", torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("user_mean_rating", torch.zeros(n_users + 1))
        self.register_buffer("item_mean_rating", torch.zeros(n_items + 1))
        self.register_buffer("item_popularity", torch.zeros(n_items + 1))

    @property
    def hparams(self) -> dict:
        """The hyperparameters as config.json stores them ("hparams")."""
        return config_dict(self.config)

    @classmethod
    def from_data(cls, data, config=None, **hparams) -> "RecModel":
        """Build for a :class:`~recmodels.data.RecData` and copy its feature tables into the buffers."""
        model = cls(data.tables.spec(), config, **hparams).load_feature_tables(data.tables)
        model.attach_data(data)
        return model

    def attach_data(self, data) -> None:
        """Read what the checkpoint does not hold from ``data``; checks it fits. Called by :meth:`from_data` and
        when a checkpoint loads. Image-region features are read here, and closed-form models solve their weights
        here from the train part (EASE), so they train with ``epochs=0``; what they store is what would be slow to
        recompute (EASE's B above 8,192 items)."""

    @property
    def n_users(self) -> int:
        return self.spec["n_users"]

    @property
    def n_items(self) -> int:
        return self.spec["n_items"]

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def load_feature_tables(self, tables) -> "RecModel":
        """Copy a :class:`~recmodels.data.FeatureTables` into the buffers (before training)."""
        for name, array in tables.tensors().items():
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(array, dtype=buffer.dtype))
        return self

    def forward(self, batch: Batch, output_attentions: bool = False,
                attention_override: dict[str, AttentionOverride] | None = None) -> RecOutput:  # pragma: no cover
        """Scores (logits) for each row; with ``output_attentions`` also the named maps.

        ``attention_override`` maps an attention map's name to a function that replaces its weights in
        this call only (see :data:`AttentionOverride`); models apply it with :func:`apply_override`.
        """
        raise NotImplementedError

    def loss(self, output: RecOutput, batch: Batch, training: "TrainConfig") -> torch.Tensor:
        """The training loss of one batch in the trainer's layout (see :class:`Batch`), as RecBole's
        ``calculate_loss``: ``training.loss`` is "bce" over every row's label, or "bpr"/"warp" comparing each
        observed row with its sampled negatives. A model adds its own terms by overriding this."""
        from ..train.losses import training_loss  # the train package imports this module

        return training_loss(training.loss, output.scores, batch.labels, batch.negatives, self.n_items)

    def input_taps(self) -> dict[str, InputTap]:
        """The model's :class:`InputTap` modules by attribute path (Captum's layers to attribute to)."""
        return {name: module for name, module in self.named_modules() if isinstance(module, InputTap)}

    def score_items(self, users: torch.Tensor, history: torch.Tensor, items: torch.Tensor,
                    chunk_rows: int = 65536,
                    attention_override: dict[str, AttentionOverride] | None = None) -> torch.Tensor:
        """Scores of every candidate in ``items`` (C,) for each user row: ``(B, C)``.

        The default expands rows and calls ``forward``; towers override it with one matrix product.
        ``attention_override`` is passed on as in ``forward`` (perturbation tests rank the catalogue with it).
        """
        n_users, n_candidates = users.shape[0], items.shape[0]
        out = torch.empty(n_users, n_candidates, device=users.device)
        users_per_chunk = max(1, chunk_rows // max(n_candidates, 1))
        for start in range(0, n_users, users_per_chunk):
            stop = min(n_users, start + users_per_chunk)
            u = users[start:stop].repeat_interleave(n_candidates)
            h = history[start:stop].repeat_interleave(n_candidates, dim=0)
            i = items.repeat(stop - start)
            out[start:stop] = self(Batch(u, i, h), attention_override=attention_override).scores.view(
                stop - start, n_candidates)
        return out

    # a tower whose every map comes from the user side says so: its maps are the same for every candidate
    maps_ignore_candidate: ClassVar[bool] = False

    @torch.no_grad()
    def catalogue_attention(self, users: torch.Tensor, history: torch.Tensor, items: torch.Tensor,
                            chunk_rows: int = 65536) -> dict[str, torch.Tensor]:
        """Every attention map's values for each user row and each candidate in ``items``: ``(B, C, *map)``.

        The default runs ``forward`` over the (user, candidate) rows in chunks, or, for a model whose maps come from
        the user side alone (``maps_ignore_candidate``), once per user, shared by every candidate (an expanded view,
        not a copy); a model whose ranking path is decomposed (DIN) overrides it with that path.
        """
        n_users, n_candidates = users.shape[0], items.shape[0]
        if self.maps_ignore_candidate:
            maps = self(Batch(users, items[:1].expand(n_users), history), output_attentions=True).attentions or {}
            return {name: m.values.unsqueeze(1).expand(n_users, n_candidates, *m.values.shape[1:])
                    for name, m in maps.items()}
        parts: dict[str, list[torch.Tensor]] = {}
        rows_per_chunk = max(1, chunk_rows)
        u = users.repeat_interleave(n_candidates)
        h = history.repeat_interleave(n_candidates, dim=0)
        i = items.repeat(n_users)
        for start in range(0, len(u), rows_per_chunk):
            stop = min(len(u), start + rows_per_chunk)
            maps = self(Batch(u[start:stop], i[start:stop], h[start:stop]), output_attentions=True).attentions or {}
            for name, attention in maps.items():
                parts.setdefault(name, []).append(attention.values)
        return {name: torch.cat(values).view(n_users, n_candidates, *values[0].shape[1:])
                for name, values in parts.items()}

    @staticmethod
    def init_embeddings(*embeddings: nn.Embedding, std: float) -> None:
        """Normal(0, std) weights, with each embedding's padding row (if it has one) kept at zero."""
        for embedding in embeddings:
            nn.init.normal_(embedding.weight, std=std)
            if embedding.padding_idx is not None:
                with torch.no_grad():
                    embedding.weight[embedding.padding_idx].zero_()

    def encode_users(self, encode: Callable, users: torch.Tensor, history: torch.Tensor,
                     output_attentions: bool = False, attention_override: dict | None = None):
        """``encode(users, history, output_attentions, attention_override)`` -> (vectors, maps or None).

        In plain training (no maps, no override) the rows repeated for the sampled negatives are encoded once
        each (:meth:`encode_distinct`).
        """
        if self.training and not output_attentions and not attention_override:
            return self.encode_distinct(encode, users, history), None
        return encode(users, history, output_attentions, attention_override)

    @staticmethod
    def encode_distinct(encode: Callable, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """``encode(users, history)[0]`` computed once per distinct (user, history) row and gathered back.

        The trainer repeats each row's user and history for every sampled negative; encoding the distinct rows
        only gives the same values and gradients for a fraction of the work. Use it in training mode only:
        attribution replaces embeddings row by row, so every row must be encoded there.
        """
        key = torch.cat([users.unsqueeze(1), history], 1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        if unique.shape[0] == key.shape[0]:
            return encode(users, history)[0]
        return encode(unique[:, 0], unique[:, 1:])[0][inverse]

    def regularised_parameters(self) -> list[nn.Parameter]:
        """Parameters that the trainer's L2 penalty applies to (all by default)."""
        return [p for p in self.parameters() if p.requires_grad]
