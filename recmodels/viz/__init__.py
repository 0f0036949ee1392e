"""Every plotly figure the explorer draws, with no Streamlit: a notebook or a script draws what the app shows.

    from recmodels import RecService, viz

    service = RecService.from_checkpoint("checkpoints/din-ml100k")
    explanation = service.explain("13", "50")
    viz.figure(explanation.maps["history"])     # the figure the Explorer shows for that map

The map-to-figure registry (:mod:`~recmodels.viz.registry`) chooses a figure for any map from its axes, level and
meta alone; the builders draw maps and heads (:mod:`~recmodels.viz.maps`), image regions
(:mod:`~recmodels.viz.images`), attributions (:mod:`~recmodels.viz.attributions`), collapse statistics
(:mod:`~recmodels.viz.collapse`) and training curves (:mod:`~recmodels.viz.training`).
"""

from __future__ import annotations

from recmodels.viz.attributions import agreement_figure, attribution_figure
from recmodels.viz.collapse import epochs_figure, layer_head_epochs, rank_box, rank_epochs, statistic_box
from recmodels.viz.images import colour_key, display_copy, region_overlay
from recmodels.viz.maps import (
    component_figure,
    field_figure,
    head_grid_figure,
    heads_figure,
    interaction_figure,
    item_attention_figure,
    js_figure,
    layer_heads_figure,
    matrix_figure,
    weights_bar,
)
from recmodels.viz.registry import ENTRIES, Drawn, Entry, FigureContext, choices_for, figures_for, maps_by_tab, tab_of
from recmodels.viz.training import training_curves

__all__ = [
    "ENTRIES",
    "Drawn",
    "Entry",
    "FigureContext",
    "agreement_figure",
    "attribution_figure",
    "choices_for",
    "colour_key",
    "component_figure",
    "display_copy",
    "epochs_figure",
    "field_figure",
    "figure",
    "figures_for",
    "head_grid_figure",
    "heads_figure",
    "interaction_figure",
    "item_attention_figure",
    "js_figure",
    "layer_head_epochs",
    "layer_heads_figure",
    "maps_by_tab",
    "matrix_figure",
    "rank_box",
    "rank_epochs",
    "region_overlay",
    "statistic_box",
    "tab_of",
    "training_curves",
    "weights_bar",
]


def figure(view, context: FigureContext | None = None, choice: str | None = None):
    """The figure the app shows for one map (a :class:`~recmodels.explain.views.MapView`): the first figure the
    registry draws for it, colour keys left aside; None when the map has nothing to draw (a candidate without an
    image). ``context`` gives what drawing image regions needs (:meth:`FigureContext.of`); ``choice`` is one of
    :func:`choices_for` (e.g. one head, or the mean over heads)."""
    for drawn in figures_for(view, context or FigureContext(), choice):
        if drawn.figure is not None and not drawn.key:
            return drawn.figure
    return None
