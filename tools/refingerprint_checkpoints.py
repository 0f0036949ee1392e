"""Recompute the data fingerprint stored in checkpoint configs, after the fingerprint's recipe has changed.

    python tools/refingerprint_checkpoints.py                  # every folder under checkpoints/
    python tools/refingerprint_checkpoints.py checkpoints/din-ml100k --check

Each checkpoint's dataset is loaded as the checkpoint describes it (name, folder, split, max_history) and its
fingerprint is written to ``dataset.fingerprint`` and ``dataset.summary.fingerprint``; nothing else in the file
changes and the weights are not touched. Only use it when the recipe (``RecData._fingerprint``) changed, not to
force a checkpoint onto data it was not trained on: tests/test_checkpoints.py then re-measures the metrics.
Running it twice changes nothing the second time. ``--check`` writes nothing and exits 1 if any is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import CONFIG_FILE, dataset_location, read_config
from recmodels.errors import RecModelsError
from recmodels.serving.service import load_data_cached


def current_fingerprint(folder: Path) -> str:
    config = read_config(folder)
    dataset = config.dataset
    data_dir, image_dir = dataset_location(config, folder)
    data = load_data_cached(dataset.name, data_dir, image_dir, dataset.split, dataset.max_history)
    return data.fingerprint


def refingerprint(folder: Path, check: bool) -> bool:
    """Whether the stored fingerprint was stale (and, unless ``check``, has been rewritten)."""
    path = folder / CONFIG_FILE
    config = json.loads(path.read_text())
    fingerprint = current_fingerprint(folder)
    dataset = config["dataset"]
    stale = dataset.get("fingerprint") != fingerprint or dataset.get("summary", {}).get("fingerprint") not in (
        None,
        fingerprint,
    )
    if stale and not check:
        dataset["fingerprint"] = fingerprint
        if "summary" in dataset:
            dataset["summary"]["fingerprint"] = fingerprint
        path.write_text(json.dumps(config, indent=2) + "\n")  # the layout save_checkpoint writes
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="checkpoint folders (default: all under checkpoints/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a fingerprint is stale")
    args = parser.parse_args(argv)
    folders = args.folders or model_checkpoint_folders(ROOT / "checkpoints")  # a pipeline has no weights
    stale = []
    for folder in folders:
        try:
            was_stale = refingerprint(folder, args.check)
        except RecModelsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        done = ", rewritten" if was_stale and not args.check else ""
        print(f"{folder}: {'stale' if was_stale else 'up to date'}{done}")
        if was_stale:
            stale.append(folder)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
