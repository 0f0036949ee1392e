"""``python -m recmodels train``: train a model (or every model) on a dataset and write a checkpoint folder; with
``--grid``, every combination of settings, the best on valid kept."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from recmodels.cli.arguments import (
    add_model_module,
    history_length,
    import_model_modules,
    int_argument,
    parse_settings,
    parse_value,
)
from recmodels.errors import InvalidArgumentError, RecModelsError, quote

HELP = "train a model (or all) and write a checkpoint folder"
PROTOCOLS = ("temporal", "next-item")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, help="a registered model name, or 'all'")
    add_model_module(parser, "import a model from a module (my_pkg.my_model) or a .py file first; repeatable")
    parser.add_argument("--dataset", default="ml-100k", help="ml-100k, fashion, or a label for --data-dir")
    parser.add_argument("--data-dir", default=None, help="GroupLens ml-100k/ml-1m or RecBole atomic folder")
    parser.add_argument("--image-dir", default=None, help="folder of <item_id>.jpg|png item images")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the training rows (closed forms such as MostPopular and EASE take none)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per epoch at most (throughput)")
    parser.add_argument(
        "--eval-users",
        type=int_argument(1),
        default=None,
        help="final valid/test metrics over each part's first N users only (recorded as such)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="checkpoint folder (default checkpoints/<model>-<dataset>)")
    parser.add_argument(
        "--max-history", type=history_length, default=50, help="the most recent interactions a model sees (1 to 10000)"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="temporal",
        help="temporal: the split below (the default); next-item: leave one out, each user's last interaction is "
        "test and the one before it valid, every interaction a positive whatever its rating (users with fewer "
        "than 3 interactions are trained on, not evaluated); recorded in the checkpoint as its split",
    )
    parser.add_argument("--valid-fraction", type=float, default=None, help="default 0.1 (temporal protocol only)")
    parser.add_argument("--test-fraction", type=float, default=None, help="default 0.2 (temporal protocol only)")
    parser.add_argument(
        "--split",
        choices=["per_user", "global"],
        default="per_user",
        help="per_user: the fractions of each user's timeline; global: one time cut for valid and one "
        "for test over all interactions (users with no train interaction are not evaluated)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a training setting (lr, loss, negatives, weight_decay, ...) or model hyperparameter",
    )
    parser.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        help="train every combination of these values (any --set key; repeatable), keep the best on "
        "valid by the monitor metric, and record every point in config.json",
    )
    parser.add_argument(
        "--collapse-example",
        metavar="WHY",
        default=None,
        help="mark the checkpoint as a deliberately collapsed example, saying how it was made",
    )
    parser.add_argument(
        "--log-dir",
        metavar="DIR",
        default=None,
        help="a run folder for each epoch's record (history.jsonl, which the Collapse page follows while training "
        "runs) and TensorBoard's scalars; one folder per model with --model all",
    )
    parser.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        default=None,
        help="warm start: copy the parameters the new model shares by name and shape with this checkpoint, "
        "trained on the same data (e.g. VECF's user and item embeddings and item bias from a BPR-MF checkpoint "
        "of the same dim); recorded in config.json, not needed to load the result",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower()) or "data"


def default_out(model: str, dataset: str) -> Path:
    return Path("checkpoints") / f"{model}-{slug(dataset)}"


def split_config(args: argparse.Namespace):
    """The SplitConfig that ``--protocol``, ``--split`` and the fractions name; the next-item protocol takes no
    fractions and no other split, and says so in one sentence rather than ignoring them."""
    from recmodels.data import SplitConfig

    if args.protocol == "next-item":
        given = [
            flag
            for flag, value in (("--valid-fraction", args.valid_fraction), ("--test-fraction", args.test_fraction))
            if value is not None
        ]
        if args.split != "per_user":
            given.append(f"--split {args.split}")
        if given:
            raise InvalidArgumentError(
                f"--protocol next-item takes one interaction per user for valid and for test, so it takes no "
                f"{' or '.join(given)}; leave {'them' if len(given) > 1 else 'it'} out, or use --protocol temporal."
            )
        return SplitConfig(mode="next_item")
    valid = 0.1 if args.valid_fraction is None else args.valid_fraction
    test = 0.2 if args.test_fraction is None else args.test_fraction
    return SplitConfig(valid, test, args.split)


def split_settings(names: list[str], settings: dict, flag: str = "--set") -> dict[str, tuple[dict, dict]]:
    """{model: (hyperparameters, training settings)} from ``--set``: a key is a model's hyperparameter when its
    config class has that field, else a training setting. A key that is neither is refused; with several models,
    a hyperparameter goes to those that have it."""
    from dataclasses import fields

    from recmodels.models import model_info
    from recmodels.train import TrainConfig

    training = [f.name for f in fields(TrainConfig)]
    declared = {name: [f.name for f in fields(model_info(name).config_class)] for name in names}
    for key in settings:
        if key not in training and not any(key in keys for keys in declared.values()):
            takes = "; ".join(f"{name} takes {', '.join(keys)}" for name, keys in declared.items() if keys)
            raise InvalidArgumentError(
                f"{flag} {quote(key)} is neither a training setting ({', '.join(training)}) "
                f"nor a hyperparameter of {', '.join(names)}{'; ' + takes if takes else ''}."
            )
    return {
        name: (
            {k: v for k, v in settings.items() if k in keys},
            {k: v for k, v in settings.items() if k not in keys and k in training},
        )
        for name, keys in declared.items()
    }


def failed_run(err: Exception, saved: list[Path], log_dir, removed: list[Path]) -> Exception:
    """The error of a run that failed after training began, with what it left said in the same sentence."""
    left = (
        f"the checkpoints saved before it are kept ({', '.join(map(str, saved))})"
        if saved
        else "no checkpoint was written"
    )
    if removed:
        left += f", and the {len(removed)} record file(s) it wrote in {quote(str(log_dir), 200)} were removed"
    # the same class and fields (epoch and step, a file's path), one sentence longer; not through __init__, whose
    # arguments differ between classes
    told = type(err).__new__(type(err))
    told.__dict__.update(err.__dict__)
    told.args = (f"{str(err).rstrip().rstrip('.')}; {left}.",)
    return told


def plan(args: argparse.Namespace, names: list[str]) -> tuple[dict, dict]:
    """({model: (its info, {grid point key: (grid settings, hyperparameters, TrainConfig)})}, the grid): every
    setting of every grid point checked by name, type and range before the data is read, so a typo costs no loading
    time."""
    from recmodels.models import model_info
    from recmodels.models.config import check_values
    from recmodels.train import TrainConfig
    from recmodels.train.selection import grid_points, parse_grid

    settings, grid = parse_settings(args.set), parse_grid(args.grid, parse_value)
    if clash := sorted(set(settings) & set(grid)) + [k for k in grid if k == "monitor"]:
        raise InvalidArgumentError(
            f"{quote(clash[0])} cannot be in --grid (with --set, or as the metric that "
            "selects); give it once with --set."
        )
    split_settings(names, {key: values[0] for key, values in grid.items()}, "--grid")  # each key fits some model
    plans: dict = {name: (model_info(name), {}) for name in names}
    for point in grid_points(grid):
        for name, (hparams, training) in split_settings(names, {**settings, **point}).items():
            info = model_info(name)
            # a closed form (MostPopular, EASE) is solved from the data: --epochs is for the models that learn
            epochs = 0 if info.cls.default_training.get("epochs") == 0 else args.epochs
            config = TrainConfig.for_model(
                info.cls, **{"epochs": epochs, "seed": args.seed, "max_steps": args.max_steps, **training}
            )
            check_values(info.config_class, hparams, f"model {name!r}")  # names, types and ranges
            chosen = {k: v for k, v in point.items() if k in hparams or k in training}  # this model's grid keys
            plans[name][1].setdefault(json.dumps(chosen, sort_keys=True), (chosen, hparams, config))
    return plans, grid


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from recmodels.cli.output import WrittenSince, check_output_folder
    from recmodels.data import RecData
    from recmodels.formatting import text_table
    from recmodels.models import model_info, registered_models
    from recmodels.train.trainer import distributed_context

    import_model_modules(args)
    if args.model == "all" and args.out:
        raise SystemExit("--out names one folder; leave it out with --model all (each goes to checkpoints/).")
    names = registered_models() if args.model == "all" else [model_info(args.model).name]
    if args.model == "all" and args.init_from:
        raise InvalidArgumentError("--init-from starts one model from a checkpoint; name that model with --model.")
    split = split_config(args)
    plans, grid = plan(args, names)
    if args.init_from is not None:  # a wrong path costs no loading time either
        from recmodels.checkpoint.io import read_config

        read_config(args.init_from)
    # where the results go is checked before the data loads, too: a bad --out costs no training time
    for name in names:
        check_output_folder(args.out or default_out(name, args.dataset), "--out")
    if args.log_dir is not None:
        check_output_folder(args.log_dir, "--log-dir")
    rank, world = distributed_context(args.device)
    data = RecData.load(
        args.dataset,
        args.data_dir,
        image_dir=args.image_dir,
        split=split,
        max_history=args.max_history,
    )
    if rank == 0:
        print(f"dataset {data.dataset.name}: {data.summary()}")
        if data.dataset.citation:
            print(f"data: {data.dataset.citation}")
    warm = None
    if args.init_from is not None:
        from recmodels.checkpoint.warm_start import WarmStart

        warm = WarmStart.open(args.init_from, data)
    rows: list[dict] = []
    saved: list[Path] = []
    records = WrittenSince(args.log_dir if rank == 0 else None)
    try:
        for name, (info, candidates) in plans.items():
            row = train_one(args, name, info, list(candidates.values()), bool(grid), data, (rank, world), saved, warm)
            rows += [row] if row else []
    except (RecModelsError, ValueError) as err:
        # a failed run (a diverged one above all) leaves nothing of itself: no checkpoint, no records
        raise failed_run(err, saved, args.log_dir, records.remove_new()) from None
    if rank == 0 and rows:
        print(
            text_table(
                rows,
                ["model", "ndcg@10", "ndcg@20", "recall@10", "recall@20", "hr@10", "mrr@10", "auc", "gauc", "logloss"],
            )
        )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def train_one(
    args, name: str, info, candidates: list, grid: bool, data, ranks: tuple[int, int], saved: list, warm=None
):
    """Train one model (every grid point), measure it and save it (rank 0); its test metrics as a results row, or
    None off rank 0. ``saved`` gets the checkpoint folder once it is written. ``warm`` (a
    :class:`~recmodels.checkpoint.warm_start.WarmStart`) starts each point from its shared parameters."""
    from recmodels.checkpoint.io import record_in_config, save_checkpoint
    from recmodels.data import TEST, VALID
    from recmodels.eval import evaluate
    from recmodels.explain.region_report import recovery_if_planted
    from recmodels.train.selection import train_on_grid

    rank, world = ranks
    copied: list[str] = []

    def initialise(model) -> None:
        copied[:] = warm.apply(model)

    result, config, selection = train_on_grid(
        info.cls,
        candidates,
        data,
        args.device,
        progress=not args.quiet,
        log=print if rank == 0 else None,
        log_dir=None if args.log_dir is None else Path(args.log_dir) / (name if args.model == "all" else ""),
        initialise=None if warm is None else initialise,
    )
    if rank != 0:
        return None
    cap = args.eval_users
    valid = (
        result.best_valid
        if "auc" in result.best_valid and cap is None  # valid_ctr off, or capped
        else evaluate(result.model, data, VALID, max_users=cap)
    )
    metrics = {"valid": valid, "test": evaluate(result.model, data, TEST, max_users=cap)}
    out = Path(args.out) if args.out else default_out(name, data.dataset.name)
    extra = {"collapse_example": args.collapse_example} if args.collapse_example else {}
    if cap is not None:  # the metrics cover a part of the users: say so wherever they are read
        extra["evaluated_users"] = cap
    if grid:
        extra["selection"] = selection
    save_checkpoint(
        out,
        result.model,
        data,
        training={
            **config.to_dict(),
            "best_epoch": result.best_epoch,
            "device": str(result.model.device),
            "world_size": world,
            **({"init_from": warm.record(copied)} if warm is not None else {}),
        },
        metrics=metrics,
        history=result.history,
        extra=extra or None,
    )
    saved.append(out)
    print(f"saved {out}")
    # after saving: the trained model is kept whatever happens to this longer measurement
    if (recovery := recovery_if_planted(result.model, data, progress=not args.quiet)) is not None:
        record_in_config(out, "recovery", recovery)
        print(f"recorded planted-cell recovery in {out / 'config.json'}")
    return {"model": name, **metrics["test"]}
