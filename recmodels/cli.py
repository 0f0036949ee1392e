"""``python -m recmodels train | evaluate | results | list`` (and ``bench`` once explanations exist)."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .errors import InvalidArgumentError, RecModelsError, quote


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_settings(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower()) or "data"


def default_out(model: str, dataset: str) -> Path:
    return Path("checkpoints") / f"{model}-{_slug(dataset)}"


def import_model_modules(args) -> None:
    """``--model-module``: import the modules the user named, registering the models they define."""
    from .models import import_model_module

    for spec in args.model_module or []:
        import_model_module(spec)


def split_settings(names: list[str], settings: dict, flag: str = "--set") -> dict[str, tuple[dict, dict]]:
    """{model: (hyperparameters, training settings)} from ``--set``: a key is a model's hyperparameter when its
    config class has that field, else a training setting. A key that is neither is refused; with several models,
    a hyperparameter goes to those that have it."""
    from dataclasses import fields

    from .models import model_info
    from .train import TrainConfig

    training = [f.name for f in fields(TrainConfig)]
    declared = {name: [f.name for f in fields(model_info(name).config_class)] for name in names}
    for key in settings:
        if key not in training and not any(key in keys for keys in declared.values()):
            takes = "; ".join(f"{name} takes {', '.join(keys)}" for name, keys in declared.items() if keys)
            raise InvalidArgumentError(f"{flag} {quote(key)} is neither a training setting ({', '.join(training)}) "
                                       f"nor a hyperparameter of {', '.join(names)}{'; ' + takes if takes else ''}.")
    return {name: ({k: v for k, v in settings.items() if k in keys},
                   {k: v for k, v in settings.items() if k not in keys and k in training})
            for name, keys in declared.items()}


def cmd_train(args) -> int:
    import torch.distributed as dist

    from .checkpoint import save_checkpoint
    from .data import TEST, VALID, RecData, SplitConfig
    from .eval import evaluate
    from .models import model_info, registered_models
    from .models.config import check_values
    from .report import text_table
    from .train import TrainConfig
    from .train.selection import grid_points, parse_grid, train_on_grid
    from .train.trainer import distributed_context
    from .checkpoint import record_in_config
    from .vision.region_report import recovery_if_planted

    import_model_modules(args)
    if args.model == "all" and args.out:
        raise SystemExit("--out names one folder; leave it out with --model all (each goes to checkpoints/).")
    names = registered_models() if args.model == "all" else [model_info(args.model).name]
    # every setting of every grid point is checked before the data is read: a typo costs no loading time
    settings, grid = _parse_settings(args.set), parse_grid(args.grid, _parse_value)
    if clash := sorted(set(settings) & set(grid)) + [k for k in grid if k == "monitor"]:
        raise InvalidArgumentError(f"{quote(clash[0])} cannot be in --grid (with --set, or as the metric that "
                                   "selects); give it once with --set.")
    split_settings(names, {key: values[0] for key, values in grid.items()}, "--grid")  # each key fits some model
    plans: dict = {name: (model_info(name), {}) for name in names}
    for point in grid_points(grid):
        for name, (hparams, training) in split_settings(names, {**settings, **point}).items():
            info = model_info(name)
            # a closed form (MostPopular, EASE) is solved from the data: --epochs is for the models that learn
            epochs = 0 if info.cls.default_training.get("epochs") == 0 else args.epochs
            config = TrainConfig.for_model(info.cls, **{"epochs": epochs, "seed": args.seed,
                                                        "max_steps": args.max_steps, **training})
            check_values(info.config_class, hparams, f"model {name!r}")  # names and types, before the data loads
            chosen = {k: v for k, v in point.items() if k in hparams or k in training}  # this model's grid keys
            plans[name][1].setdefault(json.dumps(chosen, sort_keys=True), (chosen, hparams, config))
    rank, world = distributed_context(args.device)
    data = RecData.load(args.dataset, args.data_dir, image_dir=args.image_dir,
                        split=SplitConfig(args.valid_fraction, args.test_fraction, args.split),
                        max_history=args.max_history)
    if rank == 0:
        print(f"dataset {data.dataset.name}: {data.summary()}")
        if data.dataset.citation:
            print(f"data: {data.dataset.citation}")
    rows = []
    for name, (info, candidates) in plans.items():
        result, config, selection = train_on_grid(info.cls, list(candidates.values()), data, args.device,
                                                  progress=not args.quiet, log=print if rank == 0 else None)
        if rank != 0:
            continue
        cap = args.eval_users
        valid = (result.best_valid if "auc" in result.best_valid and cap is None  # valid_ctr off, or capped
                 else evaluate(result.model, data, VALID, max_users=cap))
        metrics = {"valid": valid, "test": evaluate(result.model, data, TEST, max_users=cap)}
        out = Path(args.out) if args.out else default_out(name, data.dataset.name)
        extra = {"collapse_example": args.collapse_example} if args.collapse_example else {}
        if cap is not None:  # the metrics cover a part of the users: say so wherever they are read
            extra["evaluated_users"] = cap
        if grid:
            extra["selection"] = selection
        save_checkpoint(out, result.model, data, training={**config.to_dict(), "best_epoch": result.best_epoch,
                                                            "device": str(result.model.device), "world_size": world},
                        metrics=metrics, history=result.history, extra=extra or None)
        print(f"saved {out}")
        # after saving: the trained model is kept whatever happens to this longer measurement
        if (recovery := recovery_if_planted(result.model, data, progress=not args.quiet)) is not None:
            record_in_config(out, "recovery", recovery)
            print(f"recorded planted-cell recovery in {out / 'config.json'}")
        rows.append({"model": name, **metrics["test"]})
    if rank == 0 and rows:
        print(text_table(rows, ["model", "ndcg@10", "ndcg@20", "recall@10", "recall@20", "hr@10", "mrr@10", "auc",
                                "gauc", "logloss"]))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import dataset_location, load_checkpoint, read_config
    from .data import PART_NAMES, RecData
    from .device import resolve_device
    from .eval import evaluate
    from .report import text_table

    import_model_modules(args)
    config = read_config(args.checkpoint)
    dataset = config["dataset"]
    data_dir, image_dir = dataset_location(config, args.checkpoint)
    data = RecData.load(dataset["name"], args.data_dir or data_dir, image_dir=args.image_dir or image_dir,
                        split=dataset["split"], max_history=dataset["max_history"])
    model, _ = load_checkpoint(args.checkpoint, device=resolve_device(args.device), data=data)
    part = PART_NAMES[args.part]
    metrics = evaluate(model, data, part, progress=not args.quiet)
    print(f"{config['model']} on {dataset['name']} ({args.part}, {len(data.topk_cases(part))} ranked users, "
          f"full ranking over unseen items)")
    if data.split.mode != "per_user":
        print(f"{data.users_without_train()} users have no train interaction before the {data.split.mode} cut and "
              "are not evaluated")
    if data.dataset.citation:
        print(f"data: {data.dataset.citation}")
    recorded = config.get("metrics", {}).get(args.part, {})
    columns = ["ndcg@10", "ndcg@20", "recall@10", "recall@20", "hr@10", "mrr@10", "auc", "gauc", "logloss"]
    rows = [{"": "measured", **metrics}]
    if recorded:
        rows.append({"": "recorded", **recorded})
    print(text_table(rows, [""] + columns))
    return 0


def cmd_list(args) -> int:
    from .checkpoint import read_config

    folders = sorted(p for p in Path(args.root).iterdir() if (p / "config.json").is_file()) \
        if Path(args.root).is_dir() else []
    if not folders:
        print(f"no checkpoints under {args.root}; train one with `python -m recmodels train --model bpr`")
        return 0
    for folder in folders:
        try:
            config = read_config(folder)
        except RecModelsError as err:
            print(f"{folder}: unreadable ({err})")
            continue
        test = config.get("metrics", {}).get("test", {})
        print(f"{folder}: {config['model']} on {config['dataset']['name']}, test NDCG@10 "
              f"{test.get('ndcg@10', float('nan')):.4f}")
    return 0


def cmd_bench(args) -> int:
    from .bench import bench_command

    import_model_modules(args)
    return bench_command(args)


def cmd_import_recbole(args) -> int:
    from .recbole_import import import_recbole

    summary = import_recbole(args.saved, args.out, data_dir=args.data_dir, dataset=args.dataset,
                             trust_pickle=args.trust_pickle)
    print(f"converted RecBole {summary['model']} (epoch {summary['epoch']}, {summary['items']} items) into {args.out}"
          + (f"; {summary['dropped_item_file_only']} items only in RecBole's .item file were left out"
             if summary["dropped_item_file_only"] else ""))
    return 0


RESULTS_START = "<!-- results:start (python -m recmodels results --write-readme README.md) -->"
RESULTS_END = "<!-- results:end -->"


def results_markdown(root: Path) -> str:
    """One table per dataset and split mode (per-user first, then global) from the shipped checkpoints' recorded
    test metrics (measured when trained; tests/test_checkpoints.py re-measures them)."""
    from .checkpoint import read_config
    from .models import model_info
    from .report import markdown_table

    by_dataset: dict[tuple[str, str], list[dict]] = {}  # (dataset, split mode): rows
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        config = read_config(folder)  # checks that the model is registered
        info = model_info(config["model"])
        test = dict(config.get("metrics", {}).get("test", {}))
        if not info.predicts_probability:
            test["logloss"] = None  # scores that are not probabilities have no meaningful LogLoss
        name = info.title + (" (collapse example)" if config.get("collapse_example") else "")
        mode = config["dataset"]["split"].get("mode", "per_user")
        by_dataset.setdefault((config["dataset"]["name"], mode), []).append(
            {"model": name, "checkpoint": f"`{folder.name}`", **test,
             "order": (info.order, bool(config.get("collapse_example")))})
    blocks = []
    datasets = list(dict.fromkeys(dataset for dataset, _ in by_dataset))
    for (dataset, mode), rows in sorted(by_dataset.items(), key=lambda kv: (datasets.index(kv[0][0]),
                                                                              kv[0][1] != "per_user")):
        rows.sort(key=lambda r: r["order"])
        where = "test part" if mode == "per_user" else f"test part, {mode} time split"
        blocks.append(f"**{dataset}** ({where})\n\n" + markdown_table(
            rows, ["model", "checkpoint", "ndcg@10", "recall@20", "hr@10", "auc", "gauc", "logloss"]))
    return "\n\n".join(blocks)


def cmd_results(args) -> int:
    table = results_markdown(Path(args.root))
    if not args.write_readme:
        print(table)
        return 0
    from .report import write_between_markers

    write_between_markers(Path(args.write_readme), RESULTS_START, RESULTS_END, table)
    print(f"wrote the results table into {args.write_readme}")
    return 0


def int_argument(low: int, high: int | None = None, what: str = "a whole number", bounds: str | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``), refused with ``bounds`` or the range in words."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            words = bounds or (f"must be from {low} to {high}" if high is not None else f"must be at least {low}")
            raise argparse.ArgumentTypeError(f"{words}, got {value}")
        return value
    return parse


def history_length(text: str) -> int:
    """--max-history: refused here, as loading the checkpoint would refuse it later."""
    from .checkpoint import MAX_HISTORY

    return int_argument(1, MAX_HISTORY)(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recmodels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (or all) and write a checkpoint folder")
    train.add_argument("--model", required=True, help="a registered model name, or 'all'")
    train.add_argument("--model-module", action="append", metavar="MODULE",
                       help="import a model from a module (my_pkg.my_model) or a .py file first; repeatable")
    train.add_argument("--dataset", default="ml-100k", help="ml-100k, fashion, or a label for --data-dir")
    train.add_argument("--data-dir", default=None, help="GroupLens ml-100k/ml-1m or RecBole atomic folder")
    train.add_argument("--image-dir", default=None, help="folder of <item_id>.jpg|png item images")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--epochs", type=int, default=None,
                       help="passes over the training rows (closed forms such as MostPopular and EASE take none)")
    train.add_argument("--max-steps", type=int, default=None, help="optimiser steps per epoch at most (throughput)")
    train.add_argument("--eval-users", type=int_argument(1), default=None,
                       help="final valid/test metrics over each part's first N users only (recorded as such)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="checkpoint folder (default checkpoints/<model>-<dataset>)")
    train.add_argument("--max-history", type=history_length, default=50,
                       help="the most recent interactions a model sees (1 to 10000)")
    train.add_argument("--valid-fraction", type=float, default=0.1)
    train.add_argument("--test-fraction", type=float, default=0.2)
    train.add_argument("--split", choices=["per_user", "global"], default="per_user",
                       help="per_user: the fractions of each user's timeline; global: one time cut for valid and one "
                            "for test over all interactions (users with no train interaction are not evaluated)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a training setting (lr, loss, negatives, weight_decay, ...) or model hyperparameter")
    train.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                       help="train every combination of these values (any --set key; repeatable), keep the best on "
                            "valid by the monitor metric, and record every point in config.json")
    train.add_argument("--collapse-example", metavar="WHY", default=None,
                       help="mark the checkpoint as a deliberately collapsed example, saying how it was made")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="print the metrics table of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("--part", choices=["test", "valid"], default="test")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--image-dir", default=None)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--quiet", action="store_true")
    ev.add_argument("--model-module", action="append", metavar="MODULE",
                    help="the module (or .py file) of a plugin model the checkpoint names")
    ev.set_defaults(func=cmd_evaluate)

    bench = sub.add_parser("bench", help="print latency tables per model, scale and device")
    bench.add_argument("--checkpoints", nargs="*", help="checkpoint folders (default: the ml-100k ones)")
    bench.add_argument("--device", default="all", help="all (CPU, and CUDA when present), cpu or cuda")
    bench.add_argument("--repeats", type=int, default=20)
    bench.add_argument("--scales", default="ml-100k,ml-1m")
    bench.add_argument("--no-naive", action="store_true", help="skip the one-candidate-at-a-time loop")
    bench.add_argument("--concurrency", metavar="N,N,...", help="instead: N concurrent clients of one service each")
    bench.add_argument("--seconds", type=float, default=10.0, help="with --concurrency: seconds per client count")
    bench.add_argument("--workers", type=int, default=None, help="with --concurrency: requests computing at once")
    bench.add_argument("--torch-threads", type=int, default=None, help="with --concurrency: intra-op threads")
    bench.add_argument("--model-module", action="append", metavar="MODULE",
                       help="the module (or .py file) of a plugin model a checkpoint names")
    bench.set_defaults(func=cmd_bench)

    from .data import synth
    synth.add_arguments(sub.add_parser("synth", help="write a synthetic RecBole atomic dataset shaped like MovieLens "
                                       "(ml-20m by default; --preset ml-1m or tiny)")).set_defaults(func=synth.run)

    results = sub.add_parser("results", help="the README's results table, from the shipped checkpoints")
    results.add_argument("--root", default="checkpoints")
    results.add_argument("--write-readme", metavar="README", help="replace the table between the markers in README")
    results.set_defaults(func=cmd_results)

    from . import cli_recovery
    cli_recovery.add_arguments(sub.add_parser("recovery", help="planted-cell recovery of region-attention "
                               "checkpoints (fashion)")).set_defaults(func=cli_recovery.run)

    from . import cli_diagnostics
    cli_diagnostics.add_arguments(sub.add_parser("diagnostics", help="collapse statistics with bootstrap intervals, "
                                  "over a seeded sample of users or --all")).set_defaults(func=cli_diagnostics.run)

    rb = sub.add_parser("import-recbole", help="convert a SASRec or BERT4Rec saved by RecBole 1.2.0 to a checkpoint")
    rb.add_argument("saved", metavar="SAVED.pth", help="the file RecBole saved under saved/")
    rb.add_argument("--data-dir", default=None, help="the folder of atomic files RecBole read (default for ml-100k: "
                                                     "the copy in the recbole wheel)")
    rb.add_argument("--dataset", default=None, help="the dataset name (default: the one RecBole saved)")
    rb.add_argument("--out", required=True, help="the checkpoint folder to write")
    rb.add_argument("--trust-pickle", action="store_true",
                    help="open SAVED.pth although it is a pickle, which can run code: only for files you trust")
    rb.set_defaults(func=cmd_import_recbole)

    ls = sub.add_parser("list", help="list the checkpoints in a folder")
    ls.add_argument("root", nargs="?", default="checkpoints")
    ls.set_defaults(func=cmd_list)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (RecModelsError, ValueError) as err:  # every error a user can cause: one line, no traceback
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The message on one line (a quoted value or a wrapped library message may carry newlines)."""
    return " ".join(str(err).split()) or err.__class__.__name__
