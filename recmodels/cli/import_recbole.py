"""``python -m recmodels import-recbole SAVED.pth --out DIR``: convert a SASRec or BERT4Rec saved by RecBole 1.2.0
into a checkpoint folder."""

from __future__ import annotations

import argparse

HELP = "convert a SASRec or BERT4Rec saved by RecBole 1.2.0 to a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("saved", metavar="SAVED.pth", help="the file RecBole saved under saved/")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the folder of atomic files RecBole read (default for ml-100k: the copy in the recbole wheel)",
    )
    parser.add_argument("--dataset", default=None, help="the dataset name (default: the one RecBole saved)")
    parser.add_argument("--out", required=True, help="the checkpoint folder to write")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="open SAVED.pth although it is a pickle, which can run code: only for files you trust",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from recmodels.checkpoint.recbole import import_recbole

    summary = import_recbole(
        args.saved, args.out, data_dir=args.data_dir, dataset=args.dataset, trust_pickle=args.trust_pickle
    )
    print(
        f"converted RecBole {summary['model']} (epoch {summary['epoch']}, {summary['items']} items) into {args.out}"
        + (
            f"; {summary['dropped_item_file_only']} items only in RecBole's .item file were left out"
            if summary["dropped_item_file_only"]
            else ""
        )
    )
    return 0
