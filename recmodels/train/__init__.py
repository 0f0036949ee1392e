"""Training: the trainer (one process or torchrun DDP), the batches it trains from (public, for any loop), and model
selection on the valid part."""

from recmodels.train.batches import BatchSettings, NegativeSampler, TrainingBatches, training_batch, training_rows
from recmodels.train.trainer import FitResult, TrainConfig, seed_everything, train_model

__all__ = [
    "BatchSettings",
    "FitResult",
    "NegativeSampler",
    "TrainConfig",
    "TrainingBatches",
    "seed_everything",
    "train_model",
    "training_batch",
    "training_rows",
]
