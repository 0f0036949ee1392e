"""Losses and the trainer (single process or torchrun DDP)."""
from .losses import LOSSES, bce, bpr, cir, warp
from .trainer import FitResult, NegativeSampler, TrainConfig, seed_everything, train_model

__all__ = ["LOSSES", "bce", "bpr", "cir", "warp", "FitResult", "NegativeSampler", "TrainConfig", "seed_everything",
           "train_model"]
