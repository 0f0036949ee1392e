"""Generating, loading and splitting the synthetic scale datasets: seconds and peak memory per preset.

    python tools/scale_load.py [--presets ml-1m,ml-20m] [--root /tmp/recmodels-scale] [--regenerate]
                               [--write-docs docs/benchmarks.md]

For each preset (recmodels/data/synth.py) the dataset is generated into ROOT/<preset> unless it is already there
(then its recorded generation time is shown), and then loaded in a fresh process as `python -m recmodels train
--data-dir` loads it: `RecData.load`, which reads the atomic files, builds the schema, the temporal split, the
feature tables and the fingerprint. Peak RSS is that process's (`ru_maxrss`), so it covers loading alone.
Run it with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recmodels.data.synth import PRESETS
from recmodels.formatting import markdown_table, text_table, write_between_markers

MARKERS = ("<!-- scale-load:start -->", "<!-- scale-load:end -->")
STAMP = "scale_load.json"  # the shape, seed and generation time of a folder this tool wrote
COLUMNS = ["scale", "interactions", "generate s", "load+split s", "peak RSS GB"]

_GENERATE = """
import json, sys, time
from recmodels.data.synth import PRESETS, generate
start = time.perf_counter()
generate(sys.argv[1], PRESETS[sys.argv[2]], seed=int(sys.argv[3]), force=True, progress=False)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""
_LOAD = """
import json, resource, sys, time
from recmodels.data import RecData
start = time.perf_counter()
data = RecData.load("synth", data_dir=sys.argv[1])
seconds, peak = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
print(json.dumps({"seconds": seconds, "peak_gb": peak, "interactions": len(data.dataset.interactions),
                  "fingerprint": data.fingerprint}))
"""


def _run(code: str, *args) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise SystemExit(f"{code.split()[-1]} failed: {last[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(preset: str, root: Path, seed: int = 0, regenerate: bool = False) -> dict:
    folder = root / preset
    shape = PRESETS[preset]
    wanted = {"users": shape.users, "items": shape.items, "interactions": shape.interactions, "seed": seed}
    stamp = folder / STAMP
    recorded = json.loads(stamp.read_text()) if stamp.is_file() and (folder / "synth.inter").is_file() else {}
    if regenerate or {k: recorded.get(k) for k in wanted} != wanted:
        recorded = {**wanted, "generate_s": _run(_GENERATE, folder, preset, seed)["seconds"]}
        stamp.write_text(json.dumps(recorded))
    loaded = _run(_LOAD, folder)
    return {
        "scale": preset,
        "interactions": f"{loaded['interactions']:,}",
        "generate s": f"{recorded['generate_s']:.1f}",
        "load+split s": f"{loaded['seconds']:.1f}",
        "peak RSS GB": f"{loaded['peak_gb']:.2f}",
        "fingerprint": loaded["fingerprint"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="ml-1m,ml-20m", help=f"comma-separated, of {', '.join(PRESETS)}")
    parser.add_argument("--root", default="/tmp/recmodels-scale", help="where the datasets are generated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--regenerate", action="store_true", help="generate again although the folder is there")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="write the table between the scale-load markers of PAGE (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    unknown = [name for name in presets if name not in PRESETS]
    if unknown or not presets:
        parser.error(f"--presets takes a comma-separated list of {', '.join(PRESETS)}")
    rows = [measure(name, Path(args.root), args.seed, args.regenerate) for name in presets]
    print(text_table(rows, COLUMNS + ["fingerprint"]))
    if args.write_docs:
        note = (
            f"`python tools/scale_load.py --presets {','.join(presets)}` on {os.cpu_count()} CPU cores "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); load+split is `RecData.load` "
            "in a fresh process (atomic files, schema, temporal split, feature tables, fingerprint) and peak "
            "RSS is that process's."
        )
        write_between_markers(Path(args.write_docs), *MARKERS, markdown_table(rows, COLUMNS) + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
