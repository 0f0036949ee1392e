"""Does every shipped checkpoint give the same answers on CUDA as on the CPU?

For each checkpoint folder this loads the model twice, on the CPU and on CUDA, and compares:
- the test metrics measured on CUDA against the ones recorded in its config.json (measured on the CPU);
- one user's top-10 recommendations (same items in the same order) and their scores;
- the explanation of that user's first recommendation: every attention map, the IG delta, and the time taken.

    python tools/gpu_check.py [CHECKPOINT ...] [--json OUT.json]          # on a machine with CUDA
    python tools/gpu_check.py --from-json A.json [B.json ...] --write-docs docs/benchmarks.md   # the docs' table

Prints one table row per checkpoint; exits 1 when a metric or a map differs beyond float noise, or CUDA is absent.
With several JSON files, a later file's row for a checkpoint replaces an earlier one (a rerun after a fix).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import TEST
from recmodels.eval import evaluate
from recmodels.formatting import markdown_table, text_table, write_between_markers
from recmodels.serving.service import RecService, load_data_cached

START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"
COLUMNS = [
    "checkpoint",
    "ok",
    "metric_gap",
    "same_top10",
    "score_gap",
    "map_gap",
    "ig_delta",
    "evaluate_s",
    "explain_ms",
]
METRIC_TOLERANCE = 2e-3  # as tests/test_checkpoints.py: summation order differs between devices
MAP_TOLERANCE = 1e-3


def compare(path: Path, device: str = "cuda") -> dict:
    config = read_config(path)
    dataset = config.dataset
    data = load_data_cached(dataset.name, *dataset_location(config, path), dataset.split, dataset.max_history)
    model, _ = load_checkpoint(path, device=torch.device(device), data=data)
    started = time.perf_counter()
    measured = evaluate(model, data, TEST)
    if device == "cuda":
        torch.cuda.synchronize()
    evaluate_s = time.perf_counter() - started
    recorded = config.part_metrics("test")
    metric_gap = max(abs(measured[name] - value) for name, value in recorded.items())

    cpu, gpu = RecService.from_checkpoint(path, device="cpu"), RecService.from_checkpoint(path, device=device)
    user = cpu.users()["user"].iloc[0]
    top_cpu, top_gpu = cpu.recommend(user, k=10), gpu.recommend(user, k=10)
    row = {
        "checkpoint": path.name,
        "device": gpu.device_label,
        "metric_gap": metric_gap,
        "evaluate_s": evaluate_s,
        "same_top10": list(top_cpu["item"]) == list(top_gpu["item"]),
        "score_gap": float(np.max(np.abs(top_cpu["score"].to_numpy() - top_gpu["score"].to_numpy()))),
    }
    item = top_cpu["item"].iloc[0]
    explained_cpu = cpu.explain(user, item)
    gpu.explain(user, item)  # the first call on CUDA pays for kernel warm-up
    started = time.perf_counter()
    explained_gpu = gpu.explain(user, item)
    row["explain_ms"] = 1000 * (time.perf_counter() - started)
    gaps = [
        float(np.nanmax(np.abs(explained_cpu.maps[name].values - view.values)))
        for name, view in explained_gpu.maps.items()
        if view.values.size
    ]
    row["map_gap"] = max(gaps, default=0.0)
    row["ig_delta"] = explained_gpu.delta
    row["ok"] = (
        metric_gap <= METRIC_TOLERANCE
        and row["map_gap"] <= MAP_TOLERANCE
        and (row["same_top10"] or row["score_gap"] <= MAP_TOLERANCE)
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint folders (default: every one under checkpoints/)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument(
        "--device", default="cuda", help="the device compared with the CPU (cpu: a dry run of this tool)"
    )
    parser.add_argument("--from-json", nargs="+", metavar="JSON", help="measure nothing; report these files' rows")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="write the table between the gpu-check markers of PAGE (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        by_checkpoint = {
            row["checkpoint"]: row for path in args.from_json for row in json.loads(Path(path).read_text())
        }
        rows = sorted(by_checkpoint.values(), key=lambda row: row["checkpoint"])
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: nothing to compare", file=sys.stderr)
            return 1
        paths = [Path(p) for p in args.checkpoints] or model_checkpoint_folders(REPO / "checkpoints")
        rows = []
        for path in paths:
            try:
                rows.append(compare(path, args.device))
            except Exception as error:  # noqa: BLE001 - a report of every checkpoint beats stopping at the first one
                rows.append({"checkpoint": path.name, "ok": False, "error": f"{type(error).__name__}: {error}"})
            print(json.dumps(rows[-1], default=str), flush=True)
    print(text_table(rows, COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    if args.write_docs:
        devices = sorted({row["device"] for row in rows if "device" in row})
        headers = [
            "checkpoint",
            "same as CPU",
            "max metric gap",
            "same top-10",
            "max score gap",
            "max map gap",
            "IG delta",
            "evaluate s",
            "explain ms",
        ]
        table = (
            markdown_table(rows, COLUMNS, headers) + f"\n\n{len(rows)} checkpoints, CUDA device: "
            f"{', '.join(devices)}. Gaps are CUDA against the CPU on the same machine (metrics: against the "
            "recorded ones). Produced by `python tools/gpu_check.py`."
        )
        write_between_markers(Path(args.write_docs), START, END, table)
        print(f"wrote the table into {args.write_docs}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
