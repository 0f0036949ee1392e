"""A self-contained HTML report of one explanation: its sentences first, then every figure and table, plotly.js
embedded once. For a what-if, the explanation against the real history goes beside the edited one first.

Every string from data is cut (:func:`app.text.plain`) and HTML-escaped here; figure labels are escaped by
:mod:`recmodels.viz`, tables by pandas."""

from __future__ import annotations

import html

import plotly.io as pio

from recmodels import viz
from recmodels.explain.what_if import attention_changes, ranking_changes
from recmodels.serving.service import NEW_USER
from recmodels.viz import FigureContext, figures_for
from recmodels_explorer.services import model_title
from recmodels_explorer.text import STAGE_TITLES, cut_cells, plain


def _figures(service, result):
    """(heading, note, figure or None) for every map, through the same registry as the pages, then the
    attribution figures."""
    context = FigureContext(
        item_image=service.item_image,
        planted=service.planted_regions(result.user),
        candidate=result.item,
        attributions=result.attributions,
    )
    for name, view in result.maps.items():
        for index, drawn in enumerate(figures_for(view, context)):
            heading = f"{plain(name, 120)}: {plain(drawn.title, 120)}" if drawn.title else plain(name, 120)
            notes = [view.description] if index == 0 and view.description else []
            yield heading, " ".join(plain(n, 600) for n in [*notes, drawn.caption] if n), drawn.figure
    if result.per_item is not None:
        yield "attention against attributions", "", viz.agreement_figure(result.per_item)
    for name, view in result.attributions.items():
        yield f"integrated gradients: {plain(name, 120)}", plain(view.description, 400), viz.attribution_figure(view)


def _text(value, width: int) -> str:
    return html.escape(plain(value, width))


def _who(result) -> str:
    return NEW_USER if result.user == NEW_USER else f"user {_text(result.user, 60)}"


def _sentences(result) -> str:
    """The explanation's sentences, each data string escaped and in italics."""
    said = " ".join(s.render(lambda value: f"<em>{_text(value, 120)}</em>") for s in result.sentences)
    return f"<p class='said'>{said}</p>" if said else ""


def _table(frame, number_format: str = "{:.4f}") -> str:
    """A table with every string cut and escaped (pandas escapes), numbers in ``number_format``, NaN blank."""
    return cut_cells(frame).to_html(index=False, na_rep="", float_format=number_format.format)


def _side_by_side(original, edited, rankings) -> list[str]:
    """The real history's explanation beside the edited one's: sentences, score and rank, the histories, and the
    two top-k lists with what moved."""
    columns = []
    for heading, result, ranked in (
        ("With the real history", original, rankings[0] if rankings else None),
        ("With the edited history", edited, rankings[1] if rankings else None),
    ):
        cell = [f"<div><h3>{heading}</h3>", _sentences(result),
                f"<p>Score {result.score:.4f}, rank {result.rank} among unseen items.</p>"]  # fmt: skip
        if ranked is not None:
            cell.append("<h4>Top items</h4>" + _table(ranked[["rank", "title", "score"]], "{:.4f}"))
        cell.append("<h4>History the model saw</h4>" + cut_cells(result.history).to_html(index=False))
        columns.append("".join(cell) + "</div>")
    parts = ["<h2>What if: the edited history against the real one</h2>", f"<div class='pair'>{''.join(columns)}</div>"]
    if rankings:
        changes = ranking_changes(*rankings)
        parts.append("<h3>How the top items moved</h3>" + _table(changes, "{:.4g}"))
    changed = attention_changes(original, edited)
    if not changed.empty:
        parts.append("<h3>Attention per history item, edited minus real</h3>" + _table(changed, "{:+.4f}"))
    return parts


def explanation_html(service, result, original=None, rankings=None) -> str:
    """The report of ``result``; with ``original`` (the same pair explained with the real history) a what-if
    report, the two side by side first, and ``rankings`` (the real and the edited top-k) with them."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Explanation: {_who(result)}, item {_text(result.item, 60)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        ".note{color:#555}.said{font-size:1.15em}.pair{display:grid;grid-template-columns:1fr 1fr;gap:2em}"
        "</style></head><body>",
        f"<h1>{_text(model_title(service.model_name), 40)} on {_text(service.dataset_name, 60)}: {_who(result)}, "
        f"item {_text(result.title, 120)} ({_text(result.item, 60)})</h1>",
        _sentences(result),
    ]
    if original is not None:
        parts += _side_by_side(original, result, rankings)
        parts.append("<h2>The edited history's explanation in full</h2>")
    parts += [
        f"<p>Score {result.score:.4f}"
        + (f", probability {result.probability:.4f}" if result.probability is not None else "")
        + f", rank {result.rank} among unseen items.",
    ]
    if result.delta is not None:
        parts.append(
            f" Integrated gradients ({result.n_steps} steps): baseline score {result.baseline_score:.4f}, "
            f"convergence delta {result.delta:+.2e}."
        )
    parts.append("</p>")
    if service.simulated:
        parts.append("<p class='note'>Simulated interactions, generated by a simulation; not real behaviour.</p>")
    licence = service.licence_note
    for label, note in (("Data", service.citation), ("Licence", licence)):
        if note:
            parts.append(f"<p class='note'>{label}: {_text(note, 400)}</p>")
    first = True
    # a pipeline's explanation: both stages one after the other, the retriever's first (the ranker's is the result's)
    for stage, staged in list(result.stages.items()) or [(None, result)]:
        level = 2 if stage is None else 3
        if stage is not None:
            title = f"{STAGE_TITLES.get(stage, stage)}: {(result.retrieval or {}).get(stage, '')}"
            parts.append(f"<h2>{_text(title, 100)}</h2>" + _sentences(staged))
        for heading, note, fig in _figures(service, staged):
            parts.append(f"<h{level}>{_text(heading, 250)}</h{level}>")
            if note:
                parts.append(f"<p class='note'>{_text(note, 1200)}</p>")
            if fig is not None:
                parts.append(pio.to_html(fig, include_plotlyjs=bool(first), full_html=False))
                first = False
    for title, frame in (
        ("History the model saw", result.history),
        ("Per history item", result.per_item),
        ("Perturbations", result.perturbations),
    ):
        if frame is not None:
            parts.append(f"<h2>{title}</h2>" + cut_cells(frame).to_html(index=False, float_format=lambda x: f"{x:.4f}"))
    parts.append("</body></html>")
    return "".join(parts)
