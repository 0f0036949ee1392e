"""Sequential models on synthetic data built to reward order (issue 25): SASRec and BERT4Rec against EASE and BPR-MF
on the ml-1m-scale synthetic preset, under the next-item protocol.

    python tools/sequential_synth.py                                   # every model, one after another
    python tools/sequential_synth.py --runs sasrec                     # one run (the JSON is merged per run)
    python tools/sequential_synth.py --from-json --write-docs docs/sequential.md   # the table from the kept JSON

What it does:

1. generates ``python -m recmodels synth --preset ml-1m --seed 0`` into ROOT/data-<preset>-seed<seed> (reused when
   there; the same seed writes the same bytes) and measures the structure the generator plants: the share of
   consecutive interactions of a user whose items share their primary genre (the generator's ``STAY``, 0.65), the
   same share with each user's interactions shuffled in time (what order adds), and the drift of a user's genre mix
   (total variation between the first and second half of their timeline, against the shuffled timeline);
2. trains each run of :data:`RUNS` (a model and its settings) with ``python -m recmodels train --model M --dataset
   synth --data-dir DIR --protocol next-item --out ROOT/checkpoints/RUN`` and the run's flags, one thread, in a
   fresh process (leave one out: each user's last interaction is test and the one before it valid, histories of
   the 50 most recent earlier interactions, full ranking over the items the user has not interacted with). Every
   choice is made on valid: the epoch by early stopping on valid NDCG@10, EASE's lambda by ``--grid``, and a
   model's row is its run with the best valid NDCG@10. A checkpoint already there is read, not retrained, unless
   ``--retrain``; ROOT/logs keeps each run's output;
3. computes a reference that knows the generator's rule (:func:`generator_reference`), the ceiling to read the
   models against, keeps everything in ``artifacts/sequential_synth.json`` (merged per run) and, with
   ``--write-docs``, writes the table between the ``synthetic-sequential`` markers of docs/sequential.md.

The checkpoints are on generated data and stay under artifacts/: nothing here is shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recmodels.data import TEST, TRAIN, VALID, RecData, SplitConfig
from recmodels.data.synth import PRESETS, STAY, generate
from recmodels.formatting import write_between_markers

START, END = "<!-- synthetic-sequential:start -->", "<!-- synthetic-sequential:end -->"
TITLES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "ease": "EASE", "bpr": "BPR-MF"}
SEQUENTIAL = ("sasrec", "bert4rec")
# each run: the model and its train flags after the shared ones. A model's row in the table is its run with the best
# valid NDCG@10; every run is listed below it. Epochs and patience bound a run to about a quarter of an hour on one
# thread of this project's 2-core CPU.
RUNS = {
    "ease": ("ease", "--grid l2=200,2000,8000,20000,50000,150000"),
    "bpr": ("bpr", "--epochs 12 --set lr=3e-3 --set patience=2"),
    "sasrec": ("sasrec", "--epochs 4 --set positions=all --set patience=1"),
    # the settings chosen on ml-100k (mask 0.2, half of the windows masking only their last item, lr 1e-3)
    "bert4rec-ml100k-settings": ("bert4rec", "--epochs 5 --set window_stride=0 --set patience=1"),
    "bert4rec": (
        "bert4rec",
        "--epochs 8 --set window_stride=0 --set mask_prob=0.4 --set last_only=0.1 --set lr=2e-3 --set patience=3",
    ),
}
METRICS = ("hr@10", "ndcg@10", "mrr@10")
HEADER = ["model", "kind", "settings", "best epoch", "valid NDCG@10", "test HR@10", "test NDCG@10", "test MRR@10",
          "train min"]  # fmt: skip


# ------------------------------------------------------------------ the data and what it plants
def data_folder(root: Path, preset: str, seed: int) -> Path:
    folder = root / f"data-{preset}-seed{seed}"
    if not (folder / "synth.inter").is_file():
        generate(folder, PRESETS[preset], seed=seed, force=True)
    return folder


def primary_genres(data: RecData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each interaction's user and its item's primary genre (listed first), in the frame's order (user, then time),
    and each item's primary genre (-1 for the padding id 0)."""
    dataset = data.dataset
    index = {genre: i for i, genre in enumerate(dataset.genre_names)}
    per_item = np.r_[-1, [index[genres[0]] for genres in dataset.item_features["genres"]]]
    frame = dataset.interactions
    return frame["user"].to_numpy(), per_item[frame["item"].to_numpy()], per_item


def planted_structure(users: np.ndarray, genres: np.ndarray, seed: int = 0) -> dict:
    """The genre stay rate and the drift of each user's genre mix, in time order and with each user's interactions
    shuffled (the same users, items and genres, no order)."""
    rng = np.random.default_rng(seed)
    shuffled = genres[np.lexsort((rng.random(len(users)), users))]  # users stay sorted, their rows shuffled
    n_genres = int(genres.max()) + 1

    def stay(g):
        same_user = users[1:] == users[:-1]
        return float((g[1:] == g[:-1])[same_user].mean())

    def drift(g):
        """Mean over users of the total variation between the genre mix of their first and second half."""
        starts = np.searchsorted(users, np.unique(users))
        counts = np.diff(np.r_[starts, len(users)])
        position = np.arange(len(users)) - np.repeat(starts, counts)
        late = position >= np.repeat(counts, counts) / 2
        halves = np.zeros((len(starts), 2, n_genres))
        np.add.at(halves, (np.repeat(np.arange(len(starts)), counts), late.astype(int), g), 1.0)
        halves /= halves.sum(axis=2, keepdims=True)
        return float(0.5 * np.abs(halves[:, 0] - halves[:, 1]).sum(axis=1).mean())

    return {
        "stay_rate": stay(genres),
        "stay_rate_shuffled": stay(shuffled),
        "planted_stay": STAY,
        "drift_tv": drift(genres),
        "drift_tv_shuffled": drift(shuffled),
    }


def generator_reference(data: RecData, genres_of_items: np.ndarray) -> dict:
    """HR@10, NDCG@10 and MRR@10 on valid and test of a ranking that knows how the generator works, as a ceiling
    to read the models against: the next item's genre is the last history item's with probability STAY, otherwise
    another in proportion to the genres of the user's history window; within its genre an item counts by its train
    popularity. Ranked over the items the user has not interacted with, as the evaluator ranks; a tie counts half."""
    frame = data.dataset.interactions
    users, items, part = frame["user"].to_numpy(), frame["item"].to_numpy(), data.part
    n_genres = int(genres_of_items.max()) + 1
    genre = np.maximum(genres_of_items, 0)
    popularity = np.bincount(items[part == TRAIN], minlength=len(genre)).astype(float)
    popularity[0] = 0.0
    within = popularity / np.maximum(np.bincount(genre, weights=popularity, minlength=n_genres)[genre], 1e-12)
    starts = np.searchsorted(users, np.unique(users))
    out = {}
    for name, target, seen_parts in (("valid", VALID, (TRAIN,)), ("test", TEST, (TRAIN, VALID))):
        hits = {"hr@10": [], "ndcg@10": [], "mrr@10": []}
        for begin, end in zip(starts, np.r_[starts[1:], len(users)]):
            rows = np.arange(begin, end)
            targets = rows[part[rows] == target]
            seen = items[rows[np.isin(part[rows], seen_parts)]]
            if not targets.size or not seen.size:
                continue
            last = genre[seen[-1]]
            mix = np.bincount(genre[seen[-data.max_history :]], minlength=n_genres).astype(float)
            mix[last] = 0.0
            chance = (1.0 - STAY) * mix / max(mix.sum(), 1e-12)
            chance[last] = STAY
            score = chance[genre] * within
            candidates = np.ones(len(score), dtype=bool)
            candidates[[0, *seen]] = False
            wanted = score[items[targets[0]]]
            rank = (score[candidates] > wanted).sum() + 0.5 * ((score[candidates] == wanted).sum() - 1)
            hit = rank < 10
            hits["hr@10"].append(float(hit))
            hits["ndcg@10"].append(1.0 / np.log2(rank + 2.0) if hit else 0.0)
            hits["mrr@10"].append(1.0 / (rank + 1.0) if hit else 0.0)
        out[name] = {k: float(np.mean(v)) for k, v in hits.items()}
    return out


# ------------------------------------------------------------------ training
def train_command(run: str, data_dir: Path, out: Path) -> list[str]:
    model, flags = RUNS[run]
    return [
        sys.executable, "-m", "recmodels", "train", "--model", model, "--dataset", "synth", "--data-dir",
        str(data_dir), "--protocol", "next-item", "--out", str(out), "--quiet", *flags.split(),
    ]  # fmt: skip


def train(run: str, data_dir: Path, out: Path, log_dir: Path, log) -> float:
    """Train in a fresh process with one thread; the seconds it took."""
    command = train_command(run, data_dir, out)
    log(f"{run}: {' '.join(command[1:])}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    log_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with open(log_dir / f"{run}.log", "w") as handle:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise SystemExit(f"{run} failed (exit {done.returncode}); see {log_dir / f'{run}.log'}")
    return time.perf_counter() - began


def read_run(run: str, checkpoint: Path) -> dict:
    """What the table needs from a checkpoint's config.json."""
    model, flags = RUNS[run]
    config = json.loads((checkpoint / "config.json").read_text())
    training, history = config["training"], config.get("history", [])
    selection = config.get("selection")
    grid = selection and [
        {"settings": p["settings"], "valid_ndcg@10": p["valid"]["ndcg@10"]} for p in selection["grid"]
    ]
    return {
        "run": run,
        "model": model,
        "flags": flags,
        "hparams": config["hparams"],
        "training": {k: training[k] for k in ("lr", "batch_size", "epochs", "patience")},
        "split": config["dataset"]["split"],
        "fingerprint": config["dataset"]["fingerprint"],
        "best_epoch": training.get("best_epoch"),
        "epochs_run": max((entry["epoch"] for entry in history), default=0),
        "train_seconds": sum(entry.get("train_seconds") or 0.0 for entry in history),
        "valid_by_epoch": [entry["valid"].get("ndcg@10") for entry in history if entry.get("valid")],
        "grid": grid,
        "chosen": selection and selection["chosen"],
        "valid": {k: config["metrics"]["valid"][k] for k in METRICS},
        "test": {k: config["metrics"]["test"][k] for k in METRICS},
    }


# ------------------------------------------------------------------ the table
def settings_text(run: dict) -> str:
    hparams, lr = run["hparams"], run.get("training", {}).get("lr")
    if run["model"] == "ease":
        grid = ", ".join(f"{point['settings']['l2']:g}" for point in run["grid"] or [])
        return f"lambda {hparams['l2']:g} (grid {grid})"
    if run["model"] == "bpr":
        return f"dim {hparams['dim']}, lr {lr:g}, BPR loss, one sampled negative"
    if run["model"] == "sasrec":
        dropout = hparams["hidden_dropout"]
        return f"windows of {hparams['max_length']}, every position a target, CE, dropout {dropout}, lr {lr:g}"
    return (f"windows of {hparams['max_length'] - 1} + [mask], mask {hparams['mask_prob']}, "
            f"{hparams['last_only']:.0%} last-item windows, CE, lr {lr:g}")  # fmt: skip


def table(rows: list[dict]) -> str:
    """A markdown table of HEADER's columns: the words left-aligned, the figures right-aligned."""
    words = 4  # model, kind, settings, best epoch
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" if i < words else "---:" for i in range(len(HEADER))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(row[c] for c in HEADER) + " |" for row in rows])


def chosen_runs(runs: dict) -> dict:
    """Each model's run with the best valid NDCG@10 (the first of equals)."""
    chosen = {}
    for run in runs.values():
        best = chosen.get(run["model"])
        if best is None or run["valid"]["ndcg@10"] > best["valid"]["ndcg@10"]:
            chosen[run["model"]] = run
    return chosen


def markdown(results: dict) -> str:
    runs = chosen_runs(results["runs"])
    rows = []
    for model in (m for m in ("sasrec", "bert4rec", "ease", "bpr") if m in runs):
        run = runs[model]
        epochs = "closed form" if model == "ease" else f"{run['best_epoch']} of {run['epochs_run']}"
        rows.append(dict(zip(HEADER, [
            TITLES[model], "sequential" if model in SEQUENTIAL else "non-sequential", settings_text(run), epochs,
            f"{run['valid']['ndcg@10']:.4f}", *(f"{run['test'][k]:.4f}" for k in METRICS),
            f"{run['train_seconds'] / 60:.1f}",
        ])))  # fmt: skip
    reference = results.get("reference")
    if reference:  # not a model: a ranking that reads the generator's rule, the ceiling to read the rows against
        rows.append(dict(zip(HEADER, [
            "reference", "knows the generator", "the last item's genre with probability STAY, else the history's "
            "genre mix; train popularity within the genre", "", f"{reference['valid']['ndcg@10']:.4f}",
            *(f"{reference['test'][k]:.4f}" for k in METRICS), "",
        ])))  # fmt: skip
    data = results["data"]
    every = [
        f"`{name}` ({TITLES[run['model']]}{', chosen' if runs[run['model']] is run else ''}: `{run['flags']}`): "
        + ", ".join(f"{value:.4f}" for value in run["valid_by_epoch"] or [run["valid"]["ndcg@10"]])
        for name, run in results["runs"].items()
    ]
    lines = [
        table(rows),
        "",
        f"`python tools/sequential_synth.py` on `synth --preset {results['preset']} --seed {results['seed']}` "
        f"({results['summary']['users']:,} users, {results['summary']['items']:,} items, "
        f"{results['summary']['interactions']:,} interactions), next-item protocol (each user's last interaction is "
        "test, the one before it valid; the 50 most recent earlier interactions are the history; full ranking over "
        "the items the user has not interacted with); one CPU thread; each model's row is its run with the best "
        "valid NDCG@10, at its best epoch on valid. Every run, with its valid NDCG@10 after each epoch: "
        + "; ".join(every)
        + ". Planted structure, measured on the generated data: consecutive interactions of a user share "
        f"their primary genre {data['stay_rate']:.3f} of the time (the generator's STAY is {data['planted_stay']}; "
        f"{data['stay_rate_shuffled']:.3f} with each user's interactions shuffled in time), and a user's genre mix "
        f"moves by a total variation of {data['drift_tv']:.3f} from the first half of their timeline to the second "
        f"({data['drift_tv_shuffled']:.3f} shuffled).",
    ]
    best = max((m for m in runs if m not in SEQUENTIAL), key=lambda m: runs[m]["valid"]["ndcg@10"], default=None)
    if best and all(m in runs for m in SEQUENTIAL):
        bar = runs[best]["test"]["ndcg@10"]
        beaten = [TITLES[m] for m in SEQUENTIAL if runs[m]["test"]["ndcg@10"] > bar]
        verdict = "met" if len(beaten) == len(SEQUENTIAL) else "missed"
        lines += ["", f"Target (both transformers beat the best non-sequential model, {TITLES[best]} by valid "
                      f"NDCG@10, on test NDCG@10 {bar:.4f}): **{verdict}** "
                      f"({', '.join(beaten) or 'neither'} above it)."]  # fmt: skip
    return "\n".join(lines)


def merge_json(path: Path, update: dict) -> dict:
    results = json.loads(path.read_text()) if path.is_file() else {}
    runs = {**results.get("runs", {}), **update.pop("runs", {})}
    results = {**results, **update, "runs": dict(sorted(runs.items(), key=lambda item: list(RUNS).index(item[0])))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated, of " + ", ".join(RUNS))
    parser.add_argument("--preset", default="ml-1m", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=str(ROOT / "artifacts" / "sequential_synth"))
    parser.add_argument("--json", default=str(ROOT / "artifacts" / "sequential_synth.json"))
    parser.add_argument("--retrain", action="store_true", help="train again where a checkpoint is already there")
    parser.add_argument("--from-json", action="store_true", help="train nothing; report the JSON's results")
    parser.add_argument("--write-docs", metavar="PAGE", help="write the table between the page's markers")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; use {', '.join(RUNS)}")
    json_path, root = Path(args.json), Path(args.root)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.from_json:
        results = json.loads(json_path.read_text())
    else:
        folder = data_folder(root, args.preset, args.seed)
        data = RecData.load("synth", data_dir=folder, split=SplitConfig(mode="next_item"))
        users, genres, per_item = primary_genres(data)
        results = merge_json(json_path, {
            "preset": args.preset, "seed": args.seed, "summary": data.dataset.summary(),
            "data": planted_structure(users, genres), "reference": generator_reference(data, per_item),
        })  # fmt: skip
        log(f"planted structure: {json.dumps(results['data'])}")
        for name in names:
            checkpoint = root / "checkpoints" / name
            if args.retrain or not (checkpoint / "config.json").is_file():
                train(name, folder, checkpoint, root / "logs", log)
            results = merge_json(json_path, {"runs": {name: read_run(name, checkpoint)}})
    table = markdown(results)
    print(table)
    if args.write_docs:
        write_between_markers(Path(args.write_docs), START, END, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
