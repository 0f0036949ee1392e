"""An explanation in plain words, for people who do not read heatmaps: one or two sentences from templates over the
explanation's own numbers (no language model), e.g.

    DIN ranks “The Firm” 1st of 1,682 for user 13, mostly because of “Milk Money” (16% of the attention), “The Age of
    Innocence” and “The Blues Brothers”; integrated gradients agree on 2 of these 3.

Where attention and the attributions disagree, the sentence says so. Strings from data (titles) are kept apart from
the template (:class:`Sentence`), so a page can escape them for markdown or HTML and set them in italics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recmodels.explain.views import Explanation, MapView

TOP = 3  # history items named in the first sentence
MOSTLY = 0.15  # the top item's share of the attention above which the score is "mostly because of" it


@dataclass(frozen=True)
class Sentence:
    """A sentence whose ``template`` holds ``{0}``, ``{1}``, ... where strings from data (``values``) go."""

    template: str
    values: tuple[str, ...] = ()

    def render(self, wrap) -> str:
        """The sentence with each data string passed through ``wrap`` (an escaper that may add emphasis)."""
        return self.template.format(*(wrap(value) for value in self.values))

    @property
    def text(self) -> str:
        """Plain text, the data strings in quotation marks."""
        return self.render(lambda value: f"“{value}”")


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def _names(count: int, start: int = 0) -> str:
    """ "{0}", "{0} and {1}", "{0}, {1} and {2}" for ``count`` data strings from index ``start``."""
    names = [f"{{{start + i}}}" for i in range(count)]
    return names[0] if count == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def sentences(
    explanation: Explanation, model, catalogue: int, user: str | None, written: bool = False
) -> list[Sentence]:
    """The explanation of ``model``'s score in one to three sentences: the rank and the history items the attention
    leans on (with whether integrated gradients agree, and whether the attention is spread or sits on one item), the
    image regions it looks at, and the head that matters most. ``user`` is None for a new user; ``written`` says the
    history was given rather than recorded. The user id is data, so it is a value too."""
    first = _history_sentence(explanation, model, catalogue)
    if user is None:
        who, values = "a new user", first.values
    else:
        who = f"user {{{len(first.values)}}}" + (" with the history given" if written else "")
        values = (*first.values, str(user))
    out = [Sentence(first.template.replace(_WHO, who), values)]
    out += [s for s in (_regions_sentence(explanation), _heads_sentence(explanation)) if s is not None]
    return out


_WHO = "\x00who\x00"  # where the user goes, filled in once the sentence's other values are known


def _history_sentence(explanation: Explanation, model, catalogue: int) -> Sentence:
    head = f"{model.title} ranks {{0}} {ordinal(explanation.rank)} of {catalogue:,} for {_WHO}"
    title = explanation.title or explanation.item
    if not getattr(model, "reads_history", True):
        return Sentence(f"{head}; it does not read the history, so no item of it explains the score.", (title,))
    per_item = explanation.per_item
    if per_item is None or not len(per_item):
        return Sentence(head + ".", (title,))
    attention = per_item["attention"].to_numpy(dtype=float)
    ig = per_item["integrated_gradients"].to_numpy(dtype=float)
    titles = [str(t) or str(i) for t, i in zip(per_item["title"], per_item["item"])]
    if not np.isfinite(attention).any():  # no attention over its history (EASE): the attributions speak alone
        if not np.isfinite(ig).any():
            return Sentence(head + ".", (title,))
        order = _top(ig)
        text = f"{head}; by integrated gradients, {_names(len(order), 1)} weigh most for the score."
        return Sentence(text, (title, *[titles[i] for i in order]))
    spread, peak = _collapse(explanation)
    order = _top(attention, 1 if peak is not None else TOP)  # one-hot: the others hold nothing worth naming
    total = np.nansum(np.clip(attention, 0, None))
    share = attention[order[0]] / total if total > 0 else float("nan")
    named = [titles[i] for i in order]
    rest = (", " + _names(len(order) - 1, 2)) if len(order) > 2 else (" and {2}" if len(order) == 2 else "")
    if share >= MOSTLY:
        text = f"{head}, mostly because of {{1}} ({share:.0%} of the attention){rest}"
    elif share >= 2 / np.isfinite(attention).sum():  # at least twice the share of an even spread
        text = f"{head}, leaning most on {{1}} ({share:.0%} of the attention){rest}"
    else:
        text = f"{head}, with its attention spread over the history: the most attended are {{1}} ({share:.0%}){rest}"
    if np.isfinite(ig).any():
        by_ig = _top(ig, len(order))
        agree = len(set(order) & set(by_ig))
        if agree and len(order) == 1:
            text += "; integrated gradients agree"
        elif agree:
            text += f"; integrated gradients agree on {agree} of these {len(order)}"
        else:
            text += f"; integrated gradients disagree: they weigh {_names(len(by_ig), 1 + len(order))} most"
            named += [titles[i] for i in by_ig]
    text += "."
    if spread is not None:
        text += (f" The attention is near uniform (normalised entropy {spread:.2f}), so these items count little "
                 "more than the rest.")  # fmt: skip
    elif peak is not None:
        text += f" The attention sits almost entirely on one item ({peak:.0%} of it)."
    return Sentence(text, (title, *named))


def _top(values: np.ndarray, count: int = TOP) -> list[int]:
    """Positions of the ``count`` largest finite values, largest first (ties: the earlier position)."""
    count = min(count, int(np.isfinite(values).sum()))
    return [int(i) for i in np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")[:count]]


def _collapse(explanation: Explanation) -> tuple[float | None, float | None]:
    """(normalised entropy when the sentence's map is near uniform, max weight when it is near one-hot)."""
    view = explanation.maps.get(explanation.agreement_map or "")
    if view is None or view.flags is None or view.statistics is None:
        return None, None
    entropy, peak = _mean(view.statistics["normalised_entropy"]), _mean(view.statistics["max_weight"])
    return (entropy if np.any(view.flags["near_uniform"]) else None,
            peak if np.any(view.flags["near_one_hot"]) else None)  # fmt: skip


def _mean(values) -> float:
    """The mean of the finite values; NaN when there are none (an empty history's map), without a warning."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _regions_sentence(explanation: Explanation) -> Sentence | None:
    """For a map over one image's regions (the candidate's): the cells it looks at most, by row and column."""
    view = next((v for v in explanation.maps.values() if _grid(v) is not None and len(v.axes) == 1), None)
    if view is None:
        return None
    rows, cols = _grid(view)
    values = np.where(view.mask, view.values, np.nan)
    order = [int(i) for i in np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")[:TOP]]
    named = [f"(row {i // cols + 1}, column {i % cols + 1})" for i in order]
    cells = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    share = float(np.nansum(values[order]) / max(np.nansum(values), 1e-12))
    return Sentence(f"On the candidate's image it looks most at {cells} of the {rows} x {cols} grid ({share:.0%} of "
                    "the region attention).")  # fmt: skip


def _grid(view: MapView) -> tuple[int, int] | None:
    try:
        rows, cols = (int(x) for x in view.meta.get("grid"))
    except (TypeError, ValueError):
        return None
    return (rows, cols) if rows * cols == view.values.shape[-1] else None


def _heads_sentence(explanation: Explanation) -> Sentence | None:
    """The head whose masking moves the score most (head importance), when the model has heads."""
    best = None
    for importance in explanation.head_importance.values():
        change = np.where(np.isfinite(importance.change), importance.change, 0.0)
        r, c = np.unravel_index(int(np.argmax(np.abs(change))), change.shape)
        if best is None or abs(change[r, c]) > abs(best[0]):
            best = (
                float(change[r, c]),
                importance.map,
                importance.rows[r],
                importance.columns[c],
                len(importance.rows),
            )
    if best is None or best[0] == 0:
        return None
    change, name, row, column, layers = best
    where = f"{column} of {row}" if layers > 1 else column
    effect = "lowers" if change < 0 else "raises"
    text = f"The head that matters most is {{0}} of {{1}}: masking it {effect} the score by {abs(change):.3g}."
    return Sentence(text, (where, name))
