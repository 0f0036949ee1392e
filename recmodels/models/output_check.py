"""The rules a model's output keeps, written once: the contract test holds every registered model to them
(tests/test_model_contract.py, tightly), and the service, the explainers and the evaluator check each forward
output they read against them at run time (loosely), so a plugin's bad output is one sentence that names the model
rather than an error deep inside the ranking, or a NaN score, or a map drawn as attention that is not one.

The rules: ``forward`` returns a :class:`RecOutput` whose scores are one finite floating-point logit per row; each
:class:`AttentionMap` has one finite floating-point slice per row, as many dimensions as it names axes, item ids
and labels as long as the axes they label, a boolean mask that broadcasts to it and no weight on padding; a map
declared ``normalised_over`` an axis (always its last: overrides and the collapse statistics read that one) holds
non-negative weights that sum to 1 over it wherever a position is valid, and to 0 where none is.

Every check is a few reductions over tensors the caller already holds, so it runs on every call.
"""

from __future__ import annotations

import torch

from recmodels.errors import ModelOutputError, quote
from recmodels.models.outputs import AttentionMap, RecOutput

__all__ = [
    "CONTRACT_TOLERANCE",
    "RUNTIME_TOLERANCE",
    "check_catalogue_maps",
    "check_map",
    "check_output",
    "check_scores",
    "model_label",
    "users_and_items",
]

# how far a distribution's sum may be from 1 (and a padded weight from 0): at run time, loose enough for float16 and
# bfloat16 maps and long histories; in the contract test, float32's own rounding
RUNTIME_TOLERANCE = 1e-3
CONTRACT_TOLERANCE = 1e-5
FIX = "fix the model's forward (see docs/extending.md)"


def model_label(model) -> str:
    """``Model 'din' (from recmodels.models.din)``: the registered name and the module the class came from."""
    name = getattr(type(model), "name", "") or type(model).__name__
    return f"Model {quote(name)} (from {type(model).__module__})"


def _shape(tensor: torch.Tensor) -> str:
    return str(tuple(tensor.shape))


def _rows(rows: int) -> str:
    return f"{rows} row{'s' if rows != 1 else ''}"


def check_scores(
    model, scores, shape: tuple[int, ...], for_what: str, what: str = "scores", fix: str = FIX, finite: bool = True
) -> torch.Tensor:
    """``scores`` when it is a finite floating-point tensor of ``shape``; else one :class:`ModelOutputError`
    sentence, ``for_what`` saying what they were asked for (e.g. "for 3 users and 1682 items") and ``fix`` where
    the fault lies. ``finite=False`` leaves the values alone (the training loss, where NaN is the optimiser's)."""
    if (
        isinstance(scores, torch.Tensor)
        and tuple(scores.shape) == tuple(shape)
        and scores.is_floating_point()
        and (not finite or bool(torch.isfinite(scores).all()))
    ):
        return scores  # the common case, without building a message
    who = model_label(model)
    if not isinstance(scores, torch.Tensor):
        raise ModelOutputError(f"{who} returned {what} as a {type(scores).__name__}, not a tensor; {fix}.")
    if tuple(scores.shape) != tuple(shape):
        raise ModelOutputError(
            f"{who} returned {what} of shape {_shape(scores)} {for_what}, where one value each is shape "
            f"{tuple(shape)}; {fix}."
        )
    if not scores.is_floating_point():
        raise ModelOutputError(
            f"{who} returned {what} of dtype {str(scores.dtype).removeprefix('torch.')}; they must be floating-point "
            f"(scores are logits, e.g. float32), so {fix}."
        )
    nan = int(torch.isnan(scores).sum())
    infinite = scores.numel() - nan - int(torch.isfinite(scores).sum())
    counts = " and ".join([f"{nan} NaN"] * bool(nan) + [f"{infinite} infinite"] * bool(infinite))
    raise ModelOutputError(
        f"{who} returned {counts} {what} of {scores.numel()} {for_what}; every value must be a finite number, so "
        "check the model's weights and its forward."
    )


def users_and_items(n_users: int, n_items: int) -> str:
    """``for 1 user and 1682 items``: what a ranking asked a model for."""
    return f"for {n_users} user{'s' if n_users != 1 else ''} and {n_items} item{'s' if n_items != 1 else ''}"


def check_output(
    model, output, rows: int, maps: bool = False, tolerance: float = RUNTIME_TOLERANCE, finite: bool = True
) -> RecOutput:
    """``output`` of ``model`` on a batch of ``rows`` rows when it keeps the rules (with ``maps``, its attention maps
    too; with ``finite`` False, the scores' values are not read); else one :class:`ModelOutputError` sentence naming
    the model."""
    if not isinstance(output, RecOutput):
        raise ModelOutputError(
            f"{model_label(model)} returned a {type(output).__name__} from forward, not a RecOutput; return "
            "RecOutput(scores, attentions), so the scores and the maps can be told apart."
        )
    rows_text = f"for a batch of {rows} (user, item) row{'s' if rows != 1 else ''}"
    check_scores(model, output.scores, (rows,), rows_text, finite=finite)
    if maps and output.attentions is not None:
        if not isinstance(output.attentions, dict):
            raise ModelOutputError(
                f"{model_label(model)} returned attentions as a {type(output.attentions).__name__}, not a dict of "
                f"AttentionMap by name; {FIX}."
            )
        for name, attention in output.attentions.items():
            check_map(model, name, attention, rows, tolerance)
    return output


def check_map(model, name, attention, rows: int, tolerance: float = RUNTIME_TOLERANCE) -> AttentionMap:
    """One attention map of a batch of ``rows`` rows against the rules (see the module's docstring)."""
    who = f"{model_label(model)} returned the attention map {quote(name)}"
    if not isinstance(attention, AttentionMap):
        raise ModelOutputError(f"{who} as a {type(attention).__name__}, not an AttentionMap; {FIX}.")
    values = attention.values
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        kind = str(values.dtype).removeprefix("torch.") if isinstance(values, torch.Tensor) else type(values).__name__
        raise ModelOutputError(f"{who} with values of type {kind}; attention weights are floating-point, so {FIX}.")
    axes = tuple(attention.axes)
    if values.dim() != len(axes) + 1 or values.shape[0] != rows:
        raise ModelOutputError(
            f"{who} with values of shape {_shape(values)} for a batch of {_rows(rows)} and the axes {axes}; it needs "
            f"one slice per row and one dimension per axis, so {FIX}."
        )
    sizes = dict(zip(axes, values.shape[1:]))
    _check_axis_labels(who, attention, sizes, rows)
    mask = _checked_mask(who, attention.mask, values)
    if not bool(torch.isfinite(values).all()):
        raise ModelOutputError(f"{who} with NaN or infinite weights; every weight must be a finite number, so {FIX}.")
    weights = values.detach().float()
    if mask is not None:
        padded = weights.masked_fill(mask, 0).abs().max() if weights.numel() else weights.new_zeros(())
        if float(padded) > tolerance:
            raise ModelOutputError(
                f"{who} with weight {float(padded):.3g} on padded positions (its mask's False cells); padding must "
                f"weigh 0, so {FIX}."
            )
    if attention.normalised_over is not None:
        _check_distribution(who, weights, mask, attention.normalised_over, axes, tolerance)
    return attention


def _check_axis_labels(who: str, attention: AttentionMap, sizes: dict, rows: int) -> None:
    for axis, ids in attention.axis_items.items():
        if axis not in sizes:
            raise ModelOutputError(f"{who} with item ids for {quote(axis)}, which is not one of its axes; {FIX}.")
        if not isinstance(ids, torch.Tensor) or tuple(ids.shape) != (rows, sizes[axis]):
            shape = _shape(ids) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ModelOutputError(
                f"{who} with item ids of shape {shape} for its axis {quote(axis)} of {sizes[axis]} positions; they "
                f"must be ({rows}, {sizes[axis]}), one per position of each row, so {FIX}."
            )
    for axis, labels in attention.labels.items():
        if axis in sizes and len(labels) != sizes[axis]:
            raise ModelOutputError(
                f"{who} with {len(labels)} labels for its axis {quote(axis)} of {sizes[axis]} positions; {FIX}."
            )


def _checked_mask(who: str, mask, values: torch.Tensor) -> torch.Tensor | None:
    """The mask expanded to the values' shape (None without one)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        kind = str(mask.dtype).removeprefix("torch.") if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ModelOutputError(f"{who} with a mask of type {kind}; a mask is a bool tensor, so {FIX}.")
    try:
        return mask.expand_as(values)
    except RuntimeError:
        raise ModelOutputError(
            f"{who} with a mask of shape {_shape(mask)} that does not broadcast to its values of shape "
            f"{_shape(values)}; {FIX}."
        ) from None


def _check_distribution(who: str, weights, mask, axis: str, axes: tuple, tolerance: float) -> None:
    if axis != axes[-1]:
        raise ModelOutputError(
            f"{who} declared normalised over {quote(axis)}, which is not its last axis {axes}; overrides and the "
            f"collapse statistics read the last one, so move it there."
        )
    if not weights.numel():
        return
    smallest = float(weights.min())
    if smallest < 0:
        raise ModelOutputError(
            f"{who} declared normalised over {quote(axis)} with a negative weight ({smallest:.3g}); a distribution's "
            f"weights are at least 0, so {FIX}."
        )
    sums = weights.sum(-1)
    expected = torch.ones_like(sums) if mask is None else mask.any(-1).to(sums.dtype)
    worst = (sums - expected).abs()
    where = int(worst.argmax())
    if float(worst.flatten()[where]) > tolerance:
        got, wanted = float(sums.flatten()[where]), float(expected.flatten()[where])
        wanted_text = "1" if wanted else "0 (no valid position)"
        raise ModelOutputError(
            f"{who} declared normalised over {quote(axis)} whose weights sum to {got:.6g} where they should sum to "
            f"{wanted_text} (within {tolerance:g}); {FIX}, or declare normalised_over=None if it is no distribution."
        )


def check_catalogue_maps(
    model, maps, declared: dict, n_users: int, n_candidates: int, tolerance: float = RUNTIME_TOLERANCE
) -> dict:
    """``model.catalogue_attention``'s maps, ``(n_users, n_candidates, *map)`` each, against the maps ``declared``
    by a forward on one of the pairs (already checked): the same names and shapes, finite floating-point weights,
    and for a distribution non-negative weights that sum to 1 over a row with a valid position, or to 0."""
    who = model_label(model)
    if not isinstance(maps, dict) or set(maps) != set(declared):
        names = sorted(map(str, maps)) if isinstance(maps, dict) else type(maps).__name__
        raise ModelOutputError(
            f"{who} ranked the catalogue's attention as {names} but its forward returns the maps {sorted(declared)}; "
            "catalogue_attention must return the forward's maps by name, so fix the model."
        )
    for name, values in maps.items():
        attention = declared[name]
        shape = (n_users, n_candidates, *attention.values.shape[1:])
        fix = "fix the model's catalogue_attention"
        check_scores(model, values, shape, users_and_items(n_users, n_candidates), f"attention {quote(name)}", fix)
        if attention.normalised_over is not None and values.numel():
            weights = values.detach().float()
            sums = weights.sum(-1)
            off = torch.minimum((sums - 1).abs(), sums.abs()).max()  # a row with no valid position sums to 0
            if float(weights.min()) < 0 or float(off) > tolerance:
                raise ModelOutputError(
                    f"{who} ranked the catalogue's attention {quote(name)} with weights that are negative or do not "
                    f"sum to 1 over {quote(attention.normalised_over)}, as its forward's do; fix catalogue_attention."
                )
    return maps
