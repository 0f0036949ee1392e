"""Attributions: signed integrated gradients per unit, and attention against IG and leave-one-out per history
item (the :class:`~recmodels.explain.views.AttributionView` and the explanation's agreement frame)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from recmodels.viz.labels import short, shorts, unique_labels
from recmodels.viz.maps import weights_bar
from recmodels.viz.style import DIVERGING_SCALE, layout


def attribution_figure(view) -> go.Figure:
    """Signed attributions per unit on a diverging scale centred at 0."""
    if view.values.ndim == 1:
        return weights_bar(
            shorts(view.labels[view.units[0]]),
            view.values,
            view.units[0].replace("_", " "),
            signed=True,
            value_title="attribution",
        )
    rows, cols = view.units[:2]
    values = view.values.reshape(view.values.shape[0], view.values.shape[1], -1).sum(-1)
    limit = float(np.abs(values).max()) or 1.0
    fig = px.imshow(
        values,
        zmin=-limit,
        zmax=limit,
        color_continuous_scale=DIVERGING_SCALE,
        aspect="auto",
        y=unique_labels(view.labels[rows], range(values.shape[0])),
        x=[short(x, 14) for x in view.labels[cols]],
        labels=dict(color="attribution"),
    )
    return layout(fig, height=min(900, 120 + 22 * values.shape[0]))


def agreement_figure(per_item: pd.DataFrame) -> go.Figure:
    """Attention, integrated gradients and leave-one-out per history item, side by side on shared rows."""
    labels = unique_labels(list(per_item["title"]), range(len(per_item)))
    columns = [
        ("attention", "attention", False),
        ("integrated_gradients", "integrated gradients", True),
        ("leave_one_out", "leave-one-out", True),
    ]
    fig = make_subplots(
        rows=1, cols=3, shared_yaxes=True, subplot_titles=[c[1] for c in columns], horizontal_spacing=0.03
    )
    for index, (column, _, signed) in enumerate(columns, start=1):
        values = per_item[column].to_numpy(dtype=float)
        # signed: the ends of RdBu, as in the other attribution charts, positive blue and negative red
        colors = np.where(values >= 0, "#2166ac", "#b2182b") if signed else "#2171b5"
        fig.add_trace(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                marker_color=colors,
                showlegend=False,
                hovertemplate="%{y}: %{x:.4f}<extra></extra>",
            ),
            row=1,
            col=index,
        )
        if signed:
            fig.add_vline(x=0, line_width=1, line_color="#444", row=1, col=index)
    fig.update_yaxes(autorange="reversed", type="category")
    fig = layout(fig, height=min(1200, 120 + 20 * len(labels)))
    fig.update_layout(margin=dict(t=40))  # room for the three subplot titles
    return fig
