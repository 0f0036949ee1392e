"""Watching attention for collapse while a model trains, in any training loop.

Zhai et al. (ICML 2023) showed that attention entropy collapse shows up during training, before the loss diverges.
:class:`AttentionMonitor` reads the :class:`~recmodels.models.outputs.AttentionMap`\\ s a model returns with
``output_attentions=True`` on one fixed probe batch, and records, per map, layer and head, the statistics of
:mod:`recmodels.explain.collapse` (normalised entropy, max weight, the shares of rows near uniform and near one-hot,
the divergence between heads, and the effective rank of the hidden states where the model returns them)::

    monitor = AttentionMonitor(model, data, log_dir="runs/my-model")   # probe: a seeded sample of valid rows
    for step, batch in enumerate(batches, start=1):
        ...
        if step % 100 == 0:
            monitor.record(step, train_loss=loss.item())
    monitor.close()
    save_checkpoint("checkpoints/my-model", model, data, history=monitor.history)

Each record goes to three places: :attr:`history` (the per-epoch record ``python -m recmodels train`` writes, which
:func:`~recmodels.checkpoint.io.save_checkpoint` stores); with ``log_dir``, one line of ``history.jsonl`` in that
folder (the run folder the Collapse page follows while it is written) and TensorBoard scalars in the same folder
(``tensorboard --logdir runs``). When a map, layer and head collapses by :class:`CollapseThresholds` (its median probe
row crosses a line) the monitor warns once, in one sentence, with a :class:`CollapseWarning`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import torch

from recmodels.data import VALID, RecData
from recmodels.errors import InvalidArgumentError, RecModelsError, quote
from recmodels.eval.evaluate import evaluating
from recmodels.explain.collapse import (
    HISTORY_STATISTICS,
    CollapseThresholds,
    by_layer_and_head,
    epoch_summary,
    map_statistics,
    rank_summary,
)
from recmodels.models.outputs import Batch

__all__ = ["HISTORY_FILE", "RUN_FILE", "AttentionMonitor", "CollapseWarning", "probe_batch"]

HISTORY_FILE = "history.jsonl"  # one record per line, as config.json's "history" holds them
RUN_FILE = "run.json"  # what the run is: the model, the data, the thresholds, when it started
PROBE_ROWS = 512


class CollapseWarning(UserWarning):
    """A map, layer and head whose attention collapsed while training (once per unit and kind)."""


def probe_batch(data: RecData, rows: int = PROBE_ROWS, seed: int = 0) -> Batch:
    """The fixed rows the statistics are read on: a seeded sample of the valid part's rated rows, each with the
    history before it (the trainer's probe)."""
    picked = data.ctr_rows(VALID, sample=rows, seed=seed)
    if not len(picked):
        raise InvalidArgumentError(f"{data.dataset.name} has no valid rows to probe the attention on; pass a Batch.")
    return Batch.from_numpy(picked.users, picked.items, picked.history)


class AttentionMonitor:
    """Collapse statistics of a model's attention on a fixed probe batch, recorded on request.

    Args:
        model: any :class:`~recmodels.models.base.RecModel` (or module with the same ``forward``).
        probe: the rows to read the maps on: a :class:`Batch`, or a :class:`~recmodels.data.RecData` whose valid part
            gives a seeded sample of ``PROBE_ROWS`` rows (the trainer's probe).
        log_dir: a run folder for ``history.jsonl``, ``run.json`` and TensorBoard's event files; None keeps the
            records in memory only.
        thresholds: when a map counts as collapsed (the same flags as the Collapse page).
        tensorboard: write TensorBoard scalars into ``log_dir`` (needs the ``tensorboard`` package).
        warn: warn once per collapsed map, layer and head.
    """

    def __init__(
        self,
        model,
        probe: Batch | RecData,
        log_dir=None,
        thresholds: CollapseThresholds = CollapseThresholds(),
        tensorboard: bool = True,
        warn: bool = True,
        seed: int = 0,
    ):
        if isinstance(probe, RecData):
            probe = probe_batch(probe, seed=seed)
        if not isinstance(probe, Batch) or not len(probe):
            raise InvalidArgumentError(f"probe must be a non-empty Batch or a RecData, got {type(probe).__name__}.")
        self.model, self.probe, self.thresholds, self.warn = model, probe, thresholds, warn
        self.history: list[dict] = []
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._warned: set[tuple] = set()
        self._first: dict | None = None  # the first record's medians per unit
        self._started = time.perf_counter()
        self._writer = None
        if self.log_dir is not None:
            self._open_run_folder(tensorboard)

    # ------------------------------------------------------------------ recording
    def statistics(self) -> dict:
        """The probe's attention statistics now: ``{"attention": {map: {...}}, "effective_rank": {...}}`` (the
        second only for a model that returns hidden states)."""
        attentions, ranks = self._read()
        return {"attention": epoch_summary(attentions, self.thresholds), **({"effective_rank": ranks} if ranks else {})}

    def _read(self) -> tuple[dict, dict]:
        with torch.no_grad(), evaluating(self.model):
            out = self.model(self.probe.to(_device_of(self.model)), output_attentions=True)
        return out.attentions or {}, rank_summary(out)

    def record(
        self,
        step: int | None = None,
        epoch: int | None = None,
        train_loss: float | None = None,
        valid: dict | None = None,
        **extra,
    ) -> dict:
        """Read the statistics now and keep them as one record: ``epoch`` (the record's number when not given),
        ``step``, the training loss and valid metrics when given, and any ``extra`` numbers. Returns the record."""
        number = int(epoch if epoch is not None else len(self.history))
        attentions, ranks = self._read()
        self._check_collapse(attentions, ranks, step if step is not None else number)
        entry = {
            "epoch": number,
            **({"step": int(step)} if step is not None else {}),
            "train_loss": None if train_loss is None else float(train_loss),
            "valid": dict(valid or {}),
            "attention": epoch_summary(attentions, self.thresholds),
            **({"effective_rank": ranks} if ranks else {}),
            "seconds": time.perf_counter() - self._started,
            **extra,
        }
        self.history.append(entry)
        if self.log_dir is not None:
            self._write(entry)
        return entry

    def close(self) -> None:
        """Flush and close TensorBoard's writer (the records stay in :attr:`history`)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> AttentionMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ collapse warnings
    def _check_collapse(self, attentions: dict, ranks: dict, step: int) -> None:
        """Warn about each unit that crossed a flag since the first record: a map that starts near uniform (as
        attention at initialisation does) is not a collapse until it was once something else."""
        medians = {
            (name, unit): values
            for name, attention in attentions.items()
            for unit, values in _unit_medians(attention).items()
        }
        if self._first is None:
            self._first = medians
        if not self.warn:
            return
        for (name, unit), values in medians.items():
            where = " · ".join([name, *unit])
            started_uniform = (
                self._first.get((name, unit), {}).get("normalised_entropy", 0.0) >= self.thresholds.near_uniform
            )
            if values["max_weight"] >= self.thresholds.near_one_hot:
                self._warn_once(
                    (name, unit, "one-hot"),
                    f"{where} collapsed to one-hot at step {step}: the median "
                    f"probe row puts {values['max_weight']:.2f} of its weight on one position (the flag "
                    f"is at {self.thresholds.near_one_hot:g}).",
                )
            if values["normalised_entropy"] >= self.thresholds.near_uniform and not started_uniform:
                self._warn_once(
                    (name, unit, "uniform"),
                    f"{where} collapsed to near uniform at step {step}: the "
                    f"median probe row's normalised entropy is {values['normalised_entropy']:.3f} (the "
                    f"flag is at {self.thresholds.near_uniform:g}).",
                )
        if ranks.get("embeddings", {}).get("median", -math.inf) >= self.thresholds.rank_collapse:
            for layer, values in ranks.items():
                if layer != "embeddings" and values["median"] < self.thresholds.rank_collapse:
                    self._warn_once(
                        ("rank", layer),
                        f"the hidden states after {layer} collapsed in rank at step "
                        f"{step}: their median effective rank is {values['median']:.2f}, below "
                        f"{self.thresholds.rank_collapse:g}.",
                    )

    def _warn_once(self, key: tuple, sentence: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"AttentionMonitor: {sentence}", CollapseWarning, stacklevel=4)  # at record()'s caller

    # ------------------------------------------------------------------ the run folder
    def _open_run_folder(self, tensorboard: bool) -> None:
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            run = {
                "model": getattr(self.model, "name", type(self.model).__name__),
                "title": getattr(self.model, "title", "") or getattr(self.model, "name", ""),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "probe_rows": len(self.probe),
                "thresholds": vars(self.thresholds),
            }
            (self.log_dir / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
            (self.log_dir / HISTORY_FILE).write_text("")
        except OSError as err:
            raise InvalidArgumentError(
                f"log_dir {quote(str(self.log_dir), 200)} cannot be written "
                f"({err.strerror or err}); pass a folder you can write to."
            ) from None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RecModelsError(
                    "TensorBoard is not installed, so the monitor cannot write its scalars; "
                    "pip install tensorboard, or pass tensorboard=False."
                ) from None
            self._writer = SummaryWriter(str(self.log_dir))

    def _write(self, entry: dict) -> None:
        with open(self.log_dir / HISTORY_FILE, "a") as handle:  # one whole line per record, for a reader to follow
            handle.write(json.dumps(entry, allow_nan=True) + "\n")
        if self._writer is None:
            return
        step = entry.get("step", entry["epoch"])
        if entry["train_loss"] is not None:
            self._writer.add_scalar("loss/train", entry["train_loss"], step)
        for metric, value in entry["valid"].items():
            self._writer.add_scalar(f"valid/{metric}", value, step)
        for name, stats in entry["attention"].items():
            for key, value in stats.items():
                if value is not None:
                    self._writer.add_scalar(f"attention/{name}/{key}", value, step)
        for layer, stats in entry.get("effective_rank", {}).items():
            self._writer.add_scalar(f"effective_rank/{layer}/median", stats["median"], step)
        self._writer.flush()


def _unit_medians(attention) -> dict[tuple[str, ...], dict[str, float]]:
    """The median over the probe rows of each history statistic, per (layer, head) of a map (the unit named by its
    "layer l" and "head h" parts; an empty tuple for a map without them)."""
    stats = map_statistics(attention)
    if stats is None:
        return {}
    remaining = [a for a in attention.axes if a != attention.normalised_over]
    medians: dict[tuple[str, ...], dict[str, float]] = {}
    for stat in HISTORY_STATISTICS:
        laid_out = by_layer_and_head(stats[stat].double(), remaining).movedim(0, 2).flatten(2)  # (L, H, rows)
        for layer in range(laid_out.shape[0]):
            for head in range(laid_out.shape[1]):
                values = laid_out[layer, head]
                values = values[torch.isfinite(values)]
                if not len(values):
                    continue
                unit = tuple(
                    ([f"layer {layer + 1}"] if "layer" in remaining else [])
                    + ([f"head {head + 1}"] if "head" in remaining else [])
                )
                medians.setdefault(unit, {})[stat] = float(values.median())
    return {unit: values for unit, values in medians.items() if len(values) == len(HISTORY_STATISTICS)}


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return next(model.buffers()).device if any(True for _ in model.buffers()) else torch.device("cpu")
