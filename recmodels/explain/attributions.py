"""Captum attributions of scores to the models' input embeddings, and exact leave-one-out occlusion.

Integrated gradients run through ``captum.attr.LayerIntegratedGradients`` on every :class:`InputTap` of a model
at once, with the padding id as the baseline input. As in Captum's BERT tutorial (where the attention mask is
held fixed while token embeddings move to the [PAD] embedding), only the tapped embeddings travel from the
baseline to the real input; everything else the forward reads (the history's padding mask, for one) stays as
in the real input. So completeness reads

    sum of all attributions  ~=  score(x) - score(x with every tapped embedding at its padding baseline)

and ``delta`` is the difference between the two sides. With ``taps`` naming some of the taps, only those travel
and the others keep their real values (Captum's layer IG interpolates the named layers alone), so completeness
reads ``sum of their attributions ~= score(x) - score(x with the named taps at their baseline)``: the share of the
score that those inputs, given the rest as it is, account for. Captum registers hooks while it works; it does so on a
private copy of the module tree that shares the (read-only) weights, so the shared model never sees a hook.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from dataclasses import dataclass

import pandas as pd
import torch
from captum.attr import LayerIntegratedGradients

from recmodels.errors import InvalidArgumentError, quote
from recmodels.models.base import RecModel
from recmodels.models.output_check import check_output, model_label
from recmodels.models.outputs import Batch, InputTap

# Captum warns whenever several layers are attributed at once; taps are independent leaves by contract
# (no tap's output feeds another tap), which is exactly what that warning asks to make sure of.
warnings.filterwarnings("ignore", message="Multiple layers provided", category=UserWarning)


@dataclass
class Attribution:
    """Attribution of each row's score to one tap's units (summed over the embedding dimension)."""

    name: str
    units: tuple[str, ...]
    values: torch.Tensor  # (B, *units)
    labels: list[str] | None
    item_axis: str | None
    description: str


@dataclass
class AttributionResult:
    attributions: dict[str, Attribution]
    scores: torch.Tensor  # (B,) the model's scores
    baseline_scores: torch.Tensor  # (B,) scores with every attributed tap at its padding baseline
    delta: torch.Tensor  # (B,) sum of attributions - (scores - baseline_scores)
    n_steps: int

    def total(self) -> torch.Tensor:
        return sum(a.values.flatten(1).sum(1) for a in self.attributions.values())

    def to_frame(self, items: list) -> pd.DataFrame:
        """One row per (row's item, tap, unit) with the attribution and the row's delta."""
        frames = []
        for name, attribution in self.attributions.items():
            values = attribution.values.reshape(len(items), -1).cpu().numpy()
            for row, item in enumerate(items):
                frames.append(
                    pd.DataFrame(
                        {
                            "item": item,
                            "tap": name,
                            "unit": range(values.shape[1]),
                            "attribution": values[row],
                            "delta": float(self.delta[row]),
                        }
                    )
                )
        return pd.concat(frames, ignore_index=True)


def chosen_taps(model: RecModel, names=None) -> dict[str, InputTap]:
    """The model's taps, or those named (in the model's order); an unknown or repeated name is one sentence."""
    taps = model.input_taps()
    if names is None:
        return taps
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidArgumentError(
            f"attribute_to must be a non-empty list of tap names, got {quote(names)}; "
            f"{model.name} has: {', '.join(taps)}."
        )
    unknown = [n for n in names if n not in taps]
    if unknown:
        raise InvalidArgumentError(
            f"{model.name} has no input tap {quote(unknown[0])}; its taps are: {', '.join(taps)}."
        )
    return {name: tap for name, tap in taps.items() if name in set(names)}


def private_copy(model: RecModel) -> RecModel:
    """A copy of the module tree that shares every parameter and buffer, so hooks on it stay private."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _batch_inputs(batch: Batch) -> tuple[torch.Tensor, ...]:
    return batch.users, batch.items, batch.history


def _padding_baseline(batch: Batch) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(t) for t in _batch_inputs(batch))


def _tap_outputs(model: RecModel, taps: dict[str, InputTap], batch: Batch) -> dict[str, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}
    handles = [
        tap.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o.detach()))
        for name, tap in taps.items()
    ]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _scores_with_tap_outputs(
    model: RecModel, taps: dict[str, InputTap], batch: Batch, outputs: dict[str, torch.Tensor]
) -> torch.Tensor:
    handles = [tap.register_forward_hook(lambda m, i, o, name=name: outputs[name]) for name, tap in taps.items()]
    try:
        with torch.no_grad():
            return model(batch).scores
    finally:
        for handle in handles:
            handle.remove()


def integrated_gradients(
    model: RecModel,
    batch: Batch,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    method: str = "gausslegendre",
    taps=None,
) -> AttributionResult:
    """Layer integrated gradients of each row's score to every input tap of ``model``, or to the ``taps`` named
    while the others keep their real values.

    Args:
        n_steps: points on the path (Gauss-Legendre by default, which converges fast on smooth paths).
        internal_batch_size: rows per forward pass inside Captum (bounds memory); default all at once.
        taps: names of the taps to attribute to (``model.input_taps()`` keys); None for all.
    """
    worker = private_copy(model)
    taps = chosen_taps(worker, taps)
    if not taps:
        raise InvalidArgumentError(
            f"{model_label(model)} has no input taps (embeddings marked with InputTap) for integrated gradients to "
            "attribute its scores to; attribute a model that has some."
        )
    names = list(taps)
    batch = Batch(*_batch_inputs(batch))
    with torch.no_grad():  # the scores first, checked, so a bad output is one sentence rather than Captum's error
        scores = check_output(model, worker(batch), len(batch)).scores

    def forward(users, items, history):
        return worker(Batch(users, items, history)).scores

    explainer = LayerIntegratedGradients(forward, [taps[name] for name in names])
    raw = explainer.attribute(
        _batch_inputs(batch),
        baselines=_padding_baseline(batch),
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
    )
    raw = [r[0] if isinstance(r, (tuple, list)) else r for r in raw]

    baseline_outputs = _tap_outputs(worker, taps, Batch(*_padding_baseline(batch)))
    baseline_scores = _scores_with_tap_outputs(worker, taps, batch, baseline_outputs)

    attributions = {}
    for name, values in zip(names, raw):
        tap = taps[name]
        attributions[name] = Attribution(
            name=name,
            units=tap.units,
            values=values.detach().sum(-1),
            labels=tap.labels,
            item_axis=tap.item_axis,
            description=tap.description,
        )
    result = AttributionResult(
        attributions, scores.detach(), baseline_scores.detach(), torch.zeros_like(scores), n_steps
    )
    result.delta = result.total() - (result.scores - result.baseline_scores)
    return result


def remove_positions(history: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Histories with one position each removed and the rest shifted left (the right padding stays intact).

    ``history`` is (T,), ``positions`` (K,) -> (K, T).
    """
    length = history.shape[0]
    index = torch.arange(length, device=history.device)
    # for output slot j, read slot j when j < removed position, else slot j + 1
    source = index.unsqueeze(0) + (index.unsqueeze(0) >= positions.unsqueeze(1)).long()
    shifted = torch.where(source < length, history[source.clamp(max=length - 1)], torch.zeros_like(source))
    return shifted


@torch.no_grad()
def leave_one_out(model: RecModel, user: int, item: int, history: torch.Tensor) -> torch.Tensor:
    """Exact occlusion: score(full history) - score(history without position t), for every valid position.

    Returns (T,) with NaN at padding positions. One batched forward for all positions.
    """
    device = model.device
    history = history.to(device)
    valid = torch.nonzero(history != 0).squeeze(1)
    out = torch.full((history.shape[0],), float("nan"), device=device)
    if valid.numel() == 0:
        return out.cpu()
    variants = torch.cat([history.unsqueeze(0), remove_positions(history, valid)])
    rows = variants.shape[0]
    batch = Batch(torch.full((rows,), user, device=device), torch.full((rows,), item, device=device), variants)
    scores = check_output(model, model(batch), rows).scores
    out[valid] = scores[0] - scores[1:]
    return out.cpu()
