"""RecBole 1.2.0's SASRec and BERT4Rec on this project's ml-100k split, scored with this project's evaluator.

    python tools/recbole_compare.py                                   # both models, RecBole's early stopping
    python tools/recbole_compare.py --models SASRec --max-epochs 2    # a quick run
    python tools/recbole_compare.py --train-batch-size 256 --max-minutes 150   # what the docs' table ran
    python tools/recbole_compare.py --from-json --write-docs docs/sequential.md   # table from the last run's JSON
    python tools/recbole_compare.py --protocol next-item --max-minutes 25 --write-docs docs/sequential.md

What it does, for each model:

1. writes RecBole benchmark files from ``RecData.load("ml-100k")`` (per-user temporal 70/10/20, as every model
   here is trained; with ``--protocol next-item`` the next-item split, each user's last interaction test and the
   one before it valid: RecBole's ``LS`` ``valid_and_test`` split in time order ``TO``, written out so that both
   libraries rank the same targets after the same histories) as dataset ``ml-100k-split`` (RecBole always reads
   its bundled copy for "ml-100k"): ``.train.inter`` holds RecBole's own augmentation of our TRAIN part (every train
   interaction after a user's first, with the up to ``MAX_ITEM_LIST_LENGTH`` train items before it);
   ``.valid.inter`` / ``.test.inter`` hold one row per positive (rating >= 4; under next-item the one target,
   whatever its rating) of our VALID / TEST part with the history our evaluator gives (the most recent items
   strictly before the user's part). RecBole also reads the item ids of the ``.item`` file, so its item table covers
   the whole catalogue as ours does;
2. trains RecBole's model with its default hyperparameters (``properties/model/<Model>.yaml``), the CE loss,
   ``MAX_ITEM_LIST_LENGTH`` 50 (SASRec) or 51 (BERT4Rec: one position is its [mask], so both read 50 history items)
   and RecBole's own early stopping on NDCG@10 of that valid file (``stopping_step`` 10);
3. converts RecBole's best checkpoint with ``recmodels.checkpoint.recbole`` and scores it with
   ``recmodels.eval.evaluate.evaluate_topk`` on VALID and TEST (full ranking over unseen items). Nothing is chosen
   on test: RecBole's test file is written because its benchmark loader needs three parts, and is never evaluated.

The table sets this project's shipped SASRec / BERT4Rec (``checkpoints/*-ml100k/config.json`` metrics, or
``checkpoints/*-ml100k-next`` under next-item) beside the RecBole-trained ones. Results go to
``artifacts/recbole_comparison.json`` (``recbole_comparison_next_item.json``; merged per model, so the two models can
run in two processes) and, with ``--write-docs``, between the ``recbole-comparison`` (``recbole-next-item``) markers
of docs/sequential.md.

RecBole runs with the shims of ``tools/recbole_shims.py``. Torch uses one thread by default: on this 2-core
machine OpenMP's second thread waits far longer than it helps when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.resources
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recmodels.checkpoint.io import load_checkpoint
from recmodels.checkpoint.recbole import convert, prepare, read_recbole_checkpoint
from recmodels.data import TEST, TRAIN, VALID, RecData, SplitConfig
from recmodels.data.loaders import recbole_ml100k_folder
from recmodels.eval.evaluate import evaluate_topk
from recmodels.formatting import write_between_markers

START, END = "<!-- recbole-comparison:start -->", "<!-- recbole-comparison:end -->"
NEXT_START, NEXT_END = "<!-- recbole-next-item:start -->", "<!-- recbole-next-item:end -->"
MAX_LENGTH = {"SASRec": 50, "BERT4Rec": 51}
SHIPPED = {"SASRec": "sasrec-ml100k", "BERT4Rec": "bert4rec-ml100k"}


@dataclass(frozen=True)
class Protocol:
    """What one protocol changes: the split, our checkpoints it is compared with, where its results go."""

    split: SplitConfig
    shipped: dict
    markers: tuple[str, str]
    name: str  # artifacts/<name>.json and artifacts/<name>/ for RecBole's files
    described: str


PROTOCOLS = {
    "temporal": Protocol(
        SplitConfig(),
        SHIPPED,
        (START, END),
        "recbole_comparison",
        "this project's per-user temporal split of ml-100k",
    ),
    "next-item": Protocol(
        SplitConfig(mode="next_item"),
        {model: f"{folder}-next" for model, folder in SHIPPED.items()},
        (NEXT_START, NEXT_END),
        "recbole_comparison_next_item",
        "this project's next-item split of ml-100k (each user's last interaction is test and the one before it "
        "valid: RecBole's LS valid_and_test split in time order, given to RecBole as benchmark files so that both "
        "rank the same targets after the same histories)",
    ),
}
METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "hr@10", "mrr@10")
DATASET = "ml-100k"
# RecBole always reads its bundled copy for the name "ml-100k", so the benchmark folder goes by another name
RECBOLE_DATASET = "ml-100k-split"


# ---------------------------------------------------------------------------------------------- benchmark files
def _write(path: Path, rows: list[tuple[str, str, list[str]]], limit_rows: int | None = None) -> None:
    lines = ["user_id:token\titem_id:token\titem_id_list:token_seq"]
    lines += [f"{user}\t{item}\t{' '.join(history)}" for user, item, history in rows[:limit_rows]]
    path.write_text("\n".join(lines) + "\n")


def write_benchmark(folder: Path, data: RecData, max_length: int, limit_rows: int | None = None) -> dict:
    """RecBole's benchmark files for ``data``'s split, beside a copy of the wheel's ml-100k atomic files renamed
    ``RECBOLE_DATASET`` (RecBole reads the item ids of its ``.item`` file; ``python -m recmodels import-recbole``
    reads the whole folder); returns the row counts. ``limit_rows`` keeps the first rows of each file (tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    with importlib.resources.as_file(recbole_ml100k_folder()) as source:
        for suffix in ("inter", "user", "item"):
            shutil.copyfile(source / f"{DATASET}.{suffix}", folder / f"{RECBOLE_DATASET}.{suffix}")
    users, items = data.dataset.user_ids, data.dataset.item_ids
    frame, part = data.dataset.interactions, data.part
    train_rows = []
    train = frame[part == TRAIN]
    for user, group in train.groupby("user", sort=True):  # rows are in time order within a user
        sequence = [items[i] for i in group["item"].to_numpy()]
        for i in range(1, len(sequence)):  # RecBole's data_augmentation
            train_rows.append((users[user], sequence[i], sequence[max(0, i - max_length) : i]))
    _write(folder / f"{RECBOLE_DATASET}.train.inter", train_rows, limit_rows)
    counts = {"train": len(train_rows[:limit_rows])}
    # the evaluator's histories, as long as the model reads (BERT4Rec's RecBole inference drops the oldest one)
    windowed = RecData(data.dataset, data.split, max_history=max_length)
    for name, which in (("valid", VALID), ("test", TEST)):
        cases = windowed.topk_cases(which)
        rows = []
        for k, user in enumerate(cases.users):
            history = [items[i] for i in cases.history[k] if i != 0]
            for item in cases.positive_items[cases.positive_indptr[k] : cases.positive_indptr[k + 1]]:
                rows.append((users[user], items[item], history))
        _write(folder / f"{RECBOLE_DATASET}.{name}.inter", rows, limit_rows)
        counts[name] = len(rows[:limit_rows])
    return counts


# ---------------------------------------------------------------------------------------------- RecBole
def recbole_settings(model: str, max_epochs: int, batch_size: int, workdir: Path) -> dict:
    return {
        "data_path": str(workdir),
        "checkpoint_dir": str(workdir / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id", "item_id_list"], "item": ["item_id"]},
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": MAX_LENGTH[model],
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "epochs": max_epochs,
        "train_batch_size": batch_size,
        "stopping_step": 10,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Recall", "MRR", "Hit"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "use_gpu": False,
        "show_progress": False,
        "seed": 2020,
        "reproducibility": True,
    }


class _OutOfTime(Exception):
    """Raised after an epoch once --max-minutes is spent; RecBole's best checkpoint so far is kept."""


def train_recbole(model: str, settings: dict, workdir: Path, log, max_minutes: float | None = None) -> dict:
    """Train with RecBole; returns the saved checkpoint path, epochs, timings and why training stopped."""
    from tools import recbole_shims

    recbole_shims.install()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    argv, cwd = sys.argv, os.getcwd()
    sys.argv = sys.argv[:1]  # RecBole's Config parses --key=value from the command line
    os.chdir(workdir)  # its trainer writes log_tensorboard/ into the working directory
    try:
        config = Config(model=model, dataset=RECBOLE_DATASET, config_dict=settings)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train, valid, _ = data_preparation(config, dataset)
        net = get_model(config["model"])(config, train.dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
        history, started = [], time.time()

        def after_epoch(epoch, score):
            history.append(
                {
                    "epoch": epoch,
                    "valid_ndcg@10": float(score),
                    "train_loss": float(trainer.train_loss_dict.get(epoch, float("nan"))),
                    "seconds": round(time.time() - started, 1),
                }
            )
            log(f"{model} epoch {epoch}: RecBole valid NDCG@10 {score:.4f}, {history[-1]['seconds']:.0f} s")
            if max_minutes is not None and time.time() - started > 60 * max_minutes:
                raise _OutOfTime

        try:
            trainer.fit(train, valid, saved=True, show_progress=False, callback_fn=after_epoch)
            stopped = "max epochs" if len(history) == settings["epochs"] else "early stopping"
        except _OutOfTime:
            stopped = f"time budget ({max_minutes:g} min)"
        seconds = time.time() - started
    finally:
        sys.argv = argv
        os.chdir(cwd)
    return {
        "saved": trainer.saved_model_file,
        "epochs_run": len(history),
        "train_seconds": round(seconds, 1),
        "stopped_by": stopped,
        "recbole_best_valid_ndcg@10": float(trainer.best_valid_score),
        "history": history,
        "settings": {
            k: config[k]
            for k in (
                "n_layers",
                "n_heads",
                "hidden_size",
                "inner_size",
                "hidden_dropout_prob",
                "attn_dropout_prob",
                "hidden_act",
                "layer_norm_eps",
                "initializer_range",
                "loss_type",
                "learning_rate",
                "train_batch_size",
                "epochs",
                "stopping_step",
                "valid_metric",
                "MAX_ITEM_LIST_LENGTH",
                "mask_ratio",
                "seed",
            )
            if k in config
        },
    }


SETTING_KEYS = (
    "n_layers",
    "n_heads",
    "hidden_size",
    "inner_size",
    "hidden_dropout_prob",
    "attn_dropout_prob",
    "hidden_act",
    "layer_norm_eps",
    "initializer_range",
    "loss_type",
    "learning_rate",
    "train_batch_size",
    "epochs",
    "stopping_step",
    "valid_metric",
    "MAX_ITEM_LIST_LENGTH",
    "mask_ratio",
    "seed",
)


def score_saved(model: str, saved_file: Path, workdir: Path, data: RecData) -> tuple[dict, dict, object]:
    """Convert one RecBole checkpoint with this project's import and score it: (metrics, summary, checkpoint)."""
    saved = read_recbole_checkpoint(saved_file, trust_pickle=True)  # our own run's file
    out = workdir / "converted"
    summary = convert(prepare(saved, workdir / RECBOLE_DATASET, saved_file), data, out)
    converted, _ = load_checkpoint(out, data=data)
    return (
        {"valid": evaluate_topk(converted, data, VALID), "test": evaluate_topk(converted, data, TEST)},
        summary,
        saved,
    )


def interrupted_run(model: str, data: RecData, args, log) -> dict:
    """--from-saved: the best checkpoint an unfinished RecBole run has saved so far (its epochs come from the log
    line count the run printed, when ``--log`` is given)."""
    workdir = Path(args.workdir).resolve() / model
    saved_file = max((workdir / "saved").glob("*.pth"), key=lambda p: p.stat().st_mtime)
    metrics, summary, saved = score_saved(model, saved_file, workdir, data)
    epochs = None
    if args.log:
        epochs = sum(1 for line in Path(args.log).read_text().splitlines() if f"] {model} epoch " in line)
    log(
        f"{model}: saved best epoch {saved.epoch}, ours-evaluated valid NDCG@10 {metrics['valid']['ndcg@10']:.4f}, "
        f"test NDCG@10 {metrics['test']['ndcg@10']:.4f}"
    )
    return {
        "saved": str(saved_file),
        "epochs_run": epochs,
        "train_seconds": None,
        "best_epoch": saved.epoch,
        "stopped_by": "hand at the end of the time budget of the session that ran it",
        "settings": {k: saved.config[k] for k in SETTING_KEYS if k in saved.config},
        "converted": str(workdir / "converted"),
        "recbole_items": summary["recbole_items"],
        "metrics": metrics,
    }


def run_model(model: str, data: RecData, args, log) -> dict:
    workdir = Path(args.workdir).resolve() / model
    counts = write_benchmark(workdir / RECBOLE_DATASET, data, MAX_LENGTH[model], args.limit_rows)
    log(f"{model}: benchmark rows {counts}")
    result = train_recbole(
        model, recbole_settings(model, args.max_epochs, args.train_batch_size, workdir), workdir, log, args.max_minutes
    )
    metrics, summary, saved = score_saved(model, Path(result["saved"]), workdir, data)
    log(
        f"{model}: best epoch {saved.epoch}, ours-evaluated valid NDCG@10 {metrics['valid']['ndcg@10']:.4f}, "
        f"test NDCG@10 {metrics['test']['ndcg@10']:.4f}"
    )
    return {
        **result,
        "best_epoch": saved.epoch,
        "rows": counts,
        "converted": str(workdir / "converted"),
        "recbole_items": summary["recbole_items"],
        "metrics": metrics,
    }


# ---------------------------------------------------------------------------------------------- reporting
def shipped_rows(root: Path, shipped: dict = SHIPPED) -> list[dict]:
    rows = []
    for model, folder in shipped.items():
        path = root / folder / "config.json"
        if path.is_file():
            config = json.loads(path.read_text())
            metrics, history = config.get("metrics", {}), config.get("history") or [{}]
            best, ran = config.get("training", {}).get("best_epoch"), history[-1].get("epoch")  # epoch 0: untrained
            rows.append(
                {
                    "model": model,
                    "trained by": f"recmodels (`{folder}`)",
                    "epochs": f"{best} of {ran}" if ran else best,
                    "minutes": None,
                    "valid": metrics.get("valid", {}),
                    "test": metrics.get("test", {}),
                }
            )
    return rows


def recbole_rows(results: dict) -> list[dict]:
    return [
        {
            "model": model,
            "trained by": "RecBole 1.2.0",
            "epochs": f"{r['best_epoch'] + 1} of {r['epochs_run'] if r['epochs_run'] is not None else '?'}",
            "minutes": r["train_seconds"] / 60 if r.get("train_seconds") is not None else None,
            "valid": r["metrics"]["valid"],
            "test": r["metrics"]["test"],
        }
        for model, r in results.get("runs", {}).items()
    ]


def markdown(results: dict, root: Path, protocol: str = "temporal") -> str:
    rows = sorted(
        shipped_rows(root, PROTOCOLS[protocol].shipped) + recbole_rows(results),
        key=lambda r: (r["model"] != "SASRec", r["trained by"].startswith("RecBole")),
    )  # ours first
    head = (
        "| model | trained by | best epoch | train min | valid NDCG@10 | test NDCG@10 | test NDCG@20 | "
        "test Recall@20 | test HR@10 | test MRR@10 |\n|---|---|---|---|---|---|---|---|---|---|"
    )

    def number(value, digits=4):
        return "" if value is None else f"{value:.{digits}f}"

    lines = [head] + [
        f"| {r['model']} | {r['trained by']} | {r['epochs'] if r['epochs'] is not None else ''} | "
        f"{number(r['minutes'], 0)} | {number(r['valid'].get('ndcg@10'))} | "
        f"{number(r['test'].get('ndcg@10'))} | {number(r['test'].get('ndcg@20'))} | "
        f"{number(r['test'].get('recall@20'))} | {number(r['test'].get('hr@10'))} | "
        f"{number(r['test'].get('mrr@10'))} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n\n" + settings_note(results, protocol)


def write_docs(page: Path, table: str, protocol: str = "temporal") -> None:
    write_between_markers(page, *PROTOCOLS[protocol].markers, table)


def merge_json(path: Path, update: dict) -> dict:
    """Merge ``update`` into the JSON at ``path`` under a lock: two processes may each run one model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        runs = {**results.get("runs", {}), **update.pop("runs", {})}
        results.update(update)
        results["runs"] = runs
        path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MAX_LENGTH), default=list(MAX_LENGTH))
    parser.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        default="temporal",
        help="temporal: the per-user split every table here uses; next-item: leave one out (RecBole's LS)",
    )
    parser.add_argument(
        "--max-epochs",
        "--epochs",
        dest="max_epochs",
        type=int,
        default=300,
        help="RecBole's epochs setting, the cap on early stopping (RecBole's default 300)",
    )
    parser.add_argument("--train-batch-size", type=int, default=2048, help="RecBole's train_batch_size")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop training after the epoch that passes this budget, keeping RecBole's best checkpoint",
    )
    parser.add_argument(
        "--limit-rows",
        type=int,
        default=None,
        help="write only the first N rows of each benchmark file: a smoke test, not a result",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workdir", help="RecBole's files (default artifacts/recbole_compare[_next_item])")
    parser.add_argument("--json", help="the results (default artifacts/recbole_comparison[_next_item].json)")
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"), help="where the shipped models are")
    parser.add_argument("--from-json", action="store_true", help="train nothing; report the JSON's results")
    parser.add_argument(
        "--from-saved",
        action="store_true",
        help="train nothing; score the best checkpoint each unfinished run under --workdir has saved",
    )
    parser.add_argument("--log", help="with --from-saved: the interrupted run's log, to count its epochs")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="replace the text between the recbole-comparison (recbole-next-item) markers of PAGE (docs/sequential.md)",
    )
    args = parser.parse_args(argv)
    protocol = PROTOCOLS[args.protocol]
    if args.workdir is None:
        args.workdir = str(ROOT / "artifacts" / protocol.name.replace("comparison", "compare"))
    if args.json is None:
        args.json = str(ROOT / "artifacts" / f"{protocol.name}.json")

    import torch

    torch.set_num_threads(args.threads)
    json_path = Path(args.json)

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    if args.from_json and not json_path.is_file():  # no run yet: our rows alone, and the note says so
        log(f"no RecBole run recorded in {json_path}")
        results = {"protocol": args.protocol, "runs": {}}
    elif args.from_json:
        results = json.loads(json_path.read_text())
    else:
        data = RecData.load(DATASET, split=protocol.split)
        for model in args.models:
            run = interrupted_run(model, data, args, log) if args.from_saved else run_model(model, data, args, log)
            results = merge_json(
                json_path,
                {
                    "dataset": DATASET,
                    "protocol": args.protocol,
                    "split": data.split.to_dict(),
                    "fingerprint": data.fingerprint,
                    "evaluator": "recmodels.eval.evaluate.evaluate_topk (full ranking over unseen items)",
                    "runs": {model: run},
                },
            )
    if results.get("protocol", "temporal") != args.protocol:
        raise SystemExit(
            f"{json_path} holds the {results.get('protocol', 'temporal')} protocol's runs, not {args.protocol}"
        )
    table = markdown(results, Path(args.checkpoints), args.protocol)
    print(table)
    if args.write_docs:
        write_docs(Path(args.write_docs), table, args.protocol)
        print(f"wrote the comparison into {args.write_docs}")
    return 0


def settings_note(results: dict, protocol: str = "temporal") -> str:
    def ran(r):
        epochs = f"{r['epochs_run']} epochs" if r.get("epochs_run") is not None else "epochs unknown"
        return epochs + (f" in {r['train_seconds'] / 60:.0f} min" if r.get("train_seconds") is not None else "")

    runs = "; ".join(
        f"{model}: train_batch_size {r['settings'].get('train_batch_size')}, {ran(r)}, stopped by "
        f"{r.get('stopped_by', 'early stopping')}"
        for model, r in results.get("runs", {}).items()
    )
    missing = [model for model in MAX_LENGTH if model not in results.get("runs", {})]
    not_run = f" No RecBole {' or '.join(missing)} run is recorded yet." if missing else ""
    return (
        f"RecBole 1.2.0 trained on {PROTOCOLS[protocol].described} (train = our train part; "
        "RecBole's early stopping on NDCG@10 of our valid part, stopping_step 10) with its default SASRec / "
        "BERT4Rec hyperparameters, CE loss and MAX_ITEM_LIST_LENGTH 50 / 51 (50 history items each); its best "
        "checkpoint is converted with this project's RecBole import and scored with this project's evaluator "
        f"(full ranking over unseen items){' (' + runs + ')' if runs else ''}. Shipped rows: recorded metrics of "
        f"{' and '.join(f'`checkpoints/{folder}`' for folder in PROTOCOLS[protocol].shipped.values())}. Produced by "
        f"`python tools/recbole_compare.py{'' if protocol == 'temporal' else ' --protocol ' + protocol}`.{not_run}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
