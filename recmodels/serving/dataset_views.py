"""Figures over many users of one checkpoint: collapse diagnostics with bootstrap intervals, planted-cell recovery,
and the training history the checkpoint records. :class:`~recmodels.serving.service.RecService` holds one
:class:`DatasetViews` and hands these calls to it."""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from recmodels.data import TEST, VALID
from recmodels.errors import InvalidArgumentError, quote
from recmodels.explain.diagnostics import DiagnosticsReport, dataset_diagnostics, history_frame
from recmodels.explain.heads import PAIRS_FROM, dataset_head_importance, model_heads, sample_pairs
from recmodels.explain.region_report import region_report
from recmodels.serving.arguments import flag, whole_number
from recmodels.serving.concurrency import computes

MAX_K = 10_000  # users or pairs per call
MAX_BATCH = 65_536  # rows per forward pass
MAX_SEED = 2**32 - 1
RECOVERY_PARTS = {"test": TEST, "valid": VALID}  # valid: for choosing settings, never to report
DEFAULT_SAMPLE = 2000  # users behind diagnostics() by default: a share to about ±2 points, in seconds


def sample_size(sample) -> int | None:
    """``sample`` checked: a whole number from 1 upwards, or None for every user."""
    if sample is None:
        return None
    if isinstance(sample, numbers.Integral) and not isinstance(sample, (bool, np.bool_)):
        if sample >= 1:
            return int(sample)
        got = str(int(sample))
    else:
        got = f"{type(sample).__name__} {quote(sample)}"
    raise InvalidArgumentError(f"sample must be a whole number from 1 upwards, or None for every user, got {got}.")


def sampled_users(n_users: int, sample: int | None, seed: int) -> np.ndarray:
    """The user indices (1-based, ascending) of a seeded sample of ``sample`` users; every user, in order, when
    there are no more than that or ``sample`` is None (so small datasets' figures are those over every user)."""
    if sample is None or sample >= n_users:
        return np.arange(1, n_users + 1)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=sample, replace=False)) + 1


class DatasetViews:
    """The dataset-level calls of one checkpoint: its model on its data, with ids looked up through ``lookup``."""

    def __init__(self, model, data, config, lookup, thresholds):
        self.model, self.data, self.config = model, data, config
        self.lookup, self.thresholds = lookup, thresholds

    # ------------------------------------------------------------------ diagnostics
    @computes
    def diagnostics(
        self,
        users=None,
        batch_size: int = 256,
        progress: bool = False,
        head_users: int = 200,
        head_pairs: str = "top1",
        tiny: float = 1e-3,
        seed: int = 0,
        sample: int | None = DEFAULT_SAMPLE,
    ) -> DiagnosticsReport:
        """Collapse statistics over users: each user's most recent interaction as the candidate, with the
        history strictly before it (the same view training used). ``users`` None means a seeded sample of
        ``sample`` of the dataset's users (every user when it has no more, or when ``sample`` is None); the
        summaries carry 95% bootstrap intervals over the users, seeded with ``seed`` too. For a model with heads,
        ``head_importance`` holds their importance over a sample of ``head_users`` of the users (seeded; 0 for
        none), each read with its top-1 recommendation or its first test interaction (``head_pairs``); ``tiny`` is
        the score change (in logits) below which a head counts as doing nothing for a pair."""
        dataset = self.data.dataset
        batch_size = whole_number("batch_size", batch_size, 1, MAX_BATCH)
        head_users, seed = whole_number("head_users", head_users, 0, MAX_K), whole_number("seed", seed, 0, MAX_SEED)
        if not isinstance(head_pairs, str) or head_pairs not in PAIRS_FROM:
            raise InvalidArgumentError(f"head_pairs must be one of {', '.join(PAIRS_FROM)}, got {quote(head_pairs)}.")
        if isinstance(tiny, (bool, np.bool_)) or not isinstance(tiny, numbers.Real) or not 0 <= tiny < math.inf:
            raise InvalidArgumentError(f"tiny must be a number from 0 upwards, got {quote(tiny)}.")
        sample = sample_size(sample)
        if users is None:
            indices = sampled_users(dataset.n_users, sample, seed)
        else:
            try:
                if isinstance(users, (str, bytes)):
                    raise TypeError
                users = list(users)  # a 0-d array or tensor says it iterates and then cannot
            except TypeError:
                raise InvalidArgumentError(
                    f"users must be a list of user ids, got {type(users).__name__} {quote(users)}."
                ) from None
            indices = np.array([self.lookup.user(u) for u in users], dtype=np.int64)
            if not len(indices):
                raise InvalidArgumentError("users is empty; pass at least one user id, or None for every user.")
        items, histories = self.lookup.last_interactions(indices)
        report = dataset_diagnostics(
            self.model,
            indices,
            items,
            histories,
            case_labels=list(dataset.user_ids[indices]),
            batch_size=batch_size,
            thresholds=self.thresholds,
            progress=progress,
            seed=seed,
        )
        report.users_sampled, report.users_total = len(indices), dataset.n_users
        heads = model_heads(self.model, indices, items, histories) if head_users else []
        if heads:
            users, items, histories = sample_pairs(
                self.model, self.data, indices, head_pairs, head_users, seed, batch_size
            )
            report.head_importance = dataset_head_importance(
                self.model,
                users,
                items,
                histories,
                list(dataset.user_ids[users]),
                batch_size,
                float(tiny),
                head_pairs,
                heads,
            )
        return report

    @computes
    def planted_region_recovery(
        self,
        map_name: str | None = None,
        batch_size: int = 256,
        ig_rows: int = 256,
        progress: bool = False,
        part: str = "test",
    ) -> dict:
        """Region attention and IG against each simulated shopper's planted cells over the test interactions (or
        the valid ones with ``part="valid"``, for choosing settings), with the other-shoppers control, bootstrap
        intervals, Kendall's tau and the deletion test; see :mod:`recmodels.explain.region_report`. ``map_name``
        defaults to the map whose meta gives a grid."""
        if not isinstance(part, str) or part not in RECOVERY_PARTS:
            raise InvalidArgumentError(f"part must be 'valid' or 'test', got {quote(part)}.")
        batch_size = whole_number("batch_size", batch_size, 1, MAX_BATCH)
        ig_rows = whole_number("ig_rows", ig_rows, 1, 100_000)
        planted = self.data.dataset.extras.get("planted_regions")
        if not planted:
            raise InvalidArgumentError(
                f"{self.data.dataset.name} has no planted regions; recovery needs the simulated fashion data."
            )
        return region_report(
            self.model,
            self.data,
            planted,
            map_name=map_name,
            ig_rows=ig_rows,
            batch_size=batch_size,
            progress=flag("progress", progress),
            part=RECOVERY_PARTS[part],
        )

    @property
    def recorded_recovery(self) -> dict | None:
        """The planted-cell recovery written into the checkpoint when it was trained (None if none)."""
        return self.config.recovery

    def training_history(self) -> pd.DataFrame:
        """Per-epoch loss, valid metrics and attention statistics, from the checkpoint, in long format."""
        return history_frame(self.config.history)
