"""Model selection on the valid part: ``train --grid KEY=V1,V2,...`` trains every combination, keeps the best.

A grid runs over any model hyperparameter or training setting (each value read as ``--set`` reads it). Every
point trains from the same seed with early stopping on the model's monitor metric, and the points are compared
by that metric on the valid part at their best epoch, never on test. Only the winner is saved; its config.json
records every point under "selection" (:func:`selection_record`). Equal values keep the earlier point.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recmodels.errors import InvalidArgumentError, RecModelsError, TrainingDivergedError, quote
from recmodels.train.trainer import LOWER_IS_BETTER, FitResult, TrainConfig, seed_everything, train_model


def parse_grid(pairs: list[str] | None, parse_value: Callable[[str], object]) -> dict[str, list]:
    """``["lr=0.001,0.003", "dim=32,64"]`` -> ``{"lr": [0.001, 0.003], "dim": [32, 64]}``, in the given order."""
    grid: dict[str, list] = {}
    for pair in pairs or []:
        key, sep, values = pair.partition("=")
        key = key.strip()
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(parts):
            raise InvalidArgumentError(f"--grid takes KEY=VALUE1,VALUE2,... with no empty value, got {quote(pair)}.")
        if key in grid:
            raise InvalidArgumentError(f"--grid names {quote(key)} twice; give all its values in one --grid.")
        grid[key] = [parse_value(part) for part in parts]
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination, the last key varying fastest; one empty point without a grid."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


@dataclass
class GridPoint:
    settings: dict  # the grid's values at this point
    valid: dict  # valid metrics at the point's best epoch
    best_epoch: int
    epochs_run: int


def better(value: float, best: float, lower_is_better: bool) -> bool:
    """Strictly better, so that a tie keeps the earlier point; a missing (NaN) value never wins."""
    if math.isnan(value):
        return False
    return math.isnan(best) or (value < best if lower_is_better else value > best)


def selection_record(monitor: str, points: list[GridPoint], chosen: int) -> dict:
    """What config.json keeps under "selection"."""
    return {
        "monitor": monitor,
        "part": "valid",
        "grid": [
            {"settings": p.settings, "best_epoch": p.best_epoch, "epochs_run": p.epochs_run, "valid": p.valid}
            for p in points
        ],
        "chosen": points[chosen].settings,
    }


def train_on_grid(
    model_cls,
    candidates: list[tuple[dict, dict, TrainConfig]],
    data,
    device="auto",
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    log_dir=None,
    initialise: Callable[[object], None] | None = None,
) -> tuple[FitResult, TrainConfig, dict]:
    """Train each candidate ``(grid settings, model hyperparameters, training config)`` and keep the best on valid.

    Returns the winner's fit and training config, and the "selection" record of every point. Only the winner's
    model is kept in memory. ``log`` (None for silence, e.g. on non-zero DDP ranks) gets one line per point.
    ``log_dir`` is the run folder each point's records go to (``point-N`` inside it when there are several).
    ``initialise`` is called on each point's new model before it trains (a warm start).
    """
    log = log or (lambda line: None)
    monitor = candidates[0][2].monitor
    lower = monitor in LOWER_IS_BETTER
    points: list[GridPoint] = []
    best_value, best = math.nan, None
    for number, (settings, hparams, config) in enumerate(candidates):
        seed_everything(config.seed)  # the initial weights come from the seeded generator as well
        model = built(model_cls, data, hparams)
        if initialise is not None:
            initialise(model)
        log(
            f"training {model_cls.name} ({sum(p.numel() for p in model.parameters()):,} parameters) with "
            f"{json.dumps(config.to_dict())}"
        )
        run = None if log_dir is None else Path(log_dir) / f"point-{number + 1}" if len(candidates) > 1 else log_dir
        try:
            result = train_model(model, data, config, device=device, progress=progress, log_dir=run)
        except TrainingDivergedError as err:
            if len(candidates) == 1:
                raise
            # a diverged point is no candidate, and the grid stops: its other points were trained in vain
            raise TrainingDivergedError(
                f"grid point {number + 1}/{len(candidates)} {json.dumps(settings)}: {err}",
                err.epoch,
                err.step,
                err.setting,
            ) from None
        value = float(result.best_valid.get(monitor, math.nan))  # empty off rank 0 under DDP
        points.append(GridPoint(settings, result.best_valid, result.best_epoch, max(len(result.history) - 1, 0)))
        improved = best is None or better(value, best_value, lower)
        if improved:
            best_value, best = value, (number, result, config)
        if len(candidates) > 1:
            at = f" at epoch {result.best_epoch}" if result.history else ""  # closed-form models run no epochs
            log(
                f"grid point {number + 1}/{len(candidates)} {json.dumps(settings)}: valid {monitor} {value:.4f}{at}"
                f"{' (best so far)' if improved else ''}"
            )
    chosen, result, config = best
    if len(candidates) > 1:
        log(f"chosen on valid {monitor}: {json.dumps(candidates[chosen][0])}")
    return result, config, selection_record(monitor, points, chosen)


__all__ = ["GridPoint", "better", "grid_points", "parse_grid", "selection_record", "train_on_grid"]


def built(model_cls, data, hparams: dict):
    """``model_cls.from_data(data, **hparams)``; a constructor that fails on settings its config does not bound (a
    plugin's ``dim=-4`` reaching ``nn.Embedding``) is one sentence naming the model, its module and the settings."""
    try:
        return model_cls.from_data(data, **hparams)
    except RecModelsError:
        raise
    except Exception as err:  # noqa: BLE001 - a plugin's constructor can raise anything; say which and with what
        raise InvalidArgumentError(
            f"Model {quote(model_cls.name)} (from {model_cls.__module__}) could not be built with "
            f"{quote(json.dumps(hparams, sort_keys=True) if hparams else 'its default settings')} "
            f"({type(err).__name__}: {quote(' '.join(str(err).split()), 160)}); give its config fields bounds "
            "(recmodels.models.bounded) so that such values are refused by name, or choose other settings."
        ) from None
