"""The explainers behind an explanation, with one interface as Captum's attribution methods have.

Settings go to the constructor; ``attribute(model, batch, **context)`` reads a model on a batch and returns
the explainer's result. The math lives in :mod:`.attributions` and :mod:`.faithfulness`; these classes give
it one shape, so the pipeline (and anyone scripting it) runs each explainer the same way.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from recmodels.explain.attributions import AttributionResult, integrated_gradients, leave_one_out
from recmodels.explain.faithfulness import perturbation_tests
from recmodels.models.base import RecModel
from recmodels.models.outputs import Batch


@runtime_checkable
class Explainer(Protocol):
    """Something that explains a model's scores on a batch: ``attribute(model, batch, **context)``."""

    name: str

    def attribute(self, model: RecModel, batch: Batch, **context) -> Any: ...


class IntegratedGradients:
    """Layer integrated gradients of each row's score to every input tap (or to the ``taps`` named, the others held
    at their real values), from the padding baseline."""

    name = "integrated gradients"

    def __init__(
        self, n_steps: int = 50, internal_batch_size: int | None = None, method: str = "gausslegendre", taps=None
    ):
        self.n_steps, self.internal_batch_size, self.method = n_steps, internal_batch_size, method
        self.taps = taps

    @staticmethod
    def applies_to(model: RecModel) -> bool:
        return bool(model.input_taps())

    def attribute(self, model: RecModel, batch: Batch) -> AttributionResult:
        return integrated_gradients(
            model,
            batch,
            n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size,
            method=self.method,
            taps=self.taps,
        )


class LeaveOneOut:
    """Exact occlusion: each row's score minus its score without one history position, per position.

    Returns (B, T) on the CPU, NaN at padding.
    """

    name = "leave-one-out"

    def attribute(self, model: RecModel, batch: Batch) -> torch.Tensor:
        return torch.stack(
            [
                leave_one_out(model, int(user), int(item), history)
                for user, item, history in zip(batch.users, batch.items, batch.history)
            ]
        )


class PerturbationTests:
    """Score and catalogue rank of a one-row batch when its attention or history is perturbed.

    ``attribute`` needs the row's ``item_attention`` (T,) over history slots (NaN where unknown), the names of
    the ``distribution_maps`` to override, and the items ``excluded`` from the ranking (index i is item i + 1).
    Returns one dict per perturbation, the first being the unperturbed row.
    """

    name = "perturbations"

    def __init__(self, n_random: int = 5, seed: int = 0):
        self.n_random, self.seed = n_random, seed

    def attribute(
        self,
        model: RecModel,
        batch: Batch,
        *,
        item_attention: torch.Tensor,
        distribution_maps: list[str],
        excluded: torch.Tensor,
    ) -> list[dict]:
        if len(batch) != 1:
            raise ValueError(f"perturbation tests read one (user, item) row at a time, got {len(batch)}")
        return perturbation_tests(
            model,
            int(batch.users[0]),
            int(batch.items[0]),
            batch.history[0].cpu(),
            item_attention,
            distribution_maps,
            excluded,
            n_random=self.n_random,
            seed=self.seed,
        )
