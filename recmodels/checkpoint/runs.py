"""Reading a run folder that :class:`~recmodels.train.monitor.AttentionMonitor` writes (``python -m recmodels train
--log-dir``, or any training loop): ``run.json`` and one record per line of ``history.jsonl``, possibly while the run
is still writing it.

The files are untrusted input like a checkpoint's: each record is checked by the checkpoint schema's rule for a
history entry, and a record that breaks it is left out and counted, never shown as numbers. A last line without its
newline is a record still being written and waits for the next read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from recmodels.checkpoint.roots import inside_roots, resolved_roots
from recmodels.checkpoint.schema import SchemaProblem, check_history_entry, load_config_json
from recmodels.errors import CheckpointError, RecModelsError
from recmodels.train.monitor import HISTORY_FILE, RUN_FILE

MAX_HISTORY_BYTES = 64 * 1024**2  # a record is a few kB; a million of them is not a run of this library
CONFIG_FILE = "config.json"


@dataclass
class TrainingRun:
    """What a run folder holds so far.

    Attributes:
        folder: the run folder.
        run: ``run.json`` (the model, when it started, the thresholds), or {} when it is missing or unreadable.
        history: the readable records, in the order written.
        refused: how many lines were not a well-formed record (left out).
        finished: whether a checkpoint was saved into the folder (``config.json`` beside the records).
    """

    folder: Path
    run: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    refused: int = 0
    finished: bool = False

    @property
    def x_axis(self) -> str:
        """ "step" when every record has one (a loop that records every N steps), else "epoch"."""
        return history_axis(self.history)[1]

    def plotted_history(self) -> list[dict]:
        """The records with their x-axis value (:attr:`x_axis`) under "epoch", where the history frames read it."""
        return history_axis(self.history)[0]


def history_axis(history: list[dict]) -> tuple[list[dict], str]:
    """``(records, axis)`` to draw a history by: by "step" when every record has one (AttentionMonitor in a loop that
    records every N steps; the step then stands where the history frames read "epoch"), else by "epoch"."""
    if history and all(isinstance(entry, dict) and isinstance(entry.get("step"), int) for entry in history):
        return [{**entry, "epoch": entry["step"]} for entry in history], "step"
    return history, "epoch"


def is_run_folder(folder) -> bool:
    return (Path(folder) / HISTORY_FILE).is_file()


def read_run(folder, roots=None) -> TrainingRun:
    """The records of a run folder as they stand; one :class:`CheckpointError` sentence when it is not one. With
    ``roots`` (folders), the folder and every file read from it must resolve inside one of them."""
    roots = resolved_roots(roots)
    folder = inside_roots(folder, roots, "run folder")
    path = inside_roots(folder / HISTORY_FILE, roots)
    if not path.is_file():
        raise CheckpointError(
            f"{folder} has no {HISTORY_FILE}, so it is not a training run; pass a run folder "
            "written by AttentionMonitor or train --log-dir."
        )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_HISTORY_BYTES + 1)
    except OSError as err:
        raise CheckpointError(f"{path} could not be read ({err.strerror or err}).") from None
    if len(raw) > MAX_HISTORY_BYTES:
        raise CheckpointError(
            f"{path} is larger than {MAX_HISTORY_BYTES // 2**20} MB, more than a run's records; "
            "it is not a history this library wrote."
        )
    complete = raw[: raw.rfind(b"\n") + 1]  # a line without its newline is still being written
    run = TrainingRun(folder, _run_description(folder, roots), finished=(folder / CONFIG_FILE).is_file())
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
            check_history_entry(f"line {number}", entry)
        except (ValueError, RecursionError, SchemaProblem):
            run.refused += 1
            continue
        run.history.append(entry)
    return run


def _run_description(folder: Path, roots: list[Path] | None) -> dict:
    path = folder / RUN_FILE
    if not path.is_file():
        return {}
    try:
        description = load_config_json(inside_roots(path, roots))
    except RecModelsError:
        return {}
    return description if isinstance(description, dict) else {}


def find_runs(roots) -> list[Path]:
    """Run folders directly inside the given roots (and the roots themselves when they are one), sorted."""
    found = []
    for root in map(Path, roots):
        try:
            candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        except OSError:
            continue
        found += [folder for folder in candidates if is_run_folder(folder)]
    return list(dict.fromkeys(found))
