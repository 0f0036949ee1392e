"""The trainer (one process or torchrun DDP) and model selection on the valid part."""

from recmodels.train.trainer import FitResult, NegativeSampler, TrainConfig, seed_everything, train_model

__all__ = ["FitResult", "NegativeSampler", "TrainConfig", "seed_everything", "train_model"]
