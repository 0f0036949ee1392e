"""The interface every model shares: a batch in, one score per (user, item) row out, attention on request.

A model is one :class:`RecModel` subclass that sets ``name``; the registry (:mod:`recmodels.models.registry`)
finds it in this package, in an installed plugin's ``recmodels.models`` entry point, or in a module passed
with ``--model-module``. What a model declares is listed on :class:`RecModel`; what it takes and returns is in
:mod:`recmodels.models.outputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import torch
from torch import nn

from recmodels.models.config import NoConfig, build_config, check_bounds, config_dict
from recmodels.models.losses import training_loss
from recmodels.models.output_check import check_output
from recmodels.models.outputs import AttentionOverride, Batch, InputTap, RecOutput

__all__ = ["LossSettings", "RecModel"]


class LossSettings(Protocol):
    """The training settings :meth:`RecModel.loss` reads (the trainer's ``TrainConfig`` has them)."""

    loss: str
    aux_loss: str | None
    aux_weight: float
    temperature: float


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
    - ``image_pathway``: the name prefixes of the parameters that read images (``TrainConfig.image_lr`` and
      ``image_weight_decay`` train them apart from the rest); empty for a model without one.
    - ``predicts_probability``: whether the sigmoid of a score is a calibrated click probability.
    - ``needs_item_features`` / ``uses_images``: whether it reads the items' genres and years / image regions.
    - ``new_user``: one sentence on what stands in for a user it was never trained on (None: it cannot take one),
      and ``reads_history``: whether the history changes its scores.

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
    image_pathway: ClassVar[tuple[str, ...]] = ()
    predicts_probability: ClassVar[bool] = False
    needs_item_features: ClassVar[bool] = False
    uses_images: ClassVar[bool] = False
    # True for models that read tables too large for a checkpoint (image-region features) from the data at load
    needs_data: ClassVar[bool] = False
    # True for sequence models whose loss reads every position: the trainer gives one row per window of each
    # user's train sequence instead of one per interaction (:meth:`RecData.sequence_rows`)
    sequence_training: ClassVar[bool] = False
    # what stands in for a user the model was never trained on (a new user built from a history, in the app or
    # through RecService's history=), in one sentence shown beside their results; None: it cannot take one
    new_user: ClassVar[str | None] = None
    # whether the history changes the scores (BPR-MF's and MostPopular's do not, so an edited history changes
    # nothing there, and the app says so)
    reads_history: ClassVar[bool] = True
    # whether a score needs at least one history item (EASE, SASRec and BERT4Rec read nothing else)
    needs_history: ClassVar[bool] = False

    def __init__(self, spec: dict, config=None, **hparams):
        """``config`` is an instance of ``config_class``; keyword hyperparameters build one (or replace its
        fields), checked by name and type."""
        super().__init__()
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        if config is None or hparams:
            values = {**(config_dict(config) if config is not None else {}), **hparams}
            config = build_config(self.config_class, values, f"model {self.name!r}")
        check_bounds(config, f"model {self.name!r}")  # a config built elsewhere (a plugin's) may not have checked
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
    def from_data(cls, data, config=None, **hparams) -> RecModel:
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

    def load_feature_tables(self, tables) -> RecModel:
        """Copy a :class:`~recmodels.data.FeatureTables` into the buffers (before training)."""
        for name, array in tables.tensors().items():
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(array, dtype=buffer.dtype))
        return self

    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> RecOutput:  # pragma: no cover
        """Scores (logits) for each row; with ``output_attentions`` also the named maps.

        ``attention_override`` maps an attention map's name to a function that replaces its weights in
        this call only (see :data:`AttentionOverride`); models apply it with :func:`apply_override`.
        """
        raise NotImplementedError

    def loss(self, output: RecOutput, batch: Batch, training: LossSettings) -> torch.Tensor:
        """The training loss of one batch in the trainer's layout (see :class:`Batch`), as RecBole's
        ``calculate_loss``: ``training.loss`` is "bce" over every row's label, or "bpr"/"warp" comparing each
        observed row with its sampled negatives. A model adds its own terms by overriding this."""
        # the trainer's forward output is checked here, where it is read: a wrong shape or dtype is one sentence
        # (NaN is left to the optimiser; the evaluation that follows each epoch refuses it)
        check_output(self, output, len(batch), finite=False)
        return training_loss(training.loss, output.scores, batch.labels, batch.negatives, self.n_items)

    def input_taps(self) -> dict[str, InputTap]:
        """The model's :class:`InputTap` modules by attribute path (Captum's layers to attribute to)."""
        return {name: module for name, module in self.named_modules() if isinstance(module, InputTap)}

    def score_items(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        chunk_rows: int = 65536,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> torch.Tensor:
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
            scored = check_output(self, self(Batch(u, i, h), attention_override=attention_override), len(u))
            out[start:stop] = scored.scores.view(stop - start, n_candidates)
        return out

    # a tower whose every map comes from the user side says so: its maps are the same for every candidate
    maps_ignore_candidate: ClassVar[bool] = False

    @torch.no_grad()
    def catalogue_attention(
        self, users: torch.Tensor, history: torch.Tensor, items: torch.Tensor, chunk_rows: int = 65536
    ) -> dict[str, torch.Tensor]:
        """Every attention map's values for each user row and each candidate in ``items``: ``(B, C, *map)``.

        The default runs ``forward`` over the (user, candidate) rows in chunks, or, for a model whose maps come from
        the user side alone (``maps_ignore_candidate``), once per user, shared by every candidate (an expanded view,
        not a copy); a model whose ranking path is decomposed (DIN) overrides it with that path.
        """
        n_users, n_candidates = users.shape[0], items.shape[0]
        if self.maps_ignore_candidate:
            out = self(Batch(users, items[:1].expand(n_users), history), output_attentions=True)
            maps = check_output(self, out, n_users, maps=True).attentions or {}
            return {
                name: m.values.unsqueeze(1).expand(n_users, n_candidates, *m.values.shape[1:])
                for name, m in maps.items()
            }
        parts: dict[str, list[torch.Tensor]] = {}
        rows_per_chunk = max(1, chunk_rows)
        u = users.repeat_interleave(n_candidates)
        h = history.repeat_interleave(n_candidates, dim=0)
        i = items.repeat(n_users)
        for start in range(0, len(u), rows_per_chunk):
            stop = min(len(u), start + rows_per_chunk)
            out = self(Batch(u[start:stop], i[start:stop], h[start:stop]), output_attentions=True)
            maps = check_output(self, out, stop - start, maps=True).attentions or {}
            for name, attention in maps.items():
                parts.setdefault(name, []).append(attention.values)
        return {
            name: torch.cat(values).view(n_users, n_candidates, *values[0].shape[1:]) for name, values in parts.items()
        }

    @staticmethod
    def init_embeddings(*embeddings: nn.Embedding, std: float) -> None:
        """Normal(0, std) weights, with each embedding's padding row (if it has one) kept at zero."""
        for embedding in embeddings:
            nn.init.normal_(embedding.weight, std=std)
            if embedding.padding_idx is not None:
                with torch.no_grad():
                    embedding.weight[embedding.padding_idx].zero_()

    def encode_users(
        self,
        encode: Callable,
        users: torch.Tensor,
        history: torch.Tensor,
        output_attentions: bool = False,
        attention_override: dict | None = None,
    ):
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
