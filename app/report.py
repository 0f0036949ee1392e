"""A self-contained HTML report of one explanation: every figure and table, plotly.js embedded once.

Every string from data is cut (:func:`app.text.plain`) and HTML-escaped here; figure labels are escaped by
:mod:`app.plots`, tables by pandas."""
from __future__ import annotations

import html

import plotly.io as pio

from app import plots
from app.text import cut_cells, plain


def _figures(service, result):
    for name, view in result.maps.items():
        if view.level == "head" and "head" in view.axes:
            yield name, plots.heads_figure(view), view
            if view.head_similarity is not None:
                yield f"{name}: head similarity (JS)", plots.js_figure(view.head_similarity, view.labels["head"]), None
        elif view.level == "item":
            yield name, plots.item_attention_figure(view), view
        elif view.level == "field":
            yield name, plots.field_figure(view), view
        elif view.level == "head":
            yield name, plots.interaction_figure(view), view
        elif view.level == "component" and not view.meta.get("grid"):
            yield name, plots.component_figure(view, view.meta.get("component_labels")), view
        elif view.level == "component":
            planted = service.planted_regions(result.user)
            for position in view.valid_positions(view.axes[0]):
                image = service.item_image(view.item_ids[view.axes[0]][position])
                if image is not None:
                    yield (f"{name}: {plain(view.labels[view.axes[0]][position], 120)}",
                           plots.region_overlay(image, view.values[position], tuple(view.meta["grid"]), planted), None)
    if result.per_item is not None:
        yield "attention against attributions", plots.agreement_figure(result.per_item), None
    for name, view in result.attributions.items():
        yield f"integrated gradients: {name}", plots.attribution_figure(view), None


def _text(value, width: int) -> str:
    return html.escape(plain(value, width))


def explanation_html(service, result) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Explanation: user {_text(result.user, 60)}, item {_text(result.item, 60)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        ".note{color:#555}</style></head><body>",
        f"<h1>{_text(service.model_name, 40)} on {_text(service.dataset_name, 60)}: user "
        f"{_text(result.user, 60)}, item {_text(result.title, 120)} ({_text(result.item, 60)})</h1>",
        f"<p>Score {result.score:.4f}" + (f", probability {result.probability:.4f}" if result.probability is not None
                                           else "") + f", rank {result.rank} among unseen items.",
    ]
    if result.delta is not None:
        parts.append(f" Integrated gradients ({result.n_steps} steps): baseline score {result.baseline_score:.4f}, "
                     f"convergence delta {result.delta:+.2e}.")
    parts.append("</p>")
    if service.simulated:
        parts.append("<p class='note'>Simulated shoppers over real Fashion-MNIST images; not real behaviour.</p>")
    elif service.citation:
        parts.append(f"<p class='note'>Data: {_text(service.citation, 400)}</p>")
    first = True
    for title, fig, view in _figures(service, result):
        parts.append(f"<h2>{_text(title, 200)}</h2>")
        if view is not None and view.description:
            parts.append(f"<p class='note'>{_text(view.description, 400)}</p>")
        parts.append(pio.to_html(fig, include_plotlyjs=True if first else False, full_html=False))
        first = False
    for title, frame in (("History the model saw", result.history), ("Per history item", result.per_item),
                         ("Perturbations", result.perturbations)):
        if frame is not None:
            parts.append(f"<h2>{title}</h2>" + cut_cells(frame).to_html(index=False,
                                                                         float_format=lambda x: f"{x:.4f}"))
    parts.append("</body></html>")
    return "".join(parts)
