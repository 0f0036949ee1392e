"""Training at scale: throughput of DIN and NRMS for a few steps, and the time one epoch takes at that rate.

    python tools/scale_train.py [--preset ml-20m | --users U --items I --interactions N] [--models din,nrms]
                                [--max-steps 20 | --full-epoch] [--nproc 2] [--threads T] [--valid-users 256]
                                [--root /tmp/recmodels-scale] [--no-cuda] [--write-docs docs/benchmarks.md]

Each run is `python -m recmodels train --model M --dataset synth --data-dir DIR --epochs 1 --max-steps N --set
valid_users=V --set valid_ctr=false` in a fresh process: once on the CPU alone, once under `torchrun
--nproc-per-node P` (gloo on the CPU) and once with `--device cuda` when CUDA is available. Throughput comes from the
checkpoint's history: rows x processes / the steps' seconds, i.e. the epoch's train_seconds (validation, on V users,
is timed apart) less its negative sampling, which the trainer does for every row of the epoch before the first step
however few steps run, and which the tool times apart. One epoch's time is that sampling plus the epoch's rows over
the throughput, extrapolated from N steps (the first steps carry warm-up, so it errs long), unless --full-epoch
trains the whole epoch and measures it.

The training process runs the CLI (see ``_CHILD``), counting the epoch's rows and timing its negative sampling, with
``--eval-users V``: the final valid and test metrics cover the first V users, since at ml-20m a full ranking of
26,744 items for every one of 138,493 users would take hours; the checkpoint records ``evaluated_users``, and its
metrics are for timing, not for the results table. Peak RSS is each process's ``ru_maxrss`` over the whole run
(for torchrun, the largest process). The dataset is generated into ROOT/<scale> as tools/scale_load.py does, and
reused when its stamp matches. Checkpoints go to ROOT/<scale>-checkpoints/<model>-<run>; tools/scale_service.py
opens the CPU ones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recmodels.data.synth import PRESETS, Shape, generate, shape_of
from recmodels.errors import InvalidArgumentError, RecModelsError
from recmodels.formatting import markdown_table, text_table, write_between_markers

MARKERS = ("<!-- scale-train:start -->", "<!-- scale-train:end -->")
STAMP = "scale_load.json"  # the same stamp as tools/scale_load.py: a folder either tool wrote is reused
COLUMNS = [
    "scale",
    "model",
    "run",
    "threads",
    "batch",
    "steps",
    "rows/s",
    "epoch rows",
    "negatives s",
    "1 epoch",
    "speed-up",
    "peak RSS GB",
]

MEANING = (
    "rows/s: training rows (each with its sampled negatives) x processes over the optimiser steps' seconds; "
    "negatives s: drawing the epoch's negatives for all its rows, once per epoch and on every process; "
    "validation is timed apart; peak RSS is per process, over the whole run."
)

# The training process: `python -m recmodels train` with the epoch's row count and its negative sampling time
# recorded (the final evaluation is bounded by the command's own --eval-users). Each process writes its facts to its
# own file: torchrun's processes share one stdout, where two lines can interleave.
_CHILD = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(int(os.environ["SCALE_TRAIN_THREADS"]))
import recmodels.train.batches as batches
facts = {}
counted, sample = batches.training_rows, batches.NegativeSampler.sample

def training_rows(*args, **kwargs):
    rows = counted(*args, **kwargs)
    facts["epoch_rows"] = len(rows)
    return rows

def timed_sample(self, *args, **kwargs):
    started = time.perf_counter()
    try:
        return sample(self, *args, **kwargs)
    finally:
        facts["sampling_s"] = facts.get("sampling_s", 0.0) + time.perf_counter() - started

batches.training_rows = training_rows
batches.NegativeSampler.sample = timed_sample
from recmodels.cli.parser import main
code = main(sys.argv[2:])
facts.update(rank=int(os.environ.get("RANK", "0")), peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
with open(os.path.join(os.environ["SCALE_TRAIN_FACTS_DIR"], f"rank{facts['rank']}.json"), "w") as out:
    json.dump(facts, out)
sys.exit(code)
"""


class ScaleRunError(RecModelsError):
    """A measured process failed; the message carries its last line of output."""


# ------------------------------------------------------------------ the dataset
def scale_name(preset: str, shape: Shape) -> str:
    """The preset's name when the shape is the preset's, else one that spells the shape out."""
    return preset if shape == PRESETS[preset] else f"synth-{shape.users}x{shape.items}x{shape.interactions}"


def ensure_dataset(root: Path, name: str, shape: Shape, seed: int = 0) -> Path:
    """ROOT/<name> holding the synthetic dataset of this shape and seed: reused when its stamp says so, else
    generated (the stamp is tools/scale_load.py's, so either tool reuses the other's folder)."""
    folder = Path(root) / name
    wanted = {"users": shape.users, "items": shape.items, "interactions": shape.interactions, "seed": seed}
    stamp = folder / STAMP
    recorded = json.loads(stamp.read_text()) if stamp.is_file() and (folder / "synth.inter").is_file() else {}
    if {key: recorded.get(key) for key in wanted} != wanted:
        started = time.perf_counter()
        generate(folder, shape, seed=seed, force=True, progress=False)
        stamp.write_text(json.dumps({**wanted, "generate_s": time.perf_counter() - started}))
    return folder


# ------------------------------------------------------------------ one measured training run
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-port",
        str(_free_port()),
        "--no-python",
        sys.executable,
    ]


def run_child(command: list[str], what: str, env: dict | None = None) -> str:
    """Run a measured process from the repository root; its stdout, or ScaleRunError with its last stderr line."""
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    )
    if done.returncode:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        raise ScaleRunError(f"{what} failed (exit status {done.returncode}): {last.strip() or 'no message'}")
    return done.stdout


def train_checkpoint(
    model: str,
    data_dir: Path,
    out: Path,
    max_steps: int | None,
    valid_users: int,
    threads: int,
    device: str = "cpu",
    nproc: int = 1,
    seed: int = 0,
) -> dict:
    """Train one epoch (at most ``max_steps`` steps) in a fresh process; the facts its processes printed, rank 0
    first, with the largest peak RSS of them."""
    argv = [
        "train",
        "--model",
        model,
        "--dataset",
        "synth",
        "--data-dir",
        str(data_dir),
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--device",
        device,
        "--seed",
        str(seed),
        "--set",
        f"valid_users={valid_users}",
        "--set",
        "valid_ctr=false",
        "--eval-users",
        str(valid_users),
    ]
    argv += ["--max-steps", str(max_steps)] if max_steps else []
    per_process = max(1, threads // nproc)  # as the trainer's own DDP split of the cores
    with tempfile.TemporaryDirectory(prefix="scale-train-facts-") as facts_dir:
        run_child(
            _launcher(nproc) + ["-c", _CHILD, "-"] + argv,
            f"training {model} ({_run_label(device, nproc)})",
            {
                "OMP_NUM_THREADS": str(per_process),
                "SCALE_TRAIN_THREADS": str(per_process),
                "SCALE_TRAIN_FACTS_DIR": facts_dir,
            },
        )
        facts = sorted(
            (json.loads(path.read_text()) for path in Path(facts_dir).glob("rank*.json")),
            key=lambda entry: entry["rank"],
        )
    if len(facts) != nproc:
        raise ScaleRunError(f"training {model} wrote the facts of {len(facts)} of its {nproc} processes.")
    return {**facts[0], "peak_gb": max(entry["peak_gb"] for entry in facts), "threads": per_process}


def _run_label(device: str, nproc: int) -> str:
    return f"{device}, torchrun x{nproc}" if nproc > 1 else f"{device}, 1 process"


def duration(seconds: float) -> str:
    """Seconds as a person reads them: 0.84 s, 42 s, 23.4 min, 2.1 h."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def measure(
    model: str, name: str, data_dir: Path, out_root: Path, options, device: str = "cpu", nproc: int = 1
) -> dict:
    """One table row: the run, then its figures from the checkpoint's history and the process's facts."""
    out = out_root / f"{model}-{device}{'' if nproc == 1 else f'-ddp{nproc}'}"
    facts = train_checkpoint(
        model,
        data_dir,
        out,
        None if options.full_epoch else options.max_steps,
        options.valid_users,
        options.threads,
        device,
        nproc,
        options.seed,
    )
    config = json.loads((out / "config.json").read_text())
    epoch, batch = config["history"][-1], config["training"]["batch_size"]
    world = config["training"]["world_size"]
    # the epoch draws negatives for all its rows before the first step, however few steps run: timed apart
    sampling = facts.get("sampling_s", 0.0)
    rows_per_s = epoch["rows"] * world / max(epoch["train_seconds"] - sampling, 1e-9)
    whole = epoch["train_seconds"] if options.full_epoch else sampling + facts["epoch_rows"] / rows_per_s
    return {
        "scale": name,
        "model": model,
        "run": _run_label(device, nproc),
        "threads": str(facts["threads"]) if nproc == 1 else f"{nproc}x{facts['threads']}",
        "batch": batch,
        "steps": math.ceil(epoch["rows"] / batch),
        "rows/s": f"{rows_per_s:,.0f}",
        "epoch rows": f"{facts['epoch_rows']:,}",
        "negatives s": f"{sampling:.1f}",
        "1 epoch": duration(whole),
        "peak RSS GB": f"{facts['peak_gb']:.2f}",
        "rows_per_s": rows_per_s,
        "peak_gb": facts["peak_gb"],
        "train s": f"{epoch['train_seconds']:.1f}",
        "checkpoint": str(out),
    }


# ------------------------------------------------------------------ the table
def available_gb() -> float | None:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1e6


def measure_model(model: str, name: str, data_dir: Path, out_root: Path, options, notes: list[str]) -> list[dict]:
    """The model's rows: alone on the CPU, under torchrun (when memory allows), and on CUDA when present."""
    alone = measure(model, name, data_dir, out_root, options)
    rows = [alone]
    if options.nproc > 1:
        needed, free = options.nproc * alone["peak_gb"], available_gb()
        if free is not None and needed > 0.9 * free:
            notes.append(
                f"{model}: torchrun x{options.nproc} skipped, since {options.nproc} processes of "
                f"{alone['peak_gb']:.1f} GB would not fit the {free:.1f} GB available."
            )
        else:
            ddp = measure(model, name, data_dir, out_root, options, nproc=options.nproc)
            ddp["speed-up"] = f"x{ddp['rows_per_s'] / alone['rows_per_s']:.2f}"
            rows.append(ddp)
    if options.cuda:
        rows.append(measure(model, name, data_dir, out_root, options, device="cuda"))
    return rows


def check_options(options) -> None:
    """Each bad value as one sentence, before any data is generated."""
    from recmodels.models import model_info

    for flag, value, least in (
        ("--max-steps", options.max_steps, 1),
        ("--threads", options.threads, 1),
        ("--valid-users", options.valid_users, 1),
        ("--nproc", options.nproc, 1),
    ):
        if value < least:
            raise InvalidArgumentError(f"{flag} must be at least {least}, got {value}.")
    if not options.models:
        raise InvalidArgumentError("--models names no model; pass a comma-separated list such as din,nrms.")
    options.models = [model_info(name).name for name in options.models]  # UnknownModelError names the known ones


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The scale options both scale tools take."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ml-20m", help="the dataset's shape")
    for count in ("users", "items", "interactions"):
        parser.add_argument(f"--{count}", type=int, default=None, help=f"replace the preset's number of {count}")
    parser.add_argument("--root", default="/tmp/recmodels-scale", help="where the datasets and checkpoints go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of a measured process (split between torchrun's processes)",
    )


def dataset_of(options) -> tuple[str, Path]:
    """(scale name, folder) of the options' dataset, generated when it is not there yet."""
    shape = shape_of(options.preset, options.users, options.items, options.interactions)
    name = scale_name(options.preset, shape)
    return name, ensure_dataset(Path(options.root), name, shape, options.seed)


def check_page(path, markers: tuple[str, str]) -> None:
    """Before measuring for minutes: the docs page to write exists and has the markers."""
    if path is None:
        return
    text = Path(path).read_text() if Path(path).is_file() else None
    if text is None or not all(marker in text for marker in markers):
        raise InvalidArgumentError(
            f"{path} is not a file with the lines {markers[0]} and {markers[1]}; add them "
            "where the table goes, or leave out --write-docs."
        )


def scale_flags(options) -> str:
    """The command-line flags that chose the dataset, for the table's note."""
    counts = [
        f"--{count} {getattr(options, count)}"
        for count in ("users", "items", "interactions")
        if getattr(options, count) is not None
    ]
    return " ".join([f"--preset {options.preset}", *counts])


def model_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    parser.add_argument("--models", type=model_list, default=["din", "nrms"], help="comma-separated model names")
    parser.add_argument("--max-steps", type=int, default=20, help="optimiser steps measured per run")
    parser.add_argument("--full-epoch", action="store_true", help="train and measure the whole epoch instead")
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes for the DDP rows (1: none)")
    parser.add_argument("--valid-users", type=int, default=256, help="users the validation and final metrics rank")
    parser.add_argument("--no-cuda", action="store_true", help="no --device cuda rows even when CUDA is there")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="write the table between the scale-train markers of PAGE (docs/benchmarks.md)",
    )
    options = parser.parse_args(argv)
    try:
        return _run(options)
    except RecModelsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(options) -> int:
    import torch

    check_options(options)
    check_page(options.write_docs, MARKERS)
    options.cuda = torch.cuda.is_available() and not options.no_cuda
    name, folder = dataset_of(options)
    out_root, notes = Path(options.root) / f"{name}-checkpoints", []
    rows = [row for model in options.models for row in measure_model(model, name, folder, out_root, options, notes)]
    notes.append(
        "CUDA: "
        + (
            torch.cuda.get_device_name()
            if options.cuda
            else "not available here, so there are no --device cuda rows"
            if not options.no_cuda
            else "skipped (--no-cuda)"
        )
    )
    epoch = (
        "measured over the whole epoch (--full-epoch)"
        if options.full_epoch
        else f"extrapolated from {options.max_steps} steps: negatives s + the epoch's rows / rows/s"
    )
    print(text_table(rows, COLUMNS + ["train s"]))
    print(f"\n1 epoch: {epoch}. {MEANING}\n" + "\n".join(notes))
    if options.write_docs:
        steps = "--full-epoch" if options.full_epoch else f"--max-steps {options.max_steps}"
        note = (
            f"`python tools/scale_train.py {scale_flags(options)} --models {','.join(options.models)} {steps}` "
            f"on {os.cpu_count()} CPU cores ({options.threads} torch threads per run, split between torchrun's "
            f"processes; gloo). 1 epoch is {epoch}. {MEANING} " + " ".join(notes)
        )
        write_between_markers(Path(options.write_docs), *MARKERS, markdown_table(rows, COLUMNS) + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
