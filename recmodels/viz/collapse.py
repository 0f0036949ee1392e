"""Figures of the Collapse page: statistics per map, layer and head, over users and over the training epochs, and
the effective rank of the hidden states per layer. Drawn from the DataFrames of ``recmodels.explain.diagnostics``
alone; every label from data goes through :func:`recmodels.viz.maps.short`."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from recmodels.explain.diagnostics import unit_label
from recmodels.viz.labels import short
from recmodels.viz.style import layout

TITLES = {"normalised_entropy": "normalised entropy", "max_weight": "max weight"}
MAX_FACETS = 6  # layers side by side; deeper models wrap into rows


def unit_names(frame: pd.DataFrame) -> list[str]:
    """ "map · layer l · head h" per row of a frame with map, layer and head columns (0-based, -1 for none)."""
    return [short(unit_label(*unit), 60) for unit in zip(frame["map"], frame["layer"], frame["head"])]


def statistic_box(
    rows: pd.DataFrame, statistic: str, title: str | None = None, threshold: float | None = None
) -> go.Figure:
    """Distribution of one collapse statistic over users, one box per map, layer and head, with the flag's
    threshold as a dashed line."""
    frame = rows.assign(unit=unit_names(rows) if "layer" in rows else rows["map"].map(short))
    fig = px.box(
        frame,
        x="unit",
        y=statistic,
        points=False,
        range_y=(0, 1.02),
        labels={"unit": "map / layer / head", statistic: TITLES.get(statistic, statistic)},
    )
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="grey")
    return layout(fig, height=360, title=title, legend_below=True)


def layer_head_epochs(
    history: pd.DataFrame,
    map_name: str,
    statistic: str,
    threshold: float | None = None,
    title: str | None = None,
    x_title: str = "epoch",
) -> go.Figure:
    """One map's ``statistic`` over the training epochs: a panel per layer, a line per head (the frame of
    :func:`recmodels.explain.diagnostics.layer_head_history`)."""
    frame = history[(history["map"] == map_name)].dropna(subset=[statistic])
    layers = sorted(frame["layer"].unique())
    columns = min(len(layers), MAX_FACETS) or 1
    rows = -(-len(layers) // columns) or 1
    fig = make_subplots(
        rows=rows,
        cols=columns,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[f"layer {layer + 1}" if layer >= 0 else "" for layer in layers],
    )
    palette = px.colors.qualitative.Plotly
    for index, layer in enumerate(layers):
        for head, lines in frame[frame["layer"] == layer].groupby("head", sort=True):
            name = f"head {head + 1}" if head >= 0 else short(map_name)
            fig.add_trace(
                go.Scatter(
                    x=lines["epoch"],
                    y=lines[statistic],
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=index == 0,
                    line=dict(color=palette[max(head, 0) % len(palette)]),
                ),
                row=index // columns + 1,
                col=index % columns + 1,
            )
    fig.update_yaxes(range=(0, 1.02))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=TITLES.get(statistic, statistic), col=1)
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="grey")
    return layout(fig, height=300 * rows + 40, title=title, legend_below=True)


def rank_epochs(
    ranks: pd.DataFrame, threshold: float | None = None, title: str | None = None, x_title: str = "epoch"
) -> go.Figure:
    """Median effective rank per layer over the epochs, with the band of the middle 80% of the probe rows (the
    frame of :func:`recmodels.explain.diagnostics.rank_history`), and the rank-collapse threshold dashed."""
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for index, (_depth, lines) in enumerate(ranks.sort_values(["depth", "epoch"]).groupby("depth", sort=True)):
        colour, name = palette[index % len(palette)], short(lines["layer"].iloc[0])
        band = pd.concat(
            [
                lines[["epoch", "q90"]].rename(columns={"q90": "y"}),
                lines[["epoch", "q10"]].rename(columns={"q10": "y"}).iloc[::-1],
            ]
        ).dropna()
        fig.add_trace(
            go.Scatter(
                x=band["epoch"],
                y=band["y"],
                fill="toself",
                line=dict(width=0),
                opacity=0.2,
                fillcolor=colour,
                hoverinfo="skip",
                showlegend=False,
                legendgroup=name,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=lines["epoch"],
                y=lines["median"],
                mode="lines+markers",
                name=name,
                line=dict(color=colour),
                legendgroup=name,
            )
        )
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="grey")
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="effective rank", rangemode="tozero")
    return layout(fig, height=360, title=title, legend_below=True)


def rank_box(ranks: pd.DataFrame, threshold: float | None = None, title: str | None = None) -> go.Figure:
    """Effective rank over users, one box per layer (the report's ``effective_rank`` frame), embeddings first."""
    fig = px.box(
        ranks.assign(layer=ranks["layer"].map(short)),
        x="layer",
        y="effective_rank",
        points=False,
        labels={"layer": "hidden states after", "effective_rank": "effective rank"},
    )
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="grey")
    fig.update_yaxes(rangemode="tozero")
    return layout(fig, height=340, title=title, legend_below=True)


def epochs_figure(history: pd.DataFrame, statistic: str, title: str | None = None, x_title: str = "epoch") -> go.Figure:
    """One statistic per map over the training epochs (the frame of
    :meth:`~recmodels.serving.RecService.training_history`), on the 0..1 scale."""
    frame = history.dropna(subset=[statistic]) if statistic in history else pd.DataFrame()
    if frame.empty:
        return layout(go.Figure(), height=300, title=title)
    frame = frame.assign(map=frame["map"].map(short)) if "map" in frame else frame
    fig = px.line(
        frame,
        x="epoch",
        y=statistic,
        color="map" if "map" in frame else None,
        markers=True,
        range_y=(0, 1.02),
        labels={"epoch": x_title},
    )
    return layout(fig, height=320, title=title)
