"""What a model takes and returns: a :class:`Batch` of (user, candidate) rows in; a :class:`RecOutput` out, with
one score per row and, on request, named :class:`AttentionMap` objects; and the :class:`InputTap` modules that
integrated gradients attribute to.

This follows HF transformers' habit: ``model(batch, output_attentions=True)`` returns a dataclass whose
``attentions`` holds named maps. The app draws any :class:`AttentionMap` from its fields alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from recmodels.errors import ModelOutputError, quote

__all__ = ["LEVELS", "AttentionMap", "AttentionOverride", "Batch", "InputTap", "RecOutput", "apply_override"]

LEVELS = ("head", "item", "field", "component")


@dataclass
class Batch:
    """Rows of (user, candidate item) with the user's history before the target.

    ``history`` is chronological and right-padded with 0; ``labels`` is only needed for training. A training
    batch (the trainer's layout) holds ``n_observed`` rows of observed (user, item) pairs first, then
    ``negatives`` sampled unobserved items for each of them in the same order (row i's negatives are rows
    ``n_observed + i * negatives`` onwards), all labelled 0.
    """

    users: torch.Tensor  # (B,) int64
    items: torch.Tensor  # (B,) int64
    history: torch.Tensor  # (B, T) int64
    labels: torch.Tensor | None = None  # (B,) float32, 1 = liked
    negatives: int = 0  # sampled negatives per observed row, at the end of the batch

    @property
    def history_mask(self) -> torch.Tensor:
        return self.history != 0

    @property
    def n_observed(self) -> int:
        """Rows before the sampled negatives."""
        return len(self) // (1 + self.negatives)

    def to(self, device) -> Batch:
        return Batch(
            self.users.to(device),
            self.items.to(device),
            self.history.to(device),
            None if self.labels is None else self.labels.to(device),
            self.negatives,
        )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @classmethod
    def from_numpy(cls, users, items, history, labels=None, negatives: int = 0) -> Batch:
        return cls(
            torch.as_tensor(np.asarray(users), dtype=torch.long),
            torch.as_tensor(np.asarray(items), dtype=torch.long),
            torch.as_tensor(np.asarray(history), dtype=torch.long),
            None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.float32),
            negatives,
        )


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
        # raised inside a model's forward: typed (and still a ValueError), so the service shows one sentence
        if self.level not in LEVELS:
            raise ModelOutputError(f"An AttentionMap's level must be one of {LEVELS}, got {quote(self.level)}.")
        if not isinstance(self.values, torch.Tensor) or self.values.dim() != len(self.axes) + 1:
            shape = tuple(self.values.shape) if isinstance(self.values, torch.Tensor) else type(self.values).__name__
            raise ModelOutputError(
                f"An AttentionMap's values of shape {shape} do not match its axes {tuple(self.axes)}; give the values "
                "a batch dimension and one dimension per named axis."
            )
        if self.normalised_over is not None and self.normalised_over not in self.axes:
            raise ModelOutputError(
                f"An AttentionMap's normalised_over {quote(self.normalised_over)} is not one of its axes "
                f"{tuple(self.axes)}."
            )

    def row(self, index: int) -> AttentionMap:
        """The map of one row, keeping a leading batch axis of size 1."""
        mask = None if self.mask is None else self.mask.expand_as(self.values)[index : index + 1]
        items = {axis: ids[index : index + 1] for axis, ids in self.axis_items.items()}
        batch = self.values.shape[0]
        # per-row tensors in meta (e.g. argmax matches) follow the row; everything else is shared
        meta = {
            key: value[index : index + 1]
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == batch
            else value
            for key, value in self.meta.items()
        }
        return replace(self, values=self.values[index : index + 1], mask=mask, axis_items=items, meta=meta)

    def full_mask(self) -> torch.Tensor:
        if self.mask is None:
            return torch.ones_like(self.values, dtype=torch.bool)
        return self.mask.expand_as(self.values)

    def detach(self) -> AttentionMap:
        return replace(self, values=self.values.detach(), mask=None if self.mask is None else self.mask.detach())


@dataclass
class RecOutput:
    """What ``model(batch)`` returns: logits per row, and the named maps when asked for.

    A model whose loss needs more (IntTower's tower vectors) returns a subclass with typed fields.
    """

    scores: torch.Tensor  # (B,) logits
    attentions: dict[str, AttentionMap] | None = None


# An override replaces a distribution map's weights inside the forward pass (faithfulness perturbations):
# it is called as fn(weights, mask) with the distribution on the LAST axis of ``weights`` and ``mask``
# broadcastable to it, and returns weights of the same shape. Passed per call, never stored on the model,
# so one model can serve concurrent requests.
AttentionOverride = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def apply_override(
    name: str,
    weights: torch.Tensor,
    mask: torch.Tensor | None,
    overrides: dict[str, AttentionOverride] | None,
    layer: int | None = None,
) -> torch.Tensor:
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

    def __init__(
        self,
        units: tuple[str, ...],
        labels: list[str] | None = None,
        item_axis: str | None = None,
        description: str = "",
    ):
        super().__init__()
        self.units = tuple(units)
        self.labels = list(labels) if labels is not None else None
        self.item_axis = item_axis
        self.description = description
