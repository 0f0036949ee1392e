"""``python -m recmodels diagnostics CHECKPOINT``: the collapse summary of a checkpoint with its bootstrap intervals,
over a seeded sample of users (``--sample``, 2,000 by default) or every user (``--all``), as text tables."""

from __future__ import annotations

import argparse
import math

from recmodels.cli.arguments import add_model_module, import_model_modules, int_argument

HELP = "collapse statistics with bootstrap intervals, over a seeded sample of users or --all"

# (summary column, header): each mean or share printed with its interval beside it
SHOWN = (
    ("normalised_entropy_mean", "entropy"),
    ("max_weight_mean", "max weight"),
    ("share_near_uniform", "near uniform"),
    ("share_near_one_hot", "near one-hot"),
)
FLAG_NAMES = {"near_one_hot": "near one-hot", "near_uniform": "near uniform", "rank_collapse": "rank collapse after"}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("checkpoint", metavar="CHECKPOINT")
    users = parser.add_mutually_exclusive_group()
    users.add_argument(
        "--sample",
        type=sample_size,
        default=None,  # None: the service's default, kept in one place
        help="a seeded sample of this many users (default: RecService.diagnostics's, 2,000; every "
        "user when there are no more)",
    )
    users.add_argument("--all", action="store_true", help="every user (slow on a large dataset)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample of users and the bootstrap")
    parser.add_argument("--device", default="auto")
    add_model_module(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


# --sample: a whole number from 1 upwards (--all asks for every user)
sample_size = int_argument(1, what="a whole number of users", bounds="must be 1 or more (or --all for every user)")


def run(args: argparse.Namespace) -> int:
    from recmodels.serving.dataset_views import DEFAULT_SAMPLE
    from recmodels.serving.service import RecService

    import_model_modules(args)
    service = RecService.from_checkpoint(args.checkpoint, device=args.device)
    sample = None if args.all else DEFAULT_SAMPLE if args.sample is None else args.sample
    report = service.diagnostics(sample=sample, seed=args.seed, head_users=0, progress=not args.quiet)
    print(diagnostics_text(report, f"{service.model_name} on {service.dataset_name}"))
    return 0


def diagnostics_text(report, title: str) -> str:
    """The coverage line, the summary per map, layer and head, the effective rank per layer and the flags."""
    from recmodels.explain.diagnostics import collapse_findings, unit_label
    from recmodels.formatting import text_table

    covered = (
        f"a seeded sample of {report.users_sampled:,} of {report.users_total:,} users (seed {report.seed})"
        if report.sampled
        else f"every user ({report.users_sampled:,})"
    )
    lines = [
        f"{title}: {covered}; [low, high] are {report.confidence:.0%} bootstrap intervals over users "
        f"({report.resamples:,} resamples)"
    ]
    if report.summary.empty:
        return "\n".join(lines + ["the model has no attention distributions, so there is nothing to diagnose"])
    rows = []
    for unit in report.summary.to_dict("records"):
        row = {"unit": unit_label(unit["map"], unit["layer"], unit["head"]), "users": unit["rows"]}
        for column, header in SHOWN:
            row[header], row[f"{header} interval"] = (
                unit[column],
                interval(unit[f"{column}_low"], unit[f"{column}_high"]),
            )
        rows.append(row)
    columns = ["unit", "users"] + [name for _, header in SHOWN for name in (header, f"{header} interval")]
    lines += [
        "",
        text_table(
            rows,
            columns,
            ["map · layer · head", "users"] + [name for _, header in SHOWN for name in (header, "[low, high]")],
        ),
    ]
    if not report.rank_summary.empty:
        ranks = [
            {
                "layer": r["layer"],
                "mean": r["effective_rank_mean"],
                "interval": interval(r["effective_rank_mean_low"], r["effective_rank_mean_high"]),
                "median": r["effective_rank_median"],
            }
            for r in report.rank_summary.to_dict("records")
        ]
        lines += [
            "",
            text_table(
                ranks, ["layer", "mean", "interval", "median"], ["effective rank", "mean", "[low, high]", "median"]
            ),
        ]
    found = [f"{FLAG_NAMES[kind]}: {', '.join(units)}" for kind, units in collapse_findings(report).items() if units]
    lines += ["", "flags (median user): " + ("; ".join(found) if found else "none")]
    return "\n".join(lines)


def interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) or math.isnan(high) else f"[{low:.4f}, {high:.4f}]"
