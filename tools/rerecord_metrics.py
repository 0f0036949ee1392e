"""Re-measure the metrics recorded in checkpoint configs, after the evaluation protocol changed (e.g. the tie rule).

    python tools/rerecord_metrics.py --check                         # every folder under checkpoints/: report only
    python tools/rerecord_metrics.py checkpoints/mostpop-ml100k --parts valid test   # rewrite those parts

Each checkpoint is loaded on its dataset as it describes it and evaluated with ``recmodels.eval.evaluate``
(what ``python -m recmodels evaluate`` runs); a part "moved" when any recorded metric differs from the measured
one at 4 decimals. Without ``--check`` the measured values replace ``metrics[<part>]`` for each named part that
moved; nothing else in config.json changes and the weights are not touched. Only use it when evaluation itself
changed, never to paper over a checkpoint that no longer reproduces. ``--check`` exits 1 if any part moved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import CONFIG_FILE, dataset_location, load_checkpoint, read_config
from recmodels.data import PART_NAMES
from recmodels.errors import RecModelsError
from recmodels.eval import evaluate
from recmodels.serving.service import load_data_cached


def measure(folder: Path, part: str) -> dict[str, float]:
    config = read_config(folder)
    dataset = config.dataset
    data = load_data_cached(dataset.name, *dataset_location(config, folder), dataset.split, dataset.max_history)
    model, _ = load_checkpoint(folder, data=data)
    return evaluate(model, data, PART_NAMES[part])


def moved(recorded: dict, measured: dict) -> list[str]:
    """The recorded metrics whose value differs from the measured one at 4 decimals."""
    return [
        name
        for name, value in recorded.items()
        if value is not None and f"{value:.4f}" != f"{measured.get(name, float('nan')):.4f}"
    ]


def rerecord(folder: Path, parts: list[str], check: bool) -> dict[str, list[str]]:
    """{part: metrics that moved}; unless ``check``, the parts are rewritten with the measured values."""
    path = folder / CONFIG_FILE
    config = json.loads(path.read_text())
    changes = {}
    for part in parts:
        recorded = config.get("metrics", {}).get(part)
        if recorded is None:
            continue
        measured = measure(folder, part)
        changes[part] = moved(recorded, measured)
        if changes[part] and not check:
            config["metrics"][part] = {name: measured[name] for name in recorded}
    if any(changes.values()) and not check:
        path.write_text(json.dumps(config, indent=2) + "\n")  # the layout save_checkpoint writes
    return changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="checkpoint folders (default: all under checkpoints/)")
    parser.add_argument("--parts", nargs="+", choices=["valid", "test"], default=["test"])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any part moved")
    args = parser.parse_args(argv)
    folders = args.folders or model_checkpoint_folders(ROOT / "checkpoints")  # a pipeline has no weights
    any_moved = False
    for folder in folders:
        try:
            changes = rerecord(folder, args.parts, args.check)
        except RecModelsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for part, names in changes.items():
            any_moved |= bool(names)
            state = f"moved ({', '.join(names)})" if names else "reproduces to 4 decimals"
            print(f"{folder} {part}: {state}{', re-recorded' if names and not args.check else ''}")
    return 1 if args.check and any_moved else 0


if __name__ == "__main__":
    raise SystemExit(main())
