"""The trainer: one process, or DistributedDataParallel under ``torchrun`` with the same entry point.

Each epoch draws fresh negatives from a seeded generator, trains, then (on rank 0) evaluates on the valid
part, records the attention statistics of every map, and decides on early stopping, which it broadcasts so
all ranks stop together. Only rank 0 ever writes.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from recmodels.data import VALID, RecData
from recmodels.device import resolve_device
from recmodels.errors import InvalidArgumentError, TrainingDivergedError, quote
from recmodels.eval.evaluate import CTR_METRICS, TOPK_METRICS, evaluate_ctr, evaluate_topk
from recmodels.models.base import RecModel
from recmodels.models.config import bounded, build_config, check_bounds
from recmodels.models.losses import DEFAULT_LOSS, LOSSES
from recmodels.train.batches import TrainingBatches
from recmodels.train.monitor import AttentionMonitor, probe_batch

LOWER_IS_BETTER = {"logloss"}
METRICS = TOPK_METRICS + CTR_METRICS  # what a monitor may name
MAX_ROWS = 1_000_000_000  # users, steps: past any dataset this library reads


@dataclass
class TrainConfig:
    """Training settings; each model's ``task`` and ``default_training`` fill in its own defaults.

    samples: "implicit" trains on every train interaction as a positive; "ctr" on rated rows with label
        rating > 3 (rating 3 dropped). The model's ``task``.
    negatives: unobserved items drawn per row (labelled 0 for "bce", the pairwise side for "bpr"/"warp").
    weight_decay: the L2 coefficient lambda (Adam's coupled decay, i.e. a lambda/2 ||theta||^2 penalty).
    aux_loss: an auxiliary loss the model's ``loss`` adds (one of its ``aux_losses``, e.g. IntTower's "cir"),
        with weight ``aux_weight`` and ``temperature``.
    valid_ctr: whether each epoch's validation also scores the valid part's rated rows (AUC, GAUC, LogLoss). A
        sequence model encodes every row's own history there, several times the cost of its training epoch, so
        SASRec and BERT4Rec turn it off; the final valid and test metrics always include them.
    max_steps: stop each epoch after this many optimiser steps (None: the whole epoch); for measuring throughput
        on large data, and for a quick check that a model trains.
    image_lr, image_weight_decay: the learning rate and L2 coefficient of the model's image pathway (the
        parameters its ``image_pathway`` names), for a pathway that fits sooner than the rest; None: ``lr`` and
        ``weight_decay``, as every other parameter.

    Every numeric setting declares its accepted range (``field_bounds(TrainConfig)``); ``monitor`` is one of the
    metrics the evaluator produces.
    """

    epochs: int = bounded(20, 0, 10_000)
    batch_size: int = bounded(1024, 1, 1 << 20)
    lr: float = bounded(1e-3, 0.0, 10.0, low_open=True)  # above 10 Adam only diverges (steps are about lr each)
    weight_decay: float = bounded(0.0, 0.0, 10.0)
    loss: str = DEFAULT_LOSS
    samples: str = "implicit"
    negatives: int = bounded(1, 0, 1000)
    aux_loss: str | None = None
    aux_weight: float = bounded(0.1, 0.0, 100.0)
    temperature: float = bounded(0.07, 1e-4, 100.0)  # below, float32 logits divided by it overflow
    patience: int = bounded(3, 0, 10_000)
    monitor: str = "ndcg@10"
    grad_clip: float | None = bounded(5.0, 0.0, 1e6)  # 0 or None: no clipping
    seed: int = bounded(0, 0, 2**32 - 1)  # numpy's seeds
    attention_sample: int = bounded(512, 1, 100_000)
    valid_users: int | None = bounded(None, 1, MAX_ROWS)
    valid_ctr: bool = True
    max_steps: int | None = bounded(None, 1, MAX_ROWS)
    image_lr: float | None = bounded(None, 0.0, 10.0, low_open=True)
    image_weight_decay: float | None = bounded(None, 0.0, 10.0)

    def __post_init__(self):
        check_bounds(self)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.samples not in ("implicit", "ctr"):
            raise ValueError(f"samples must be 'implicit' or 'ctr', got {self.samples!r}")
        if self.loss in ("bpr", "warp") and self.negatives < 1:
            raise ValueError(f"loss {self.loss!r} needs at least one negative per row")
        if self.monitor not in METRICS:
            raise ValueError(
                f"monitor must be a metric the evaluator produces ({', '.join(METRICS)}), got {quote(self.monitor)}"
            )

    @classmethod
    def for_model(cls, model_cls, **overrides) -> TrainConfig:
        """The model's task and defaults, then ``overrides`` (None means "keep the default"), checked by name and
        type; an ``aux_loss`` must be one the model adds."""
        values = {
            "samples": model_cls.task,
            **model_cls.default_training,
            **{k: v for k, v in overrides.items() if v is not None},
        }
        config = build_config(cls, values, "training")
        if config.aux_loss is not None and config.aux_loss not in model_cls.aux_losses:
            raise InvalidArgumentError(
                f"aux_loss {config.aux_loss!r} is not a loss model {model_cls.name!r} adds "
                f"({', '.join(model_cls.aux_losses) or 'it adds none'})."
            )
        pathway = [name for name in ("image_lr", "image_weight_decay") if getattr(config, name) is not None]
        if pathway and not model_cls.image_pathway:
            raise InvalidArgumentError(
                f"{pathway[0]} sets the image pathway apart, but model {model_cls.name!r} has none; "
                "leave it out, or use lr and weight_decay."
            )
        return config

    def parameter_groups(self, model: RecModel) -> list[dict]:
        """Adam's parameter groups: the image pathway with ``image_lr`` and ``image_weight_decay`` when either is
        set, everything else with ``lr`` and ``weight_decay``."""
        if self.image_lr is None and self.image_weight_decay is None:
            return [{"params": list(model.parameters())}]
        image, rest = [], []
        for name, parameter in model.named_parameters():
            owner = name.split(".")[0]  # "region_projection.weight" -> "region_projection"; "position" itself
            (image if owner in model.image_pathway else rest).append(parameter)
        return [
            {"params": rest},
            {
                "params": image,
                "lr": self.lr if self.image_lr is None else self.image_lr,
                "weight_decay": self.weight_decay if self.image_weight_decay is None else self.image_weight_decay,
            },
        ]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    model: RecModel
    history: list[dict]
    best_epoch: int
    best_valid: dict


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distributed_device(device="auto") -> torch.device:
    """The device of this process: under torchrun each process takes the GPU of its LOCAL_RANK, so CUDA needs
    one GPU per process; "auto" then falls back to the CPU (gloo) when there are fewer GPUs than processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        device = "cuda" if gpus >= world else "cpu"
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        return resolved
    if gpus < world:
        raise InvalidArgumentError(
            f"torchrun started {world} processes but this machine has {gpus} CUDA device(s); "
            "start at most one process per GPU, or train on the CPU with --device cpu."
        )
    return torch.device("cuda", local_rank)


def distributed_context(device="auto") -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun, with NCCL for CUDA processes and
    gloo for CPU ones."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if distributed_device(device).type == "cuda" else "gloo")
    if world > 1:
        return dist.get_rank(), world
    return 0, 1


def train_model(
    model: RecModel, data: RecData, config: TrainConfig, device="auto", progress: bool = True, log_dir=None
) -> FitResult:
    """Train ``model`` on ``data``'s train part with early stopping on the valid part; the model returned holds the
    weights of its best epoch. Under torchrun each process trains on its shard and rank 0 evaluates and records.

    Each epoch's record (loss, valid metrics, attention statistics, throughput) comes from an
    :class:`~recmodels.train.monitor.AttentionMonitor`; with ``log_dir`` it also goes to that run folder
    (``history.jsonl``, which the Collapse page follows while training runs, and TensorBoard scalars).

    A loss, gradient or weight that stops being finite ends the run with one :class:`TrainingDivergedError`
    naming the epoch, the step and the setting most likely at fault; the model is then unusable."""
    check_bounds(config, "training")  # again: a config's fields can be set after it was built
    data.check_parts()  # an empty valid or test part would train to NaN metrics
    rank, world = distributed_context(device)
    device = distributed_device(device)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    seed_everything(config.seed)
    model.to(device)
    parallel = model
    if world > 1:
        parallel = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    is_main = rank == 0

    history: list[dict] = []
    if config.epochs == 0:  # nothing to learn by gradient: tables and closed forms come from the data (attach_data)
        valid = _validate(model, data, config) if is_main else {}
        return FitResult(model, history, 0, valid)

    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise InvalidArgumentError(
            f"{model.title} has no parameters to learn by gradient, so it cannot train for "
            f"{config.epochs} epochs; train it with --epochs 0."
        )
    batches = TrainingBatches.for_model(model, data, config, rank=rank, world=world)
    epochs = _Epochs(parallel, model, batches, config, device)
    monitor = None
    if is_main:
        probe = probe_batch(data, rows=config.attention_sample, seed=config.seed)
        monitor = AttentionMonitor(model, probe, log_dir=log_dir, tensorboard=log_dir is not None)
        monitor.record(epoch=0, seconds=0.0)
    best = _EarlyStopping(config)
    try:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            train_loss, count, train_seconds = epochs.run(epoch, progress and is_main)
            stop = torch.zeros(1)
            if is_main:
                valid = _validate(model, data, config)
                # rows: this rank's; throughput over all ranks is rows x world / train_seconds
                monitor.record(
                    epoch=epoch,
                    train_loss=train_loss,
                    valid=valid,
                    seconds=time.perf_counter() - started,
                    rows=count,
                    train_seconds=train_seconds,
                )
                improved = best.update(epoch, valid, model)
                shown = ", ".join(f"{k} {v:.4f}" for k, v in valid.items() if k in (config.monitor, "auc", "ndcg@10"))
                tqdm.write(
                    f"epoch {epoch}: loss {train_loss:.4f}, valid {shown}{' *' if improved else ''} "
                    f"({count * world / max(train_seconds, 1e-9):,.0f} rows/s)"
                )
                stop[0] = float(best.exhausted)
            if world > 1:
                dist.broadcast(stop, src=0)
            if stop.item():
                break
    finally:  # a diverged run still lets go of its TensorBoard file
        if monitor is not None:
            monitor.close()

    if is_main and best.state is not None:
        model.load_state_dict(best.state)
    if monitor is not None:
        history = monitor.history
    return FitResult(model, history, best.epoch, best.valid)


class _EarlyStopping:
    """The best epoch on the monitored valid metric so far, its weights, and the epochs waited since."""

    def __init__(self, config: TrainConfig):
        self.monitor, self.patience = config.monitor, config.patience
        self.value, self.epoch, self.state, self.valid, self.waited = -math.inf, 0, None, {}, 0

    def update(self, epoch: int, valid: dict, model: RecModel) -> bool:
        """Record an epoch's valid metrics; True when it is the best so far (its weights are kept)."""
        value = valid[self.monitor] * (-1 if self.monitor in LOWER_IS_BETTER else 1)
        if value > self.value:
            self.value, self.epoch, self.valid, self.waited = value, epoch, valid, 0
            self.state = copy.deepcopy(model.state_dict())
            return True
        self.waited += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.waited >= self.patience


class _Epochs:
    """One pass over the training batches (:class:`~recmodels.train.batches.TrainingBatches`): the optimiser's steps
    over this rank's share of the rows."""

    def __init__(self, parallel, model: RecModel, batches: TrainingBatches, config: TrainConfig, device):
        self.parallel, self.model, self.batches, self.config, self.device = parallel, model, batches, config, device
        self.optimiser = torch.optim.Adam(
            config.parameter_groups(model), lr=config.lr, weight_decay=config.weight_decay
        )

    def run(self, epoch: int, progress: bool) -> tuple[float, int, float]:
        """(mean training loss, rows trained on this rank, seconds the optimiser steps took)."""
        config = self.config
        self.model.train()
        self.batches.set_epoch(epoch)
        iterator = iter(self.batches)  # draws the epoch's order and negatives before the steps are timed
        # throughput: the steps, not the sampling
        total, count, step, steps_started = 0.0, 0, 0, time.perf_counter()
        bar = tqdm(
            iterator,
            total=len(self.batches),
            desc=f"{self.model.name} epoch {epoch}/{config.epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
        )
        for step, batch in enumerate(bar, start=1):
            batch = batch.to(self.device)
            loss = self.model.loss(self.parallel(batch), batch, config)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            # the norm over every gradient: DDP has already averaged them, so every rank sees the same number
            if config.grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            else:
                grads = [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]
                norm = torch.stack(grads).norm() if grads else torch.zeros(())
            value = float(loss.detach())
            if not (math.isfinite(value) and bool(torch.isfinite(norm))):
                self._diverged(
                    epoch,
                    step,
                    f"the loss is {value:g}" if not math.isfinite(value) else f"the gradients' norm is {float(norm):g}",
                )
            self.optimiser.step()
            total += value * batch.n_observed
            count += batch.n_observed
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        # the last step's update is seen by no loss: the weights themselves are checked once an epoch
        broken = [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if broken:
            self._diverged(epoch, step, f"the weights {broken[0]} are not finite after the last step")
        return total / max(count, 1), count, time.perf_counter() - steps_started

    def _diverged(self, epoch: int, step: int, what: str) -> None:
        """Stop with one sentence: where, what, and which setting most likely caused it."""
        config, model = self.config, self.model
        title = model.title or model.name
        if epoch == 1 and step == 1:  # nothing was updated yet: the model's own numbers are at fault, not lr
            cause, setting = (
                " before any update, so its scores or loss are not finite at its initial weights (check its "
                "hyperparameters, the loss settings and its forward); the learning rate is not the cause",
                None,
            )
        else:
            default = type(model).default_training.get("lr", TrainConfig.lr)
            smaller = f"the model's default {default:g}" if default < config.lr else f"{config.lr / 10:g}"
            cause, setting = f"; lr {config.lr:g} is the likely cause, so try a smaller one such as {smaller}", "lr"
            if not config.grad_clip:
                cause += " or clip the gradients with grad_clip"
        raise TrainingDivergedError(
            f"{title} diverged at epoch {epoch}, step {step}: {what}{cause}.", epoch, step, setting
        )


def _validate(model: RecModel, data: RecData, config: TrainConfig) -> dict:
    metrics = evaluate_topk(model, data, VALID, max_users=config.valid_users)
    if config.valid_ctr or config.monitor in CTR_METRICS:
        metrics.update(evaluate_ctr(model, data, VALID))
    return metrics


__all__ = ["CTR_METRICS", "FitResult", "TrainConfig", "seed_everything", "train_model"]
