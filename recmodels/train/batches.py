"""Training batches for any loop: a ``torch.utils.data`` dataset of :class:`~recmodels.models.outputs.Batch`\\ es over
a :class:`~recmodels.data.RecData`, the same one ``python -m recmodels train`` trains from.

Each batch holds its rows' leakage-free histories (only interactions strictly earlier than the target) and, after
them, ``negatives`` sampled unobserved items per row, labelled 0 (the layout :meth:`RecModel.loss
<recmodels.models.base.RecModel.loss>` reads)::

    batches = TrainingBatches.for_model(model, data, batch_size=1024)
    for epoch in range(10):
        batches.set_epoch(epoch)                  # a fresh seeded order and fresh negatives, as DistributedSampler
        for batch in DataLoader(batches, batch_size=None):
            loss = model.loss(model(batch), batch, batches.settings)

An epoch's order and negatives come from a generator seeded with ``(seed, epoch)``, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recmodels.data import TRAIN, RecData
from recmodels.errors import InvalidArgumentError
from recmodels.models.losses import DEFAULT_LOSS, LOSSES
from recmodels.models.outputs import Batch

__all__ = ["BatchSettings", "NegativeSampler", "TrainingBatches", "training_batch", "training_rows"]


@dataclass(frozen=True)
class BatchSettings:
    """What the batches (and :meth:`RecModel.loss`) need to know of the training settings; the trainer's
    ``TrainConfig`` has every one of these fields.

    samples: "implicit" (every train interaction is a positive) or "ctr" (rated rows labelled rating > 3, rating 3
        dropped).
    loss: "bce", "bpr" or "warp"; a pairwise loss trains on the liked rows only.
    """

    samples: str = "implicit"
    loss: str = DEFAULT_LOSS
    negatives: int = 1
    batch_size: int = 1024
    seed: int = 0
    max_steps: int | None = None
    aux_loss: str | None = None
    aux_weight: float = 0.1
    temperature: float = 0.07


class NegativeSampler:
    """Uniform draws over the catalogue, redrawn where they hit an item the user has in train."""

    def __init__(self, data: RecData):
        self.n_items = data.dataset.n_items
        indptr, items = data.seen_matrix_rows((TRAIN,))
        users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        self._keys = np.unique(users.astype(np.int64) * (self.n_items + 1) + items)

    def sample(self, users: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        negatives = rng.integers(1, self.n_items + 1, size=(len(users), k))
        base = users.astype(np.int64)[:, None] * (self.n_items + 1)
        for _ in range(20):
            keys = base + negatives
            pos = np.searchsorted(self._keys, keys).clip(max=len(self._keys) - 1)
            clash = self._keys[pos] == keys if len(self._keys) else np.zeros_like(keys, bool)
            if not clash.any():
                break
            negatives[clash] = rng.integers(1, self.n_items + 1, size=int(clash.sum()))
        return negatives


def training_rows(data: RecData, config, sequences: bool = False, stride: int | None = None):
    """The train rows a model learns from: CTR rows or every interaction, as ``config.samples`` says; for a
    sequence model (``sequence_training``), one row per window of each user's train sequence (every ``stride``
    interactions; the model's ``window_stride``)."""
    if sequences:
        return data.sequence_rows(TRAIN, stride)
    rows = data.ctr_rows(TRAIN) if config.samples == "ctr" else data.interaction_rows(TRAIN)
    if config.loss in ("bpr", "warp"):
        rows = rows.take(rows.labels > 0)  # pairwise losses compare liked items with unobserved ones
    return rows


def training_batch(rows, index: np.ndarray, negatives: np.ndarray | None, k: int) -> Batch:
    """The rows at ``index`` followed by their ``k`` sampled negatives each (label 0): :class:`Batch`'s layout."""
    users, items, hist = rows.users[index], rows.items[index], rows.history[index]
    labels = rows.labels[index]
    if k:
        users = np.concatenate([users, np.repeat(users, k)])
        items = np.concatenate([items, negatives[index].reshape(-1)])
        hist = np.concatenate([hist, np.repeat(hist, k, axis=0)])
        labels = np.concatenate([labels, np.zeros(len(index) * k, dtype=labels.dtype)])
    return Batch.from_numpy(users, items, hist, labels, negatives=k)


class TrainingBatches(torch.utils.data.IterableDataset):
    """One epoch of training batches (an iterable ``Dataset``; wrap it in ``DataLoader(batches, batch_size=None)``).

    Args:
        data: the data, with its split and history window.
        settings: the training settings (:class:`BatchSettings`, or the trainer's ``TrainConfig``).
        sequences, stride: a sequence model's rows (one window every ``stride`` interactions of each user) instead of
            one row per interaction; :meth:`for_model` reads them from the model.
        rank, world: this process's share of each epoch under DistributedDataParallel (every rank takes the same
            number of steps).
    """

    def __init__(
        self,
        data: RecData,
        settings=BatchSettings(),
        sequences: bool = False,
        stride: int | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        super().__init__()
        if settings.loss not in LOSSES:
            raise InvalidArgumentError(f"loss must be one of {', '.join(LOSSES)}, got {settings.loss!r}.")
        if isinstance(settings.batch_size, bool) or not isinstance(settings.batch_size, int) or settings.batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a whole number from 1, got {settings.batch_size!r}.")
        if settings.loss in ("bpr", "warp") and settings.negatives < 1:
            raise InvalidArgumentError(f"loss {settings.loss!r} needs at least one negative per row.")
        if not 0 <= rank < world:
            raise InvalidArgumentError(f"rank must be from 0 to world - 1 ({world - 1}), got {rank!r}.")
        self.data, self.settings, self.rank, self.world = data, settings, rank, world
        self.rows = training_rows(data, settings, sequences=sequences, stride=stride)
        self.sampler = NegativeSampler(data)
        self.epoch = 1

    @classmethod
    def for_model(
        cls, model, data: RecData, settings=None, rank: int = 0, world: int = 1, **overrides
    ) -> TrainingBatches:
        """The batches ``model`` trains on: its task's rows (``model.task``), its default loss and negatives
        (``default_training``), a sequence model's windows; ``settings`` or keyword ``overrides`` (``batch_size``,
        ``negatives``, ``seed``, ...) replace any of them."""
        if settings is None:
            defaults = {k: v for k, v in model.default_training.items() if k in BatchSettings.__dataclass_fields__}
            settings = BatchSettings(**{"samples": model.task, **defaults, **overrides})
        return cls(
            data,
            settings,
            sequences=getattr(model, "sequence_training", False),
            stride=getattr(model, "window_stride", None),
            rank=rank,
            world=world,
        )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and negatives the next iteration draws (from 1, as the trainer counts)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches in one epoch on this rank."""
        per_rank = len(self.rows) // self.world
        return len(range(0, per_rank, self.settings.batch_size)[: self.settings.max_steps])

    def __iter__(self):
        # the order and the negatives are drawn here, before the first batch is asked for (the trainer times its
        # steps without the sampling)
        settings, rows = self.settings, self.rows
        rng = np.random.default_rng([settings.seed, self.epoch])
        order = rng.permutation(len(rows))
        per_rank = len(order) // self.world
        negatives = self._negatives(order, per_rank, rng)
        order = order[self.rank * per_rank : (self.rank + 1) * per_rank]  # equal step counts keep DDP ranks in lockstep
        starts = range(0, len(order), settings.batch_size)[: settings.max_steps]
        return (training_batch(rows, order[s : s + settings.batch_size], negatives, settings.negatives) for s in starts)

    def _negatives(self, order: np.ndarray, per_rank: int, rng: np.random.Generator) -> np.ndarray | None:
        """Sampled negatives for the epoch's rows (None without negatives)."""
        settings, rows = self.settings, self.rows
        if not settings.negatives:
            return None
        if settings.max_steps is None:
            return self.sampler.sample(rows.users, settings.negatives, rng)
        # draw for the rows the capped epoch reaches only: at ml-20m the whole epoch's draw takes minutes
        reach = settings.max_steps * settings.batch_size
        reached = np.concatenate([order[r * per_rank : r * per_rank + reach] for r in range(self.world)])
        negatives = np.zeros((len(rows), settings.negatives), dtype=np.int64)
        negatives[reached] = self.sampler.sample(rows.users[reached], settings.negatives, rng)
        return negatives
